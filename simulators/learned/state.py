"""What the learned simulator remembers per user: histories, category counts, user-author pairs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recgym.simulators.arrays import add_at

from .config import SIGNALS


@dataclass(kw_only=True)
class PairCounts:
    """Sparse per-(user, author) counts: exposures, clicks, long views and follows.

    Stored as sorted keys ``user * n_authors + author`` with a (M, 4) float32 row each, so a
    population of many users and authors costs memory only for pairs that ever met. Pairs met
    for the first time go to a small sorted side table that is merged into the main one when
    it outgrows ``max(1024, M / 16)`` rows: inserting into the main arrays on every step would
    copy all M rows each time (the cost that dominated a single-user env step).
    """

    n_authors: int
    keys: np.ndarray  # (M,) int64, sorted, unique
    values: np.ndarray  # (M, 4) float32
    new_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    new_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.float32))

    @classmethod
    def from_pairs(cls, n_authors: int, keys: np.ndarray, values: np.ndarray) -> PairCounts:
        """Sum `values` (Q, 4) over duplicate `keys` (Q,) into a table."""
        uniq, inverse = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
        sums = np.zeros((len(uniq), 4), dtype=np.float64)
        add_at(sums, (inverse.ravel(),), values)
        return cls(n_authors=n_authors, keys=uniq, values=sums.astype(np.float32))

    def compact(self) -> PairCounts:
        """Merge the side table into the main arrays (in place); returns self."""
        if len(self.new_keys):
            keys = np.concatenate([self.keys, self.new_keys])
            order = np.argsort(keys, kind="stable")
            self.keys = keys[order]
            self.values = np.concatenate([self.values, self.new_values])[order]
            self.new_keys = self.new_keys[:0]
            self.new_values = self.new_values[:0]
        return self

    def copy(self) -> PairCounts:
        self.compact()
        return PairCounts(
            n_authors=self.n_authors, keys=self.keys.copy(), values=self.values.copy()
        )

    def take(self, users: np.ndarray) -> PairCounts:
        """The pairs of `users`, re-keyed so that users[i] becomes user i."""
        self.compact()
        users = np.asarray(users, dtype=np.int64)
        lo = np.searchsorted(self.keys, users * self.n_authors)
        hi = np.searchsorted(self.keys, (users + 1) * self.n_authors)
        slot, idx = expand_ranges(lo, hi)
        return PairCounts(
            n_authors=self.n_authors,
            keys=slot * self.n_authors + self.keys[idx] % self.n_authors,
            values=self.values[idx].copy(),
        )

    def lookup(self, users: np.ndarray, authors: np.ndarray) -> np.ndarray:
        """(B,) users and (B, K) authors -> (B, K, 4) counts (zeros for pairs never met)."""
        q = users[:, None] * self.n_authors + authors
        out = np.zeros(q.shape + (4,), dtype=np.float32)
        for keys, values in ((self.keys, self.values), (self.new_keys, self.new_values)):
            idx, found = _find(keys, q)
            out[found] = values[idx[found]]  # a pair lives in exactly one of the two tables
        return out

    def add(self, users: np.ndarray, authors: np.ndarray, x: np.ndarray) -> None:
        """Add `x` (B, K, 4) to the pairs (users[b], authors[b, k]); new pairs are inserted."""
        new = PairCounts.from_pairs(
            self.n_authors, (users[:, None] * self.n_authors + authors).ravel(), x.reshape(-1, 4)
        )
        keys, values = new.keys, new.values
        for table_keys, table_values in (
            (self.keys, self.values),
            (self.new_keys, self.new_values),
        ):
            idx, found = _find(table_keys, keys)
            table_values[idx[found]] += values[found]
            keys, values = keys[~found], values[~found]
        if len(keys):
            idx = np.searchsorted(self.new_keys, keys)
            self.new_keys = np.insert(self.new_keys, idx, keys)
            self.new_values = np.insert(self.new_values, idx, values, axis=0)
            if len(self.new_keys) > max(1024, len(self.keys) // 16):
                self.compact()


def _find(keys: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `q` in the sorted unique `keys` and whether each is present."""
    if len(keys) == 0:
        return np.zeros(q.shape, dtype=np.int64), np.zeros(q.shape, dtype=bool)
    idx = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return idx, keys[idx] == q


@dataclass(kw_only=True)
class UserState:
    """What the response model knows about each user besides static features (all (U, ...)).

    `counts[u, c]` are the user's exposures, clicks and long views of leaf category c so far;
    `totals[u]` the same over all categories; `pairs` the user-author counts. Nothing decays.
    """

    clicked: np.ndarray  # (U, H) int64 last clicked items, newest last, -1 padded
    skipped: np.ndarray  # (U, H) int64 last exposed but not clicked items, newest last
    counts: np.ndarray  # (U, C, 3) float32
    totals: np.ndarray  # (U, 3) float32
    pairs: PairCounts

    def copy(self) -> UserState:
        return UserState(
            clicked=self.clicked.copy(),
            skipped=self.skipped.copy(),
            counts=self.counts.copy(),
            totals=self.totals.copy(),
            pairs=self.pairs.copy(),
        )

    def take(self, users: np.ndarray) -> UserState:
        """The state of `users` as a new population: row i is a copy of users[i]."""
        return UserState(
            clicked=self.clicked[users],
            skipped=self.skipped[users],
            counts=self.counts[users],
            totals=self.totals[users],
            pairs=self.pairs.take(users),
        )


@dataclass(kw_only=True)
class SessionState:
    """Per-user state of the current session (what the leave and context features need)."""

    count: np.ndarray  # (U,) exposures so far
    sums: np.ndarray  # (U, n) float64 sums of the leave model's `signal_names`
    recent: np.ndarray  # (U, W) int64 categories of the last W exposures, newest last, -1 pad

    @classmethod
    def empty(cls, n: int, window: int, n_signals: int = len(SIGNALS)) -> SessionState:
        return cls(
            count=np.zeros(n, dtype=np.int64),
            sums=np.zeros((n, n_signals)),
            recent=np.full((n, window), -1, dtype=np.int64),
        )


def expand_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges [lo[i], hi[i]): (i repeated per element, the elements), concatenated."""
    size = hi - lo
    owner = np.repeat(np.arange(len(lo)), size)
    offset = np.arange(len(owner)) - np.repeat(np.cumsum(size) - size, size)
    return owner, lo[owner] + offset


def push_history(history: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Append each row's `new` items (-1 = none) to `history`, keeping order and length."""
    merged = np.concatenate([history, new], axis=1)
    order = np.argsort(merged >= 0, axis=1, kind="stable")
    return np.take_along_axis(merged, order, axis=1)[:, -history.shape[1] :]
