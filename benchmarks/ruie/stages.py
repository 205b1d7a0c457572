"""The stages of `recgym bench ruie`: world logs, one offline fit per model and seed, online runs.

- ``logs``: a world and its logs in KuaiSAR's schema (`recgym world generate --format kuaisar`),
  with the world as it stood after them (skipped with ``--data``);
- ``fit-<model>-seed<i>``: the paper's protocol (`benchmarks.ruie.data`: both scenarios merged
  by timestamp, the last behaviour of each user for test, everything before it trains, sequences
  of length L) - train with `agents.sequence.fit`, rank every test target over the whole
  catalogue (`rank_targets`; padding is never a candidate; seen items are *not* excluded,
  since users re-click items in KuaiSAR and in the world), one row per NDCG@K; RUIE variants
  with a Q estimator also write how their Q(search) predicts the test behaviour's scenario;
- ``online-seed<i>``: MultiScenario-v0 on the world as it stood after its logs, evaluation seed
  i (every agent meets the same users in the same order): random, popularity (click counts of
  the training behaviours), NextItNet and RUIE of training seed i, and the click oracle (reads
  the world's true click probabilities); per session reward, requests and clicks per scenario;
  for RUIE also how its Q(search) tracks the world's true probability of a search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.engine import StageContext
from recgym.benchmarks.ruie.spec import KS, LABELS, BenchConfig
from recgym.device import load_state, resolve_device

OFFLINE_ENV = "KuaiSAR logs (offline)"
ONLINE_ENV = "recgym/MultiScenario-v0"


def fit_stage(model: str, seed: int) -> str:
    return f"fit-{model}-seed{seed}"


def online_stage(seed: int) -> str:
    return f"online-seed{seed}"


def data_dir(cfg: BenchConfig, logs_dir: Path | None) -> Path:
    return Path(cfg.data) if cfg.data else Path(logs_dir)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- logs
def logs(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.generate import generate

    summary = generate(
        ctx.dir, ctx.config["world"], ctx.config["logs"], fmt="kuaisar", progress=ctx.progress
    )
    return {"rows": summary["rows"], "users": summary["users"]}


# --------------------------------------------------------------------------- offline fits
def split_of(cfg: BenchConfig, directory: Path):
    """(Behaviours, leave-one-out Split with scenario and reward context)."""
    from recgym.agents.sequence import leave_one_out
    from recgym.benchmarks.ruie.data import load_behaviours

    b = load_behaviours(
        directory, max_users=cfg.max_users, max_per_user=cfg.max_per_user, seed=cfg.seed
    )
    split = leave_one_out(
        b.items,
        cfg.seq_len,
        min_len=1,
        validation=False,
        aligned={"scenario": b.scenario, "reward": b.reward},
    )
    return b, split


def build_model(name: str, n_items: int, cfg: BenchConfig, seed: int):
    from recgym.agents.ruie import RUIE, VARIANTS
    from recgym.agents.seeding import seeded_global_rngs
    from recgym.agents.sequence import make_model

    if name in VARIANTS:
        with seeded_global_rngs(seed):
            return RUIE(n_items, dim=cfg.dim, max_len=cfg.seq_len, variant=name)
    return make_model(name, n_items, dim=cfg.dim, max_len=cfg.seq_len, seed=seed)


def fit_model(ctx: StageContext) -> dict[str, Any]:
    import torch

    from recgym.agents.sequence import TrainConfig, fit, rank_targets, ranking_report

    cfg: BenchConfig = ctx.config["bench"]
    name, seed = ctx.config["model"], ctx.config["seed"]
    logs_dir = ctx.deps["logs"].dir if "logs" in ctx.deps else None
    b, split = split_of(cfg, data_dir(cfg, logs_dir))
    model = build_model(name, b.n_items, cfg, seed)
    train_cfg = TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, device=cfg.device
    )
    history = fit(model, split.train, None, train_cfg, seed=seed)
    ranks = rank_targets(model, split.test, exclude_seen=False)
    report = ranking_report(ranks, KS)
    label = LABELS[name]
    rows = [
        ctx.row(env=OFFLINE_ENV, agent=label, backend="offline", seed=seed, metric=m, value=v)
        for m, v in report.items()
        if m.startswith("ndcg@")
    ]
    if getattr(model, "use_suim", False):
        for metric, value in switch_tracking_offline(model, split.test).items():
            rows.append(
                ctx.row(
                    env=OFFLINE_ENV,
                    agent=label,
                    backend="offline",
                    seed=seed,
                    metric=metric,
                    value=value,
                )
            )
    ctx.write_rows(rows)
    torch.save(model.state_dict(), ctx.dir / "model.pt")
    return {"n_items": b.n_items, "loss": history["loss"], "train_rows": len(split.train)}


def switch_tracking_offline(model: Any, test: Any) -> dict[str, float]:
    """AUC of Q(search) at each test prefix for the test behaviour's scenario, and the mean gate
    weight ``1 / (1 - Q(true scenario) + eps)`` split by the true scenario."""
    import torch

    context = {k: torch.as_tensor(v) for k, v in (test.context or {}).items()}
    model.eval()
    q = model.q_values(torch.as_tensor(test.seq), context).cpu().numpy()
    truth = test.context["target_scenario"]
    q_true = q[np.arange(len(q)), truth]
    gate = 1.0 / (1.0 - q_true + model.eps)
    return {
        "switch_auc": auc(q[:, 1], truth == 1),
        "gate_true_search": float(gate[truth == 1].mean()) if (truth == 1).any() else np.nan,
        "gate_true_feed": float(gate[truth == 0].mean()) if (truth == 0).any() else np.nan,
    }


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN without both classes."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# --------------------------------------------------------------------------- online
def online(ctx: StageContext) -> dict[str, Any]:
    """One evaluation seed of the online table (module docstring)."""

    from recgym.agents.baselines import RandomPolicy
    from recgym.agents.references import ClickOracle
    from recgym.agents.ruie import RUIEPolicy
    from recgym.agents.sequence import Popularity
    from recgym.envs.multi_scenario import MultiScenarioEnv
    from recgym.simulators.world_state import load_world

    cfg: BenchConfig = ctx.config["bench"]
    seed = ctx.config["seed"]
    logs_dir = ctx.deps["logs"].dir
    b, split = split_of(cfg, logs_dir)
    if not np.array_equal(b.item_ids, np.arange(b.n_items)):
        raise ValueError("online: the logs' item ids are not the world's 0..n_items-1")
    popularity = Popularity(b.n_items, max_len=cfg.seq_len)
    popularity.fit_counts(split.train)
    agents: dict[str, Any] = {
        "random": RandomPolicy(seed=seed),
        "popularity": RUIEPolicy(popularity),
    }
    for name in ("nextitnet", "ruie"):
        model = build_model(name, b.n_items, cfg, seed)
        path = ctx.deps[fit_stage(name, seed)].dir / "model.pt"
        model.to(resolve_device(cfg.device)).load_state_dict(load_state(path, cfg.device))
        agents[LABELS[name]] = RUIEPolicy(model.eval())
    env_kwargs = {"max_steps": cfg.online_max_steps, "seq_len": cfg.seq_len}
    rows, tracking = [], {}
    for name, policy in agents.items():
        world = load_world(logs_dir)
        env = MultiScenarioEnv(backend=world, **env_kwargs)
        totals, track = run_sessions(env, policy, cfg.online_episodes, seed, name == "RUIE")
        rows += [
            ctx.row(env=ONLINE_ENV, agent=name, backend="world", seed=seed, metric=m, value=v)
            for m, v in totals.items()
        ]
        if track:
            tracking = track
    world = load_world(logs_dir)
    oracle = ClickOracle(world, None, slate_size=6, seed=seed)
    env = MultiScenarioEnv(backend=world, **env_kwargs)
    totals, _ = run_sessions(env, oracle, cfg.online_episodes, seed, False)
    rows += [
        ctx.row(
            env=ONLINE_ENV,
            agent="click oracle (reads hidden state)",
            backend="world",
            seed=seed,
            metric=m,
            value=v,
        )
        for m, v in totals.items()
    ]
    rows += [
        ctx.row(env=ONLINE_ENV, agent="RUIE", backend="world", seed=seed, metric=m, value=v)
        for m, v in tracking.items()
    ]
    ctx.write_rows(rows)
    return {}


def run_sessions(
    env: Any, policy: Any, episodes: int, seed: int, track: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-session means of reward, requests and clicks per scenario over `episodes` sessions
    from ``reset(seed=seed)``; with `track`, how the policy's model Q(search) (before each
    request after the first) tracks the world's true p(search) and the scenario drawn."""
    import torch

    totals = {"reward": 0.0, "session_length": 0.0, "clicks_feed": 0.0, "clicks_search": 0.0}
    q_search, p_true, drawn = [], [], []
    world = env.unwrapped.model
    if hasattr(policy, "reset"):
        policy.reset(seed)
    obs, info = env.reset(seed=seed)
    for _ in range(episodes):
        done = False
        while not done:
            obs_before = obs
            obs, reward, term, trunc, info = env.step(policy.act(obs_before))
            clicks = int(np.asarray(info["responses"]["click"]).sum())
            scenario = "clicks_search" if int(info["scenario_shown"]) == 1 else "clicks_feed"
            totals[scenario] += clicks
            totals["reward"] += reward
            totals["session_length"] += 1
            done = term or trunc
            if track and not done and (obs["seq_item"] >= 0).any():
                # obs["scenario"] was just drawn with probability world.p_search (the draw
                # does not change search_share or unmet)
                model = policy.model
                seq = torch.as_tensor(obs["seq_item"][None])
                ctx = {"scenario": torch.as_tensor(np.maximum(obs["seq_scenario"], 0)[None])}
                q_search.append(float(model.q_values(seq, ctx)[0, 1]))
                p_true.append(float(world.p_search(obs["user_id"])[0]))
                drawn.append(int(obs["scenario"][0]))
        if done:
            obs, info = env.reset()
    out = {k: v / episodes for k, v in totals.items()}
    tracked: dict[str, float] = {}
    if track and len(q_search) > 2:
        q, p = np.asarray(q_search), np.asarray(p_true)
        tracked["switch_auc"] = auc(q, np.asarray(drawn) == 1)
        tracked["switch_corr"] = (
            float(np.corrcoef(q, p)[0, 1]) if q.std() > 0 and p.std() > 0 else float("nan")
        )
    return out, tracked


__all__ = [
    "OFFLINE_ENV",
    "ONLINE_ENV",
    "auc",
    "build_model",
    "fit_model",
    "fit_stage",
    "logs",
    "online",
    "online_stage",
    "run_sessions",
    "split_of",
    "switch_tracking_offline",
]
