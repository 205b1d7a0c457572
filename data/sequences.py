"""Per-user click sequences for sequential recommendation, and the RDRSR paper's preprocessing.

A `SequenceSet` holds every user's chronological click sequence in one flat array (CSR layout:
``items[offsets[u]:offsets[u + 1]]`` is user u's sequence, oldest first), with items renumbered
0..n_items-1 and the original ids kept beside. Sequences from the ground-truth world carry, per
click, the click's *true interest* (built in `recgym.envs.interest_allocation`, since `data`
imports nothing of ours); dataset sequences carry none.

`paper_sequences` applies the RDRSR paper's preprocessing (section 4.1) to a loaded `Dataset`,
each step through `data.preprocess` so the dataset's report lists what it removed:

Last.fm's "clicks" are its tag assignments (user_taggedartists*.dat, the one timestamped event
table of hetrec2011-2k; the listening counts have no time), so a Last.fm sequence is the order in
which a user tagged artists. The paper's Table 1 sizes (1,860 users, 2,824 items, 583,933
interactions) match neither table; the paper does not say which it used.

1. `implicit_feedback`: "clicks only". ML-100k keeps *every* rating (``min_rating=1``): the
   paper follows NCF's preprocessing, and its Table 1 counts all 100,000 ratings as
   interactions. Last.fm's tag assignments and Foursquare's check-ins are positive already.
2. `dedup` on (user, item, timestamp): Last.fm tags one artist with several tags at once (one
   row per tag, same day); one tagging event is one click. Repeated visits at different times
   (Foursquare check-ins at the same venue) are kept: they are clicks.
3. `sort_by_time` (ties in file order).
4. `k_core`: ML-100k and Foursquare 10-core, Last.fm 5-core (`PAPER_CORE`). The paper says
   "filter items and users interacted less ten times"; we read it as the usual iterative core.

Then every user with fewer than ``min_length`` clicks would be an error, but the core already
guarantees ``k >= min_length`` clicks per user (leave-one-out needs 3: train, validation, test).

`cooccurrence_vectors` gives a dataset's items vectors from their co-clicks (the reward's item
vectors of `recgym/InterestAllocation-v0` on a dataset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .preprocess import dedup, implicit_feedback, k_core, sort_by_time
from .schema import DataError, Dataset

PAPER_CORE: dict[str, int] = {"ml-100k": 10, "foursquare": 10, "lastfm": 5}
"""The paper's k-core per dataset format (section 4.1)."""

MIN_LENGTH = 3
"""Shortest usable sequence: leave-one-out needs one training, one validation and one test item."""


