"""`recgym demo`: the main job end to end on the embedded ground-truth world, on the bench engine.

Stages (`recgym.benchmarks.engine`), each keyed by its config, the code it runs and its inputs:

1. ``logs``: build a world and write its logs in KuaiRand's schema (a biased behaviour policy),
   with the world's state as it stands after them;
2. ``simulator``: train the learned user simulator on those logs (fidelity report on held-out
   users/days);
3. ``ranker``: fit the RankingModel (greedy supervised ranker) on the same logs;
4. ``dqn``: train Tianshou's DQN online on the *learned simulator*;
5. ``evaluate``: random / RankingModel / DQN on the learned simulator AND on the ground-truth world
   as it stood after writing the logs (the sim-to-real gap in one table), one row per agent,
   backend, seed and metric.

The report (``results.md``, ``results.json``, one PNG per metric, ``metrics.png``,
``learning_curve.png``) is regenerated from the evaluation rows on every run. A re-run with the
same settings and code reuses every stage; a changed setting or code reruns exactly the stages it
reaches (and the ones downstream); an interrupted stage leaves nothing that looks finished.
``--fresh`` discards every earlier output (never needed for correctness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from recgym.benchmarks.claims import Claim, judge_rows
from recgym.benchmarks.engine import Engine, Stage, StageContext, StageResult
from recgym.benchmarks.report import Table, write_report

ENV_ID = "recgym/Session-v0"
BACKENDS = {"learned": "learned simulator", "world": "ground-truth world"}
"""Backend id in the env kwargs -> its name in rows and tables."""
AGENTS = ("random", "greedy (RankingModel)", "DQN")
METRIC_LABELS = {
    "session_length": "requests / session",
    "watch_time_s": "watch time / session (s)",
    "ctr": "CTR",
    "valid_consumption": "views > 10 s / session",
    "diversity": "categories / session",
    "follows": "follows / session",
}
CLAIMS = [
    Claim(metric=m, a="DQN", b=rival, source="demo")
    for m in ("watch_time_s", "session_length")
    for rival in ("random", "greedy (RankingModel)")
]
"""What the demo sets out to show: RL on the learned simulator beats random and greedy."""


@dataclass(kw_only=True)
class DemoConfig:
    """Sizes and budgets of the demo; the defaults finish in a few minutes on 2 cores."""

    out: str = "recgym-out/demo"
    """Output directory (stage outputs under <out>/<stage>/<key>/, tables and plots at the top)."""
    users: int = 500
    """World users."""
    items: int = 1500
    """World items."""
    authors: int = 150
    """World authors."""
    days: int = 7
    """Days of logs to train on."""
    dqn_steps: int = 12_000
    """DQN env steps on the learned simulator."""
    dqn_test_episodes: int = 10
    """DQN test sessions after each training epoch (its learning curve)."""
    episodes: int = 40
    """Evaluation sessions per seed and backend."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Evaluation seeds (every agent meets the same users under a seed; intervals over these)."""
    seed: int = 0
    """Root seed of world, logs and training."""
    fresh: bool = False
    """Discard every earlier stage output first (not needed for correctness: stages are keyed by
    settings and code)."""


