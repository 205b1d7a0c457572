"""Smoke test of `recgym demo` with a tiny budget: every stage runs, artefacts are complete."""

from __future__ import annotations

import json
from pathlib import Path

from recgym.benchmarks.demo import DemoConfig, main, run
from recgym.envs.evaluation import METRICS


def test_demo_runs_end_to_end_and_resumes(tmp_path: Path, capsys) -> None:
    cfg = DemoConfig(
        out=str(tmp_path / "demo"),
        users=80,
        items=300,
        authors=30,
        days=3,
        dqn_steps=300,
        episodes=3,
        seeds=(0, 1),
    )
    report = run(cfg, progress=False)
    out = Path(cfg.out)
    for name in ("results.md", "results.json", "learning_curve.png", "metrics.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "simulator" / "fidelity.md").exists()
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"learned simulator", "ground-truth world"}
    for backend in results.values():
        assert set(backend) == {"random", "greedy (RankingModel)", "DQN"}
        for agent in backend.values():
            assert set(METRICS) <= set(agent)
            for m in METRICS:
                assert agent[m]["ci_low"] <= agent[m]["mean"] <= agent[m]["ci_high"]
                assert len(agent[m]["per_seed"]) == 2
    md = report["markdown"]
    assert "DQN" in md and "On the ground-truth world" in md and "click_auc" in md

    # a re-run reuses every finished stage and gives the same tables
    assert main(["--out", cfg.out, "--users", "80", "--items", "300", "--authors", "30",
                 "--days", "3", "--dqn-steps", "300", "--episodes", "3", "--seeds", "2",
                 "--quiet"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 0  # --quiet: no stage messages
    again = json.loads((out / "results.json").read_text())["results"]
    assert again == results
