"""`recgym demo`: the main job end to end on the embedded ground-truth world, on the bench engine.

Stages (`recgym.benchmarks.engine`), each keyed by its config, the code it runs and its inputs:

1. ``logs``: build a world and write its logs in KuaiRand's schema (a biased behaviour policy),
   with the world's state as it stands after them;
2. ``simulator``: train the learned user simulator on those logs (fidelity report on held-out
   users/days);
3. ``ranker``: fit the RankingModel on the same logs; it is viewed two ways, the click ranker and
   the myopic watch-time ranker (`agents.references.rankers_from_model`);
4. ``dqn-seed<i>``: one per training seed: Tianshou's DQN trained online on the *learned
   simulator* with seed i;
5. ``evaluate-seed<i>``: one per training seed: the reference panel (random, click ranker, myopic
   watch ranker, longest-first, duration+diversity), DQN of training seed i and, on the world
   only, the full-truth oracle (reads hidden state), all under evaluation seed i, on the learned
   simulator AND on the ground-truth world as it stood after writing the logs; one row per
   agent, backend, seed and metric.

Evaluation protocol (DESIGN.md): train seed i is evaluated with evaluation seed i, and under a
seed every agent meets the same users in the same order, so the agents' values for seed i are
paired; intervals are over the training seeds, and the claims (DQN beats random, the click
ranker, the myopic watch ranker and duration+diversity) are judged on the paired per-seed
differences (`benchmarks.claims`). Adding a training seed reuses the other seeds' stages.

Choices the issue leaves open: the RankingModel is fitted once (seed `seed`), not per training
seed - it is a reference, fitted with its own fixed seed; its rows vary over the evaluation
seeds only. The oracle row is on the world only (a learned simulator has no truth).

The report (``results.md``, ``results.json``, ``rows.jsonl`` with every evaluation row, one PNG
per metric, ``metrics.png``, ``learning_curve.png``, ``simulator_fidelity.md``) is regenerated
from the evaluation rows on every run. A re-run with the same settings and code reuses every
stage; a changed setting or code reruns exactly the stages it reaches (and the ones downstream);
an interrupted stage leaves nothing that looks finished.
``--fresh`` discards every earlier output (never needed for correctness).
"""

from __future__ import annotations

import json
import shutil
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
ORACLE = "oracle (reads hidden state)"
REFERENCES = (
    "random",
    "click ranker",
    "myopic watch ranker",
    "longest-first",
    "duration+diversity",
)
"""The reference rows every table carries (`agents.references.REFERENCE_NAMES` less the oracle)."""
AGENTS = (*REFERENCES, "DQN", ORACLE)
"""Table row order; the oracle row exists on the ground-truth world only."""
METRIC_LABELS = {
    "session_length": "requests / session",
    "watch_time_s": "watch time / session (s)",
    "ctr": "CTR",
    "valid_consumption": "views > 10 s / session",
    "diversity": "categories / session",
    "follows": "follows / session",
}
RIVALS = ("random", "click ranker", "myopic watch ranker", "duration+diversity")
CLAIMS = [
    Claim(metric=m, a="DQN", b=rival, source="demo")
    for m in ("watch_time_s", "session_length")
    for rival in RIVALS
]
"""What the demo sets out to show: RL trained on the learned simulator beats the references; the
long-term claim that matters is "DQN > myopic watch ranker" (the myopic ranker already maximises
each request's watch time)."""


