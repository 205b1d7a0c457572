"""The metric registry: every metric a benchmark reports, by a fixed name with one definition.

- Session metrics (``session_length``, ``watch_time_s``, ``ctr``, ``valid_consumption``,
  ``diversity``, ``follows``) are computed by `recgym.envs.evaluation` (`session_totals`,
  `seed_metrics`); this module only names them and their ranges.
- ``hr@K`` / ``ndcg@K``: leave-one-out ranking over the full catalogue. Each user has one held-out
  item; it is ranked among every item the user has not interacted with (items in the user's
  training history are excluded; the held-out item stays). Rank 0 is the top. Ties are counted
  against the held-out item (an item with an equal score ranks above it), so a constant scorer
  gets the worst rank, not the best. HR@K = share of users whose item ranks < K; NDCG@K = mean of
  1 / log2(rank + 2) over those users, 0 for the rest (one relevant item, so IDCG = 1).
- ``weighted_gauc``: the Enhanced-State RL-MTF paper's offline metric (section 4.1.2). Label = valid
  consumption (watched > 10 s), sample weight = reward + 1. Per user, a weighted AUC over
  positive-negative pairs (pair weight = product of the two sample weights, a score tie counts
  1/2); users are averaged with weight = the sum of their sample weights. Users whose samples are
  all one label have no AUC and are left out (the paper is silent; this is GAUC's usual rule).
  The paper rescales scores to [0, 1] first; AUC is rank-based, so that changes nothing here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from recgym.envs.evaluation import METRIC_RANGES, seed_metrics, session_totals
from recgym.envs.evaluation import METRICS as SESSION_METRICS


@dataclass(frozen=True)
class Metric:
    """A metric's name, meaning, range (None = unbounded) and preferred direction."""

    name: str
    description: str
    low: float | None = 0.0
    high: float | None = None
    higher_is_better: bool = True

    def clip(self, x: float) -> float:
        """`x` moved into the metric's range (NaN stays NaN)."""
        if math.isnan(x):
            return x
        if self.low is not None:
            x = max(x, self.low)
        if self.high is not None:
            x = min(x, self.high)
        return x


_SESSION_DESCRIPTIONS = {
    "session_length": "requests per session",
    "watch_time_s": "seconds watched per session",
    "ctr": "clicks per shown item (pooled over a seed's sessions)",
    "valid_consumption": "views longer than 10 s per session",
    "diversity": "distinct categories shown per session",
    "follows": "new follows per session",
}


def _bound(x: float) -> float | None:
    return None if math.isinf(x) else x


# the session metrics' ranges are envs/evaluation's METRIC_RANGES (one definition)
_SESSION = {
    name: Metric(name, text, _bound(METRIC_RANGES[name][0]), _bound(METRIC_RANGES[name][1]))
    for name, text in _SESSION_DESCRIPTIONS.items()
}
assert tuple(_SESSION) == tuple(SESSION_METRICS), "keep in step with envs/evaluation.METRICS"

_USER_AUTHOR = {
    "gifts": Metric("gifts", "gifts per session (UserAuthor-v0; absent where a backend has none)"),
}

RANKING_KS = (5, 10, 15, 20, 50)
"""The K of the registered HR@K / NDCG@K (the RUIE and RDRSR tables use 5..20 and 10, 50)."""

REGISTRY: dict[str, Metric] = {
    **_SESSION,
    **_USER_AUTHOR,
    **{
        f"hr@{k}": Metric(f"hr@{k}", f"leave-one-out hit rate at {k}, full catalogue", 0.0, 1.0)
        for k in RANKING_KS
    },
    **{
        f"ndcg@{k}": Metric(f"ndcg@{k}", f"leave-one-out NDCG at {k}, full catalogue", 0.0, 1.0)
        for k in RANKING_KS
    },
    "weighted_gauc": Metric(
        "weighted_gauc", "per-user AUC of valid consumption, weight reward + 1", 0.0, 1.0
    ),
}
"""Every metric name a row may carry."""


def metric(name: str) -> Metric:
    """The registered metric `name` (any ``hr@K`` / ``ndcg@K``); unknown names raise."""
    try:
        return REGISTRY[name]
    except KeyError:
        head, _, k = name.partition("@")
        if head in ("hr", "ndcg") and k.isdigit() and int(k) > 0:
            return Metric(name, f"leave-one-out {head} at {k}, full catalogue", 0.0, 1.0)
        raise KeyError(f"unknown metric {name!r}; registered: {', '.join(REGISTRY)}") from None


# --------------------------------------------------------------------------- session metrics
def session_metrics(sessions: Iterable[Iterable[Mapping]]) -> dict[str, float]:
    """SESSION_METRICS of one seed from each session's step infos (envs/evaluation's definition)."""
    return seed_metrics([session_totals(infos) for infos in sessions])


