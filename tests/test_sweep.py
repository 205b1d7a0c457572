"""Job fan-out on the engine (`benchmarks.sweep`): a process pool and local Ray run a small
grid of real jobs; a worker killed mid-job is retried, or reported and redone on resume; the
table always equals the uninterrupted serial run's."""

from __future__ import annotations

from pathlib import Path

import pytest

from recgym.benchmarks.engine import Engine, Stage, stage_log
from recgym.benchmarks.engine_cli import split_sweep_args
from recgym.benchmarks.sweep import SweepConfig, SweepError, default_sweep, use_sweep
from recgym.benchmarks.sweep_bench import SweepBenchConfig, _evaluate, job_name, job_stages, table

GRID = SweepBenchConfig(agents=("random", "longest-first"), seeds=(0, 1), episodes=2, users=60,
                        items=200)  # fmt: skip
VICTIM = job_name("longest-first", 0)


@pytest.fixture(scope="module")
def serial_table(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    """The grid run serially, uninterrupted: the table every other run must give."""
    out = tmp_path_factory.mktemp("serial")
    return table(Engine(out, progress=False).run(job_stages(GRID)))


def _killing(tmp: Path) -> list[Stage]:
    cfg = SweepBenchConfig(**{**GRID.__dict__, "kill_once": VICTIM})
    return job_stages(cfg, marker_dir=str(tmp))


def _actions(out: Path) -> list[tuple[str, str]]:
    return [(line["stage"], line["action"]) for line in stage_log(out)]


def test_pool_retries_a_killed_worker(tmp_path: Path, serial_table: list[tuple]) -> None:
    out = tmp_path / "out"
    stages = _killing(tmp_path)
    done = Engine(out, progress=False, sweep=SweepConfig(workers=2, retries=1)).run(stages)
    assert (tmp_path / f"{VICTIM}.killed-once").exists()  # the worker really died once
    actions = _actions(out)
    assert (VICTIM, "failed") in actions and (VICTIM, "ran") in actions  # retried
    assert table(done) == serial_table
    assert all(r.reused for r in Engine(out, progress=False).run(stages).values())


def test_pool_sweep_interrupted_resumes_to_the_same_table(
    tmp_path: Path, serial_table: list[tuple]
) -> None:
    out = tmp_path / "out"
    no_retry = SweepConfig(workers=2, retries=0)
    with pytest.raises(SweepError, match=VICTIM) as err:
        Engine(out, progress=False, sweep=no_retry).run(_killing(tmp_path))
    # a killed pool worker charges every job in flight; the ones not in flight finished
    finished = {s for s, a in _actions(out) if a == "ran"}
    assert finished and VICTIM not in finished and VICTIM in err.value.failed
    before = len(stage_log(out))
    # the resumed sweep, with a job that fails for good and one that depends on it added
    stages = _killing(tmp_path)
    bad = Stage("bad", {**stages[0].config, "agent": "no such agent"}, _evaluate)
    after = Stage("after-bad", stages[0].config, _evaluate, deps=("bad",))
    with pytest.raises(SweepError) as err2:
        Engine(out, progress=False, sweep=SweepConfig(workers=2, retries=1)).run(
            [bad, *stages, after]
        )
    assert list(err2.value.failed) == ["bad"] and "KeyError" in err2.value.failed["bad"]
    assert err2.value.skipped == {"after-bad": "bad"}
    resumed = _actions(out)[before:]
    assert [a for s, a in resumed if s == "bad"] == ["failed", "failed"]  # 1 try + 1 retry
    assert {s for s, a in resumed if a == "ran"} == set(err.value.failed)
    assert {s for s, a in resumed if a == "reused"} == finished
    done = Engine(out, progress=False).run(stages)  # every job done: all reused
    assert all(r.reused for r in done.values())
    assert table(done) == serial_table


def test_sweep_options_reach_engines_built_without_one() -> None:
    sweep, rest = split_sweep_args(["--quick", "--ray", "--workers", "3", "--seeds", "1"])
    assert sweep == SweepConfig(workers=3, ray="local") and rest == ["--quick", "--seeds", "1"]
    assert split_sweep_args(["--ray", "auto"])[0].ray == "auto"
    assert not default_sweep().parallel
    with use_sweep(sweep):
        assert Engine("unused", progress=False).sweep == sweep
    assert Engine("unused", progress=False).sweep == SweepConfig()
    with pytest.raises(ValueError, match="--workers"):
        SweepConfig(workers=0)


@pytest.mark.slow  # ~50 s on 2 shared cores, most of it starting Ray twice
def test_local_ray_sweep_survives_a_killed_worker_and_resumes(
    tmp_path: Path, serial_table: list[tuple]
) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "out"
    ray_no_retry = SweepConfig(workers=2, ray="local", retries=0)
    with pytest.raises(SweepError, match=VICTIM) as err:
        Engine(out, progress=False, sweep=ray_no_retry).run(_killing(tmp_path))
    assert list(err.value.failed) == [VICTIM]  # Ray knows which task's worker died
    done = Engine(out, progress=False, sweep=ray_no_retry).run(_killing(tmp_path))
    assert table(done) == serial_table
    ran = [s for s, a in _actions(out) if a == "ran"]
    assert sorted(ran) == sorted(s.name for s in job_stages(GRID))  # each job ran exactly once


def test_sweep_bench_appends_its_timings_to_the_throughput_results(tmp_path: Path) -> None:
    from recgym.benchmarks.sweep_bench import append_throughput_rows, measure

    cfg = SweepBenchConfig(**{**GRID.__dict__, "seeds": (0,), "modes": ("serial",)})
    rows = measure(cfg, progress=False)
    assert [(r["bench"], r["variant"], r["metric"], r["unit"]) for r in rows] == [
        ("sweep", "serial", "seconds", "s")
    ]
    assert rows[0]["value"] > 0 and "2 jobs" in rows[0]["note"]
    append_throughput_rows(rows, tmp_path)
    append_throughput_rows(rows, tmp_path)  # appends: the history stays
    assert len((tmp_path / "throughput.jsonl").read_text().splitlines()) == 2
    assert "sweep" in (tmp_path / "throughput.md").read_text()
