"""The sequential-recommendation interface: one padding convention and the model base classes.

**Padding convention** (the same as `UserModel.history()` / `EpisodeDriver.history()`): a batch
of sequences is an int64 array / LongTensor (B, L) of 0-based item ids, **-1 = padding,
left-padded, newest item last** (column L-1). A model shifts ids by +1 internally (its item
embedding has ``padding_idx=0``); nothing outside a model ever sees the shift. A batch may be
narrower than the model's ``max_len`` (it is used as it is) or wider (only the newest
``max_len`` columns are read). Every model gives the same scores for a sequence whatever extra
padding is on its left (`tests/test_sequence_models.py` checks this for every model), so
positions are counted from the newest item, never from the left edge.

**Context** (side information, optional): a dict of LongTensors, e.g. ``"scenario"`` (B, L)
scenario ids aligned with ``seq`` (any value at padding positions) and ``"target_scenario"``
(B,) the scenario of the request to score. Models that do not use context ignore it.

Scoring: ``user_state`` is (B, dim) or (B, K, dim) for a multi-interest model; ``score`` is the
dot product with ``item_vectors`` (the item embedding table, tied between input and output, the
convention of RecBole's implementations; the papers with a separate output layer are noted per
model), the max over interests for a multi-interest model. Models whose score is not a dot
product (DIN, STAR, PEPNet: an MLP over the user and the candidate) subclass
`PairwiseRecommender` and implement ``pair_score``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD = -1
"""The padding id of every sequence outside a model."""

Context = Mapping[str, torch.Tensor] | None


def pad_sequences(seqs: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """(N, max_len) int64: each sequence's newest `max_len` ids, left-padded with -1, newest last.

    Raises ValueError on a negative id (a sequence must not carry padding of its own) or a
    non-integer sequence.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    out = np.full((len(seqs), max_len), PAD, dtype=np.int64)
    if not len(seqs):
        return out
    arrays = [np.asarray(s).reshape(-1) for s in seqs]
    for i, a in enumerate(arrays):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"pad_sequences: sequence {i} holds {a.dtype}, not integer ids")
    lengths = np.fromiter((min(a.size, max_len) for a in arrays), dtype=np.int64, count=len(seqs))
    flat = np.concatenate([a[a.size - n :] for a, n in zip(arrays, lengths, strict=True)])
    if flat.size and flat.min() < 0:
        row = int(np.searchsorted(np.cumsum(lengths), np.flatnonzero(flat < 0)[0], side="right"))
        raise ValueError(f"pad_sequences: sequence {row} holds a negative item id (ids are >= 0)")
    rows = np.repeat(np.arange(len(seqs)), lengths)
    # column of each kept id: right-aligned, so a sequence of n ids fills columns max_len-n..
    ends = np.cumsum(lengths)
    cols = (
        np.arange(flat.size)
        - np.repeat(ends - lengths, lengths)
        + np.repeat(max_len - lengths, lengths)
    )
    out[rows, cols] = flat
    return out


def as_long_tensor(
    x: np.ndarray | torch.Tensor, device: torch.device | str | None = None
) -> torch.Tensor:
    """`x` as an int64 tensor (on `device` when given)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=torch.long)


def right_align(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each left-padded row of `x` (B, L, ...) to the left edge (right-padded); lengths (B,).

    Used by the recurrent models (packed sequences want right padding).
    """
    b, length = mask.shape
    lengths = mask.sum(1)
    idx = (torch.arange(length, device=x.device)[None, :] + (length - lengths)[:, None]) % length
    if x.dim() > 2:
        idx = idx.view(b, length, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx), lengths


