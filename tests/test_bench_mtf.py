"""`recgym bench mtf`: a tiny end-to-end run of the stages, tables and claims, and ``--data``
on KuaiRand-format logs (the learned simulator as the only backend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recgym.benchmarks.mtf import AGENTS, MTFBenchConfig, run

TINY = dict(
    train_seeds=(0, 1),
    slots=4,
    explore_episodes=2,
    ptm_rounds=2,
    test_episodes=1,
    eval_episodes=1,
    gradient_steps=4,
    enhanced_batch=8,
    batch_size=16,
    es_generations=1,
)


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def test_tiny_world_run_writes_every_agent_backend_and_claim(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cfg = MTFBenchConfig(out=str(out), users=60, items=300, authors=20, days=4, **TINY)
    report = run(cfg, progress=False)
    rows = _rows(out)
    assert {r["backend"] for r in rows} == {"ground-truth world", "learned simulator"}
    assert {r["agent"] for r in rows} == set(AGENTS)
    assert {r["seed"] for r in rows} == {0, 1}
    results = json.loads((out / "results.json").read_text())
    assert results["claims"] and all(c["verdict"] for c in results["claims"])
    assert "Table 4" in report["markdown"] and (out / "valid_consumption.png").is_file()


def test_data_dir_runs_on_the_learned_simulator_only(tiny_logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run(MTFBenchConfig(out=str(out), data=str(tiny_logs), **TINY), progress=False)
    rows = _rows(out)
    assert {r["backend"] for r in rows} == {"learned simulator"}
    assert {r["agent"] for r in rows} == set(AGENTS)
    assert {r["metric"] for r in rows} == {"weighted_gauc", "valid_consumption", "watch_time_s"}
    assert not (out / "logs").exists()  # no world behind --data


def test_dynamics_change_the_logs_stage_only_when_given_and_bad_ones_fail() -> None:
    from recgym.benchmarks.mtf import stages
    from recgym.simulators.world import Dynamics

    plain = {s.name: s for s in stages(MTFBenchConfig())}
    pressed = {s.name: s for s in stages(MTFBenchConfig(dynamics=("patience_per_minute=0.18",)))}
    assert "dynamics" not in plain["logs"].config  # calibrated runs keep their stage keys
    assert pressed["logs"].config["dynamics"] == Dynamics(patience_per_minute=0.18)
    for bad, says in (("patience_per_hour=1", "unknown constant"), ("x", "NAME=VALUE")):
        with pytest.raises(ValueError, match=says):
            MTFBenchConfig(dynamics=(bad,))
    with pytest.raises(ValueError, match="--data has none"):
        MTFBenchConfig(dynamics=("patience_per_minute=0.18",), data="/x")


def test_a_bad_dynamics_option_is_a_usage_error(capsys) -> None:
    from recgym.benchmarks.mtf import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--quick", "--dynamics", "patience_per_hour=1"])
    assert exit_info.value.code == 2
    assert "--dynamics: unknown constant 'patience_per_hour'" in capsys.readouterr().err