@dataclass(kw_only=True)
class DemoConfig:
    """Sizes and budgets of the demo; with the defaults `recgym demo` took 64 s on 2 idle cores
    (its stages in 2 worker processes; 94 s one after another, ``--workers 1``), 2026-11-27."""

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
    dqn_steps: int = 6_000
    """DQN env steps on the learned simulator, per training seed. Measured on the default world
    (5 seeds, 2 shared cores): 12,000 steps took ~60-150 s a seed and gave DQN - random on the
    world's watch time +18 s [-43, 79]; 6,000 took ~30-70 s and gave +8 s [-73, 88] and a higher
    simulator watch time (717 vs 680 s), so the longer budget bought nothing measurable."""
    dqn_test_episodes: int = 10
    """DQN test sessions after each training epoch (its learning curve)."""
    episodes: int = 40
    """Evaluation sessions per seed and backend."""
    train_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """DQN training seeds; train seed i is evaluated with evaluation seed i (every agent meets the
    same users under it), and intervals are over these seeds."""
    seed: int = 0
    """Root seed of world, logs, simulator and ranker."""
    device: str = "auto"
    """Torch device of the simulator, the ranker and DQN, in training and evaluation: 'auto'
    (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N' (`recgym.device`). Part of
    every model stage's key."""
    fresh: bool = False
    """Discard every earlier stage output first (not needed for correctness: stages are keyed by
    settings and code)."""

    def __post_init__(self) -> None:
        seeds = tuple(int(s) for s in self.train_seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"--train-seeds must be distinct and non-empty, got {seeds}")
        self.train_seeds = seeds
        from recgym.device import resolve_device

        resolve_device(self.device)  # 'cuda' without CUDA fails here, before any stage