# --------------------------------------------------------------------------- leave-one-out ranking
def leave_one_out_ranks(
    scores: np.ndarray, target: np.ndarray, interacted: np.ndarray | None = None
) -> np.ndarray:
    """0-based rank of each user's held-out item among the items they have not interacted with.

    scores: (U, I) float, higher = recommended first; target: (U,) held-out item ids;
    interacted: (U, I) bool, True for items in the user's history (the target's own entry is
    ignored, so it may be True or False). Ties count against the target (see the module doc).
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (users, items), got shape {scores.shape}")
    n_users, n_items = scores.shape
    if target.shape != (n_users,):
        raise ValueError(f"target must be ({n_users},), got shape {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target must hold integer item ids, got {target.dtype}")
    if n_users and (target.min() < 0 or target.max() >= n_items):
        raise ValueError(f"target item ids must lie in [0, {n_items}), got {target.min()}..")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    rows = np.arange(n_users)
    candidate = np.ones_like(scores, dtype=bool)
    if interacted is not None:
        interacted = np.asarray(interacted, dtype=bool)
        if interacted.shape != scores.shape:
            raise ValueError(f"interacted must be {scores.shape}, got {interacted.shape}")
        candidate = ~interacted
    candidate[rows, target] = False  # the target itself is not a competitor
    own = scores[rows, target][:, None]
    return ((scores >= own) & candidate).sum(axis=1)


def hit_rate_at(ranks: np.ndarray, k: int) -> float:
    """HR@K: share of users whose held-out item ranks within the top `k`."""
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if ranks.size else math.nan


def ndcg_at(ranks: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item: mean of 1/log2(rank + 2) for ranks < k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return math.nan
    return float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


def ranking_metrics(
    scores: np.ndarray,
    target: np.ndarray,
    interacted: np.ndarray | None = None,
    ks: Sequence[int] = (10,),
) -> dict[str, float]:
    """{"hr@K", "ndcg@K"} for each K in `ks` (leave-one-out, full catalogue)."""
    ranks = leave_one_out_ranks(scores, target, interacted)
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at(ranks, k)
    return out


# --------------------------------------------------------------------------- weighted GAUC
def weighted_gauc(
    user: np.ndarray, label: np.ndarray, score: np.ndarray, weight: np.ndarray
) -> float:
    """Weighted GAUC (module doc): per-user weighted pairwise AUC, users weighted by total weight.

    user: (n,) ids; label: (n,) 0/1 (valid consumption); score: (n,) the policy's final score;
    weight: (n,) sample weights (reward + 1), > 0. NaN when no user has both labels.
    """
    user, label = np.asarray(user), np.asarray(label)
    score, weight = np.asarray(score, np.float64), np.asarray(weight, np.float64)
    n = len(user)
    for name, arr in (("label", label), ("score", score), ("weight", weight)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have shape ({n},) like user, got {arr.shape}")
    if not np.isin(label, (0, 1)).all():
        raise ValueError("label must be 0/1")
    if not np.isfinite(score).all():
        raise ValueError("score must be finite")
    if (weight <= 0).any() or not np.isfinite(weight).all():
        raise ValueError("weight must be finite and > 0 (the paper uses reward + 1)")
    if n == 0:
        return math.nan
    _, uid = np.unique(user, return_inverse=True)
    order = np.lexsort((score, uid))
    uid, score, y, w = uid[order], score[order], label[order].astype(bool), weight[order]
    # groups of equal (user, score): ties between them count 1/2
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (uid[1:] != uid[:-1]) | (score[1:] != score[:-1])
    gid = np.cumsum(new_group) - 1
    g_user = uid[new_group]
    g_pos = np.bincount(gid, weights=w * y)
    g_neg = np.bincount(gid, weights=w * ~y)
    cum_neg = np.cumsum(g_neg)
    user_first = np.ones(len(g_user), dtype=bool)
    user_first[1:] = g_user[1:] != g_user[:-1]
    start = np.flatnonzero(user_first)
    before_user = np.repeat(cum_neg[start] - g_neg[start], np.diff(np.append(start, len(g_user))))
    neg_below = cum_neg - g_neg - before_user  # negative weight strictly below, same user
    n_users = int(uid.max()) + 1
    num = np.bincount(g_user, weights=g_pos * (neg_below + 0.5 * g_neg), minlength=n_users)
    pos = np.bincount(uid, weights=w * y, minlength=n_users)
    neg = np.bincount(uid, weights=w * ~y, minlength=n_users)
    total = np.bincount(uid, weights=w, minlength=n_users)
    ok = (pos > 0) & (neg > 0)
    if not ok.any():
        return math.nan
    auc = num[ok] / (pos[ok] * neg[ok])
    return float(np.sum(total[ok] * auc) / np.sum(total[ok]))


__all__ = [
    "Metric",
    "RANKING_KS",
    "REGISTRY",
    "SESSION_METRICS",
    "hit_rate_at",
    "leave_one_out_ranks",
    "metric",
    "ndcg_at",
    "ranking_metrics",
    "session_metrics",
    "weighted_gauc",
]