# --------------------------------------------------------------------------- stages
def _logs(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.generate import generate

    generate(ctx.dir, ctx.config["world"], ctx.config["logs"], progress=ctx.progress)
    return {}


def _simulator(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.train import train_simulator

    train_simulator(ctx.deps["logs"].dir, ctx.dir, ctx.config, ctx.progress)
    return {}


def _ranker(ctx: StageContext) -> dict[str, Any]:
    from recgym.agents.baselines import RankingModel
    from recgym.data import load

    ranker = RankingModel(target=ctx.config["target"])
    ranker.fit(load(ctx.deps["logs"].dir), progress=ctx.progress)
    ranker.save(ctx.dir / "ranker")
    return {}


def _learned_env(sim: StageResult) -> dict[str, Any]:
    return {"backend": "learned", "checkpoint": str(sim.dir)}


def _dqn(ctx: StageContext) -> dict[str, Any]:
    from recgym.agents.dqn import save_dqn, train_dqn

    algo, stats = train_dqn(_learned_env(ctx.deps["simulator"]), ctx.config, progress=ctx.progress)
    save_dqn(algo, ctx.config, ctx.dir / "dqn")
    return {"learning_curve": stats.learning_curve}


def _policies(deps: dict[str, StageResult], seed: int) -> dict[str, Any]:
    from recgym.agents.baselines import QSlatePolicy, RandomPolicy, RankingModel
    from recgym.agents.dqn import load_dqn

    dqn_algo, _ = load_dqn(deps["dqn"].dir / "dqn")
    return {
        "random": RandomPolicy(seed=seed),
        "greedy (RankingModel)": RankingModel.load(deps["ranker"].dir / "ranker"),
        "DQN": QSlatePolicy(dqn_algo.policy.model),
    }


def _evaluate(ctx: StageContext) -> dict[str, Any]:
    from recgym.envs import make_env
    from recgym.envs.evaluation import evaluate

    cfg = ctx.config
    # The world backend starts from the world saved after writing the logs (world_state.npz),
    # the user state the simulator learned from those logs starts from: both tables meet the
    # same users. A fresh World(world_cfg) would be the pre-log world (issue 8, point 3).
    env_kwargs = {
        "learned": _learned_env(ctx.deps["simulator"]),
        "world": {"backend": "world", "world_dir": str(ctx.deps["logs"].dir)},
    }
    policies = _policies(ctx.deps, cfg["seed"])
    for backend, kwargs in env_kwargs.items():
        for agent, policy in policies.items():
            ctx.say(f"[evaluate] {agent} on the {BACKENDS[backend]}")
            res = evaluate(
                policy,
                lambda seed, kw=kwargs: make_env(ENV_ID, **kw),
                episodes=cfg["episodes"],
                seeds=cfg["seeds"],
            )
            ctx.write_rows(
                ctx.row(
                    env=ENV_ID,
                    agent=agent,
                    backend=BACKENDS[backend],
                    seed=seed,
                    metric=name,
                    value=r["per_seed"][i],
                    episodes=cfg["episodes"],
                )  # fmt: skip
                for name, r in res.items()
                for i, seed in enumerate(cfg["seeds"])
            )
    return {}


def stages(cfg: DemoConfig) -> list[Stage]:
    """The demo's stages for `cfg` (each config holds exactly the settings its stage uses)."""
    from recgym.agents.dqn import DQNConfig
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    world = WorldConfig(n_users=cfg.users, n_items=cfg.items, n_authors=cfg.authors, seed=cfg.seed)
    return [
        Stage("logs", {"world": world, "logs": LogConfig(days=cfg.days, seed=cfg.seed)}, _logs),
        Stage("simulator", SimulatorConfig(seed=cfg.seed), _simulator, deps=("logs",)),
        Stage("ranker", {"target": "click"}, _ranker, deps=("logs",)),
        Stage(
            "dqn",
            replace(
                DQNConfig(),
                env_steps=cfg.dqn_steps,
                test_episodes=cfg.dqn_test_episodes,
                seed=cfg.seed,
            ),
            _dqn,
            deps=("simulator",),
        ),
        Stage(
            "evaluate",
            {"episodes": cfg.episodes, "seeds": tuple(cfg.seeds), "seed": cfg.seed},
            _evaluate,
            deps=("logs", "simulator", "ranker", "dqn"),
        ),
    ]


# --------------------------------------------------------------------------- run and report
def run(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) the stages and regenerate the report; returns {"tables", "results",
    "paths", "markdown", "stages"}."""
    import torch

    torch.set_num_threads(1)
    engine = Engine(cfg.out, progress=progress, fresh=cfg.fresh)
    done = engine.run(stages(cfg))
    out = engine.out
    rows = done["evaluate"].rows()
    rep = write_report(
        rows,
        out,
        title="recgym demo",
        metrics=tuple(METRIC_LABELS),
        intro=_intro(cfg),
        outro=_simulator_section(done["simulator"], out) + _timings(done),
        verdicts=judge_rows(CLAIMS, rows),
        labels=METRIC_LABELS,
        agents=AGENTS,
        extra_json={
            "config": asdict(cfg),
            "stages": {n: {"key": r.key, "reused": r.reused} for n, r in done.items()},
        },
    )
    rep["paths"]["learning_curve"] = str(
        _plot_curve(done["dqn"].result["learning_curve"], out / "learning_curve.png")
    )
    rep["paths"]["metrics"] = str(_plot_metrics(rep["table"], out / "metrics.png"))
    rep["paths"]["results"] = rep["paths"]["markdown"]
    return {
        "tables": rep["tables"],
        "results": rep["table"],
        "paths": rep["paths"],
        "markdown": rep["markdown"],
        "stages": done,
    }


def _intro(cfg: DemoConfig) -> str:
    return (
        f"World: {cfg.users} users, {cfg.items} items, {cfg.authors} authors, {cfg.days} days of "
        f"logs, seed {cfg.seed}. DQN: {cfg.dqn_steps} env steps on the learned simulator (one "
        f"training seed). Evaluation: {cfg.episodes} sessions x {len(cfg.seeds)} seeds; mean "
        "[95% interval over evaluation seeds]. The ground-truth world is evaluated as it stood "
        "after writing the logs, the state the learned simulator starts from."
    )


def _simulator_section(sim: StageResult, out: Path) -> str:
    import json

    report = json.loads((sim.dir / "fidelity.json").read_text())
    lines = ["## The learned simulator (held-out users and days)", ""]
    for name, t in report.get("targets", {}).items():
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"- {name}: {value} (target {t['rule']}: {'met' if t['met'] else 'NOT met'})")
    rand = report.get("splits", {}).get("all", {}).get("random_exposures") or {}
    if rand.get("rows"):
        lines.append(
            f"- click rate on uniformly random exposures: predicted {rand['click_predicted']:.3f}"
            f" vs observed {rand['click_observed']:.3f} ({rand['rows']:,} rows) - the simulator"
            " learned from a click-biased feed; the gap shows up as the CTR gap between tables"
        )
    lines.append(f"- full report: {(sim.dir / 'fidelity.md').relative_to(out)}")
    return "\n".join(lines) + "\n\n"


def _timings(done: dict[str, StageResult]) -> str:
    parts = [f"{n} {'reused' if r.reused else f'{r.seconds:.1f} s'}" for n, r in done.items()]
    return "Stages: " + ", ".join(parts) + "\n"


def _plot_curve(curve: list, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    if curve:
        steps, returns = zip(*curve, strict=True)
        ax.plot(steps, returns, marker="o")
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy test return\n(watch s / session, 1 item per request)")
    ax.set_title("DQN on the learned simulator")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _plot_metrics(table: Table, path: Path) -> Path:
    """Session length, watch time and CTR side by side: bars per agent, one group per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = ("session_length", "watch_time_s", "ctr")
    backends = list(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
    width = 0.8 / len(AGENTS)
    for ax, metric in zip(axes, metrics, strict=True):
        for j, agent in enumerate(AGENTS):
            cells = [table[b][agent][metric] for b in backends]
            means = np.array([c.mean for c in cells])
            err = np.array([[c.mean - c.low for c in cells], [c.high - c.mean for c in cells]])
            xs = np.arange(len(backends)) + j * width
            ax.bar(xs, means, width, yerr=np.nan_to_num(err), capsize=3, label=agent)
        ax.set_xticks(np.arange(len(backends)) + width * (len(AGENTS) - 1) / 2)
        ax.set_xticklabels(backends, fontsize=8)
        ax.set_title(METRIC_LABELS[metric])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(AGENTS), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.benchmarks.engine_cli import config_from_args, config_parser

    parser = config_parser(DemoConfig, prog="recgym demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    cfg = config_from_args(DemoConfig, args)
    report = run(cfg, progress=not args.quiet)
    print(report["markdown"])
    print(f"plots: {report['paths']['learning_curve']}, {report['paths']['metrics']}")
    return 0
