"""`recgym bench sweep`: one grid of jobs run serially, in a process pool and on a local Ray.

The grid is agent x seed: each job evaluates one reference policy (random, longest-first,
duration+diversity; none needs fitting) on ``recgym/Session-v0`` over a small ground-truth
world under one evaluation seed, and writes one row per metric - a real, if small, bench
table. Every mode runs the same grid into a fresh output directory; the wall time of each goes
to the throughput results (``benchmarks/results/throughput.jsonl``, bench ``sweep``, variants
``serial`` / ``pool-<N>`` / ``ray-<N>``, and ``ray_start`` for starting the local Ray, which the
``ray-<N>`` time does not include), through `append_throughput_rows`. The tests use the same
jobs (`job_stages`) with a fault injected (`SweepBenchConfig.kill_once`) to kill a worker.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recgym.benchmarks.engine import Engine, Stage, StageContext
from recgym.benchmarks.sweep import SweepConfig

ENV_ID = "recgym/Session-v0"
POLICIES = ("random", "longest-first", "duration+diversity")


@dataclass(kw_only=True)
class SweepBenchConfig:
    """The job grid and the modes to time."""

    agents: tuple[str, ...] = POLICIES
    """Reference policies, one job per agent and seed."""
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    """Evaluation seeds (jobs per agent)."""
    episodes: int = 600
    """Sessions per job (600: a job takes ~5 s of CPU here, world build included)."""
    users: int = 200
    """Users of the small world every job builds."""
    items: int = 600
    """Items of that world."""
    parallel: int = 2
    """Workers of the pool and CPUs of the local Ray (not --workers: that flag is the sweep
    option every bench takes, and this bench times its modes itself)."""
    modes: tuple[str, ...] = ("serial", "pool", "ray")
    """What to time: serial, pool, ray (ray is skipped when not installed)."""
    out: str = "benchmarks/results"
    """Where throughput.jsonl / throughput.md are (rows appended, table regenerated)."""
    kill_once: str | None = None
    """Fault injection (tests): a job whose agent/seed name this is kills its own worker
    process on its first try (a marker file beside the stage's output records the try)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.agents) - set(POLICIES))
        if unknown:
            raise ValueError(f"--agents: unknown {unknown}; choose from {list(POLICIES)}")
        self.agents, self.seeds = tuple(self.agents), tuple(int(s) for s in self.seeds)


def job_name(agent: str, seed: int) -> str:
    """The stage (job) name of `agent` under evaluation seed `seed`."""
    return f"eval-{agent.replace('+', '-')}-seed{seed}"


def _evaluate(ctx: StageContext) -> dict[str, Any]:
    """One job: `agent` on Session-v0 over the small world, evaluation seed `seed`."""
    from recgym.agents.baselines import RandomPolicy
    from recgym.agents.references import DurationDiversity, LongestFirst
    from recgym.envs import make_env
    from recgym.envs.evaluation import evaluate

    cfg = ctx.config
    if cfg["kill_once"] == ctx.name and cfg["marker_dir"]:
        marker = Path(cfg["marker_dir"]) / f"{ctx.name}.killed-once"
        if not marker.exists():  # first try: the worker dies mid-job, as a killed node would
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    policy = {
        "random": RandomPolicy(seed=cfg["seed"]),
        "longest-first": LongestFirst(),
        "duration+diversity": DurationDiversity(),
    }[cfg["agent"]]
    world = {"n_users": cfg["users"], "n_items": cfg["items"], "n_authors": cfg["items"] // 10}
    res = evaluate(
        policy,
        lambda _s: make_env(ENV_ID, world_config=world),
        episodes=cfg["episodes"],
        seeds=(cfg["seed"],),
    )
    ctx.write_rows(
        ctx.row(env=ENV_ID, agent=cfg["agent"], backend="world", seed=cfg["seed"], metric=m,
                value=r["per_seed"][0])
        for m, r in res.items()
    )  # fmt: skip
    return {"pid": os.getpid()}


def job_stages(cfg: SweepBenchConfig, marker_dir: str | None = None) -> list[Stage]:
    """One independent stage (job) per agent and seed; `marker_dir` is where `kill_once`
    records its first try (without one, no job is killed)."""
    return [
        Stage(
            job_name(agent, seed),
            {
                "agent": agent,
                "seed": seed,
                "episodes": cfg.episodes,
                "users": cfg.users,
                "items": cfg.items,
                "kill_once": cfg.kill_once,
                "marker_dir": marker_dir,
            },
            _evaluate,
        )  # fmt: skip
        for agent in cfg.agents
        for seed in cfg.seeds
    ]


def table(done: dict[str, Any]) -> list[tuple]:
    """The bench's table as sorted (agent, backend, seed, metric, value) tuples."""
    rows = [r for res in done.values() for r in res.rows()]
    return sorted((r["agent"], r["backend"], r["seed"], r["metric"], r["value"]) for r in rows)


def _ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def measure(cfg: SweepBenchConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Time the grid in each of `cfg.modes`; returns throughput rows (not yet written)."""
    import torch

    from recgym.benchmarks.throughput.rows import make_row

    torch.set_num_threads(1)
    n_jobs = len(cfg.agents) * len(cfg.seeds)
    note = (
        f"{n_jobs} jobs ({len(cfg.agents)} reference policies x {len(cfg.seeds)} seeds, "
        f"{cfg.episodes} Session-v0 sessions each on a {cfg.users}-user world); one torch "
        f"thread per job; wall time of the whole sweep into an empty output directory (the pool's "
        f"includes starting its workers, ray's does not include ray.init: row ray_start)"
    )
    common = {"batch": None, "quick": False, "threads": 1, "torch_threads": 1}
    rows, tables = [], {}
    for mode in cfg.modes:
        if mode == "ray" and not _ray_available():
            print("ray is not installed (pip install 'recgym[ray]'): skipping the ray mode")
            continue
        sweep = {
            "serial": SweepConfig(),
            "pool": SweepConfig(workers=cfg.parallel),
            "ray": SweepConfig(workers=cfg.parallel, ray="local"),
        }[mode]
        variant = mode if mode == "serial" else f"{mode}-{cfg.parallel}"
        if mode == "ray":
            import ray

            t = time.perf_counter()
            ray.init(num_cpus=cfg.parallel, include_dashboard=False, log_to_driver=False)
            start = time.perf_counter() - t
            start_note = f"ray.init, local, {cfg.parallel} CPUs"
            rows.append(
                make_row(
                    "sweep", "seconds", start, "s", note=start_note, variant="ray_start", **common
                )
            )
        load = os.getloadavg()[0]
        try:
            with tempfile.TemporaryDirectory(prefix=f"recgym-sweep-{mode}-") as out:
                t = time.perf_counter()
                done = Engine(out, progress=False, sweep=sweep).run(job_stages(cfg))
                seconds = time.perf_counter() - t
                tables[mode] = table(done)
        finally:
            if mode == "ray":
                ray.shutdown()
        if progress:
            print(f"sweep {variant}: {seconds:.1f} s for {n_jobs} jobs", flush=True)
        rows.append(
            make_row(
                "sweep",
                "seconds",
                seconds,
                "s",
                variant=variant,
                **common,
                note=f"{note}; load average {load:.1f} -> {os.getloadavg()[0]:.1f}",
            )
        )
    first = next(iter(tables.values()), None)
    if any(t != first for t in tables.values()):
        raise RuntimeError(f"the modes {sorted(tables)} gave different tables")
    return rows


def append_throughput_rows(rows: Sequence[dict[str, Any]], out: str | Path) -> Path:
    """Append `rows` to ``<out>/throughput.jsonl`` and regenerate ``<out>/throughput.md`` (the
    throughput bench's own table function); returns the JSONL path."""
    from recgym.benchmarks.engine import append_rows
    from recgym.benchmarks.throughput.rows import JSONL, MARKDOWN, markdown, read_rows

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    append_rows(out / JSONL, rows)
    (out / MARKDOWN).write_text(markdown(read_rows(out / JSONL)))
    return out / JSONL


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.benchmarks.engine_cli import config_from_args, config_parser

    parser = config_parser(
        SweepBenchConfig, prog="recgym bench sweep", description=__doc__.split("\n")[0]
    )
    cfg = config_from_args(SweepBenchConfig, parser.parse_args(argv))
    from recgym.outdir import ensure_writable_dir

    ensure_writable_dir(cfg.out)  # OutputError (one line, exit 2) before minutes of sweeps
    rows = measure(cfg)
    path = append_throughput_rows(rows, cfg.out)
    print(f"appended {len(rows)} rows to {path}")
    return 0


__all__ = [
    "SweepBenchConfig",
    "append_throughput_rows",
    "job_name",
    "job_stages",
    "main",
    "measure",
    "table",
]
