"""Convolutional next-item models: Caser and NextItNet (with its reusable encoder).

Caser reads a fixed window of the newest ``max_len`` items (its paper's L), so a shorter batch is
left-padded to that width first. NextItNet's causal convolutions pad on the left with zeros and
its hidden states are zeroed at padding positions after every convolution, so a padding slot
looks exactly like the convolution's own zero padding and extra left padding changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.sequence.base import PAD, Context, SequenceRecommender, as_long_tensor


class Caser(SequenceRecommender):
    """Caser (Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
    Sequence Embedding", WSDM 2018).

    The newest L = ``max_len`` item embeddings form an L x d image; ``n_h`` horizontal filters of
    each height 1..L (ReLU, max-pooled over time) and ``n_v`` vertical filters (L x 1) are
    concatenated, passed through dropout and a fully connected ReLU layer to the user state (d).
    Differences from the paper, which the interface forces or the paper leaves open: no user
    embedding P_u (the interface has no user ids), the output layer is tied to the item
    embeddings, and the loss is full-softmax cross-entropy of the next item (the paper: binary
    cross-entropy over T next items with sampled negatives).
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 5,
        n_h: int = 16,
        n_v: int = 4,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        self.h_convs = nn.ModuleList(nn.Conv2d(1, n_h, (h, dim)) for h in range(1, max_len + 1))
        self.v_conv = nn.Conv2d(1, n_v, (max_len, 1))
        self.fc = nn.Linear(n_h * max_len + n_v * dim, dim)
        self.drop = nn.Dropout(dropout)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        if ids.shape[1] < self.max_len:  # the fixed window: pad to L (shifted padding id 0)
            ids = F.pad(ids, (self.max_len - ids.shape[1], 0))
        x = self.item_emb(ids)[:, None]  # (B, 1, L, d)
        h = [F.relu(conv(x)).squeeze(3).amax(2) for conv in self.h_convs]  # (B, n_h) each
        v = self.v_conv(x).flatten(1)  # (B, n_v * d)
        return F.relu(self.fc(self.drop(torch.cat([*h, v], 1))))


class CausalConv(nn.Module):
    """1-D convolution over (B, W, d) that reads only the current and earlier positions."""

    def __init__(self, dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.left = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x.transpose(1, 2), (self.left, 0))).transpose(1, 2)


class NextItNetBlock(nn.Module):
    """The paper's residual block (b): conv(dilation r) -> LN -> ReLU -> conv(2r) -> LN -> ReLU,
    added to the input; every step's output is zeroed at padding positions."""

    def __init__(self, dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = CausalConv(dim, kernel_size, dilation)
        self.conv2 = CausalConv(dim, kernel_size, 2 * dilation)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None]
        h = F.relu(self.norm1(self.conv1(x))) * m
        h = F.relu(self.norm2(self.conv2(h))) * m
        return (x + h) * m


class NextItNetEncoder(nn.Module):
    """NextItNet's sequence encoder: item embeddings through stacked dilated causal residual
    blocks (Yuan et al., "A Simple Convolutional Generative Network for Next Item
    Recommendation", WSDM 2019). RUIE uses it as its behaviour-sequence module.

    ``forward(seq, extra=None) -> (B, W, dim)``: `seq` holds raw ids in the padding convention
    (-1, left-padded, newest last; the newest ``max_len`` columns are read); `extra` (B, W, dim),
    e.g. scenario embeddings, is added to the item embeddings. Output rows at padding positions
    are zero; column -1 is the representation after the newest item. `encode_embedded(x, mask)`
    runs the blocks on any embedded input. Block r of ``dilations`` has convolutions of dilation
    r and 2r, so the default (1, 4, 1, 4) is the paper's 1, 2, 4, 8 stack repeated twice.
    `item_emb` (shifted ids, padding_idx 0) may be passed in to share it with a model.
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        dilations: Sequence[int] = (1, 4, 1, 4),
        kernel_size: int = 3,
        item_emb: nn.Embedding | None = None,
    ) -> None:
        super().__init__()
        self.n_items, self.dim, self.max_len = n_items, dim, max_len
        if item_emb is None:
            item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
            nn.init.normal_(item_emb.weight, std=dim**-0.5)
            with torch.no_grad():
                item_emb.weight[0].zero_()
        self.item_emb = item_emb
        self.blocks = nn.ModuleList(NextItNetBlock(dim, kernel_size, r) for r in dilations)

    def encode_embedded(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, W, dim) block outputs for embedded inputs `x` (B, W, dim) and a bool mask (B, W)."""
        x = x * mask[..., None]
        for block in self.blocks:
            x = block(x, mask)
        return x

    def forward(
        self, seq: np.ndarray | torch.Tensor, extra: torch.Tensor | None = None
    ) -> torch.Tensor:
        seq = as_long_tensor(seq, self.item_emb.weight.device)[:, -self.max_len :]
        if seq.numel() and (seq.min() < PAD or seq.max() >= self.n_items):
            raise ValueError(f"NextItNetEncoder: ids must lie in [0, {self.n_items}) or be -1")
        mask = seq != PAD
        x = self.item_emb(seq + 1)
        if extra is not None:
            x = x + extra[:, -seq.shape[1] :]
        return self.encode_embedded(x, mask)


class NextItNet(SequenceRecommender):
    """NextItNet (Yuan et al., WSDM 2019): `NextItNetEncoder`'s output after the newest item is
    the user state, scored against the item embeddings (tied; the paper has a separate softmax
    layer). Loss: full-softmax cross-entropy of the next item (the paper predicts every
    position's next item; the prefix rows of `SequenceData` give the same targets).
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        dilations: Sequence[int] = (1, 4, 1, 4),
        kernel_size: int = 3,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        self.encoder = NextItNetEncoder(
            n_items, dim, max_len, dilations, kernel_size, item_emb=self.item_emb
        )

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        return self.encoder.encode_embedded(self.item_emb(ids), mask)[:, -1]


__all__ = ["CausalConv", "Caser", "NextItNet", "NextItNetBlock", "NextItNetEncoder"]
