"""`recgym bench mtf`'s config, stages and run (see the package docstring)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.engine import Engine, Stage, StageContext

ENV_ID = "recgym/MTFSession-v0"
BACKENDS = {"world": "ground-truth world", "learned": "learned simulator"}
"""Backend id -> its name in rows and tables."""
TABLE1_AGENTS = (
    "ES",
    "DDPG",
    "CQL+SAC",
    "BatchRL-MTF (BCQ)",
    "IQL",
    "IntegratedRL-MTF w/o PTM",
    "IntegratedRL-MTF",
)
"""Table 1's rows, in the paper's (claimed ascending) order."""
ENHANCED = "Enhanced-State RL-MTF"
REFERENCES = ("fixed fusion (mu_bp)", "myopic (MTL reward)", "random fusion")
"""Reference rows: the baseline policy mu_bp explored around, the myopic fusion search on the
MTL's predicted Formula-2 reward, and a uniformly random fusion per request."""
AGENTS = (*TABLE1_AGENTS, ENHANCED, *REFERENCES)
METRICS = ("weighted_gauc", "valid_consumption", "watch_time_s")
"""Rows' metrics: weighted GAUC on the baseline-logged test set, UVC (valid consumptions per
session: one session is the user's day here) and UDT (seconds watched per session)."""


@dataclass(kw_only=True)
class MTFBenchConfig:
    """Sizes and budgets of `recgym bench mtf`; ``--quick`` shrinks the budgets (see `sized`)."""

    out: str = "recgym-out/bench-mtf"
    """Output directory (stages under <out>/<stage>/<key>/, report at the top)."""
    quick: bool = False
    """The quick preset: fewer gradient steps, exploration and evaluation (2 minutes on 2 cores at
    load ~3, 19 at load ~9)."""
    data: str | None = None
    """A directory of real KuaiRand logs: MTL and learned simulator are fitted on it and only the
    learned simulator is a backend (no ground truth)."""
    users: int = 300
    """World users."""
    items: int = 1000
    """World items."""
    authors: int = 100
    """World authors."""
    days: int = 7
    """Days of world logs (the MTL and the learned simulator are fitted on them)."""
    dynamics: tuple[str, ...] = ()
    """World constants to change, NAME=VALUE (`simulators.world.Dynamics`), e.g.
    patience_per_minute=0.18 for the time-pressed world where the best fusion depends on the
    item (`tests/test_mtf_learning.py`); none: the calibrated world. Not with --data."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Training seeds; seed i explores, trains and is evaluated with evaluation seed i."""
    slots: int = 64
    """Concurrent users of the batched env (one backend call steps them all)."""
    explore_episodes: int = 192
    """Exploration episodes per slot (dataset D0 around mu_bp; PTM spreads the same number
    over its rounds). Enhanced-State's ranked critic needs data: in exploratory runs on the
    tiny world of `tests/test_mtf_learning.py` (scratch scripts, not a repo command) its UVC
    rose from 15 (12 episodes) to 23 (48) and 27 (192) at comparable budgets."""
    ptm_rounds: int = 3
    """Rounds of the progressive training mode (paper: 5)."""
    test_episodes: int = 3
    """Episodes per slot of the baseline-logged test dataset (weighted GAUC)."""
    eval_episodes: int = 5
    """Online evaluation episodes per slot (UVC, UDT)."""
    gradient_steps: int = 8000
    """Gradient steps of every offline learner (PTM: in total over its rounds). The paper
    trains for 300,000; on 2 cores 16,000 steps of the whole learner set take ~20 minutes per
    seed and backend (CQL+SAC ~4.5 of them), so the full preset (10 stages, 2 workers) is
    sized to 8,000 for about an hour."""
    enhanced_batch: int = 64
    """Enhanced-State's batch in requests (each 10 sub-states; paper: 256, too slow on 2 cores)."""
    batch_size: int = 256
    """Batch of the per-request learners (paper: 256)."""
    es_generations: int = 24
    """ES generations (each 2 x 8 evaluations of one request per slot)."""
    explore_width: float = 0.3
    """Half-width of the per-user exploration bounds around mu_bp (scaled by U(0.5, 1.5))."""
    seed: int = 0
    """Root seed of world, logs, simulator and MTL."""
    device: str = "auto"
    """Torch device of the simulator, the MTL and every learner ('auto': CUDA when available,
    else CPU; `recgym.device`); part of the model stages' keys."""
    fresh: bool = False
    """Discard every earlier stage output first."""

    def __post_init__(self) -> None:
        seeds = tuple(int(s) for s in self.train_seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"--train-seeds must be distinct and non-empty, got {seeds}")
        self.train_seeds = seeds
        from recgym.simulators.world_state import dynamics_from_pairs

        self.dynamics = tuple(str(p) for p in self.dynamics)
        try:
            dynamics_from_pairs(self.dynamics)
        except ValueError as exc:
            raise ValueError(f"--dynamics: {exc}") from None
        if self.dynamics and self.data:
            raise ValueError("--dynamics changes the world; --data has none")

    def sized(self) -> MTFBenchConfig:
        """The config with the quick preset applied (``quick``), else itself."""
        if not self.quick:
            return self
        from dataclasses import replace

        return replace(
            self,
            explore_episodes=8,
            test_episodes=2,
            eval_episodes=3,
            gradient_steps=250,
            batch_size=128,
            es_generations=8,
            ptm_rounds=3,
        )

    @property
    def backends(self) -> tuple[str, ...]:
        return ("learned",) if self.data else ("world", "learned")


