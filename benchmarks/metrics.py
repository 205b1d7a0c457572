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

from recgym.envs.evaluation import (
    METRIC_RANGES,
    hit_rate_at,
    leave_one_out_ranks,
    ndcg_at,
    seed_metrics,
    session_totals,
)
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
    "allocation_nmi": Metric(
        "allocation_nmi", "per-user NMI of the interest allocation vs the true interests", 0.0, 1.0
    ),
    "allocation_ari": Metric(
        "allocation_ari", "per-user adjusted Rand index of the allocation vs the truth", -1.0, 1.0
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


# --------------------------------------------------------------------------- allocation vs truth
def _contingency(
    group: np.ndarray, true: np.ndarray, pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group contingency counts, flattened: (cell group, cell count, row-sum table entries
    as (group, count) for true labels, the same for predicted labels, items per group)."""
    group, true, pred = (np.asarray(x).reshape(-1) for x in (group, true, pred))
    if not (len(group) == len(true) == len(pred)):
        raise ValueError(
            f"group, true and pred must have one entry per item, got {len(group)}, "
            f"{len(true)}, {len(pred)}"
        )
    _, g = np.unique(group, return_inverse=True)
    _, t = np.unique(true, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    n_g = int(g.max()) + 1 if len(g) else 0

    def counts(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = np.zeros(len(g), dtype=np.int64)
        for k in keys:
            key = key * (int(k.max()) + 1 if len(k) else 1) + k
        _, first, n = np.unique(key, return_index=True, return_counts=True)
        return g[first], n.astype(np.float64)

    cell_g, cell_n = counts(g, t, p)
    true_g, true_n = counts(g, t)
    pred_g, pred_n = counts(g, p)
    return (
        cell_g,
        cell_n,
        np.stack([true_g, true_n]),
        np.stack([pred_g, pred_n]),
        np.bincount(g, minlength=n_g).astype(np.float64),
    )


def _entropy(groups: np.ndarray, counts: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Per-group entropy (nats) of the label counts `counts` of groups `groups`."""
    q = counts / size[groups]
    return np.bincount(groups, weights=-q * np.log(q), minlength=len(size))


def allocation_nmi(group: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Normalised mutual information between true and predicted interests, per group (user).

    Arithmetic-mean normalisation, NMI = I(T; P) / ((H(T) + H(P)) / 2), as scikit-learn's
    default: 1 when the partitions agree up to renaming, 0 when independent; a group where both
    partitions are single clusters scores 1, where exactly one is, 0. Returns (n_groups,) in the
    order of the sorted group ids. Label values only name clusters (any integers).
    """
    cell_g, cell_n, true_c, pred_c, size = _contingency(group, true, pred)
    h_t = _entropy(true_c[0].astype(np.int64), true_c[1], size)
    h_p = _entropy(pred_c[0].astype(np.int64), pred_c[1], size)
    # I = H(T) + H(P) - H(T, P)
    mi = h_t + h_p - _entropy(cell_g, cell_n, size)
    denom = (h_t + h_p) / 2.0
    both_single = (h_t <= 1e-12) & (h_p <= 1e-12)
    out = np.where(denom > 1e-12, np.clip(mi, 0.0, None) / np.maximum(denom, 1e-300), 0.0)
    return np.where(both_single, 1.0, np.minimum(out, 1.0))


def allocation_ari(group: np.ndarray, true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Adjusted Rand index between true and predicted interests, per group (user).

    ARI = (sum C(n_ij, 2) - E) / ((a + b) / 2 - E), a = sum C(n_i., 2), b = sum C(n_.j, 2),
    E = a * b / C(n, 2) (Hubert & Arabie): 0 in expectation for a random allocation, 1 for
    agreement up to renaming. A group where the denominator is 0 (e.g. both partitions one
    cluster, or one item) scores 1 when the partitions agree and 0 otherwise, as scikit-learn.
    """
    cell_g, cell_n, true_c, pred_c, size = _contingency(group, true, pred)
    n_g = len(size)

    def pairs(groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return np.bincount(
            groups.astype(np.int64), weights=counts * (counts - 1) / 2, minlength=n_g
        )

    s = pairs(cell_g, cell_n)
    a, b = pairs(true_c[0], true_c[1]), pairs(pred_c[0], pred_c[1])
    total = size * (size - 1) / 2
    expected = np.where(total > 0, a * b / np.maximum(total, 1), 0.0)
    denom = (a + b) / 2 - expected
    agree = (s == a) & (s == b)
    return np.where(
        np.abs(denom) > 1e-12, (s - expected) / np.where(denom == 0, 1, denom), agree * 1.0
    )


__all__ = [
    "Metric",
    "RANKING_KS",
    "REGISTRY",
    "SESSION_METRICS",
    "allocation_ari",
    "allocation_nmi",
    "hit_rate_at",
    "leave_one_out_ranks",
    "metric",
    "ndcg_at",
    "ranking_metrics",
    "session_metrics",
    "weighted_gauc",
]
