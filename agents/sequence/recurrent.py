"""Recurrent next-item models: GRU4Rec and NARM, plus the popularity reference.

Both read a left-padded batch by moving each row to the left edge and packing it
(`torch.nn.utils.rnn.pack_padded_sequence`), so padding never enters the recurrence and extra
padding changes nothing. An empty history gives a zero user state (every item scores 0).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recgym.agents.sequence.base import Context, SequenceRecommender, right_align
from recgym.agents.sequence.data import SequenceData


def packed_gru(
    gru: nn.GRU, x: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run `gru` over the valid steps of left-padded `x` (B, W, d).

    Returns (outputs (B, W, h) right-padded, their mask (B, W), the last valid output (B, h);
    zero for an empty row).
    """
    xr, lengths = right_align(x, mask)
    packed = pack_padded_sequence(
        xr, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
    )
    out, h = gru(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    out_mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
    out = out * out_mask[..., None]
    return out, out_mask, h[-1] * (lengths > 0)[:, None]


class GRU4Rec(SequenceRecommender):
    """GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
    ICLR 2016; Hidasi & Karatzoglou, CIKM 2018 for the cross-entropy loss).

    Item embedding -> dropout -> GRU (``n_layers``, hidden = dim) -> the last hidden state is the
    user state, scored against the item embeddings (tied output, as RecBole; the paper has a
    separate output layer). Trained with full-softmax cross-entropy of the next item on every
    prefix (the paper's session-parallel mini-batches are replaced by prefix rows).
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        n_layers: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, dim, num_layers=n_layers, batch_first=True)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        _, _, last = packed_gru(self.gru, self.dropout(self.item_emb(ids)), mask)
        return last


class NARM(SequenceRecommender):
    """NARM (Li et al., "Neural Attentive Session-based Recommendation", CIKM 2017).

    A GRU encodes the sequence; the global encoder is its last state h_t, the local encoder an
    attention c_l = sum_j a_j h_j with a_j = v^T sigmoid(A1 h_t + A2 h_j) over the valid steps;
    the user state is B [h_t; c_l] (the paper's bilinear decoder, B: 2h -> dim), scored against
    the item embeddings. Dropout 0.25 on embeddings and 0.5 before the decoder (the paper's).
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        hidden: int | None = None,
        emb_dropout: float = 0.25,
        ct_dropout: float = 0.5,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        h = hidden or dim
        self.gru = nn.GRU(dim, h, batch_first=True)
        self.a1 = nn.Linear(h, h, bias=False)
        self.a2 = nn.Linear(h, h, bias=False)
        self.v = nn.Linear(h, 1, bias=False)
        self.decoder = nn.Linear(2 * h, dim, bias=False)
        self.emb_dropout, self.ct_dropout = nn.Dropout(emb_dropout), nn.Dropout(ct_dropout)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        out, out_mask, last = packed_gru(self.gru, self.emb_dropout(self.item_emb(ids)), mask)
        a = self.v(torch.sigmoid(self.a1(last)[:, None, :] + self.a2(out))).squeeze(-1)
        local = ((a * out_mask)[..., None] * out).sum(1)
        return self.decoder(self.ct_dropout(torch.cat([last, local], -1)))


class Popularity(SequenceRecommender):
    """Popularity reference: every user gets the items ranked by their training interaction
    counts (prefix items and targets of the training rows). No training: `fit` counts.

    Its user state is a constant 1 and its item vectors log(1 + count) (dim 1; the `dim`
    argument is ignored), so the base scoring applies unchanged.
    """

    trainable = False

    def __init__(self, n_items: int, dim: int = 1, max_len: int = 50) -> None:
        super().__init__(n_items, 1, max_len)
        self.item_emb.weight.requires_grad_(False)
        self.register_buffer("counts", torch.zeros(n_items))

    def fit_counts(self, data: SequenceData) -> None:
        """Count every item in `data` (prefixes and targets)."""
        items = torch.as_tensor(data.seq[data.seq >= 0])
        items = torch.cat([items, torch.as_tensor(data.target)])
        self.counts.copy_(torch.bincount(items, minlength=self.n_items).float())

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        return torch.ones(len(ids), 1, device=ids.device)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        v = torch.log1p(self.counts)[:, None]
        return v if items is None else v[items.long()]


__all__ = ["GRU4Rec", "NARM", "Popularity", "packed_gru"]
