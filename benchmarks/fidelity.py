"""`recgym bench fidelity`: does the learned simulator rank policies the way the world does?

A simulator is accepted by how it **ranks policies** (DESIGN.md, evaluation protocol; issue 8
point 6), not only by its per-exposure AUC. The bench, as engine stages (`benchmarks.engine`):

1. ``logs``: a ground-truth world writes KuaiRand-schema logs and its post-log state
   (`simulators.generate`);
2. ``simulator``: the learned simulator is fitted to those logs (`simulators.train`);
3. ``rankers``: the supervised RankingModel fitted once on the logs (click and myopic watch
   rankers are two views of it, `agents.references.fit_rankers`);
4. ``dqn``: Tianshou's DQN trained online on the *simulator* (the one RL policy of the panel);
5. ``responses``: each policy's first slate at ``response_sessions`` session starts on the
   world, scored by both backends' expected responses at the same state
   (`benchmarks.fidelity_responses`): the response model's error per policy, apart from the
   leave model's and from state drift;
6. ``evaluate``: every policy of the fixed `PANEL` on the world (post-log state, the state the
   simulator starts from) and on the simulator, the same evaluation seeds on both: under one
   seed every policy meets the same users in the same order (`SessionEnv`'s paired streams).

The world is evaluated a second time under other seeds ("world replica"): tau between the world
and its replica is the noise ceiling, what a simulator identical to the world would score with
this many sessions (several panel policies are close on watch time, so their order on the world
is itself uncertain). Then per metric (watch time, session length, CTR, valid views): each
policy's value on both, the
**Kendall tau-b** between the two orderings (`scipy.stats.kendalltau`) with a 95% bootstrap
interval, the **pairwise order agreement** and **regret@1** (`ranking_stats`), and a scatter
plot. The bootstrap resamples sessions within each evaluation seed, one index draw shared by all
policies and both backends (the sessions are paired), and recomputes every value and tau.

The truth-reading oracle (`PatienceOracle`) is evaluated on the world as a reference row only
and is **excluded from tau**: it reads the world's hidden state, which a learned simulator does
not have, so there is no "same policy" to run on the simulator (a frozen-truth variant acting on
the simulator would be a different policy, scored against a truth the simulator does not share).

Presets: ``full`` is the default world (`WorldConfig()`: 1,000 users, 3,000 items, 300
authors) with 14 days of logs (about 370k rows), the default simulator, DQN 12,000 env steps,
200 sessions x 5 seeds per policy and backend; ``--quick`` a 400-user world, 7 days, DQN 6,000
steps, 100 sessions x 3 seeds, 12 simulator epochs (its log is a fifth of the full one; with
the default 4 the simulator underfits: click AUC 0.747, watch-time tau -0.09); ``--tiny`` a
smoke test. Measured on the 2 shared development
cores: full about 5 minutes (simulator 36 s, DQN 50 s, evaluation of 34 policy-backend pairs x
1,000 sessions 165 s), quick about 2 minutes.

What moved tau (`benchmarks/results/fidelity/`, NOTE.md there): geometric watch-ratio bins raised
tau on watch time and on views > 10 s on both worlds measured (``pre-switch/before/``); the
is_rand input brings the simulator's absolute CTR on random slates close to the world's, but
lowered tau in both worlds measured (``pre-switch/``: watch time 0.53 vs 0.67 without it,
session length 0.75 vs 1.00; the current world at 8 epochs, ``ablation-random-input/``: 0.45 vs
0.45, 0.67 vs 0.89), so it is off by default; 4 response-model epochs under-fit watch time
(``ablation-epochs4/``: watch-time tau 0.24). The world against its own replica (the noise
ceiling) scores about 0.82-0.89 on watch time.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.fidelity_panel import (
    PANEL,
    NoisyRanker,
    OnePerCategory,
    Reversed,
    build_panel,
)
from recgym.benchmarks.fidelity_ranking import (
    RANKED_METRICS,
    TOTAL_KEYS,
    analyse,
    bootstrap_taus,
    markdown,
    metric_values,
    ranking_stats,
    scatter,
    variant_taus,
)
from recgym.benchmarks.fidelity_responses import responses_markdown

ENV_ID = "recgym/Session-v0"
BACKENDS = ("world", "simulator", "world replica")
"""``world``: the ground-truth world after its logs; ``simulator``: learned from those logs;
``world replica``: the world again under other evaluation seeds (`REPLICA_SEED` + seed), the
noise ceiling: tau(world, world replica) is what a simulator identical to the world would score
with this many sessions, so a tau target is only meaningful well below it."""
REPLICA_SEED = 1000
ORACLE = "oracle (reads hidden state)"


@dataclass(kw_only=True)
class FidelityConfig:
    """Sizes and budgets of one fidelity run (`PRESETS` holds full, quick and tiny)."""

    mode: str = "full"
    """Preset name (recorded in the results)."""
    users: int = 1000
    """World users."""
    items: int = 3000
    """World items."""
    authors: int = 300
    """World authors."""
    days: int = 14
    """Days of logs the simulator and the rankers learn from."""
    random_share: float = 0.3
    """Share of logged recommendation requests with one uniformly random exposure."""
    sim_epochs: int = 8
    """Response-model epochs of the learned simulator."""
    sim_leave_steps: int = 1000
    """Gradient steps of the simulator's leave model."""
    sim_random_exposure_input: bool = False
    """Whether the simulator reads the random-exposure flag
    (`SimulatorConfig.random_exposure_input`, off by default; --sim-random-exposure-input for the
    ablation)."""
    sim_random_oversample: int = 4
    """Times each uniformly random exposure appears per epoch of the simulator's response model
    (`SimulatorConfig.random_oversample`)."""
    sim_leave_view_seconds: bool = False
    """Whether the simulator's leave model also reads the seconds watched up to 18 s
    (`SimulatorConfig.leave_view_seconds`)."""
    sim_calibrate_click_on_random: bool = False
    """Whether the simulator's click intercept is calibrated to the logged uniformly random
    exposures after fitting (`SimulatorConfig.calibrate_click_on_random`)."""
    heldout_days: int = 2
    """Last logged days held out of simulator training (its fidelity report uses them)."""
    ranker_epochs: int = 4
    """RankingModel epochs over the logs."""
    dqn_steps: int = 12_000
    """DQN env steps on the learned simulator."""
    episodes: int = 200
    """Evaluation sessions per seed, policy and backend."""
    response_sessions: int = 500
    """Session starts at which every policy's first slate is scored by both backends' expected
    responses (`fidelity_responses`; 0: skip)."""
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Evaluation seeds (paired across policies and backends)."""
    bootstrap: int = 1000
    """Bootstrap replicates of the tau interval."""
    seed: int = 0
    """Root seed of world, logs and training."""
    device: str = "auto"
    """Torch device of the simulator, the ranker and DQN ('auto': CUDA when available, else CPU;
    `recgym.device`); part of the model stages' keys."""


