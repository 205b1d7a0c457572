"""Baseline slate policies: uniform random, the greedy supervised ranker, and a Q-value adapter.

All of them act from the env's observation dict alone (`envs.contract`: ``act(obs)``, the
action space fixed at construction), so they run unchanged on the ground-truth world and on a
learned simulator.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from recgym.agents.checkpoint import json_path
from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.tb import update_curve
from recgym.device import load_state, module_device, resolve_device
from recgym.envs.contract import (
    Obs,
    action_from_values,
    candidate_columns,
    flatten_observation,
    n_candidates,
    rank_scores,
)
from recgym.simulators.features import USER_FEATURE_DIM, user_feature_matrix

DAY_MS = 86_400_000
BEIJING_MS = 8 * 3_600_000  # KuaiRand's days are Beijing (UTC+8) calendar days


# --------------------------------------------------------------------------- observation layout
def n_candidates_of(space: gym.Space) -> int:
    """Number of candidates an action space ranks: Box scores (N,) or Discrete(N)."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(space.shape[0])
    raise TypeError(f"expected a Box or Discrete action space, got {space}")


# --------------------------------------------------------------------------- random
class RandomPolicy:
    """Uniform scores (Box, or None: scores in [-1, 1] for the observation's N candidates) or a
    uniform item (Discrete), from its own seeded generator."""

    def __init__(self, seed: int = 0, action_space: gym.Space | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.action_space = action_space

    def reset(self, seed: int) -> None:
        """Restart the generator (`evaluate` calls this once per seed)."""
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Obs) -> np.ndarray | int:
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            return int(self.rng.integers(space.n))
        if isinstance(space, spaces.Box):
            return self.rng.uniform(space.low, space.high).astype(space.dtype)
        return self.rng.uniform(-1.0, 1.0, size=n_candidates(obs)).astype(np.float32)


# --------------------------------------------------------------------------- supervised ranker
# The candidate features the ranker reads; each has a log-side twin computed by `log_features`.
RANKER_FEATURES = (
    "log_duration",
    "log_popularity",
    "history_category_share",
    "history_author_share",
)


@dataclass(kw_only=True)
class RankerConfig:
    """How `RankingModel` builds its training table from logs and fits its network."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Widths of the shared MLP trunk in front of the click and watch-ratio heads."""
    lr: float = 2e-3
    """Adam learning rate."""
    weight_decay: float = 1e-5
    """Adam weight decay."""
    epochs: int = 8
    """Passes over the training days."""
    batch_size: int = 512
    """Rows per gradient step."""
    watch_weight: float = 1.0
    """Weight of the watch-ratio MSE next to the click cross-entropy."""
    watch_ratio_cap: float = 2.0
    """Watch ratios (play time / duration) are clipped to [0, cap] (replays exceed 1)."""
    holdout_days: int = 1
    """The last this many calendar days (Beijing time) are held out for the reported AUC."""
    history_len: int = 20
    """Clicked items the history shares count (the backends' `history_len`)."""
    request_size: int = 6
    """Rows of a session that form one request (KuaiRand logs carry no request ids)."""
    session_gap_minutes: float = 30.0
    """A longer gap between a user's consecutive exposures starts a new session."""
    seed: int = 0
    """Seed of weight initialisation and minibatch order."""
    device: str = "auto"
    """Torch device of the network (`recgym.device.resolve_device`); the weights are initialised
    and the minibatch order drawn on the CPU, so a seed gives the same run on any device."""


@dataclass(kw_only=True)
class RankerFitStats:
    """What `RankingModel.fit` measured; held-out numbers are on the last `holdout_days`."""

    click_auc: float
    """ROC AUC of the predicted click on held-out days."""
    train_click_auc: float
    """The same on the training days (a large gap means overfitting)."""
    watch_rmse: float
    """Held-out RMSE of the predicted (clipped) watch ratio."""
    watch_rmse_constant: float
    """Held-out RMSE of predicting the training mean watch ratio, for reference."""
    n_train: int
    n_test: int
    seconds: float


