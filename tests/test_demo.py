"""`recgym demo` on the bench engine: every stage runs, a changed setting reruns exactly what it
reaches (and the table says so), a repeat reuses everything, an added training seed reuses the
others; the tables carry the reference rows and DQN's rows are paired with evaluation seeds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from recgym.benchmarks.demo import (
    AGENTS,
    BACKENDS,
    ORACLE,
    REFERENCES,
    DemoConfig,
    dqn_stage,
    eval_stage,
    main,
    run,
)
from recgym.benchmarks.engine import stage_log
from recgym.envs.evaluation import METRICS


def _stages(seeds: tuple[int, ...]) -> tuple[str, ...]:
    return ("logs", "simulator", "ranker", *map(dqn_stage, seeds), *map(eval_stage, seeds))


STAGES = _stages((0, 1))


def _tiny(users: int, episodes: int = 3, seeds: tuple[int, ...] = (0, 1)) -> list[str]:
    return ["--users", str(users), "--items", "300", "--authors", "30", "--days", "3",
            "--dqn-steps", "200", "--dqn-test-episodes", "1", "--episodes", str(episodes),
            "--train-seeds", *map(str, seeds), "--quiet"]  # fmt: skip


def _actions(out: Path, since: int) -> dict[str, str]:
    return {line["stage"]: line["action"] for line in stage_log(out)[since:]}


def _check_tables(out: Path, seeds: tuple[int, ...]) -> None:
    """Reference rows in both tables, the oracle (labelled) on the world only, and DQN's rows
    for seed i from the evaluation stage of training seed i, under evaluation seed i."""
    results = json.loads((out / "results.json").read_text())
    world, learned = BACKENDS["world"], BACKENDS["learned"]
    assert list(results["results"][learned]) == [*REFERENCES, "DQN"]
    assert list(results["results"][world]) == list(AGENTS)
    assert ORACLE.endswith("(reads hidden state)")
    md = (out / "results.md").read_text()
    sim_table, world_table = md.split("## On the ground-truth world")
    for agent in (*REFERENCES, "DQN"):
        assert f"| {agent} |" in sim_table and f"| {agent} |" in world_table, agent
    assert ORACLE not in sim_table and f"| {ORACLE} |" in world_table
    for backend in results["results"].values():
        for agent in backend.values():
            for m in METRICS:
                assert agent[m]["ci_low"] <= agent[m]["mean"] <= agent[m]["ci_high"]
                assert sorted(map(int, agent[m]["per_seed"])) == sorted(seeds)
    # the claims are judged against the myopic watch ranker too, paired over every seed
    rivals = {c["claim"]["b"] for c in results["claims"]}
    assert {"myopic watch ranker", "click ranker", "random"} <= rivals
    assert all(sorted(c["seeds"]) == sorted(seeds) for c in results["claims"])
    stage_keys = {n: s["key"] for n, s in results["stages"].items()}
    rows = [json.loads(x) for x in (out / "rows.jsonl").open()]
    dqn_rows = [r for r in rows if r["agent"] == "DQN"]
    assert sorted({r["seed"] for r in dqn_rows}) == sorted(seeds)
    for s in seeds:
        record = json.loads(
            (out / eval_stage(s) / stage_keys[eval_stage(s)] / "stage.json").read_text()
        )
        assert record["deps"][dqn_stage(s)] == stage_keys[dqn_stage(s)]
        assert record["config"]["seed"] == s
        dqn = json.loads((out / dqn_stage(s) / stage_keys[dqn_stage(s)] / "stage.json").read_text())
        assert dqn["config"]["seed"] == s
        mine = [r for r in rows if r["stage_key"] == stage_keys[eval_stage(s)]]
        assert {r["seed"] for r in mine} == {s}  # every agent of the stage under eval seed s
        assert {r["agent"] for r in mine} == set(AGENTS)
    assert all(r["train_seed"] == r["seed"] for r in dqn_rows)
    assert len(rows) == (2 * len(AGENTS) - 1) * len(seeds) * len(METRICS)


def test_demo_reruns_what_a_setting_reaches_and_reuses_the_rest(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    cfg = DemoConfig(out=str(out), users=60, items=300, authors=30, days=3, dqn_steps=200,
                     dqn_test_episodes=1, episodes=3, train_seeds=(0, 1))  # fmt: skip
    report = run(cfg, progress=False)
    assert _actions(out, 0) == dict.fromkeys(STAGES, "ran")
    for name in ("results.md", "results.json", "rows.jsonl", "learning_curve.png", "metrics.png",
                 "ctr.png", "simulator_fidelity.md"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    _check_tables(out, (0, 1))
    md = report["markdown"]
    assert "World: 60 users" in md and "On the ground-truth world" in md and "click_auc" in md
    assert "DQN > myopic watch ranker on watch_time_s" in md
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

    # the same settings again: everything reused, the same table
    n = len(stage_log(out))
    assert main(["--out", str(out), *_tiny(80)]) == 0
    assert _actions(out, n) == dict.fromkeys(STAGES, "reused")
    assert (out / "results.md").read_text().split("Stages:")[0] == md.split("Stages:")[0]

    # a third training seed: its DQN and evaluation run, the other seeds' stages are reused
    n = len(stage_log(out))
    assert main(["--out", str(out), *_tiny(80, seeds=(0, 1, 2))]) == 0
    assert _actions(out, n) == {
        **dict.fromkeys(_stages((0, 1, 2)), "reused"),
        dqn_stage(2): "ran",
        eval_stage(2): "ran",
    }
    _check_tables(out, (0, 1, 2))

    # an evaluation-only setting reruns the evaluations alone
    n = len(stage_log(out))
    assert main(["--out", str(out), *_tiny(80, episodes=2)]) == 0
    assert _actions(out, n) == {
        **dict.fromkeys(STAGES, "reused"),
        **dict.fromkeys(map(eval_stage, (0, 1)), "ran"),
    }
    capsys.readouterr()


def test_recgym_demo_runs_its_stages_in_workers_with_the_serial_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recgym demo` defaults to worker processes (one per core, at most 5): the same rows as
    ``--workers 1`` (one stage after another in this process)."""
    from recgym import cli
    from recgym.benchmarks.sweep import default_sweep

    seen = []

    def record(argv: list[str]) -> int:
        seen.append((default_sweep().workers, argv))
        return 0

    cli._with_sweep(record, ["--users", "9"], default_workers=3)
    cli._with_sweep(record, ["--users", "9", "--workers", "1"], default_workers=3)
    cli._with_sweep(record, ["--workers=2"], default_workers=3)
    assert seen == [(3, ["--users", "9"]), (1, ["--users", "9"]), (2, [])]
    assert cli.DEMO_WORKERS == max(1, min(os.cpu_count() or 1, 5))

    def rows(*extra: str) -> list[dict]:
        out = tmp_path / f"run{len(extra)}"
        argv = ["demo", "--out", str(out), *_tiny(60), *extra]
        assert cli.main(argv) == 0
        lines = (out / "rows.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k != "provenance"} for x in lines]

    monkeypatch.setattr(cli, "DEMO_WORKERS", 2)
    assert rows() == rows("--workers", "1")


def test_train_seeds_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="train-seeds"):
        DemoConfig(train_seeds=(0, 0))
    with pytest.raises(ValueError, match="train-seeds"):
        DemoConfig(train_seeds=())


def test_help_lists_every_setting(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--users", "--dqn-steps", "--train-seeds", "--fresh", "--quiet",
                 "--dqn-test-episodes"):  # fmt: skip
        assert flag in text, flag
    assert "DQN env steps on the learned simulator" in text
