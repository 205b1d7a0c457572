"""`CandidateGenerator`'s draw on a torch device, from given uniforms (issue 16).

The device-resident Session-v0 vector env (`envs.session_device`) retrieves every slot's
candidates inside one fixed-shape step that a CUDA graph can replay, so the draw takes its
uniforms as an input (no generator calls inside) and redraws duplicates for a fixed number of
rounds; `DeviceCandidates.distinct` finishes the rare rows that still repeat an item, outside the
step. Same rule and distribution as `simulators.candidates.CandidateGenerator` (tested).
"""

from __future__ import annotations

import numpy as np
import torch

from recgym.simulators.candidates import CandidateGenerator

DEDUP_ROUNDS = 6
"""Rounds of duplicate redraws inside the fixed-shape step (more run after it if needed)."""
MAX_DEDUP_ROUNDS = 100


class DeviceCandidates:
    """`CandidateGenerator`'s draw on the device from given uniforms: from the categories of
    the user's history, by popularity and uniformly, then duplicates within a row redrawn."""

    def __init__(self, generator: CandidateGenerator, device: torch.device) -> None:
        def on(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device)

        self.device = device
        self.n = generator.n_candidates
        self.n_hist = int(round(self.n * generator.history_share))
        self.n_pop = int(round(self.n * generator.popular_share))
        self.n_items = generator.catalogue.n_items
        self.category = on(np.asarray(generator.catalogue.category, dtype=np.int64))
        self.by_category = on(generator._by_category.astype(np.int64))
        self.offsets = on(generator._offsets.astype(np.int64))
        self.pop_cdf = on(generator._pop_cdf.astype(np.float64))

    @property
    def n_uniforms(self) -> int:
        """Uniforms one row takes: 3 per history slot, 1 per other slot, then the rounds'."""
        return 2 * self.n_hist + self.n + DEDUP_ROUNDS * self.n

    def popular(self, u: torch.Tensor) -> torch.Tensor:
        """Items by popularity from uniforms `u`: ``searchsorted(cdf, u)`` as the host's."""
        return torch.searchsorted(self.pop_cdf, u.contiguous()).clamp(max=self.n_items - 1)

    def item(self, u: torch.Tensor) -> torch.Tensor:
        """Uniformly random items from uniforms `u`."""
        return (u * self.n_items).long().clamp(max=self.n_items - 1)

    def __call__(self, history: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H) history item ids (-1 padded, newest last), (B, n_uniforms) uniforms -> (B, n)
        int64 candidates and (B,) bool: the rows that still repeat an item."""
        b, h = history.shape
        n_hist, n_pop = self.n_hist, self.n_pop
        u_pick, u_within, u_fill = (
            u[:, :n_hist],
            u[:, n_hist : 2 * n_hist],
            u[:, 2 * n_hist : 3 * n_hist],
        )
        valid = history >= 0
        n_valid = valid.sum(dim=1, keepdim=True)
        col = ((h - n_valid) + (u_pick * n_valid).long()).clamp(max=h - 1)
        seed_cat = self.category[torch.gather(history, 1, col).clamp(min=0)]
        lo, hi = self.offsets[seed_cat], self.offsets[seed_cat + 1]
        within = lo + (u_within * (hi - lo)).long()
        from_hist = self.by_category[within.clamp(max=self.n_items - 1)]
        from_hist = torch.where(n_valid > 0, from_hist, self.popular(u_fill))
        start = 3 * n_hist
        popular = self.popular(u[:, start : start + n_pop])
        uniform = self.item(u[:, start + n_pop : 2 * n_hist + self.n])
        cand = torch.cat([from_hist, popular, uniform], dim=1)
        start = 2 * n_hist + self.n
        for r in range(DEDUP_ROUNDS):
            repeat = self.repeats(cand)
            draws = self.item(u[:, start + r * self.n : start + (r + 1) * self.n])
            cand = torch.where(repeat, draws, cand)
        return cand, self.repeats(cand).any(dim=1)

    @staticmethod
    def repeats(cand: torch.Tensor) -> torch.Tensor:
        """(B, n) bool: the entries that repeat an earlier one of their row (stable sort)."""
        values, order = torch.sort(cand, dim=1, stable=True)
        repeat = torch.zeros_like(cand, dtype=torch.bool)
        return repeat.scatter_(1, order[:, 1:], values[:, 1:] == values[:, :-1])

    def distinct(self, cand: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """`cand` with repeats redrawn (from `gen`) in rounds until every row is distinct."""
        for _ in range(MAX_DEDUP_ROUNDS):
            repeat = self.repeats(cand)
            if not bool(repeat.any()):
                return cand
            u = torch.rand(cand.shape, generator=gen, device=self.device, dtype=torch.float64)
            cand = torch.where(repeat, self.item(u), cand)
        raise RuntimeError(f"candidates still repeat after {MAX_DEDUP_ROUNDS} rounds of redraws")


__all__ = ["DEDUP_ROUNDS", "MAX_DEDUP_ROUNDS", "DeviceCandidates"]
