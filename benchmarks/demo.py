"""`recgym demo`: the main job end to end on the embedded ground-truth world.

1. build a world and write its logs in KuaiRand's schema (a biased behaviour policy);
2. train the learned user simulator on those logs (fidelity report on held-out users/days);
3. fit the RankingModel (greedy supervised ranker) on the same logs;
4. train Tianshou's DQN online on the *learned simulator*;
5. evaluate random / RankingModel / DQN on the learned simulator AND on the ground-truth world
   (the sim-to-real gap in one table), with 95% intervals over seeds;
6. write `results.md`, `results.json`, `learning_curve.png` and `metrics.png` to the output dir.

Every stage writes its artefact before the next starts and is skipped on a re-run when its
artefact exists (`--fresh` redoes everything), so an interrupted demo loses nothing finished.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

METRIC_LABELS = {
    "session_length": "requests / session",
    "watch_time_s": "watch time / session (s)",
    "ctr": "CTR",
    "valid_consumption": "views > 10 s / session",
    "diversity": "categories / session",
    "follows": "follows / session",
}


@dataclass(kw_only=True)
class DemoConfig:
    """Sizes and budgets of the demo; the defaults finish in a few minutes on 2 cores."""

    out: str = "recgym-out/demo"
    """Output directory (logs, checkpoints, tables, plots)."""
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
    episodes: int = 40
    """Evaluation sessions per seed and backend."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Evaluation seeds (the interval is over these)."""
    seed: int = 0
    """Root seed of world, logs and training."""
    fresh: bool = False
    """Redo every stage even when its artefact exists."""


