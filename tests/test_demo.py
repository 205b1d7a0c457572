"""`recgym demo` on the bench engine: every stage runs, a changed setting reruns exactly what it
reaches (and the table says so), a repeat reuses everything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recgym.benchmarks.demo import AGENTS, BACKENDS, DemoConfig, main, run
from recgym.benchmarks.engine import stage_log
from recgym.envs.evaluation import METRICS

STAGES = ("logs", "simulator", "ranker", "dqn", "evaluate")


def _tiny(users: int, episodes: int = 3) -> list[str]:
    return ["--users", str(users), "--items", "300", "--authors", "30", "--days", "3",
            "--dqn-steps", "200", "--dqn-test-episodes", "1", "--episodes", str(episodes),
            "--seeds", "0", "1", "--quiet"]  # fmt: skip


def _actions(out: Path, since: int) -> dict[str, str]:
    return {line["stage"]: line["action"] for line in stage_log(out)[since:]}


def test_demo_reruns_what_a_setting_reaches_and_reuses_the_rest(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    cfg = DemoConfig(out=str(out), users=60, items=300, authors=30, days=3, dqn_steps=200,
                     dqn_test_episodes=1, episodes=3, seeds=(0, 1))  # fmt: skip
    report = run(cfg, progress=False)
    assert _actions(out, 0) == dict.fromkeys(STAGES, "ran")
    for name in ("results.md", "results.json", "learning_curve.png", "metrics.png", "ctr.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == set(BACKENDS.values())
    for backend in results["results"].values():
        assert list(backend) == list(AGENTS)
        for agent in backend.values():
            for m in METRICS:
                assert agent[m]["ci_low"] <= agent[m]["mean"] <= agent[m]["ci_high"]
                assert len(agent[m]["per_seed"]) == 2
    md = report["markdown"]
    assert "World: 60 users" in md and "On the ground-truth world" in md and "click_auc" in md
    first = {n: r.key for n, r in report["stages"].items()}

    # another --users: every stage reruns, and the table is the new world's, labelled as such
    n = len(stage_log(out))
    assert main(["--out", str(out), *_tiny(80)]) == 0
    assert _actions(out, n) == dict.fromkeys(STAGES, "ran")
    results = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert "World: 80 users" in md and results["config"]["users"] == 80
    keys = {n: s["key"] for n, s in results["stages"].items()}
    assert all(keys[s] != first[s] for s in STAGES)
    logs = json.loads((out / "logs" / keys["logs"] / "stage.json").read_text())
    assert logs["config"]["world"]["n_users"] == 80
    rows = [json.loads(x) for x in (out / "evaluate" / keys["evaluate"] / "rows.jsonl").open()]
    assert {r["stage_key"] for r in rows} == {keys["evaluate"]}
    assert len(rows) == len(BACKENDS) * len(AGENTS) * 2 * len(METRICS)

    # the same settings again: everything reused, the same table
    n = len(stage_log(out))
    assert main(["--out", str(out), *_tiny(80)]) == 0
    assert _actions(out, n) == dict.fromkeys(STAGES, "reused")
    assert (out / "results.md").read_text().split("Stages:")[0] == md.split("Stages:")[0]

    # an evaluation-only setting reruns the evaluation alone
    n = len(stage_log(out))
    assert main(["--out", str(out), *_tiny(80, episodes=2)]) == 0
    assert _actions(out, n) == {**dict.fromkeys(STAGES[:-1], "reused"), "evaluate": "ran"}
    capsys.readouterr()


def test_help_lists_every_setting(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--users", "--dqn-steps", "--seeds", "--fresh", "--quiet", "--dqn-test-episodes"):
        assert flag in text, flag
    assert "DQN env steps on the learned simulator" in text
