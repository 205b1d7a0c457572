"""The response model (click and click-conditional behaviours, watch ratio) and its vocabulary."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import AFFINITY_DIM, CONDITIONAL, CONTEXT_DIM, LONG_VIEW_MS, SimulatorConfig


@dataclass(kw_only=True)
class Vocab:
    """Embedding rows (0 = unknown) of users and catalogue ids, and the tabs seen in training."""

    user_row: np.ndarray  # (U,)
    item_row: np.ndarray  # (I,)
    author_row: np.ndarray  # (A,)
    category_row: np.ndarray  # (C,)
    top_row: np.ndarray  # (T,)
    tabs: np.ndarray  # sorted raw tab codes; tab row = 1 + index, 0 = unseen tab

    @staticmethod
    def rows(counts: np.ndarray, minimum: int = 1) -> np.ndarray:
        known = counts >= minimum
        return np.where(known, np.cumsum(known), 0).astype(np.int64)

    def tab_rows(self, tab: np.ndarray) -> np.ndarray:
        tab = np.asarray(tab, dtype=np.int64)
        if len(self.tabs) == 0:
            return np.zeros(tab.shape, dtype=np.int64)
        idx = np.clip(np.searchsorted(self.tabs, tab), 0, len(self.tabs) - 1)
        return np.where(self.tabs[idx] == tab, idx + 1, 0).astype(np.int64)

    def sizes(self) -> dict[str, int]:
        return {
            "n_users": int(self.user_row.max(initial=0)) + 1,
            "n_items": int(self.item_row.max(initial=0)) + 1,
            "n_authors": int(self.author_row.max(initial=0)) + 1,
            "n_categories": int(self.category_row.max(initial=0)) + 1,
            "n_tops": int(self.top_row.max(initial=0)) + 1,
            "n_tabs": len(self.tabs) + 1,
        }


class ResponseModel(nn.Module):
    """Multi-behaviour response model: one user, one item -> click and click-conditional heads.

    Inputs per exposure, all as of the start of its request:
    - the user's static features (`user_feature_matrix`);
    - two pooled histories, of the last `history_len` clicked items and of the last
      `history_len` exposed-but-not-clicked ones: the mean of item + leaf-category embeddings,
      log1p of their number, the elementwise product of the mean with the target item's vector,
      and the mean and max of the target's (scaled) dot product with each history item;
    - the item: id, author, leaf and top-category embeddings and `Catalogue.item_features`;
    - the user's affinity to the item's category (`affinity_features`: counts of exposures,
      clicks and long views, in the category and overall);
    - the request's tab embedding (scenario) and the session context (log1p position in session
      / 5, position in request / request_size, same-category exposures among the session's last
      `recent_window` / recent_window).
    Row 0 of every embedding is the shared 'unknown' row (unseen item, author, category, tab).

    Outputs (`split_outputs`): the click logit; for each of CONDITIONAL (long_view, like, follow,
    comment, forward, hate) one logit given no click and one given click; and for each click state
    logits over `ratio_bins` bins of the watch ratio play_time/duration on [0, 1) (`ratio_edges`:
    geometric below 0.1, equal-width above) plus a last class for complete plays. The ratio is
    clipped to [0, 1]: replays (play_time beyond the duration) count as complete plays.

    Loss (`loss`): BCE of the click + for each conditional behaviour the BCE of the head of the
    row's logged click state + the cross-entropy of the ratio class under the row's click state;
    every term is a mean over rows, summed with weight 1.
    """

    def __init__(
        self,
        *,
        n_items: int,
        n_authors: int,
        n_categories: int,
        n_tops: int,
        n_tabs: int,
        n_users: int,
        user_dim: int,
        config: SimulatorConfig,
    ) -> None:
        super().__init__()
        d = config.embedding_dim
        self.user = nn.Embedding(n_users, d)
        self.scale = 1.0 / math.sqrt(d)
        self.n_ratio = config.ratio_bins + 1
        self.item = nn.Embedding(n_items, d)
        self.author = nn.Embedding(n_authors, config.author_dim)
        self.category = nn.Embedding(n_categories, d)
        self.top = nn.Embedding(n_tops, d)
        self.tab = nn.Embedding(n_tabs, config.tab_dim)
        for emb in (self.user, self.item, self.author, self.category, self.top, self.tab):
            nn.init.normal_(emb.weight, std=0.05)
        history_dim = 2 * (2 * d + 3)
        in_dim = (
            user_dim
            + 2 * d
            + 1
            + history_dim
            + 3 * d
            + config.author_dim
            + 3
            + AFFINITY_DIM
            + config.tab_dim
            + CONTEXT_DIM
        )
        layers: list[nn.Module] = []
        for width in config.hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.mlp = nn.Sequential(*layers)
        n_out = 1 + 2 * len(CONDITIONAL) + 2 * self.n_ratio
        self.head = nn.Linear(in_dim, n_out)
        # "wide" per-item and per-author offsets of every output logit, starting at zero
        self.item_bias = nn.Embedding(n_items, n_out)
        self.author_bias = nn.Embedding(n_authors, n_out)
        nn.init.zeros_(self.item_bias.weight)
        nn.init.zeros_(self.author_bias.weight)

    def _pool(
        self, item_rows: torch.Tensor, category_rows: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """History (G, H) rows (negative = padding) and targets (G, M, d) -> (G, M, 2d + 3)."""
        mask = (item_rows >= 0).float()
        emb = self.item(item_rows.clamp(min=0)) + self.category(category_rows)
        emb = emb * mask.unsqueeze(-1)
        n = mask.sum(-1, keepdim=True)  # (G, 1)
        mean = emb.sum(-2) / n.clamp(min=1.0)  # (G, d)
        sims = torch.einsum("gmd,ghd->gmh", target, emb) * self.scale  # (G, M, H)
        sim_mean = sims.sum(-1) / n.clamp(min=1.0)
        sim_max = sims.masked_fill(mask.unsqueeze(1) == 0, -1e4).amax(-1)
        sim_max = torch.where(n > 0, sim_max, torch.zeros_like(sim_max))
        m = target.shape[1]
        return torch.cat(
            [
                mean.unsqueeze(1).expand(-1, m, -1),
                torch.log1p(n).unsqueeze(1).expand(-1, m, -1),
                mean.unsqueeze(1) * target,
                sim_mean.unsqueeze(-1),
                sim_max.unsqueeze(-1),
            ],
            dim=-1,
        )

    def forward(
        self,
        user_row: torch.Tensor,
        user_x: torch.Tensor,
        clicked: tuple[torch.Tensor, torch.Tensor],
        skipped: tuple[torch.Tensor, torch.Tensor],
        item_row: torch.Tensor,
        author_row: torch.Tensor,
        category_row: torch.Tensor,
        top_row: torch.Tensor,
        item_x: torch.Tensor,
        affinity: torch.Tensor,
        tab_row: torch.Tensor,
        context: torch.Tensor,
    ) -> torch.Tensor:
        """N = G * M exposures of G users (M consecutive rows per user) -> (N, n_outputs) logits.

        `clicked` and `skipped` are (item rows, category rows), each (G, H), item rows -1 padded;
        every other input is (N, ...).
        """
        g = clicked[0].shape[0]
        item_emb, cat_emb = self.item(item_row), self.category(category_row)
        target = (item_emb + cat_emb).view(g, -1, item_emb.shape[-1])
        n = len(item_row)
        user_emb = self.user(user_row)
        flat_target = target.reshape(n, -1)
        x = torch.cat(
            [
                user_x,
                user_emb,
                user_emb * flat_target,
                (user_emb * flat_target).sum(-1, keepdim=True) * self.scale,
                self._pool(*clicked, target).reshape(n, -1),
                self._pool(*skipped, target).reshape(n, -1),
                item_emb,
                cat_emb,
                self.top(top_row),
                self.author(author_row),
                item_x,
                affinity,
                self.tab(tab_row),
                context,
            ],
            dim=-1,
        )
        return self.head(self.mlp(x)) + self.item_bias(item_row) + self.author_bias(author_row)

    def split_outputs(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> click logit (N,), conditional logits (N, 6, 2) [no click, click], ratio (N, 2, R)."""
        n_c = len(CONDITIONAL)
        click = out[:, 0]
        cond = out[:, 1 : 1 + 2 * n_c].reshape(-1, n_c, 2)
        ratio = out[:, 1 + 2 * n_c :].reshape(-1, 2, self.n_ratio)
        return click, cond, ratio

    def loss(
        self,
        out: torch.Tensor,
        click: torch.Tensor,
        conditional: torch.Tensor,
        ratio_class: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Multi-task loss (see the class docstring); `conditional` is (N, 6) float labels.
        The per-task losses come back as detached 0-d tensors on the model's device (read
        them with ``.item()``: converting every step would make a GPU fit wait each step)."""
        click_logit, cond, ratio = self.split_outputs(out)
        state = click.long()
        n = len(out)
        l_click = F.binary_cross_entropy_with_logits(click_logit, click)
        # the heads of the logged click state, by gather: its backward (a scatter-add) needs no
        # sort on CUDA, unlike advanced indexing's (what lets `fit._TrainStep` capture the step)
        picked = cond.gather(2, state.view(n, 1, 1).expand(n, cond.shape[1], 1)).squeeze(2)
        l_cond = F.binary_cross_entropy_with_logits(picked, conditional, reduction="none").mean(0)
        by_state = ratio.gather(1, state.view(n, 1, 1).expand(n, 1, ratio.shape[2])).squeeze(1)
        l_ratio = F.cross_entropy(by_state, ratio_class)
        total = l_click + l_cond.sum() + l_ratio
        stats = {"click": l_click.detach(), "ratio": l_ratio.detach()}
        stats.update({name: l_cond[j].detach() for j, name in enumerate(CONDITIONAL)})
        return total, stats


RATIO_FLOOR = 0.001
"""Upper edge of the first watch-ratio bin (0.6 s of a 10-minute video)."""
RATIO_KNEE = 0.1
"""Watch-ratio bins are geometric below this ratio and of equal width above it."""


@functools.lru_cache(maxsize=8)
def ratio_edges(n_bins: int) -> np.ndarray:
    """(n_bins + 1,) edges of the watch-ratio bins on [0, 1]: [0, RATIO_FLOOR), then geometric
    bins up to RATIO_KNEE, then ``n_bins // 2`` equal-width bins up to 1.

    Why not equal width: a clicked 400 s video is typically watched for 5-60 s, a ratio of
    0.01-0.15, which equal bins of 0.05 cannot tell apart (every such view lands in the first
    one or two bins and is replayed at their midpoint, 10-30 s). Geometric bins at the low end
    resolve the short views of long videos; the equal bins above keep the resolution short
    videos need (ratios 0.3-1). With 20 bins: 9 geometric bins of factor 1.67, 10 of 0.09.
    """
    if n_bins < 4:
        raise ValueError(f"ratio_bins must be >= 4, got {n_bins}")
    n_lin = n_bins // 2
    n_geo = n_bins - n_lin - 1
    geo = np.geomspace(RATIO_FLOOR, RATIO_KNEE, n_geo + 1)
    lin = np.linspace(RATIO_KNEE, 1.0, n_lin + 1)[1:]
    edges = np.concatenate([[0.0], geo, lin])
    edges.setflags(write=False)
    return edges


def ratio_class(ratio: np.ndarray, complete: np.ndarray, n_bins: int) -> np.ndarray:
    """The training class of each watch ratio: its `ratio_edges` bin, or n_bins if complete."""
    edges = ratio_edges(n_bins)
    binned = np.clip(np.searchsorted(edges, ratio, side="right") - 1, 0, n_bins - 1)
    return np.where(complete, n_bins, binned).astype(np.int64)


def ratio_values(n_classes: int) -> np.ndarray:
    """Representative ratio of each class: bin midpoints, then 1.0 for complete plays."""
    edges = ratio_edges(n_classes - 1)
    return np.append((edges[:-1] + edges[1:]) / 2, 1.0)


def sample_watch(
    hist: np.ndarray,
    long_view: np.ndarray,
    duration: np.ndarray,
    u_class: np.ndarray,
    u_within: np.ndarray,
) -> np.ndarray:
    """Watch ms drawn from ratio histograms `hist` (B, K, R) restricted to agree with long_view.

    The long-view threshold ratio is t = min(duration, 18 s) / duration. A long view keeps the
    parts of the bins at or above t (and the complete-play class); otherwise the parts below t.
    A class is drawn in proportion to the kept mass (uniform over the kept interval if the
    histogram puts no mass there), then a ratio uniformly within the kept part of its bin.
    Rounding is down below t and up at or above it, so KuaiRand's rule on the result agrees.
    """
    n_bins = hist.shape[-1] - 1
    edges = ratio_edges(n_bins)
    lo, hi = edges[:-1], edges[1:]
    t = (np.minimum(duration, LONG_VIEW_MS) / np.maximum(duration, 1))[..., None]
    lv = long_view[..., None]
    start = np.where(lv, np.maximum(lo, t), lo)  # kept interval [start, end) of each bin
    end = np.where(lv, hi, np.minimum(hi, t))
    width = np.clip(end - start, 0.0, None)
    complete = lv.astype(np.float64)  # the complete-play class is always a long view
    mass = np.concatenate(
        [hist[..., :n_bins] * width / (hi - lo), hist[..., n_bins:] * complete], -1
    )
    mass = mass + 1e-9 * np.concatenate([width, complete], -1)
    cdf = np.cumsum(mass, axis=-1)
    pick = np.minimum((cdf < u_class[..., None] * cdf[..., -1:]).sum(axis=-1), n_bins)
    j = np.minimum(pick, n_bins - 1)[..., None]
    ratio = (
        np.take_along_axis(start, j, -1)[..., 0]
        + u_within * np.take_along_axis(width, j, -1)[..., 0]
    )
    ratio = np.where(pick == n_bins, 1.0, ratio)
    raw = ratio * duration
    watch = np.where(ratio >= t[..., 0], np.ceil(raw), np.floor(raw))
    return np.minimum(watch, duration).astype(np.int64)