@dataclass
class SequenceSet:
    """Every user's chronological click sequence (CSR), items renumbered 0..n_items-1.

    items: (N,) int64 new item ids, users' sequences one after the other, oldest first;
    offsets: (U + 1,) int64, user u's clicks are ``items[offsets[u]:offsets[u + 1]]``;
    user_ids: (U,) the users' original ids; item_ids: (n_items,) original id of each new id;
    interest: (N,) int64 true interest of each click (-1: none), or None (real data);
    steps: what each preprocessing step removed (dicts, from the dataset's report).
    """

    name: str
    items: np.ndarray
    offsets: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray
    interest: np.ndarray | None = None
    steps: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.user_ids = np.asarray(self.user_ids)
        self.item_ids = np.asarray(self.item_ids)
        if self.offsets.ndim != 1 or len(self.offsets) != len(self.user_ids) + 1:
            raise ValueError(f"{self.name}: offsets must have one entry per user plus one")
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.items):
            raise ValueError(f"{self.name}: offsets must run from 0 to len(items)")
        if (np.diff(self.offsets) < 0).any():
            raise ValueError(f"{self.name}: offsets must be non-decreasing")
        bad = (self.items < 0) | (self.items >= len(self.item_ids))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            user = int(np.searchsorted(self.offsets, row, side="right") - 1)
            raise ValueError(
                f"{self.name}: unknown item id {int(self.items[row])} in user "
                f"{self.user_ids[user].tolist()!r}'s sequence "
                f"(position {row - self.offsets[user]}); "
                f"item ids must lie in 0..{len(self.item_ids) - 1}"
            )
        if self.interest is not None:
            self.interest = np.asarray(self.interest, dtype=np.int64)
            if self.interest.shape != self.items.shape:
                raise ValueError(f"{self.name}: interest must have one label per click")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_lists(
        cls,
        sequences: Sequence[Sequence[int] | np.ndarray],
        n_items: int,
        *,
        name: str = "sequences",
        user_ids: Sequence | np.ndarray | None = None,
        interest: Sequence[Sequence[int] | np.ndarray] | None = None,
        min_length: int = MIN_LENGTH,
    ) -> SequenceSet:
        """From one list of 0-based item ids per user (oldest first). Raises `ValueError` on a
        sequence shorter than `min_length` or an item id outside 0..n_items-1 (naming both)."""
        seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        if not seqs:
            raise ValueError(f"{name}: no sequences")
        lengths = np.array([len(s) for s in seqs])
        uids = np.arange(len(seqs)) if user_ids is None else np.asarray(user_ids)
        short = np.flatnonzero(lengths < min_length)
        if len(short):
            u = int(short[0])
            raise ValueError(
                f"{name}: user {uids[u].tolist()!r}'s sequence has {lengths[u]} clicks, "
                f"fewer than the minimum {min_length} ({len(short)} users are that short)"
            )
        labels = None
        if interest is not None:
            labels = np.concatenate([np.asarray(x, dtype=np.int64).reshape(-1) for x in interest])
        return cls(
            name=name,
            items=np.concatenate(seqs),
            offsets=np.r_[0, np.cumsum(lengths)],
            user_ids=uids,
            item_ids=np.arange(int(n_items)),
            interest=labels,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        """User `user`'s (an index 0..n_users-1) clicks, oldest first."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def user_sequences(self) -> list[np.ndarray]:
        """One array of item ids per user, oldest first (what `SequenceData.from_user_sequences`
        of `agents.sequence` takes)."""
        return np.split(self.items, self.offsets[1:-1])

    def window(
        self, end: np.ndarray, length: int, users: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, length) item ids and true interests of the `length` clicks before position `end`
        (exclusive; per-sequence positions) of each of `users` (default all): left-padded with
        -1, newest last. Interests are -1 where unknown or padded."""
        users = np.arange(self.n_users) if users is None else np.asarray(users, dtype=np.int64)
        end = np.broadcast_to(np.asarray(end, dtype=np.int64), users.shape)
        pos = end[:, None] - length + np.arange(length)[None, :]  # (B, L) per-sequence position
        valid = pos >= 0
        flat = self.offsets[users][:, None] + np.maximum(pos, 0)
        items = np.where(valid, self.items[flat], -1)
        if self.interest is None:
            return items, np.full_like(items, -1)
        return items, np.where(valid, self.interest[flat], -1)

    def first_clicks(self, min_length: int = MIN_LENGTH) -> SequenceSet:
        """Each user's first click on each item only (later repeats dropped, order kept); users
        left with fewer than `min_length` clicks are dropped. `steps` records both."""
        owner = np.repeat(np.arange(self.n_users), self.lengths)
        key = owner * self.n_items + self.items
        _, first = np.unique(key, return_index=True)
        keep = np.zeros(len(self.items), dtype=bool)
        keep[first] = True
        lengths = np.bincount(owner[keep], minlength=self.n_users)
        ok = lengths >= min_length
        keep &= ok[owner]
        new_lengths = lengths[ok]
        steps = [
            *self.steps,
            {
                "step": "first_clicks",
                "reason": "kept each user's first click on an item; users left with fewer "
                f"than {min_length} clicks dropped",
                "rows_before": len(self.items),
                "rows_after": int(keep.sum()),
                "removed": int(len(self.items) - keep.sum()),
                "users_dropped": int((~ok).sum()),
            },
        ]
        return SequenceSet(
            name=self.name,
            items=self.items[keep],
            offsets=np.r_[0, np.cumsum(new_lengths)],
            user_ids=self.user_ids[ok],
            item_ids=self.item_ids,
            interest=None if self.interest is None else self.interest[keep],
            steps=steps,
        )

    def popularity(self, upto: np.ndarray | None = None) -> np.ndarray:
        """(n_items,) click counts, over each user's first `upto[u]` clicks when given."""
        if upto is None:
            return np.bincount(self.items, minlength=self.n_items)
        pos = np.arange(len(self.items)) - np.repeat(self.offsets[:-1], self.lengths)
        keep = pos < np.repeat(np.asarray(upto, dtype=np.int64), self.lengths)
        return np.bincount(self.items[keep], minlength=self.n_items)


def from_dataset(
    ds: Dataset, *, name: str | None = None, min_length: int = MIN_LENGTH
) -> SequenceSet:
    """Sequences of a filtered Dataset's rows in their current order (call `sort_by_time` first).

    Items are renumbered 0..n-1 in increasing original id; users keep their order of first
    appearance. Raises `DataError` when no rows are left and `ValueError` when a user has
    fewer than `min_length` clicks.
    """
    label = name or ds.format
    inter = ds.interactions
    if inter.empty:
        raise DataError(f"{label}: no interactions left to build sequences from", file=ds.source)
    item_ids, items = np.unique(inter["item_id"].to_numpy(), return_inverse=True)
    uids, first, inverse, counts = np.unique(
        inter["user_id"].to_numpy(), return_index=True, return_inverse=True, return_counts=True
    )
    by_first = np.argsort(first, kind="stable")  # users in order of first appearance
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(len(by_first))
    rows = np.lexsort((np.arange(len(inter)), rank[inverse]))  # grouped by user, row order kept
    lengths = counts[by_first]
    short = np.flatnonzero(lengths < min_length)
    if len(short):
        u = int(short[0])
        raise ValueError(
            f"{label}: user {uids[by_first][u].tolist()!r} has {lengths[u]} clicks, fewer than the "
            f"minimum {min_length} ({len(short)} users are that short); raise the k-core"
        )
    steps = [
        {
            "step": f.step,
            "reason": f.reason,
            "rows_before": f.rows_before,
            "rows_after": f.rows_after,
            "removed": f.removed,
            **f.details,
        }
        for f in ds.report.filters
    ]
    return SequenceSet(
        name=label,
        items=items[rows],
        offsets=np.r_[0, np.cumsum(lengths)],
        user_ids=uids[by_first],
        item_ids=item_ids,
        steps=steps,
    )


def paper_sequences(
    ds: Dataset,
    *,
    core: int | None = None,
    min_length: int = MIN_LENGTH,
    repeats: bool = True,
) -> SequenceSet:
    """The RDRSR paper's preprocessing of `ds` (module doc), then `from_dataset`.

    `core` overrides the paper's k (`PAPER_CORE`, by `ds.format`). ``repeats=False`` keeps only
    each user's first click on an item (a reported `dedup` on (user_id, item_id) after the time
    sort, before the core), so no held-out item is one the user has seen. Raises `DataError`
    naming the dataset when nothing survives the core.
    """
    if core is None:
        if ds.format not in PAPER_CORE:
            raise ValueError(
                f"the RDRSR paper has no preprocessing for format {ds.format!r}; "
                f"expected one of {', '.join(PAPER_CORE)} (or pass core=)"
            )
        core = PAPER_CORE[ds.format]
    kwargs = {"min_rating": 1} if ds.format == "ml-100k" else {}
    out = implicit_feedback(ds, **kwargs)
    out = dedup(out)
    out = sort_by_time(out)
    if not repeats:
        out = dedup(out, keys=("user_id", "item_id"))
    out = k_core(out, core)
    if out.interactions.empty:
        raise DataError(
            f"{ds.format}: no interactions survive the {core}-core "
            f"({len(ds.interactions):,} rows before filtering)",
            file=ds.source,
        )
    return from_dataset(out, name=ds.format, min_length=min_length)


def cooccurrence_vectors(
    seqs: SequenceSet, dim: int = 16, window: int = 5, holdout: int = 2
) -> np.ndarray:
    """(n_items, dim) item vectors of a dataset: truncated SVD of the positive PMI of clicks
    within `window` of each other, over each sequence without its last `holdout` clicks (the
    validation and test items never shape the reward). Rows scaled to mean norm 2 (the world's
    latent vectors' norm). Items never co-clicked get a zero vector."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import svds

    n = seqs.n_items
    pos = np.arange(len(seqs.items)) - np.repeat(seqs.offsets[:-1], seqs.lengths)
    usable = pos < np.repeat(seqs.lengths - holdout, seqs.lengths)
    owner = np.repeat(np.arange(seqs.n_users), seqs.lengths)
    rows, cols = [], []
    for w in range(1, window + 1):
        same = (owner[w:] == owner[:-w]) & usable[w:] & usable[:-w]
        rows += [seqs.items[:-w][same], seqs.items[w:][same]]
        cols += [seqs.items[w:][same], seqs.items[:-w][same]]
    r, c = np.concatenate(rows), np.concatenate(cols)
    m = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)).tocsr()
    m.sum_duplicates()
    total, row_sum = m.sum(), np.asarray(m.sum(axis=1)).ravel()
    m = m.tocoo()
    pmi = np.log(m.data * total / (row_sum[m.row] * row_sum[m.col]))
    keep = pmi > 0
    ppmi = coo_matrix((pmi[keep], (m.row[keep], m.col[keep])), shape=(n, n)).tocsr()
    k = max(1, min(dim, n - 2))
    u, s, _ = svds(ppmi, k=k, random_state=0)
    vec = (u * np.sqrt(s)).astype(np.float32)
    norm = np.linalg.norm(vec, axis=1)
    scale = 2.0 / max(float(norm[norm > 0].mean()) if (norm > 0).any() else 1.0, 1e-9)
    out = np.zeros((n, dim), dtype=np.float32)
    out[:, :k] = vec * scale
    return out


__all__ = [
    "MIN_LENGTH",
    "PAPER_CORE",
    "SequenceSet",
    "cooccurrence_vectors",
    "from_dataset",
    "paper_sequences",
]
