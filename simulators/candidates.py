"""Candidate generation: the retrieval stage in front of every ranking decision.

Candidates come from what a backend can observe (the user's consumption history and item
popularity), never from a backend's hidden truth, so the same generator serves the world and a
learned simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recgym.simulators.protocol import Catalogue

POP_BUCKETS = 2**14
"""Buckets of the popularity sampler's lookup table (`CandidateGenerator._popular`)."""


@dataclass(kw_only=True)
class CandidateGenerator:
    """Draws `n_candidates` distinct items per user: from the categories of the user's history,
    by popularity, and uniformly at random.

    Slots a user cannot fill from history (no history yet) are filled by popularity. Duplicates
    within a row are redrawn uniformly until the row is distinct.
    """

    catalogue: Catalogue
    n_candidates: int = 50
    history_share: float = 0.5
    popular_share: float = 0.3
    _by_category: np.ndarray = field(init=False, repr=False)
    _offsets: np.ndarray = field(init=False, repr=False)
    _pop_cdf: np.ndarray = field(init=False, repr=False)
    _pop_start: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_candidates > self.catalogue.n_items:
            raise ValueError(
                f"n_candidates={self.n_candidates} exceeds the catalogue's "
                f"{self.catalogue.n_items} items"
            )
        cat = self.catalogue.category
        self._by_category = np.argsort(cat, kind="stable")
        counts = np.bincount(cat, minlength=self.catalogue.n_categories)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._pop_cdf = np.cumsum(self.catalogue.popularity)
        self._pop_cdf /= self._pop_cdf[-1]
        # where each of POP_BUCKETS equal slices of [0, 1) starts in the cdf (`_popular`)
        self._pop_start = np.searchsorted(self._pop_cdf, np.arange(POP_BUCKETS) / POP_BUCKETS)

    def _popular(self, u: np.ndarray) -> np.ndarray:
        """Items drawn by popularity from uniforms `u` in [0, 1): exactly
        ``np.searchsorted(self._pop_cdf, u)``, 5-10x faster for a few thousand draws.

        A lookup of u's bucket gives the count of cdf entries below the bucket's start (exact:
        ``u * POP_BUCKETS`` is exact for a power of two), then every draw steps up while its cdf
        entry is below it; the few items whose cdf lies inside one bucket bound the steps.
        """
        if u.size < 256:  # a few draws: searchsorted's call is cheaper than the loop's setup
            return np.searchsorted(self._pop_cdf, u)
        idx = self._pop_start[(u * POP_BUCKETS).astype(np.int64)]
        cdf = self._pop_cdf
        while True:
            below = cdf[idx] < u
            if not below.any():
                return idx
            idx += below

    def __call__(self, history: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, H) history item ids (-1 padded) -> (B, n_candidates) int64 candidate item ids."""
        b = history.shape[0]
        n = self.n_candidates
        n_hist = int(round(n * self.history_share))
        n_pop = int(round(n * self.popular_share))
        n_rand = n - n_hist - n_pop
        n_items = self.catalogue.n_items
        # history slots: a random consumed item's category, then a random item of that category
        valid = history >= 0
        has = valid.any(axis=1)
        pick = rng.random((b, n_hist)) * valid.sum(axis=1, keepdims=True)
        # index of the pick-th valid entry: valid entries are right-aligned (newest last)
        first_valid = history.shape[1] - valid.sum(axis=1, keepdims=True)
        col = np.minimum(first_valid + pick.astype(np.int64), history.shape[1] - 1)
        seed_items = history[np.arange(b)[:, None], col]
        seed_cat = self.catalogue.category[np.maximum(seed_items, 0)]
        lo, hi = self._offsets[seed_cat], self._offsets[seed_cat + 1]
        within = lo + (rng.random((b, n_hist)) * (hi - lo)).astype(np.int64)
        from_hist = self._by_category[np.minimum(within, n_items - 1)]
        fill_u = rng.random((b, n_hist))  # drawn for every row: the stream stays aligned
        empty = ~has
        if empty.any():  # rows without history take popular items (searchsorted only there)
            from_hist[empty] = self._popular(fill_u[empty])
        popular = self._popular(rng.random((b, n_pop)))
        uniform = rng.integers(0, n_items, (b, n_rand))
        cand = np.concatenate([from_hist, popular, uniform], axis=1).astype(np.int64)
        return _replace_duplicates(np.minimum(cand, n_items - 1), n_items, rng)

    def for_categories(self, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Search results: (B,) query categories -> (B, n_candidates) items, 80% from the query's
        category (uniform within it), the rest by popularity (search engines return near misses)."""
        b, n = len(categories), self.n_candidates
        n_items = self.catalogue.n_items
        lo, hi = self._offsets[categories][:, None], self._offsets[categories + 1][:, None]
        within = lo + (rng.random((b, n)) * (hi - lo)).astype(np.int64)
        relevant = self._by_category[np.minimum(within, n_items - 1)]
        popular = self._popular(rng.random((b, n)))
        empty = (hi == lo) | (rng.random((b, n)) >= 0.8)
        cand = np.where(empty, popular, relevant).astype(np.int64)
        return _replace_duplicates(np.minimum(cand, n_items - 1), n_items, rng)


def _replace_duplicates(cand: np.ndarray, n_items: int, rng: np.random.Generator) -> np.ndarray:
    """Redraw duplicate entries of each row uniformly until every row holds distinct items.

    Each round redraws, in row-major order, every entry that repeats an earlier one of its row
    (in sorted order); after the first round only the rows that had duplicates are checked
    again (the others cannot gain any), which draws exactly what checking every row would.
    The rows are ordered by one ``np.sort`` of ``item << bits | column`` keys: the order of a
    stable argsort of the items (ties by column), several times faster than that argsort.
    """
    cand = cand.copy()
    n = cand.shape[1]
    bits = max(1, (n - 1).bit_length())
    column = np.arange(n, dtype=np.int64)
    mask = (1 << bits) - 1
    active = np.arange(cand.shape[0])
    sub = cand
    for _ in range(100):
        keys = np.sort((sub << bits) | column, axis=1)
        s = keys >> bits
        dup_sorted = s[:, 1:] == s[:, :-1]
        if not dup_sorted.any():
            return cand
        dup = np.zeros(sub.shape, dtype=bool)
        rows, pos = np.nonzero(dup_sorted)
        dup[rows, keys[rows, pos + 1] & mask] = True
        sub[dup] = rng.integers(0, n_items, len(rows))
        if sub is not cand:
            cand[active] = sub
        had = dup.any(axis=1)
        active = active[had]
        sub = cand[active]
    raise RuntimeError("could not draw distinct candidates; is n_candidates close to n_items?")