PRESETS: dict[str, FidelityConfig] = {
    "full": FidelityConfig(),
    "quick": FidelityConfig(
        mode="quick",
        users=400,
        items=1500,
        authors=150,
        days=7,
        sim_epochs=12,  # ~70k training rows: 4 epochs (~150 steps) underfit (click AUC 0.747)
        dqn_steps=6000,
        episodes=100,
        response_sessions=200,
        seeds=(0, 1, 2),
    ),
    "tiny": FidelityConfig(
        mode="tiny",
        users=60,
        items=300,
        authors=30,
        days=3,
        sim_epochs=1,
        sim_leave_steps=30,
        heldout_days=1,
        ranker_epochs=1,
        dqn_steps=64,
        episodes=3,
        response_sessions=4,
        seeds=(0, 1),
        bootstrap=50,
    ),
}


# --------------------------------------------------------------------------- stages
def _work(ctx: Any, name: str) -> Path:
    return ctx.deps[name].dir


def stage_logs(ctx: Any) -> dict[str, Any]:
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    c = ctx.config
    world = WorldConfig(
        n_users=c["users"], n_items=c["items"], n_authors=c["authors"], seed=c["seed"]
    )
    logs = LogConfig(days=c["days"], seed=c["seed"], random_share=c["random_share"])
    return generate(ctx.dir / "logs", world, logs, progress=ctx.progress)


