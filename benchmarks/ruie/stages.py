"""The stages of `recgym bench ruie`: world logs and one offline fit per model and seed.

- ``logs``: a world and its logs in KuaiSAR's schema (`recgym world generate --format kuaisar`),
  with the world as it stood after them (skipped with ``--data``);
- ``fit-<model>-seed<i>``: the paper's protocol (`benchmarks.ruie.data`: both scenarios merged
  by timestamp, the last behaviour of each user for test, everything before it trains, sequences
  of length L) - train with `agents.sequence.fit`, rank every test target over the whole
  catalogue (`rank_targets`; padding is never a candidate; seen items are *not* excluded,
  since users re-click items in KuaiSAR and in the world), one row per NDCG@K; RUIE variants
  with a Q estimator also write how their Q(search) predicts the test behaviour's scenario;
- the online stages (the learned backend, DQN, MultiScenario-v0 on the world and on the
  learned backend) are in `benchmarks.ruie.online`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.engine import StageContext
from recgym.benchmarks.ruie.spec import KS, LABELS, BenchConfig

OFFLINE_ENV = "KuaiSAR logs (offline)"


def fit_stage(model: str, seed: int) -> str:
    return f"fit-{model}-seed{seed}"


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


__all__ = [
    "OFFLINE_ENV",
    "auc",
    "build_model",
    "fit_model",
    "fit_stage",
    "logs",
    "split_of",
    "switch_tracking_offline",
]