class SequenceRecommender(nn.Module):
    """Base of every next-item model (see the module doc for the padding convention).

    Subclasses implement `encode` (user state from shifted ids); `score` / `loss` follow from it.
    ``n_interests`` > 1 marks a multi-interest model: `user_state` is (B, K, dim) and an item's
    score is its best interest's. ``trainable = False`` marks a model `fit` only counts
    (`Popularity`).
    """

    n_interests: int = 1
    trainable: ClassVar[bool] = True
    uses_context: ClassVar[bool] = False

    def __init__(self, n_items: int, dim: int = 64, max_len: int = 50) -> None:
        super().__init__()
        if n_items < 1 or dim < 1 or max_len < 1:
            raise ValueError(
                f"n_items, dim and max_len must be >= 1, got {n_items}, {dim}, {max_len}"
            )
        self.n_items, self.dim, self.max_len = int(n_items), int(dim), int(max_len)
        self.item_emb = nn.Embedding(self.n_items + 1, self.dim, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    # ------------------------------------------------------------------ inputs
    def prepare(self, seq: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(shifted ids (B, W), mask (B, W) bool): the newest ``max_len`` columns, ids + 1.

        Raises ValueError on a wrong shape or an id outside [-1, n_items).
        """
        seq = as_long_tensor(seq, self.item_emb.weight.device)
        if seq.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}: seq must be (batch, length), got {tuple(seq.shape)}"
            )
        if seq.shape[1] > self.max_len:
            seq = seq[:, -self.max_len :]
        if seq.numel() and (seq.min() < PAD or seq.max() >= self.n_items):
            raise ValueError(
                f"{type(self).__name__}: item ids must lie in [0, {self.n_items}) or be -1 "
                f"(padding), got {int(seq.min())}..{int(seq.max())}"
            )
        return seq + 1, seq != PAD

    def context_tensor(
        self, context: Context, key: str, like: torch.Tensor, required: bool = True
    ) -> torch.Tensor | None:
        """``context[key]`` as a LongTensor cut to `like`'s width ((B, L) keys); negatives -> 0."""
        if context is None or key not in context:
            if required:
                raise ValueError(f"{type(self).__name__} needs context[{key!r}]")
            return None
        t = as_long_tensor(context[key], like.device)
        if t.dim() == 2:
            t = t[:, -like.shape[1] :]
            if t.shape != like.shape:
                raise ValueError(
                    f"context[{key!r}] must be {tuple(like.shape)}, got {tuple(t.shape)}"
                )
        elif len(t) != len(like):
            raise ValueError(f"context[{key!r}] has {len(t)} rows, the batch {len(like)}")
        return t.clamp(min=0)

    def positions(self, mask: torch.Tensor) -> torch.Tensor:
        """(W,) position ids counted from the newest column: max_len - W .. max_len - 1."""
        w = mask.shape[1]
        return torch.arange(self.max_len - w, self.max_len, device=mask.device)

    # ------------------------------------------------------------------ the interface
    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        """User state from shifted ids (B, W) and mask; (B, dim) or (B, K, dim)."""
        raise NotImplementedError

    def user_state(self, seq: np.ndarray | torch.Tensor, context: Context = None) -> torch.Tensor:
        """(B, dim), or (B, K, dim) for a multi-interest model."""
        ids, mask = self.prepare(seq)
        return self.encode(ids, mask, context)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """(n_items, dim) for the whole catalogue, or the vectors of `items` (..., dim)."""
        if items is None:
            return self.item_emb.weight[1:]
        return self.item_emb(as_long_tensor(items, self.item_emb.weight.device) + 1)

    def score_state(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """Scores from a user state: (B, n_items), or (B, M) for candidate ids (B, M)."""
        v = self.item_vectors(items)
        if items is None:
            s = state @ v.T if state.dim() == 2 else (state @ v.T).amax(1)
        else:
            s = (
                torch.einsum("bd,bmd->bm", state, v)
                if state.dim() == 2
                else torch.einsum("bkd,bmd->bkm", state, v).amax(1)
            )
        return s

    def score(
        self,
        seq: np.ndarray | torch.Tensor,
        items: np.ndarray | torch.Tensor | None = None,
        context: Context = None,
    ) -> torch.Tensor:
        """(B, n_items) over the catalogue, or (B, M) for candidate ids `items` (B, M)."""
        if items is not None:
            items = self._check_items(items)
        return self.score_state(self.user_state(seq, context), items)

    def loss(
        self,
        seq: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        context: Context = None,
    ) -> torch.Tensor:
        """Mean full-softmax cross-entropy of the next item `target` (B,) (0-based ids)."""
        target = self._check_target(target, len(seq))
        return F.cross_entropy(self.score(seq, None, context), target)

    # ------------------------------------------------------------------ checks
    def _check_items(self, items: np.ndarray | torch.Tensor) -> torch.Tensor:
        items = as_long_tensor(items, self.item_emb.weight.device)
        if items.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}: items must be (batch, M), got {tuple(items.shape)}"
            )
        if items.numel() and (items.min() < 0 or items.max() >= self.n_items):
            raise ValueError(
                f"{type(self).__name__}: candidate ids must lie in [0, {self.n_items})"
            )
        return items

    def _check_target(self, target: np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
        target = as_long_tensor(target, self.item_emb.weight.device)
        if target.shape != (n,):
            raise ValueError(
                f"{type(self).__name__}: target must be ({n},), got {tuple(target.shape)}"
            )
        if n and (target.min() < 0 or target.max() >= self.n_items):
            raise ValueError(f"{type(self).__name__}: target ids must lie in [0, {self.n_items})")
        return target

    def sample_items(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Uniform random item ids (0-based) from torch's generator (seeded by `fit`)."""
        return torch.randint(0, self.n_items, shape, device=device)

    def sampled_candidates(self, target: torch.Tensor, n_negatives: int) -> torch.Tensor:
        """(B, 1 + n_negatives): each row's target, then uniform random items (`sample_items`)."""
        neg = self.sample_items((len(target), n_negatives), target.device)
        return torch.cat([target[:, None], neg], 1)


def sampled_cross_entropy(logits: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of column 0 (the target) of `logits` over candidates `cand` (B, M);
    a sampled negative equal to its row's target is left out (its logit set to -inf)."""
    clash = cand == cand[:, :1]
    clash[:, 0] = False
    logits = logits.masked_fill(clash, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(cand), dtype=torch.long, device=cand.device))


class PairwiseRecommender(SequenceRecommender):
    """A model that scores (user, candidate) pairs with a network (DIN, STAR, PEPNet).

    Subclasses implement `pair_score` (B, M). Full-catalogue scores are computed in chunks of
    ``chunk_items`` candidates. `loss` is a sampled softmax: the target against ``n_negatives``
    uniform random items per row (a full softmax would run the network on every item per
    example); a negative that equals the target is masked out.
    """

    chunk_items: int = 512
    n_negatives: int = 50

    def pair_score(
        self, ids: torch.Tensor, mask: torch.Tensor, items: torch.Tensor, context: Context
    ) -> torch.Tensor:
        """Scores (B, M) of 0-based candidate ids `items` for shifted ids (B, W) and mask."""
        raise NotImplementedError

    def chunk_size(self, batch: int, width: int) -> int:
        """Candidates scored at once for a (batch, width) input (``chunk_items`` here)."""
        return self.chunk_items

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        """The candidate-free part of the user state (see each model); not what `score` uses."""
        e = self.item_emb(ids) * mask[..., None]
        return e.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    def score(
        self,
        seq: np.ndarray | torch.Tensor,
        items: np.ndarray | torch.Tensor | None = None,
        context: Context = None,
    ) -> torch.Tensor:
        ids, mask = self.prepare(seq)
        if items is not None:
            return self.pair_score(ids, mask, self._check_items(items), context)
        every = torch.arange(self.n_items, device=ids.device)
        chunks = [
            self.pair_score(ids, mask, part.expand(len(ids), -1), context)
            for part in every.split(self.chunk_size(*ids.shape))
        ]
        return torch.cat(chunks, 1)

    def loss(
        self,
        seq: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        context: Context = None,
    ) -> torch.Tensor:
        """Sampled-softmax cross-entropy: the target (column 0) against uniform negatives."""
        ids, mask = self.prepare(seq)
        target = self._check_target(target, len(ids))
        cand = self.sampled_candidates(target, self.n_negatives)
        return sampled_cross_entropy(self.pair_score(ids, mask, cand, context), cand)


__all__ = [
    "PAD",
    "Context",
    "PairwiseRecommender",
    "SequenceRecommender",
    "as_long_tensor",
    "pad_sequences",
    "right_align",
    "sampled_cross_entropy",
]