def run(cfg: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns {"tables": ..., "results": ..., "paths": ...}."""
    import torch

    from recgym.agents.baselines import QSlatePolicy, RandomPolicy, RankingModel
    from recgym.agents.dqn import DQNConfig, load_dqn, save_dqn, train_dqn
    from recgym.data import load
    from recgym.envs import make_env
    from recgym.envs.evaluation import evaluate, format_table
    from recgym.simulators.generate import generate
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.train import train_simulator
    from recgym.simulators.world import WorldConfig

    torch.set_num_threads(1)
    from recgym.outdir import ensure_writable_dir

    out = ensure_writable_dir(cfg.out)  # an unwritable --out fails here, before any work
    timings: dict[str, float] = {}
    world_cfg = WorldConfig(
        n_users=cfg.users, n_items=cfg.items, n_authors=cfg.authors, seed=cfg.seed
    )
    logs_dir, sim_dir = out / "logs", out / "simulator"
    ranker_path, dqn_path = out / "ranker", out / "dqn"

    def stage(name: str, done: bool, fn) -> None:
        if done and not cfg.fresh:
            _say(progress, f"[{name}] reusing {out}")
            return
        _say(progress, f"[{name}] ...")
        t = time.perf_counter()
        fn()
        timings[name] = round(time.perf_counter() - t, 1)
        _say(progress, f"[{name}] done in {timings[name]} s")

    stage(
        "logs",
        (logs_dir / "world_state.npz").exists(),  # logs + the world as it stood after them
        lambda: generate(
            logs_dir, world_cfg, LogConfig(days=cfg.days, seed=cfg.seed), progress=progress
        ),
    )
    stage(
        "simulator",
        (sim_dir / "config.json").exists(),
        lambda: train_simulator(logs_dir, sim_dir, SimulatorConfig(seed=cfg.seed), progress),
    )
    dataset = load(logs_dir)

    def fit_ranker() -> None:
        ranker = RankingModel(target="click")
        ranker.fit(dataset, progress=progress)
        ranker.save(ranker_path)

    stage("ranker", ranker_path.with_suffix(".json").exists() or ranker_path.exists(), fit_ranker)
    learned_env = {"backend": "learned", "checkpoint": str(sim_dir)}
    # The world backend starts from the world saved after writing the logs (world_state.npz),
    # the user state the simulator learned from those logs starts from: both tables meet the
    # same users. A fresh World(world_cfg) would be the pre-log world (issue 8, point 3).
    world_env = {"backend": "world", "world_dir": str(logs_dir)}
    curve: list = []

    def fit_dqn() -> None:
        dqn_cfg = replace(DQNConfig(), env_steps=cfg.dqn_steps, seed=cfg.seed)
        algo, stats = train_dqn(learned_env, dqn_cfg, progress=progress)
        save_dqn(algo, dqn_cfg, dqn_path)
        (out / "dqn_curve.json").write_text(json.dumps(stats.learning_curve))

    stage("dqn", (out / "dqn_curve.json").exists(), fit_dqn)
    curve = json.loads((out / "dqn_curve.json").read_text())
    ranker = RankingModel.load(ranker_path)
    dqn_algo, _ = load_dqn(dqn_path)
    policies = {
        "random": RandomPolicy(seed=cfg.seed),
        "greedy (RankingModel)": ranker,
        "DQN": QSlatePolicy(dqn_algo.policy.model),
    }
    results: dict[str, dict[str, Any]] = {}
    tables: dict[str, str] = {}
    t = time.perf_counter()
    for backend, env_kwargs in (
        ("learned simulator", learned_env),
        ("ground-truth world", world_env),
    ):
        results[backend] = {}
        for name, policy in policies.items():
            _say(progress, f"[evaluate] {name} on the {backend}")
            results[backend][name] = evaluate(
                policy,
                lambda seed, kw=env_kwargs: make_env("recgym/Session-v0", **kw),
                episodes=cfg.episodes,
                seeds=cfg.seeds,
            )
        tables[backend] = format_table(results[backend])
    timings["evaluate"] = round(time.perf_counter() - t, 1)
    paths = {
        "learning_curve": str(_plot_curve(curve, out / "learning_curve.png")),
        "metrics": str(_plot_metrics(results, out / "metrics.png")),
    }
    sim_report = json.loads((sim_dir / "fidelity.json").read_text())
    md = _markdown(cfg, tables, results, sim_report, timings)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(
        json.dumps({"config": asdict(cfg), "results": results, "timings": timings}, indent=2)
    )
    paths["results"] = str(out / "results.md")
    return {"tables": tables, "results": results, "paths": paths, "markdown": md}


def _markdown(cfg, tables, results, sim_report, timings) -> str:
    lines = [
        "# recgym demo",
        "",
        f"World: {cfg.users} users, {cfg.items} items, {cfg.authors} authors, {cfg.days} days of "
        f"logs, seed {cfg.seed}. DQN: {cfg.dqn_steps} env steps on the learned simulator. "
        f"Evaluation: {cfg.episodes} sessions x {len(cfg.seeds)} seeds; mean [95% interval]. "
        "The ground-truth world is evaluated as it stood after writing the logs, the state the "
        "learned simulator starts from.",
        "",
    ]
    for backend, table in tables.items():
        lines += [f"## On the {backend}", "", table, ""]
    lines += ["## Verdicts", ""]
    for backend, res in results.items():
        dqn = res["DQN"]["watch_time_s"]
        for rival in ("random", "greedy (RankingModel)"):
            other = res[rival]["watch_time_s"]
            verdict = (
                "beats"
                if dqn["ci_low"] > other["ci_high"]
                else (
                    "is above (intervals overlap)"
                    if dqn["mean"] > other["mean"]
                    else "does NOT beat"
                )
            )
            lines.append(
                f"- {backend}: DQN {verdict} {rival} on watch time per session "
                f"({dqn['mean']:.0f} s vs {other['mean']:.0f} s)."
            )
    lines += ["", "## The learned simulator (held-out users and days)", ""]
    for name, t in sim_report.get("targets", {}).items():
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        lines.append(f"- {name}: {value} (target {t['rule']}: {'met' if t['met'] else 'NOT met'})")
    rand = sim_report.get("splits", {}).get("all", {}).get("random_exposures") or {}
    if rand.get("rows"):
        lines.append(
            f"- click rate on uniformly random exposures: predicted {rand['click_predicted']:.3f}"
            f" vs observed {rand['click_observed']:.3f} ({rand['rows']:,} rows) - the simulator"
            " learned from a click-biased feed; the gap shows up as the CTR gap between tables"
        )
    lines.append("- full report: simulator/fidelity.md")
    lines += ["", f"Stage timings (s): {timings}"]
    return "\n".join(lines) + "\n"


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


def _plot_metrics(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("session_length", "watch_time_s", "ctr")
    backends = list(results)
    agents = list(results[backends[0]])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
    width = 0.8 / len(agents)
    for ax, metric in zip(axes, metrics, strict=True):
        for j, agent in enumerate(agents):
            xs = np.arange(len(backends)) + j * width
            means = [results[b][agent][metric]["mean"] for b in backends]
            lo = [
                results[b][agent][metric]["mean"] - results[b][agent][metric]["ci_low"]
                for b in backends
            ]
            hi = [
                results[b][agent][metric]["ci_high"] - results[b][agent][metric]["mean"]
                for b in backends
            ]
            ax.bar(xs, means, width, yerr=[lo, hi], capsize=3, label=agent)
        ax.set_xticks(np.arange(len(backends)) + width * (len(agents) - 1) / 2)
        ax.set_xticklabels(backends, fontsize=8)
        ax.set_title(METRIC_LABELS[metric])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(agents), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _say(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="recgym demo", description=__doc__.split("\n")[0])
    d = DemoConfig()
    parser.add_argument("--out", default=d.out, help=f"output directory (default {d.out})")
    parser.add_argument("--users", type=int, default=d.users, help="world users")
    parser.add_argument("--items", type=int, default=d.items, help="world items")
    parser.add_argument("--authors", type=int, default=d.authors, help="world authors")
    parser.add_argument("--days", type=int, default=d.days, help="days of logs")
    parser.add_argument("--dqn-steps", type=int, default=d.dqn_steps, help="DQN env steps")
    parser.add_argument("--episodes", type=int, default=d.episodes, help="eval sessions per seed")
    parser.add_argument("--seeds", type=int, default=len(d.seeds), help="number of eval seeds")
    parser.add_argument("--seed", type=int, default=d.seed, help="root seed")
    parser.add_argument("--fresh", action="store_true", help="redo stages whose output exists")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    a = parser.parse_args(argv)
    cfg = DemoConfig(
        out=a.out,
        users=a.users,
        items=a.items,
        authors=a.authors,
        days=a.days,
        dqn_steps=a.dqn_steps,
        episodes=a.episodes,
        seeds=tuple(range(a.seeds)),
        seed=a.seed,
        fresh=a.fresh,
    )
    report = run(cfg, progress=not a.quiet)
    print(report["markdown"])
    print(f"plots: {report['paths']['learning_curve']}, {report['paths']['metrics']}")
    return 0
