"""Multi-interest next-item models: ComiRec-SA, MIND and MCPRN.

Each returns K interest vectors (B, K, dim) as its user state. ComiRec-SA and MIND score an item
by its best interest (the max over interests, the usual stand-in for the papers' per-interest
top-N merge) and train with the papers' sampled softmax; MCPRN mixes its channels with the
candidate's own purpose weights.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.sequence.base import Context, SequenceRecommender, sampled_cross_entropy


class _SampledSoftmax(SequenceRecommender):
    """Loss of ComiRec and MIND: the target against ``n_negatives`` uniform random items (from
    torch's generator; a negative equal to the target is masked out), scored with the one user
    vector `train_vector` picks for the target. ``n_negatives=None``: full softmax instead."""

    n_negatives: int | None = 100

    def train_vector(self, state: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self,
        seq: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        context: Context = None,
    ) -> torch.Tensor:
        """Sampled-softmax cross-entropy of the target (class doc)."""
        state = self.user_state(seq, context)
        target = self._check_target(target, len(state))
        user = self.train_vector(state, self.item_vectors(target))
        if self.n_negatives is None:
            return F.cross_entropy(user @ self.item_vectors().T, target)
        cand = self.sampled_candidates(target, self.n_negatives)
        logits = torch.einsum("bd,bmd->bm", user, self.item_vectors(cand))
        return sampled_cross_entropy(logits, cand)


class ComiRecSA(_SampledSoftmax):
    """ComiRec-SA (Cen et al., "Controllable Multi-Interest Framework for Recommendation",
    KDD 2020), the self-attentive multi-interest extractor.

    H = item embeddings + position embeddings (positions from the newest item), zero at
    padding; A = softmax over valid positions of W2 tanh(W1 H^T) (K rows, hidden 4d as the
    paper); the K interests are A H. Training picks the interest with the largest dot product
    with the target (the paper's argmax) and applies a sampled softmax; serving scores an item by
    its best interest. An empty history gives zero interests.
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        n_interests: int = 4,
        n_negatives: int | None = 100,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        self.n_interests, self.n_negatives = n_interests, n_negatives
        self.pos_emb = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos_emb.weight, std=dim**-0.5)
        self.w1 = nn.Linear(dim, 4 * dim)
        self.w2 = nn.Linear(4 * dim, n_interests, bias=False)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        h = (self.item_emb(ids) + self.pos_emb(self.positions(mask))) * mask[..., None]
        logits = self.w2(torch.tanh(self.w1(h))).transpose(1, 2)  # (B, K, W)
        a = torch.softmax(logits.masked_fill(~mask[:, None, :], -1e9), -1) * mask[:, None, :]
        return a @ h

    def train_vector(self, state: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        pick = torch.einsum("bkd,bd->bk", state, target_vec).argmax(1)
        return state[torch.arange(len(state), device=state.device), pick]


def squash(z: torch.Tensor) -> torch.Tensor:
    """Capsule squash: |z|^2 / (1 + |z|^2) * z / |z| (0 for z = 0)."""
    n2 = (z * z).sum(-1, keepdim=True)
    return n2 / (1 + n2) * z / torch.sqrt(n2 + 1e-9)


class MIND(_SampledSoftmax):
    """MIND (Li et al., "Multi-Interest Network with Dynamic Routing for Recommendation at Tmall",
    CIKM 2019).

    Behaviour-to-interest dynamic routing (``iterations`` rounds): u_i = S c_i with one shared
    bilinear S; coupling w_ij = softmax over interests j of b_ij; z_j = sum_i w_ij u_i,
    interest_j = squash(z_j); b_ij += interest_j . u_i. The paper draws the initial logits b_ij
    at random; here they are drawn once at construction (a buffer, from the model's seed,
    indexed by position from the newest item) so scoring is deterministic. The number of
    interests adapts to the history as the paper's K'_u = max(1, min(K, floor(log2 n))); the
    unused interests are copies of the first, so the max over interests ignores them. Interests
    pass through a ReLU layer and a linear layer (the paper's H ReLU layers; its user-profile
    features are absent). Training: label-aware attention softmax(p * <interest_k, target>)
    (the paper's pow(., p) with p = 2 is not defined for negative dot products; the scaled
    softmax has the same hardness role) and a sampled softmax.
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        n_interests: int = 4,
        iterations: int = 3,
        p: float = 2.0,
        dynamic_k: bool = True,
        n_negatives: int | None = 100,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        self.n_interests, self.iterations, self.p = n_interests, iterations, p
        self.dynamic_k, self.n_negatives = dynamic_k, n_negatives
        self.bilinear = nn.Linear(dim, dim, bias=False)
        self.register_buffer("routing_init", torch.randn(n_interests, max_len))
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        u = self.bilinear(self.item_emb(ids)) * mask[..., None]  # (B, W, d)
        b = self.routing_init[:, self.positions(mask)].expand(len(ids), -1, -1)  # (B, K, W)
        for it in range(self.iterations):
            w = torch.softmax(b, 1) * mask[:, None, :]
            caps = squash(w @ u)  # (B, K, d)
            if it < self.iterations - 1:
                b = b + caps @ u.transpose(1, 2)
        caps = self.out(caps)
        if self.dynamic_k:
            n = mask.sum(1).clamp(min=1).float()
            k_u = torch.log2(n).floor().clamp(1, self.n_interests).long()
            used = torch.arange(self.n_interests, device=ids.device)[None, :] < k_u[:, None]
            caps = torch.where(used[..., None], caps, caps[:, :1].expand_as(caps))
        return caps

    def train_vector(self, state: torch.Tensor, target_vec: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.p * torch.einsum("bkd,bd->bk", state, target_vec), 1)
        return torch.einsum("bk,bkd->bd", a, state)


class MCPRN(SequenceRecommender):
    """MCPRN (Wang et al., "Modeling Multi-Purpose Sessions for Next-Item Recommendations via
    Mixture-Channel Purpose Routing Networks", IJCAI 2019). No public code exists; this is
    implemented from the paper's description (the full text is not in the repository, so
    details marked below are our reading of it).

    Purpose router: item x gets purpose weights w(x) = softmax_k(<x, c_k> / tau) over K learned
    purpose embeddings c_k (``tau`` small makes them nearly one-hot). K purpose-specific
    recurrent units (PSRU), one per channel with its own GRU-style weights, read the sequence;
    channel k's update gate is scaled by the item's weight w_k(x), so an item mostly updates the
    channels of its purposes: h_k <- (1 - w_k u_k) h_k + w_k u_k h~_k. The user state is the K
    final channel states (B, K, dim). An item x is scored by mixing the channels with its own
    purpose weights, sum_k w_k(x) <h_k, x> (our reading of the mixture step); loss: full-softmax
    cross-entropy (the paper trains with negative sampling). Padding steps leave every channel
    unchanged. ``tau`` defaults to 0.1 (not checked against the paper's value).
    """

    def __init__(
        self, n_items: int, dim: int = 64, max_len: int = 50, n_interests: int = 3, tau: float = 0.1
    ) -> None:
        super().__init__(n_items, dim, max_len)
        self.n_interests, self.tau = n_interests, tau
        self.purposes = nn.Parameter(torch.randn(n_interests, dim) * dim**-0.5)
        bound = dim**-0.5
        # per channel: input and hidden weights of the reset, update and candidate gates
        self.w_in = nn.Parameter(torch.empty(n_interests, dim, 3 * dim).uniform_(-bound, bound))
        self.w_h = nn.Parameter(torch.empty(n_interests, dim, 3 * dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(n_interests, 3 * dim))

    def purpose_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) purpose weights of item embeddings `x` (..., dim)."""
        return torch.softmax(x @ self.purposes.T / self.tau, -1)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        x = self.item_emb(ids)  # (B, W, d)
        w = self.purpose_weights(x) * mask[..., None]  # (B, W, K); 0 at padding
        gx = torch.einsum("bwd,kde->bwke", x, self.w_in) + self.bias  # (B, W, K, 3d)
        h = x.new_zeros(len(ids), self.n_interests, self.dim)
        for t in range(ids.shape[1]):
            gi = gx[:, t]
            gh = torch.einsum("bkd,kde->bke", h, self.w_h)
            r = torch.sigmoid(gi[..., : self.dim] + gh[..., : self.dim])
            u = torch.sigmoid(gi[..., self.dim : 2 * self.dim] + gh[..., self.dim : 2 * self.dim])
            cand = torch.tanh(gi[..., 2 * self.dim :] + r * gh[..., 2 * self.dim :])
            u = u * w[:, t, :, None]
            h = (1 - u) * h + u * cand
        return h

    def score_state(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        v = self.item_vectors(items)
        pw = self.purpose_weights(v)
        if items is None:
            return torch.einsum("bkd,nd,nk->bn", state, v, pw)
        return torch.einsum("bkd,bmd,bmk->bm", state, v, pw)


__all__ = ["MCPRN", "MIND", "ComiRecSA", "squash"]
