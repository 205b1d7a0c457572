"""`recgym bench ruie`: the RUIE paper's Tables 1 and 2 on KuaiSAR-schema logs, plus online
results in recgym/MultiScenario-v0 and how well each model's Q tracks the world's scenario switch.

The online results (`benchmarks.ruie.online`) evaluate random, popularity, NextItNet, RUIE,
Tianshou's DQN (trained on MultiScenario-v0 itself, one stage per training seed) and, on the
world, the click oracle, on the world as it stood after its logs and (``learned_backend``, on
by default) on a learned simulator fitted on the same logs, with its scenario switch and
queries fitted on their KuaiSAR files.

``recgym bench ruie [--quick | --tiny] [--data DIR] [--out DIR] [--work DIR]``. Without
``--data`` the logs come from a world (`benchmarks.ruie.stages.logs`); with it, Tables 1 and 2 run
on a real KuaiSAR directory (a missing file or column is one `DataError` naming both), and the
online section runs on a learned simulator trained on that directory alone (with
``learned_backend``, the default; `benchmarks.ruie.online.simulator_from_data`): no world rows,
no oracle and no Q-vs-truth tracking, which need the world. Stages are keyed by
their settings and code (`benchmarks.engine`), so a re-run reuses what did not change.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from recgym.benchmarks.engine import Engine, Stage
from recgym.benchmarks.ruie import online, report, stages
from recgym.benchmarks.ruie.spec import PRESETS, TABLE1_MODELS, BenchConfig


def all_stages(cfg: BenchConfig) -> list[Stage]:
    """Logs (without --data), one fit per model and seed, one online stage per seed."""
    from recgym.agents.ruie import VARIANTS
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    out: list[Stage] = []
    deps: tuple[str, ...] = ()
    if not cfg.data:
        world = WorldConfig(
            n_users=cfg.users, n_items=cfg.items, n_authors=cfg.authors, seed=cfg.seed
        )
        out.append(
            Stage(
                "logs",
                {"world": world, "logs": LogConfig(days=cfg.days, seed=cfg.seed)},
                stages.logs,
            )
        )
        deps = ("logs",)
    # what a fit reads of the config: online settings and the model list do not re-key it
    fit_cfg = replace(cfg, mode="", models=(), ablations=False, seeds=(), **_ONLINE_BLANK)
    models = list(cfg.models) + ([v for v in VARIANTS if v != "ruie"] if cfg.ablations else [])
    if has_online(cfg):
        models += [m for m in ("nextitnet", "ruie") if m not in models]
    for seed in cfg.seeds:
        for name in models:
            out.append(
                Stage(
                    stages.fit_stage(name, seed),
                    {"bench": fit_cfg, "model": name, "seed": seed},
                    stages.fit_model,
                    deps=deps,
                )
            )
    if has_online(cfg):
        out += online_stages(cfg)
    return out


def has_online(cfg: BenchConfig) -> bool:
    """Whether the run has an online section: on the world (and the learned backend) without
    ``--data``; with it, on the learned backend only, so only with ``learned_backend``."""
    return bool(cfg.online_episodes) and (not cfg.data or cfg.learned_backend)


_ONLINE_BLANK: dict[str, Any] = {
    "online_episodes": 0,
    "online_max_steps": 0,
    "dqn_steps": 0,
    "dqn_epochs": 0,
    "dqn_test_episodes": 0,
    "dqn_backend": "world",
    "learned_backend": False,
    "sim_epochs": 0,
}
"""The online settings, blanked in the offline fits' keys (a fit reads none of them)."""


