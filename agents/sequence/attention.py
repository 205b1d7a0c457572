"""Attention-based next-item models: SASRec, BERT4Rec (self-attention) and STAMP (attention over
a short-term memory).

Positions are counted from the newest item (`SequenceRecommender.positions`), keys at padding
positions are masked out and padding rows are zeroed after every block, so extra left padding
changes nothing. A padding query attends to itself only (no row is fully masked, so no NaN).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.sequence.base import Context, SequenceRecommender


class SelfAttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention + position-wise feed-forward, both residual."""

    def __init__(
        self, dim: int, n_heads: int, dropout: float, ff_mult: int = 1, act: str = "relu"
    ) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        self.n_heads, self.p = n_heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim),
            nn.GELU() if act == "gelu" else nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ff_mult * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """x (B, W, d); allowed (B, 1, W, W) bool, True where a query may read a key."""
        b, w, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, w, 3, self.n_heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.p if self.training else 0.0
        )
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(b, w, d)))
        return x + self.drop(self.ff(self.norm2(x)))


def attention_mask(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, W, W) bool: valid keys (earlier or equal ones when `causal`), plus the diagonal."""
    w = mask.shape[1]
    eye = torch.eye(w, dtype=torch.bool, device=mask.device)
    allowed = mask[:, None, None, :].expand(-1, 1, w, -1)
    if causal:
        allowed = allowed & torch.ones(w, w, dtype=torch.bool, device=mask.device).tril()
    return allowed | eye


class _Transformer(SequenceRecommender):
    """Shared body of SASRec and BERT4Rec: embeddings, positions from the right, blocks."""

    causal = True

    def __init__(
        self,
        n_items: int,
        dim: int,
        max_len: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        ff_mult: int,
        act: str,
        extra_tokens: int = 0,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        if extra_tokens:  # BERT4Rec's [mask] token: shifted id n_items + 1
            self.item_emb = nn.Embedding(n_items + 1 + extra_tokens, dim, padding_idx=0)
            nn.init.normal_(self.item_emb.weight, std=dim**-0.5)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()
        self.pos_emb = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos_emb.weight, std=dim**-0.5)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(dim, n_heads, dropout, ff_mult, act) for _ in range(n_layers)
        )
        self.drop, self.norm = nn.Dropout(dropout), nn.LayerNorm(dim)

    def item_vectors(self, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return self.item_emb.weight[1 : self.n_items + 1]
        return super().item_vectors(items)

    def hidden(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, W, d) outputs of the blocks; zero at padding positions."""
        x = self.item_emb(ids) * self.dim**0.5 + self.pos_emb(self.positions(mask))
        x = self.drop(x) * mask[..., None]
        allowed = attention_mask(mask, self.causal)
        for block in self.blocks:
            x = block(x, allowed) * mask[..., None]
        return self.norm(x)


class SASRec(_Transformer):
    """SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).

    Item embedding x sqrt(d) + learned position embedding, ``n_layers`` causal self-attention
    blocks (pre-norm, ReLU feed-forward of width d, as the paper); the output at the newest item
    is the user state, scored against the item embeddings (shared, as the paper). Loss: full
    softmax cross-entropy of the next item (the paper uses binary cross-entropy with one sampled
    negative; cross-entropy is the stronger, now common choice: Klenitskiy & Vasilev, RecSys
    2023).
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        n_layers: int = 2,
        n_heads: int = 1,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(n_items, dim, max_len, n_layers, n_heads, dropout, 1, "relu")

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        return self.hidden(ids, mask)[:, -1]


class BERT4Rec(_Transformer):
    """BERT4Rec (Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
    Representations from Transformer", CIKM 2019).

    Bidirectional self-attention (GELU feed-forward of width 4d, as the paper). To predict the
    next item a [mask] token is appended after the newest item (the oldest item is dropped when
    the sequence is already ``max_len`` long); its output, through the paper's GELU projection,
    is the user state. Loss (the paper's cloze task): over the sequence followed by the target,
    each item is masked with probability ``mask_prob`` and the target always (the paper also
    trains on samples with only the last item masked; this does both at once); full-softmax
    cross-entropy over the masked positions. Masks come from torch's generator (`fit` seeds it).
    """

    causal = False

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        n_layers: int = 2,
        n_heads: int = 2,
        dropout: float = 0.2,
        mask_prob: float = 0.2,
    ) -> None:
        super().__init__(n_items, dim, max_len, n_layers, n_heads, dropout, 4, "gelu", 1)
        self.mask_prob = mask_prob
        self.mask_id = n_items + 1
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))

    def _append(
        self, ids: torch.Tensor, mask: torch.Tensor, last: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.cat([ids, last[:, None]], 1)[:, -self.max_len :]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)[:, -self.max_len :]
        return ids, mask

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        ids, mask = self._append(ids, mask, torch.full_like(ids[:, 0], self.mask_id))
        return self.head(self.hidden(ids, mask)[:, -1])

    def loss(
        self,
        seq: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        context: Context = None,
    ) -> torch.Tensor:
        """Cloze cross-entropy (class doc)."""
        ids, mask = self.prepare(seq)
        target = self._check_target(target, len(ids))
        ids, mask = self._append(ids, mask, target + 1)
        masked = mask & (torch.rand(ids.shape, device=ids.device) < self.mask_prob)
        masked[:, -1] = True
        inputs = ids.masked_fill(masked, self.mask_id)
        out = self.head(self.hidden(inputs, mask)[masked])
        return F.cross_entropy(out @ self.item_vectors().T, ids[masked] - 1)


class STAMP(SequenceRecommender):
    """STAMP (Liu et al., "STAMP: Short-Term Attention/Memory Priority Model for Session-based
    Recommendation", KDD 2018).

    m_s = mean of the item embeddings, m_t = the newest item's; attention a_i =
    w0^T sigmoid(W1 x_i + W2 m_t + W3 m_s + b) over the valid items, m_a = sum_i a_i x_i;
    h_s = tanh(MLP_A(m_a)), h_t = tanh(MLP_B(m_t)); the user state is h_s * h_t (the paper's
    trilinear score <h_s, h_t, x> is its dot product with an item embedding). Loss: full-softmax
    cross-entropy, as the paper.
    """

    def __init__(self, n_items: int, dim: int = 64, max_len: int = 50) -> None:
        super().__init__(n_items, dim, max_len)
        self.w1 = nn.Linear(dim, dim, bias=False)
        self.w2 = nn.Linear(dim, dim, bias=False)
        self.w3 = nn.Linear(dim, dim)
        self.w0 = nn.Linear(dim, 1, bias=False)
        self.mlp_a, self.mlp_b = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        x = self.item_emb(ids)
        n = mask.sum(1, keepdim=True)
        m_s = x.sum(1) / n.clamp(min=1)
        m_t = x[:, -1]
        a = self.w0(torch.sigmoid(self.w1(x) + (self.w2(m_t) + self.w3(m_s))[:, None])).squeeze(-1)
        m_a = ((a * mask)[..., None] * x).sum(1)
        state = torch.tanh(self.mlp_a(m_a)) * torch.tanh(self.mlp_b(m_t))
        return state * (n > 0)


__all__ = ["BERT4Rec", "SASRec", "STAMP", "SelfAttentionBlock", "attention_mask"]