# --------------------------------------------------------------------------- stages
def _logs(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.generate import generate

    generate(ctx.dir, ctx.config["world"], ctx.config["logs"], progress=ctx.progress)
    return {}


def _simulator(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.train import train_simulator

    cfg = ctx.config
    train_simulator(ctx.deps["logs"].dir, ctx.dir, cfg["simulator"], ctx.progress, cfg["device"])
    return {}


def _ranker(ctx: StageContext) -> dict[str, Any]:
    from recgym.agents.baselines import RankerConfig, RankingModel
    from recgym.data import load

    ranker = RankingModel(RankerConfig(device=ctx.config["device"]), target=ctx.config["target"])
    ranker.fit(load(ctx.deps["logs"].dir), progress=ctx.progress)
    ranker.save(ctx.dir / "ranker")
    return {}


def _learned_env(sim: StageResult, device: str) -> dict[str, Any]:
    return {"backend": "learned", "checkpoint": str(sim.dir), "device": device}


def _dqn(ctx: StageContext) -> dict[str, Any]:
    from recgym.agents.dqn import save_dqn, train_dqn

    env = _learned_env(ctx.deps["simulator"], ctx.config.device)
    algo, stats = train_dqn(env, ctx.config, progress=ctx.progress)
    save_dqn(algo, ctx.config, ctx.dir / "dqn")
    return {"learning_curve": stats.learning_curve, "seconds": stats.seconds}


def _evaluate(ctx: StageContext) -> dict[str, Any]:
    """Every agent under evaluation seed i = the DQN's training seed i, on both backends."""
    from recgym.agents.baselines import QSlatePolicy, RankingModel
    from recgym.agents.dqn import load_dqn
    from recgym.agents.references import rankers_from_model, reference_panel
    from recgym.envs import make_env
    from recgym.envs.evaluation import evaluate
    from recgym.simulators.world_state import load_world

    cfg = ctx.config
    seed = cfg["seed"]
    logs_dir = ctx.deps["logs"].dir
    device = cfg["device"]
    ranker = RankingModel.load(ctx.deps["ranker"].dir / "ranker", device=device)
    rankers = rankers_from_model(ranker)
    dqn_algo, _ = load_dqn(ctx.deps[dqn_stage(seed)].dir / "dqn", device=device)
    dqn = QSlatePolicy(dqn_algo.policy.model)
    # The world backend starts from the world saved after writing the logs (world_state.npz),
    # the user state the simulator learned from those logs starts from (issue 8, point 3). The
    # oracle steps its own copy of that world (`make_env` restores it for every seed).
    world = load_world(logs_dir)
    panels = {
        "learned": reference_panel(rankers=rankers, seed=seed),
        "world": reference_panel(rankers=rankers, world=world, seed=seed),
    }
    env_fns = {
        "learned": lambda _s: make_env(ENV_ID, **_learned_env(ctx.deps["simulator"], device)),
        "world": lambda _s: make_env(ENV_ID, backend="world", world_dir=str(logs_dir)),
    }
    oracle_env = panels["world"][ORACLE].make_env
    for backend, panel in panels.items():
        agents = {**{n: panel[n] for n in REFERENCES}, "DQN": dqn}
        if ORACLE in panel:
            agents[ORACLE] = panel[ORACLE]
        for agent, policy in agents.items():
            ctx.say(f"[evaluate] {agent} on the {BACKENDS[backend]}, seed {seed}")
            env_fn = (lambda _s: oracle_env(ENV_ID)) if agent == ORACLE else env_fns[backend]
            res = evaluate(policy, env_fn, episodes=cfg["episodes"], seeds=(seed,))
            extra = {"train_seed": seed} if agent == "DQN" else {}
            ctx.write_rows(
                ctx.row(
                    env=ENV_ID,
                    agent=agent,
                    backend=BACKENDS[backend],
                    seed=seed,
                    metric=name,
                    value=r["per_seed"][0],
                    episodes=cfg["episodes"],
                    **extra,
                )
                for name, r in res.items()
            )
    return {}


def stages(cfg: DemoConfig) -> list[Stage]:
    """The demo's stages for `cfg` (each config holds exactly the settings its stage uses)."""
    from recgym.agents.dqn import DQNConfig
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    world = WorldConfig(n_users=cfg.users, n_items=cfg.items, n_authors=cfg.authors, seed=cfg.seed)
    out = [
        Stage("logs", {"world": world, "logs": LogConfig(days=cfg.days, seed=cfg.seed)}, _logs),
        Stage(
            "simulator",
            {"simulator": SimulatorConfig(seed=cfg.seed), "device": cfg.device},
            _simulator,
            deps=("logs",),
        ),
        Stage("ranker", {"target": "click", "device": cfg.device}, _ranker, deps=("logs",)),
    ]
    dqn = replace(
        DQNConfig(),
        env_steps=cfg.dqn_steps,
        test_episodes=cfg.dqn_test_episodes,
        device=cfg.device,
    )
    for s in cfg.train_seeds:
        out.append(Stage(dqn_stage(s), replace(dqn, seed=s), _dqn, deps=("simulator",)))
    for s in cfg.train_seeds:
        out.append(
            Stage(
                eval_stage(s),
                {"episodes": cfg.episodes, "seed": s, "device": cfg.device},
                _evaluate,
                deps=("logs", "simulator", "ranker", dqn_stage(s)),
            )
        )
    return out


def dqn_stage(seed: int) -> str:
    """The name of training seed `seed`'s DQN stage."""
    return f"dqn-seed{seed}"


def eval_stage(seed: int) -> str:
    """The name of the evaluation stage of training (= evaluation) seed `seed`."""
    return f"evaluate-seed{seed}"


# --------------------------------------------------------------------------- run and report
def run(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) the stages and regenerate the report; returns {"tables", "results",
    "paths", "markdown", "stages"}."""
    import torch

    torch.set_num_threads(1)
    engine = Engine(cfg.out, progress=progress, fresh=cfg.fresh)
    done = engine.run(stages(cfg))
    out = engine.out
    rows = [row for s in cfg.train_seeds for row in done[eval_stage(s)].rows()]
    out.mkdir(parents=True, exist_ok=True)
    (out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rep = write_report(
        rows,
        out,
        title="recgym demo",
        metrics=tuple(METRIC_LABELS),
        intro=_intro(cfg),
        outro=_simulator_section(done["simulator"], out) + _timings(done),
        verdicts=judge_rows(CLAIMS, rows),
        labels=METRIC_LABELS,
        agents=None,  # first-seen order = AGENTS; no empty oracle row on the simulator
        extra_json={
            "config": asdict(cfg),
            "stages": {n: {"key": r.key, "reused": r.reused} for n, r in done.items()},
        },
    )
    curves = {s: done[dqn_stage(s)].result["learning_curve"] for s in cfg.train_seeds}
    rep["paths"]["learning_curve"] = str(_plot_curves(curves, out / "learning_curve.png"))
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
    seeds = ", ".join(map(str, cfg.train_seeds))
    return (
        f"World: {cfg.users} users, {cfg.items} items, {cfg.authors} authors, {cfg.days} days of "
        f"logs, seed {cfg.seed}. DQN: {cfg.dqn_steps} env steps on the learned simulator per "
        f"training seed ({seeds}); training seed i is evaluated with evaluation seed i, and under "
        f"a seed every agent meets the same users in the same order. Evaluation: {cfg.episodes} "
        f"sessions per seed; mean [95% interval over the {len(cfg.train_seeds)} seeds]. The "
        "ground-truth world is evaluated as it stood after writing the logs, the state the "
        "learned simulator starts from. Reference rows act on observations only, except the "
        "oracle, which reads the world's hidden state (true expected watch, clickbait, patience) "
        "and so exists on the world only."
    )


def _simulator_section(sim: StageResult, out: Path) -> str:
    """The simulator's fidelity targets; copies its full report to <out>/simulator_fidelity.md."""
    report = json.loads((sim.dir / "fidelity.json").read_text())
    lines = ["## The learned simulator (held-out users and days)", ""]
    for name, t in report.get("targets", {}).items():
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"- {name}: {value} (target {t['rule']}: {'met' if t['met'] else 'NOT met'})")
    rand = report.get("splits", {}).get("all", {}).get("random_exposures") or {}
    if rand.get("rows"):
        lines.append(
            f"- click rate on uniformly random exposures: predicted {rand['click_predicted']:.3f}"
            f" vs observed {rand['click_observed']:.3f} ({rand['rows']:,} rows)"
        )
    shutil.copyfile(sim.dir / "fidelity.md", out / "simulator_fidelity.md")
    lines.append("- full report: simulator_fidelity.md")
    return "\n".join(lines) + "\n\n"


def _timings(done: dict[str, StageResult]) -> str:
    parts = [f"{n} {'reused' if r.reused else f'{r.seconds:.1f} s'}" for n, r in done.items()]
    return "Stages: " + ", ".join(parts) + "\n"


def _plot_curves(curves: dict[int, list], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for seed, curve in curves.items():
        if curve:
            steps, returns = zip(*curve, strict=True)
            ax.plot(steps, returns, marker="o", ms=3, label=f"seed {seed}")
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy test return\n(watch s / session, 1 item per request)")
    ax.set_title("DQN on the learned simulator, per training seed", fontsize=9)
    if curves:
        ax.legend(fontsize=7, frameon=False)
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
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6))
    width = 0.8 / len(AGENTS)
    for ax, metric in zip(axes, metrics, strict=True):
        for j, agent in enumerate(AGENTS):
            cells = [table[b].get(agent, {}).get(metric) for b in backends]
            xs = np.arange(len(backends)) + j * width
            keep = [i for i, c in enumerate(cells) if c is not None]
            if not keep:
                continue
            means = np.array([cells[i].mean for i in keep])
            err = np.array(
                [[cells[i].mean - cells[i].low for i in keep],
                 [cells[i].high - cells[i].mean for i in keep]]
            )  # fmt: skip
            ax.bar(xs[keep], means, width, yerr=np.nan_to_num(err), capsize=2, label=agent)
        ax.set_xticks(np.arange(len(backends)) + width * (len(AGENTS) - 1) / 2)
        ax.set_xticklabels(backends, fontsize=8)
        ax.set_title(METRIC_LABELS[metric])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.82))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.benchmarks.engine_cli import config_from_args, config_parser

    parser = config_parser(DemoConfig, prog="recgym demo", description=__doc__.split("\n")[0])
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(DemoConfig, args)
    except ValueError as exc:  # e.g. --device cuda without CUDA, repeated --train-seeds
        parser.error(str(exc))
    report = run(cfg, progress=not args.quiet)
    print(report["markdown"])
    print(f"plots: {report['paths']['learning_curve']}, {report['paths']['metrics']}")
    return 0