def online_stages(cfg: BenchConfig) -> list[Stage]:
    """The learned backend (with `learned_backend`), one DQN per training seed (with
    `dqn_steps`), one online evaluation per seed and backend (`benchmarks.ruie.online`).

    Each stage's config holds what it reads: the online evaluation reads the split, the model
    sizes and the env settings, not the DQN budget or the simulator's epochs (those re-key it
    through its deps)."""
    out: list[Stage] = []
    world = () if cfg.data else ("logs",)  # --data: no world, the learned backend only
    backends = (["world"] if world else []) + (["learned"] if cfg.learned_backend else [])
    if cfg.learned_backend and cfg.data:
        out.append(
            Stage(
                "simulator",
                {"simulator": online.sim_config(cfg), "device": cfg.device, "data": cfg.data},
                online.simulator_from_data,
            )
        )
    elif cfg.learned_backend:
        out.append(
            Stage(
                "simulator",
                {"simulator": online.sim_config(cfg), "device": cfg.device},
                online.simulator,
                deps=("logs",),
            )
        )
    sim_dep = ("simulator",) if cfg.learned_backend else ()
    dqn_backend = online.dqn_backend_of(cfg)
    if cfg.dqn_steps:
        for seed in cfg.seeds:
            out.append(
                Stage(
                    online.dqn_stage(seed),
                    {
                        "dqn": online.dqn_config(cfg, seed),
                        "env": online.env_kwargs(cfg),
                        "backend": dqn_backend,
                    },
                    online.dqn,
                    deps=world + (sim_dep if dqn_backend == "learned" else ()),
                )
            )
    online_cfg = replace(
        cfg,
        mode="",
        models=(),
        ablations=False,
        seeds=(),
        **{k: v for k, v in _ONLINE_BLANK.items() if not k.startswith("online_")},
    )
    for backend in backends:
        for seed in cfg.seeds:
            deps = world + (stages.fit_stage("nextitnet", seed), stages.fit_stage("ruie", seed))
            deps += sim_dep if backend == "learned" else ()
            deps += (online.dqn_stage(seed),) if cfg.dqn_steps else ()
            out.append(
                Stage(
                    online.online_stage(seed, backend),
                    {"bench": online_cfg, "seed": seed, "backend": backend},
                    online.online,
                    deps=deps,
                )
            )
    return out


def run(
    cfg: BenchConfig,
    out: str | Path,
    work: str | Path,
    *,
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run (or reuse) every stage and write the report into `out`."""
    import torch

    from recgym.outdir import ensure_writable_dir

    ensure_writable_dir(Path(out))  # an unwritable --out fails here, before any stage
    ensure_writable_dir(Path(work))
    torch.set_num_threads(1)
    start = time.time()
    engine = Engine(work, progress=progress, fresh=fresh)
    done = engine.run(all_stages(cfg))
    rows = [row for result in done.values() for row in result.rows()]
    fits = sum(r.seconds for n, r in done.items() if n.startswith("fit-"))
    timings = {
        "logs": done["logs"].seconds if "logs" in done else 0.0,
        "fits (all models and seeds)": fits,
        (
            "learned backend (simulator and scenario fits on the KuaiSAR files)"
            if cfg.data
            else "learned backend (replayed logs, simulator and scenario fits)"
        ): (done["simulator"].seconds if "simulator" in done else 0.0),
        "DQN (all seeds)": sum(r.seconds for n, r in done.items() if n.startswith("dqn-")),
        "online": sum(r.seconds for n, r in done.items() if n.startswith("online-")),
        "this run, wall (reused stages cost ~0)": time.time() - start,
    }
    result = report.write(rows, Path(out), cfg, timings)
    result["stages"] = done
    return result


def _cli() -> Any:
    from recgym.benchmarks.engine_cli import PresetCLI

    return PresetCLI(
        BenchConfig,
        PRESETS,
        prog="recgym bench ruie",
        description=(__doc__ or "").split("\n")[0],
        sizes={
            "quick": "the quick preset (<= 20 min alone on 2 cores)",
            "tiny": "a smoke test (the numbers mean nothing)",
        },
        results="benchmarks/results/ruie",
        work="recgym-out/bench-ruie",
        out_help="report directory (default benchmarks/results/ruie/MODE)",
        work_help="stage outputs (default recgym-out/bench-ruie/MODE)",
        choices={"models": tuple(TABLE1_MODELS)},
    )


def parser() -> argparse.ArgumentParser:
    return _cli().parser()


def config_from_args(args: Any) -> BenchConfig:
    return _cli().config(args)


def main(argv: Sequence[str] | None = None) -> int:
    return _cli().main(run, argv)


__all__ = [
    "BenchConfig",
    "PRESETS",
    "all_stages",
    "config_from_args",
    "has_online",
    "main",
    "online_stages",
    "parser",
    "run",
]