def stage_simulator(ctx: Any) -> dict[str, Any]:
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.train import train_simulator

    c = ctx.config
    cfg = SimulatorConfig(
        seed=c["seed"],
        epochs=c["sim_epochs"],
        leave_steps=c["sim_leave_steps"],
        heldout_days=c["heldout_days"],
        random_exposure_input=c["random_exposure_input"],
        calibrate_click_on_random=c["calibrate_click_on_random"],
        leave_view_seconds=c["leave_view_seconds"],
        random_oversample=c["random_oversample"],
    )
    logs = _work(ctx, "logs") / "logs"
    res = train_simulator(logs, ctx.dir, cfg, progress=ctx.progress, device=c["device"])
    rep = res["fidelity"]
    return {
        "seconds": res["seconds"],
        "targets": res["targets"],
        "defects": rep.get("defects", []),
        "session_length_policies": rep.get("session_length_policies"),
    }


def stage_rankers(ctx: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from recgym.agents.baselines import RankerConfig, RankingModel
    from recgym.data import load

    c = ctx.config
    config = RankerConfig(epochs=c["ranker_epochs"], seed=c["seed"], device=c["device"])
    model = RankingModel(config, target="click")
    stats = model.fit(load(_work(ctx, "logs") / "logs"), progress=ctx.progress)
    model.save(ctx.dir / "ranker.pt")
    return asdict(stats)


def stage_dqn(ctx: Any) -> dict[str, Any]:
    from recgym.agents.dqn import DQNConfig, save_dqn, train_dqn

    c = ctx.config
    env = {"backend": "learned", "checkpoint": str(_work(ctx, "simulator")), "device": c["device"]}
    cfg = DQNConfig(env_steps=c["dqn_steps"], seed=c["seed"], device=c["device"])
    if c["dqn_steps"] < cfg.warmup_steps * 4:  # a tiny budget: shrink warm-up and tests with it
        cfg = replace(cfg, warmup_steps=max(c["dqn_steps"] // 4, 8), epochs=1, test_episodes=1)
    algo, stats = train_dqn(env, cfg, progress=ctx.progress)
    save_dqn(algo, cfg, ctx.dir / "dqn.pt", env_kwargs=env)
    return {"learning_curve": stats.learning_curve, "seconds": stats.seconds}


def _panel(ctx: Any) -> dict[str, Any]:
    """`PANEL`'s policies from the rankers' and DQN's stages."""
    from recgym.agents.baselines import QSlatePolicy, RankingModel
    from recgym.agents.dqn import load_dqn
    from recgym.agents.references import rankers_from_model

    device = ctx.config["device"]
    rankers = rankers_from_model(
        RankingModel.load(_work(ctx, "rankers") / "ranker.pt", device=device)
    )
    algo, _ = load_dqn(_work(ctx, "dqn") / "dqn.pt", device=device)
    return build_panel(rankers, QSlatePolicy(algo.policy.model), seed=ctx.config["seed"])


def stage_responses(ctx: Any) -> dict[str, Any]:
    """Every panel policy's first slate at `response_sessions` session starts on the world,
    scored by the world's and the simulator's expected responses (`fidelity_responses`)."""
    import torch

    from recgym.agents.references import PatienceOracle
    from recgym.benchmarks.fidelity_responses import first_request_responses
    from recgym.simulators.learned import LearnedSimulator
    from recgym.simulators.world_state import load_world

    torch.set_num_threads(1)
    c = ctx.config
    world = load_world(_work(ctx, "logs") / "logs")
    env = PatienceOracle(world, slate_size=6, seed=c["seed"]).make_env(ENV_ID)
    sim = LearnedSimulator.load(_work(ctx, "simulator"), device=c["device"])
    table = first_request_responses(_panel(ctx), env, world, sim, c["sessions"], c["seed"])
    env.close()
    return {"sessions": c["sessions"], "table": table}


def stage_evaluate(ctx: Any) -> dict[str, Any]:
    """Every panel policy on both backends, every seed; rows per (agent, backend, seed, metric)
    and the per-session totals (``sessions.npz``) the bootstrap resamples."""
    import torch

    from recgym.agents.references import PatienceOracle
    from recgym.envs import make_env
    from recgym.envs.evaluation import run_sessions, seed_metrics
    from recgym.simulators.world_state import load_world

    torch.set_num_threads(1)
    c = ctx.config
    logs_dir = _work(ctx, "logs") / "logs"
    device = c["device"]
    panel = _panel(ctx)
    world = load_world(logs_dir)
    oracle = PatienceOracle(world, slate_size=6, seed=c["seed"])
    envs = {
        "world": oracle.make_env(ENV_ID),  # the post-log world, stepped by the oracle's object
        "simulator": make_env(
            ENV_ID, backend="learned", checkpoint=str(_work(ctx, "simulator")), device=device
        ),
    }
    seeds, n_ep = tuple(c["seeds"]), c["episodes"]
    totals = np.zeros((len(BACKENDS), len(PANEL) + 1, len(seeds), n_ep, len(TOTAL_KEYS)))
    seconds: dict[str, float] = {}
    envs["world replica"] = envs["world"]  # the same env, other seeds
    jobs = [(b, name, panel[name]) for b in BACKENDS for name in PANEL]
    jobs.append(("world", ORACLE, oracle))
    for backend, name, policy in jobs:
        t = time.perf_counter()
        p = PANEL.index(name) if name in PANEL else len(PANEL)
        rows = []
        for si, seed in enumerate(seeds):
            if backend == "world replica":
                seed = REPLICA_SEED + seed
            if hasattr(policy, "reset"):
                policy.reset(seed)
            sessions = run_sessions(policy, envs[backend], n_ep, seed)
            totals[BACKENDS.index(backend), p, si] = [[s[k] for k in TOTAL_KEYS] for s in sessions]
            for metric, value in seed_metrics(sessions).items():
                rows.append(
                    ctx.row(
                        env=ENV_ID,
                        agent=name,
                        backend=backend,
                        seed=seed,
                        metric=metric,
                        value=value,
                        episodes=n_ep,
                    )
                )
        ctx.write_rows(rows)
        seconds[f"{backend}/{name}"] = round(time.perf_counter() - t, 1)
        ctx.say(f"[evaluate] {name} on the {backend}: {seconds[f'{backend}/{name}']} s")
    for env in (envs["world"], envs["simulator"]):
        env.close()
    np.savez_compressed(ctx.dir / "sessions.npz", totals=totals, keys=np.array(TOTAL_KEYS))
    return {"seconds": seconds}


def stages(cfg: FidelityConfig) -> list[Any]:
    """The bench as engine stages; each stage's config holds only what it uses."""
    from recgym.benchmarks.engine import Stage

    world = {
        k: getattr(cfg, k) for k in ("users", "items", "authors", "days", "random_share", "seed")
    }
    sim = {
        "random_exposure_input": cfg.sim_random_exposure_input,
        "calibrate_click_on_random": cfg.sim_calibrate_click_on_random,
        "leave_view_seconds": cfg.sim_leave_view_seconds,
        "random_oversample": cfg.sim_random_oversample,
        "seed": cfg.seed,
        "sim_epochs": cfg.sim_epochs,
        "sim_leave_steps": cfg.sim_leave_steps,
        "heldout_days": cfg.heldout_days,
        "device": cfg.device,
    }
    responses = [
        Stage(
            "responses",
            {"seed": cfg.seed, "sessions": cfg.response_sessions, "device": cfg.device},
            stage_responses,
            deps=("logs", "simulator", "rankers", "dqn"),
        )
    ]
    return [
        Stage("logs", world, stage_logs),
        Stage("simulator", sim, stage_simulator, deps=("logs",)),
        Stage(
            "rankers",
            {"seed": cfg.seed, "ranker_epochs": cfg.ranker_epochs, "device": cfg.device},
            stage_rankers,
            deps=("logs",),
        ),
        Stage(
            "dqn",
            {"seed": cfg.seed, "dqn_steps": cfg.dqn_steps, "device": cfg.device},
            stage_dqn,
            deps=("simulator",),
        ),
        *(responses if cfg.response_sessions > 0 else []),
        Stage(
            "evaluate",
            {"seed": cfg.seed, "seeds": cfg.seeds, "episodes": cfg.episodes, "device": cfg.device},
            stage_evaluate,
            deps=("logs", "simulator", "rankers", "dqn"),
        ),
    ]


# --------------------------------------------------------------------------- report
def run(
    cfg: FidelityConfig,
    out: str | Path,
    work: str | Path,
    *,
    progress: bool = True,
    fresh: bool = False,
    command: str = "recgym bench fidelity",
) -> dict[str, Any]:
    """Run (or resume) the stages under `work`, write the report files under `out`."""
    from recgym.benchmarks.engine import Engine, append_rows, jsonable
    from recgym.outdir import ensure_writable_dir

    out = ensure_writable_dir(out)
    done = Engine(work, progress=progress, fresh=fresh).run(stages(cfg))
    totals = np.load(done["evaluate"].dir / "sessions.npz")["totals"]
    analysis = analyse(totals, PANEL, cfg.bootstrap, cfg.seed)
    sim = done["simulator"].result
    facts = {
        "targets": sim.get("targets", {}),
        "defects": sim.get("defects", []),
        "session_length_policies": sim.get("session_length_policies"),
        "stage_seconds": {n: r.seconds if not r.reused else "reused" for n, r in done.items()},
        "stage_keys": {n: r.key for n, r in done.items()},
        "simulator_seconds": sim.get("seconds"),
        "variants": variant_taus(out),
    }
    (out / "rows.jsonl").unlink(missing_ok=True)
    append_rows(out / "rows.jsonl", done["evaluate"].rows())
    for metric in RANKED_METRICS:
        scatter(analysis, metric, out / f"scatter_{metric}.png")
    result = {"config": cfg, **analysis, "simulator": facts}
    if "responses" in done:
        result["first_request_responses"] = done["responses"].result
    (out / "results.json").write_text(
        json.dumps(jsonable(result, nan_as_none=True), indent=2, sort_keys=False)
    )
    md = markdown(cfg, analysis, facts, command, ORACLE)
    if "responses" in done:
        first = done["responses"].result
        md += "\n" + responses_markdown(first["table"], first["sessions"])
    (out / "results.md").write_text(md)
    return {"markdown": md, "analysis": analysis, "out": str(out), "stages": done}


def _parser() -> argparse.ArgumentParser:
    from recgym.benchmarks.engine_cli import config_parser

    p = argparse.ArgumentParser(
        prog="recgym bench fidelity",
        description="Simulator acceptance by policy ranking: a fixed panel of policies on the "
        "world (post-log state) and on the simulator learned from its logs; Kendall tau, "
        "pairwise agreement and regret@1 per metric. Staged and resumable; options not given "
        "take the preset's value (full unless --quick or --tiny).",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a 400-user world, 7 days, 3 seeds")
    size.add_argument("--tiny", action="store_true", help="a smoke test (numbers mean nothing)")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="report directory (default: benchmarks/results/fidelity[/MODE])",
    )
    p.add_argument(
        "--work", metavar="DIR", help="stage directory (default: recgym-out/bench-fidelity/MODE)"
    )
    config_parser(FidelityConfig, parser=p, presets=PRESETS, exclude=("mode",))
    p.add_argument("--fresh", action="store_true", help="redo every stage")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.benchmarks import engine_cli

    argv = list(argv or [])
    args = _parser().parse_args(argv)
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    cfg = engine_cli.config_from_args(FidelityConfig, args, base=PRESETS[mode])
    default_out = "benchmarks/results/fidelity" + ("" if mode == "full" else f"/{mode}")
    out = args.out or default_out
    work = args.work or f"recgym-out/bench-fidelity/{mode}"
    command = " ".join(["recgym bench fidelity", *argv])
    res = run(cfg, out, work, progress=not args.quiet, fresh=args.fresh, command=command)
    if not args.quiet:
        print(res["markdown"])
    return 0


__all__ = [
    "BACKENDS",
    "PANEL",
    "PRESETS",
    "RANKED_METRICS",
    "FidelityConfig",
    "NoisyRanker",
    "OnePerCategory",
    "Reversed",
    "analyse",
    "bootstrap_taus",
    "build_panel",
    "main",
    "metric_values",
    "ranking_stats",
    "run",
    "stages",
]