# --------------------------------------------------------------------------- stages
def _logs(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.generate import generate

    cfg = ctx.config
    return generate(
        ctx.dir, cfg["world"], cfg["logs"], progress=False, dynamics=cfg.get("dynamics")
    )


def _logs_dir(ctx: StageContext, cfg: dict) -> Path:
    return Path(cfg["data"]) if cfg.get("data") else ctx.deps["logs"].dir


def _simulator(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.train import train_simulator

    cfg = ctx.config
    train_simulator(_logs_dir(ctx, cfg), ctx.dir, cfg["simulator"], ctx.progress, cfg["device"])
    return {}


def _mtl(ctx: StageContext) -> dict[str, Any]:
    from recgym.agents.mtl import MTLConfig, MTLModel
    from recgym.data import load

    model = MTLModel(MTLConfig(device=ctx.config["device"]))
    stats = model.fit(load(_logs_dir(ctx, ctx.config)))
    model.save(ctx.dir / "mtl.pt")
    return {"task_auc": stats.task_auc, "watch_rmse": stats.watch_rmse, "rows": stats.n_train}


def _core(ctx: StageContext, backend: str, slots: int, device: str):
    from recgym.agents.mtl import MTLModel
    from recgym.envs.mtf import MTFCore

    mtl = MTLModel.load(ctx.deps["mtl"].dir / "mtl.pt", device=device)
    if backend == "world":
        return MTFCore(world_dir=str(ctx.deps["logs"].dir), mtl=mtl, n_slots=slots, name=ENV_ID)
    return MTFCore(
        backend="learned",
        checkpoint=str(ctx.deps["simulator"].dir),
        mtl=mtl,
        n_slots=slots,
        device=device,
    )


def _run_seed(ctx: StageContext) -> dict[str, Any]:
    """One backend and training seed: explore, log the test set, train every agent, score."""
    from recgym.agents.mtf_data import (
        Exploration,
        FixedFusion,
        UserBounds,
        collect_transitions,
        evaluate_online,
        save_dataset,
        test_scores,
    )
    from recgym.benchmarks.metrics import weighted_gauc
    from recgym.benchmarks.mtf.agents import train_all

    cfg, seed, backend = ctx.config, ctx.config["seed"], ctx.config["backend"]
    core = _core(ctx, backend, cfg["slots"], cfg["device"])
    bounds = UserBounds.make(core.model.n_users, cfg["explore_width"], seed=seed)
    zero = UserBounds(np.zeros_like(bounds.lower), np.zeros_like(bounds.upper))
    start = time.perf_counter()
    d0 = collect_transitions(
        core, Exploration(FixedFusion(), bounds, seed=seed), cfg["explore_episodes"], 1000 + seed
    )
    test = collect_transitions(
        core, Exploration(FixedFusion(), zero, seed=seed), cfg["test_episodes"], 2000 + seed
    )
    save_dataset(d0, ctx.dir / "explore.h5")
    save_dataset(test, ctx.dir / "test.h5")
    ctx.say(f"[{backend} seed {seed}] D0 {len(d0['rew'])} requests, test {len(test['rew'])}")
    policies, timings = train_all(core, d0, bounds, cfg, ctx.say)
    rows = []
    for agent, policy in policies.items():
        gauc = weighted_gauc(**test_scores(policy, test, core))
        online = evaluate_online(core, policy, cfg["eval_episodes"], seed=3000 + seed)
        values = {
            "weighted_gauc": gauc,
            "valid_consumption": online["uvc"],
            "watch_time_s": online["udt"],
        }
        for metric, value in values.items():
            rows.append(
                ctx.row(
                    env=ENV_ID, agent=agent, backend=BACKENDS[backend], seed=seed,
                    metric=metric, value=float(value),
                )
            )  # fmt: skip
    ctx.write_rows(rows)
    return {
        "seconds": time.perf_counter() - start,
        "train_seconds": timings,
        "explore_requests": len(d0["rew"]),
        "test_requests": len(test["rew"]),
    }


def stage_name(backend: str, seed: int) -> str:
    return f"run-{backend}-seed{seed}"


def stages(cfg: MTFBenchConfig) -> list[Stage]:
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig
    from recgym.simulators.world_state import dynamics_from_pairs

    out: list[Stage] = []
    deps: tuple[str, ...] = ()
    data = {"data": str(Path(cfg.data).resolve())} if cfg.data else {}
    if not cfg.data:
        world = WorldConfig(
            n_users=cfg.users, n_items=cfg.items, n_authors=cfg.authors, seed=cfg.seed
        )
        logs = {"world": world, "logs": LogConfig(days=cfg.days, seed=cfg.seed)}
        if cfg.dynamics:  # only then in the key: calibrated runs keep their stage keys
            logs["dynamics"] = dynamics_from_pairs(cfg.dynamics)
        out.append(Stage("logs", logs, _logs))
        deps = ("logs",)
    out.append(
        Stage(
            "simulator",
            {"simulator": SimulatorConfig(seed=cfg.seed), "device": cfg.device, **data},
            _simulator,
            deps=deps,
        )
    )
    out.append(Stage("mtl", {"seed": cfg.seed, "device": cfg.device, **data}, _mtl, deps=deps))
    keys = (
        "slots", "explore_episodes", "ptm_rounds", "test_episodes", "eval_episodes",
        "gradient_steps", "enhanced_batch", "batch_size", "es_generations", "explore_width",
        "device",
    )  # fmt: skip
    for backend in cfg.backends:
        for s in cfg.train_seeds:
            config = {k: getattr(cfg, k) for k in keys} | {"backend": backend, "seed": s}
            out.append(
                Stage(
                    stage_name(backend, s),
                    config,
                    _run_seed,
                    deps=(*deps, "simulator", "mtl"),
                    code=("recgym.benchmarks.mtf.agents",),
                )
            )
    return out


def run(cfg: MTFBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) the stages and write the report; returns {"markdown", "paths", ...}."""
    import torch

    from recgym.benchmarks.mtf.tables import write_tables

    torch.set_num_threads(1)
    cfg = cfg.sized()
    engine = Engine(cfg.out, progress=progress, fresh=cfg.fresh)
    done = engine.run(stages(cfg))
    rows = [r for b in cfg.backends for s in cfg.train_seeds for r in done[stage_name(b, s)].rows()]
    out = engine.out
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    timings = {n: r.result.get("seconds") for n, r in done.items() if isinstance(r.result, dict)}
    return write_tables(rows, out, cfg=asdict(cfg), mtl=done["mtl"].result, timings=timings)


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.benchmarks.engine_cli import config_from_args, config_parser

    parser = config_parser(
        MTFBenchConfig, prog="recgym bench mtf", description="Enhanced-State RL-MTF Tables 1-4"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(MTFBenchConfig, args)
    except ValueError as exc:  # a bad option value: usage and one line, exit 2
        parser.error(str(exc))
    report = run(cfg, progress=not args.quiet)
    print(report["markdown"])
    return 0