@dataclass(kw_only=True)
class LogFeatures:
    """The ranker's training table: one row per logged exposure, in the log's time order."""

    user_x: np.ndarray  # (R, USER_FEATURE_DIM) float32
    cand_x: np.ndarray  # (R, len(RANKER_FEATURES)) float32, the observation's formulas
    click: np.ndarray  # (R,) float32
    watch_ratio: np.ndarray  # (R,) float32, clipped
    day: np.ndarray  # (R,) int64 calendar day (Beijing time)
    is_train: np.ndarray  # (R,) bool, False on the last `holdout_days` days


def _codes(values: pd.Series) -> np.ndarray:
    """Dense int codes of `values`; missing values share one extra code."""
    codes, uniques = pd.factorize(values, sort=True)
    return np.where(codes < 0, len(uniques), codes).astype(np.int64)


def _window_counts(
    user: np.ndarray,
    group: np.ndarray,
    n_groups: int,
    click_rank: np.ndarray,
    is_click: np.ndarray,
    q_group: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """For each row r: clicks of r's user with group q_group[r] and click rank in [lo[r], hi[r]).

    One sort of the clicks by (user, group, rank) and two binary searches; no loop over rows.
    """
    stride = int(click_rank.max(initial=0)) + 2
    key = (user[is_click] * n_groups + group[is_click]) * stride + click_rank[is_click]
    key = np.sort(key)
    base = (user * n_groups + q_group) * stride
    return np.searchsorted(key, base + hi) - np.searchsorted(key, base + lo)


def log_features(ds: Any, config: RankerConfig | None = None) -> LogFeatures:
    """Training rows from a loaded KuaiRand `Dataset`, with features that mirror the env's.

    Per exposure, in the user's time order (rows sorted by user, timestamp; ties keep file
    order):

    - user features: `user_feature_matrix(ds.users)`, looked up by user id (zeros if absent);
    - log duration ``log1p(duration_ms / 1000) / 6`` (`Catalogue.item_features`);
    - log popularity ``log(p * n_items) / 5`` with p the item's share of *training-day*
      exposures, add-one smoothed (what a learned simulator's catalogue holds);
    - history category / author share: among the user's last `history_len` clicks before the
      row's *request* (sessions cut at `session_gap_minutes`, requests = `request_size`
      consecutive rows from the session start), the share in the item's leaf category (last id
      of the items table's `tag`) and by its author; 0 with no clicks yet. This is exactly
      the env's ``history`` (last clicks, newest last) at the moment the slate is ranked.

    Targets: `is_click` and the watch ratio ``play_time_ms / duration_ms`` clipped to
    [0, watch_ratio_cap].
    """
    cfg = config or RankerConfig()
    it = ds.interactions
    user = it["user_id"].to_numpy(np.int64)
    ts = it["timestamp"].to_numpy(np.int64)
    order = np.lexsort((np.arange(len(it)), ts, user))
    user, ts = user[order], ts[order]
    item = it["item_id"].to_numpy(np.int64)[order]
    click = it["is_click"].to_numpy(np.int64)[order] > 0
    duration = np.maximum(it["duration_ms"].to_numpy(np.float64)[order], 1.0)
    play = it["play_time_ms"].to_numpy(np.float64)[order]
    n = len(user)

    # item table -> leaf category (last tag id) and author, by item id
    items = ds.items.drop_duplicates("item_id").set_index("item_id")
    universe = np.union1d(items.index.to_numpy(np.int64), item)
    frame = items.reindex(universe)
    if "tag" in frame:
        leaf = frame["tag"].astype("string").str.split(",").str[-1].str.strip()
        leaf = pd.to_numeric(leaf, errors="coerce")
    else:
        leaf = pd.Series(np.nan, index=frame.index)
    author_col = frame["author_id"] if "author_id" in frame else pd.Series(np.nan, frame.index)
    item_row = np.searchsorted(universe, item)
    category = _codes(leaf)[item_row]
    author = _codes(pd.to_numeric(author_col, errors="coerce"))[item_row]
    n_cat, n_auth = int(category.max(initial=0)) + 1, int(author.max(initial=0)) + 1

    # days, train/held-out split
    day = (ts + BEIJING_MS) // DAY_MS
    days = np.unique(day)
    is_train = day < days[max(len(days) - cfg.holdout_days, 1)] if len(days) > 1 else day >= 0

    # sessions and requests
    new_user = np.r_[True, user[1:] != user[:-1]]
    new_session = new_user | np.r_[True, np.diff(ts) > cfg.session_gap_minutes * 60_000]
    session_start = np.maximum.accumulate(np.where(new_session, np.arange(n), 0))
    pos = np.arange(n) - session_start
    req_start = np.arange(n) - pos % cfg.request_size
    user_start = np.maximum.accumulate(np.where(new_user, np.arange(n), 0))

    # clicks of the user strictly before each row, and before each row's request
    cum = np.r_[0, np.cumsum(click)]
    click_rank = cum[:-1] - cum[user_start]  # rank of a click among its user's clicks
    g = click_rank[req_start]
    lo = np.maximum(g - cfg.history_len, 0)
    n_hist = np.maximum(g - lo, 1)
    cat_count = _window_counts(user, category, n_cat, click_rank, click, category, lo, g)
    auth_count = _window_counts(user, author, n_auth, click_rank, click, author, lo, g)

    exposures = np.bincount(item_row[is_train], minlength=len(universe)).astype(np.float64)
    popularity = (exposures + 1.0) / (exposures.sum() + len(universe))
    cand_x = np.stack(
        [
            np.log1p(duration / 1000.0) / 6.0,
            np.log(popularity[item_row] * len(universe) + 1e-9) / 5.0,
            cat_count / n_hist,
            auth_count / n_hist,
        ],
        axis=1,
    )

    users = ds.users.drop_duplicates("user_id")
    table = user_feature_matrix(users)
    row = pd.Index(users["user_id"].to_numpy(np.int64)).get_indexer(user)
    user_x = np.where((row >= 0)[:, None], table[np.maximum(row, 0)], 0.0)
    return LogFeatures(
        user_x=user_x.astype(np.float32),
        cand_x=np.clip(cand_x, -10.0, 10.0).astype(np.float32),
        click=click.astype(np.float32),
        watch_ratio=np.clip(play / duration, 0.0, cfg.watch_ratio_cap).astype(np.float32),
        day=day,
        is_train=is_train,
    )


class RankingNet(nn.Module):
    """Shared MLP over [user features ⊕ candidate features] with a click and a watch-ratio head.

    Inputs are standardised with the training table's mean and std (buffers, saved with the
    weights). Returns (click logit, watch ratio), each shaped like the input minus its last axis.
    """

    def __init__(self, n_in: int, hidden_sizes: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden_sizes:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, 2)
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.heads(self.trunk((x - self.mean) / self.std))
        return out[..., 0], out[..., 1]


class RankingModel:
    """The papers' greedy supervised multi-task ranker, trained on logs, acting on observations.

    `fit(ds)` learns P(click) and the expected watch ratio of an exposure from the user's
    features and the candidate's RANKER_FEATURES (see `log_features` for how each mirrors the
    env's observation). At act time it reads the same features from the observation and shows
    the candidates with the highest predicted click (``target="click"``) or expected watch time
    ``ratio * duration`` (``target="watch"``); it is greedy: one request at a time, no session
    state. The env's `author_is_live`, session exposure and shown-this-session features have
    no counterpart in KuaiRand logs and are not used.

    Residual differences between the log features and the env's: on the ground-truth world
    backend the observation's popularity is the world's exposure *prior*, while the logs give
    the behaviour policy's exposure share (correlation about 0.66 on a 5-day world log, same
    mean and spread); on a learned-simulator backend both are training exposure shares. Log
    requests are recovered as `request_size` consecutive rows per session, exact on world logs
    (6 rows per request) and an approximation on real KuaiRand.
    """

    def __init__(
        self,
        config: RankerConfig | None = None,
        target: str = "click",
        action_space: gym.Space | None = None,
    ) -> None:
        if target not in ("click", "watch"):
            raise ValueError(f"target must be 'click' or 'watch', got {target!r}")
        self.config = config or RankerConfig()
        self.target = target
        self.action_space = action_space
        self.device = resolve_device(self.config.device)
        with seeded_global_rngs(self.config.seed):  # replaced by `fit` or `load`
            self.net = RankingNet(USER_FEATURE_DIM + len(RANKER_FEATURES), self.config.hidden_sizes)
        self.net.to(self.device)

    # ------------------------------------------------------------------ training
    def fit(self, ds: Any, progress: bool = False) -> RankerFitStats:
        """Train on all but the last `holdout_days` of `ds`; report held-out click AUC."""
        from sklearn.metrics import roc_auc_score

        start = time.perf_counter()
        cfg = self.config
        torch.set_num_threads(1)
        feats = log_features(ds, cfg)
        x = torch.from_numpy(np.concatenate([feats.user_x, feats.cand_x], axis=1))
        y_click = torch.from_numpy(feats.click)
        y_ratio = torch.from_numpy(feats.watch_ratio)
        tr = torch.from_numpy(np.flatnonzero(feats.is_train))
        te = torch.from_numpy(np.flatnonzero(~feats.is_train))
        gen = torch.Generator().manual_seed(cfg.seed)  # batch order
        with seeded_global_rngs(cfg.seed):  # initial weights; the caller's generators untouched
            self.net = RankingNet(x.shape[1], cfg.hidden_sizes)
        self.net.mean.copy_(x[tr].mean(0))
        self.net.std.copy_(x[tr].std(0).clamp_min(1e-3))
        self.net.to(self.device)  # the table goes to the device once
        x, y_click, y_ratio = x.to(self.device), y_click.to(self.device), y_ratio.to(self.device)
        opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        epochs = range(cfg.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="ranker epochs")
        self.net.train()
        n_batches = max(-(-len(tr) // cfg.batch_size), 1)
        with update_curve("RankingModel", cfg.seed, every=1) as log:  # TensorBoard in a stage
            for epoch in epochs:
                total = torch.zeros((), device=self.device)
                for idx in tr[torch.randperm(len(tr), generator=gen)].split(cfg.batch_size):
                    idx = idx.to(self.device)
                    logit, ratio = self.net(x[idx])
                    loss = F.binary_cross_entropy_with_logits(logit, y_click[idx])
                    loss = loss + cfg.watch_weight * F.mse_loss(ratio, y_ratio[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += loss.detach()
                log(epoch + 1, {"loss": float(total) / n_batches})
        self.net.eval()
        with torch.no_grad():
            logit, ratio = self.net(x)
        logit, ratio = logit.cpu().numpy(), ratio.cpu().numpy()
        tr_np, te_np = tr.numpy(), te.numpy()

        def auc(rows: np.ndarray) -> float:
            labels = feats.click[rows]
            if len(rows) == 0 or labels.min() == labels.max():
                return float("nan")
            return float(roc_auc_score(labels, logit[rows]))

        def rmse(pred: np.ndarray) -> float:
            err = pred - feats.watch_ratio[te_np]
            return float(np.sqrt(np.mean(err**2))) if len(te_np) else float("nan")

        return RankerFitStats(
            click_auc=auc(te_np),
            train_click_auc=auc(tr_np),
            watch_rmse=rmse(ratio[te_np]),
            watch_rmse_constant=rmse(np.full(len(te_np), feats.watch_ratio[tr_np].mean())),
            n_train=len(tr_np),
            n_test=len(te_np),
            seconds=time.perf_counter() - start,
        )

    # ------------------------------------------------------------------ acting
    def predict(self, obs: Obs) -> dict[str, np.ndarray]:
        """An observation dict (or a batch) -> per candidate (..., N): click, watch_ratio,
        watch_ms."""
        user = np.asarray(obs["user"], dtype=np.float32)
        if user.shape[-1] != USER_FEATURE_DIM:
            raise ValueError(
                f"observation has {user.shape[-1]} user features, expected {USER_FEATURE_DIM}"
            )
        cand_x = candidate_columns(obs, RANKER_FEATURES)
        user_x = np.broadcast_to(user[..., None, :], (*cand_x.shape[:-1], user.shape[-1]))
        x = torch.from_numpy(np.concatenate([user_x, cand_x], axis=-1).astype(np.float32))
        with torch.no_grad():
            logit, ratio = self.net(x.to(self.device))
        logit, ratio = logit.cpu(), ratio.cpu()
        ratio = ratio.clamp_min(0.0).numpy().astype(np.float64)
        duration_ms = np.expm1(6.0 * candidate_columns(obs, "log_duration")) * 1e3
        return {
            "click": torch.sigmoid(logit).numpy().astype(np.float64),
            "watch_ratio": ratio,
            "watch_ms": ratio * duration_ms,
        }

    def values(self, obs: Obs) -> np.ndarray:
        """The ranking value per candidate: P(click) or expected watch ms, per `target`."""
        pred = self.predict(obs)
        return pred["click"] if self.target == "click" else pred["watch_ms"]

    def act(self, obs: Obs) -> np.ndarray | int:
        return action_from_values(self.values(obs), self.action_space, obs["mask"])

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write `path` (.pt state dict) and the config JSON beside it (`path` + .json)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.net.state_dict(), path)
        meta = {"kind": "RankingModel", "target": self.target, "config": asdict(self.config)}
        json_path(path).write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(
        cls, path: str | Path, action_space: gym.Space | None = None, device: str | None = None
    ) -> RankingModel:
        """Rebuild a model saved by `save` (on any device) on `device` (None: the saved
        config's; 'auto' for files from before the option)."""
        path = Path(path)
        meta = json.loads(json_path(path).read_text())
        cfg = meta["config"]
        cfg["hidden_sizes"] = tuple(cfg["hidden_sizes"])
        if device is not None:
            cfg["device"] = device
        model = cls(RankerConfig(**cfg), target=meta["target"], action_space=action_space)
        model.net.load_state_dict(load_state(path, model.device))
        model.net.eval()
        return model


# --------------------------------------------------------------------------- Q-value adapter
class QSlatePolicy:
    """Shows the top-K candidates by Q-value: wraps a Q-network returning (B, N) values.

    `q` may be a Tianshou `DiscreteQLearningPolicy` (its `.model` is used), a Tianshou
    `Algorithm` (its `.policy.model`), or any module mapping (B, obs_dim) flat observations
    (`envs.contract.flatten_observation`) to (B, N) values or to a ``(values, state)`` pair.
    On a Box (scores) or None action space the values become rank scores, so the env shows the
    `slate_size` best; on Discrete(N) the argmax.
    """

    def __init__(self, q: nn.Module, action_space: gym.Space | None = None) -> None:
        if hasattr(q, "policy"):
            q = q.policy
        self.net: nn.Module = getattr(q, "model", q)
        self.action_space = action_space

    def q_values(self, obs: Obs | np.ndarray) -> np.ndarray:
        """An observation dict (or a batch), or flat (obs_dim,) / (B, obs_dim) observations ->
        (N,) or (B, N) float64 Q-values."""
        if isinstance(obs, Mapping):
            obs = flatten_observation(obs)
        obs = np.asarray(obs, dtype=np.float32)
        batch = obs[None] if obs.ndim == 1 else obs
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            out = self.net(torch.from_numpy(batch).to(module_device(self.net)))
        self.net.train(was_training)
        q = out[0] if isinstance(out, tuple) else out
        q = q.cpu().numpy().astype(np.float64)
        return q[0] if obs.ndim == 1 else q

    def act(self, obs: Obs) -> np.ndarray | int:
        return action_from_values(self.q_values(obs), self.action_space, obs["mask"])


__all__ = [
    "LogFeatures",
    "QSlatePolicy",
    "RANKER_FEATURES",
    "RandomPolicy",
    "RankerConfig",
    "RankerFitStats",
    "RankingModel",
    "RankingNet",
    "action_from_values",
    "log_features",
    "n_candidates_of",
    "rank_scores",
]
