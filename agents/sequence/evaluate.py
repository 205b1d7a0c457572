"""Ranking evaluation of the sequence models: full-catalogue and sampled-negative leave-one-out.

Full ranking uses `envs.evaluation.leave_one_out_ranks` (registered as hr@K / ndcg@K in
`benchmarks.metrics`): ties count against the target; items the user has seen are excluded when
``exclude_seen``; padding is never a candidate, since scores cover item ids 0..n_items-1 only.
The sampled mode is RDRSR's protocol (after NCF): the target
is ranked among ``n`` (99) negatives that are neither the target nor a seen item, sampled
uniformly without replacement by `sample_negatives`; ties again count against the target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recgym.agents.sequence.base import SequenceRecommender
from recgym.agents.sequence.data import SequenceData
from recgym.envs.evaluation import hit_rate_at, leave_one_out_ranks, ndcg_at


def seen_matrix(seen: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """(N, n_items) bool: True where row i's item was seen."""
    lengths = np.array([len(s) for s in seen], dtype=np.int64)
    out = np.zeros((len(seen), n_items), dtype=bool)
    if lengths.sum():
        cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in seen])
        out[np.repeat(np.arange(len(seen)), lengths), cols] = True
    return out


def _batch_context(data: SequenceData, rows: slice) -> dict[str, torch.Tensor] | None:
    if data.context is None:
        return None
    return {k: torch.as_tensor(v[rows]) for k, v in data.context.items()}


def sample_negatives(
    rng: np.random.Generator,
    data: SequenceData,
    n_items: int,
    n: int = 99,
    seen: Sequence[np.ndarray] | None = None,
    chunk: int = 1024,
) -> np.ndarray:
    """(N, n) int64 negatives per row: distinct, never the target, never a seen item.

    `seen` defaults to ``data.seen_lists()``. Uniform without replacement over the allowed
    items (random keys, the n smallest taken). Raises ValueError naming the first row with
    fewer than `n` allowed items.
    """
    seen = data.seen_lists() if seen is None else seen
    if len(seen) != len(data):
        raise ValueError(f"sample_negatives: seen has {len(seen)} rows, data {len(data)}")
    if not 0 < n < n_items:
        raise ValueError(f"sample_negatives: n must lie in [1, {n_items}), got {n}")
    out = np.empty((len(data), n), dtype=np.int64)
    for lo in range(0, len(data), chunk):
        hi = min(lo + chunk, len(data))
        banned = seen_matrix(seen[lo:hi], n_items)
        banned[np.arange(hi - lo), data.target[lo:hi]] = True
        allowed = n_items - banned.sum(1)
        if (allowed < n).any():
            bad = lo + int(np.flatnonzero(allowed < n)[0])
            raise ValueError(
                f"sample_negatives: row {bad} has {int(allowed[bad - lo])} items that are neither "
                f"its target nor seen; {n} negatives are asked for"
            )
        keys = rng.random((hi - lo, n_items))
        keys[banned] = np.inf
        out[lo:hi] = np.argpartition(keys, n - 1, axis=1)[:, :n]
    return out


@torch.no_grad()
def score_rows(
    model: SequenceRecommender,
    data: SequenceData,
    items: np.ndarray | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Scores of every row in eval mode: (N, n_items), or (N, M) for candidates `items` (N, M)."""
    was_training = model.training
    model.eval()
    device = model.item_emb.weight.device
    out = []
    try:
        for lo in range(0, len(data), batch_size):
            rows = slice(lo, lo + batch_size)
            cand = None if items is None else torch.as_tensor(items[rows], device=device)
            s = model.score(
                torch.as_tensor(data.seq[rows], device=device), cand, _batch_context(data, rows)
            )
            out.append(s.float().cpu().numpy())
    finally:
        model.train(was_training)
    width = model.n_items if items is None else items.shape[1]
    return np.concatenate(out) if out else np.zeros((0, width))


def rank_targets(
    model: SequenceRecommender,
    data: SequenceData,
    exclude_seen: bool = True,
    negatives: np.ndarray | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """(N,) 0-based rank of each row's target (module doc).

    Without `negatives`: among the whole catalogue, seen items (``data.seen_lists()``) excluded
    when `exclude_seen`. With `negatives` (N, M): among those M items only; a row whose
    negatives contain its target raises ValueError.
    """
    if negatives is None:
        ranks = []
        for lo in range(0, len(data), batch_size):
            part = data.subset(np.arange(lo, min(lo + batch_size, len(data))))
            scores = score_rows(model, part, batch_size=batch_size)
            seen = seen_matrix(part.seen_lists(), model.n_items) if exclude_seen else None
            ranks.append(leave_one_out_ranks(scores, part.target, seen))
        return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
    negatives = np.asarray(negatives, dtype=np.int64)
    if negatives.ndim != 2 or len(negatives) != len(data):
        raise ValueError(f"negatives must be ({len(data)}, M), got {negatives.shape}")
    clash = (negatives == data.target[:, None]).any(1)
    if clash.any():
        raise ValueError(f"negatives of row {int(np.flatnonzero(clash)[0])} contain its target")
    cand = np.concatenate([data.target[:, None], negatives], 1)
    scores = score_rows(model, data, cand, batch_size)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    return (scores[:, 1:] >= scores[:, :1]).sum(1)


def ranking_report(ranks: np.ndarray, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """{"hr@K", "ndcg@K"} for each K from ranks (`benchmarks.metrics` definitions)."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at(ranks, k)
    return out


def evaluate(
    model: SequenceRecommender,
    data: SequenceData,
    ks: Sequence[int] = (10,),
    exclude_seen: bool = True,
    negatives: np.ndarray | None = None,
) -> dict[str, float]:
    """HR@K and NDCG@K of `model` on `data` (full ranking, or among `negatives`)."""
    return ranking_report(rank_targets(model, data, exclude_seen, negatives), ks)


__all__ = [
    "evaluate",
    "rank_targets",
    "ranking_report",
    "sample_negatives",
    "score_rows",
    "seen_matrix",
]
