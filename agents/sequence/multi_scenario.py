"""Candidate-scoring models for multi-scenario next-item prediction: DIN, STAR and PEPNet.

Each scores (user, candidate) pairs with a network (`PairwiseRecommender`): full-catalogue
scores are computed in chunks of candidates, and training is a sampled softmax (the target
against uniform random items). Side information (optional; without it every row is scenario 0):
``context["scenario"]`` (B, L) the scenario of each history item, ``context["target_scenario"]``
(B,) the scenario of the request being scored. A history item's embedding is its item embedding
plus its scenario's embedding. The history enters DIN through target attention; STAR and PEPNet,
whose papers are about the scenario-conditioned network rather than the behaviour encoder, read
it as [mean of the history, the newest item] (our choice: mean pooling alone would hide the order
a next-item task needs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.sequence.base import Context, PairwiseRecommender


class _Scenarios(PairwiseRecommender):
    """Scenario embeddings and the history / target-scenario inputs shared by the three."""

    uses_context = True

    def __init__(self, n_items: int, dim: int, max_len: int, n_scenarios: int) -> None:
        super().__init__(n_items, dim, max_len)
        self.n_scenarios = n_scenarios
        self.scenario_emb = nn.Embedding(n_scenarios, dim)
        nn.init.normal_(self.scenario_emb.weight, std=dim**-0.5)

    def history(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        """(B, W, d) history embeddings (item + scenario), zero at padding."""
        e = self.item_emb(ids)
        scen = self.context_tensor(context, "scenario", ids, required=False)
        if scen is not None:
            e = e + self.scenario_emb(self._check_scenario(scen))
        return e * mask[..., None]

    def target_scenario(self, ids: torch.Tensor, context: Context) -> torch.Tensor:
        """(B,) the scenario of each row's request (0 without context)."""
        t = self.context_tensor(context, "target_scenario", ids[:, 0], required=False)
        return ids.new_zeros(len(ids)) if t is None else self._check_scenario(t)

    def summary(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        """(B, 2d): [mean of the history, the newest item] (module doc)."""
        e = self.history(ids, mask, context)
        mean = e.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return torch.cat([mean, e[:, -1]], -1)

    def _check_scenario(self, s: torch.Tensor) -> torch.Tensor:
        if s.numel() and s.max() >= self.n_scenarios:
            raise ValueError(
                f"{type(self).__name__}: scenario ids must lie in [0, {self.n_scenarios}), "
                f"got {int(s.max())}"
            )
        return s


def mlp(sizes: list[int], act: type[nn.Module] = nn.PReLU, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of `sizes` with `act` (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [act(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class DIN(_Scenarios):
    """DIN (Zhou et al., "Deep Interest Network for Click-Through Rate Prediction", KDD 2018).

    Activation unit: a(e_j, e_t) = MLP([e_j, e_t, e_j - e_t, e_j * e_t]) (PReLU, hidden 36 as
    the paper), not normalised by a softmax (the paper's choice, keeping the intensity of the
    interest); the user interest is sum_j a_j e_j over the valid history. Score =
    MLP([interest, e_t, target-scenario embedding]) (PReLU, 2d -> d -> 1; the paper's 200 -> 80
    scaled to d). The first attention layer is applied as W_a e_j + W_b e_t + W_c (e_j * e_t)
    (the difference term folded into W_a, W_b), and candidates are chunked so that the
    (B, chunk, W, hidden) activations stay near 2^24 numbers.
    """

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 50,
        n_scenarios: int = 2,
        att_hidden: int = 36,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(n_items, dim, max_len, n_scenarios)
        self.att = nn.Linear(4 * dim, att_hidden)
        self.att_out = nn.Sequential(nn.PReLU(), nn.Linear(att_hidden, 1))
        self.net = mlp([3 * dim, 2 * dim, dim, 1], dropout=dropout)
        self.att_hidden = att_hidden

    def chunk_size(self, batch: int, width: int) -> int:
        return max(1, 2**24 // max(1, batch * width * self.att_hidden))

    def pair_score(
        self, ids: torch.Tensor, mask: torch.Tensor, items: torch.Tensor, context: Context
    ) -> torch.Tensor:
        hist = self.history(ids, mask, context)  # (B, W, d)
        tgt = self.item_vectors(items)  # (B, M, d)
        d = self.dim
        w = self.att.weight  # (h, 4d) over [e_j, e_t, e_j - e_t, e_j * e_t]
        w_j, w_t = w[:, :d] + w[:, 2 * d : 3 * d], w[:, d : 2 * d] - w[:, 2 * d : 3 * d]
        b, width = mask.shape
        # the product term sum_d e_t[d] e_j[d] W_c[h, d] as one batched matmul over (w, h)
        hw = torch.einsum("bwd,hd->bdwh", hist, w[:, 3 * d :]).reshape(b, d, -1)
        a = (
            (hist @ w_j.T)[:, None]  # (B, 1, W, h)
            + (tgt @ w_t.T + self.att.bias)[:, :, None]  # (B, M, 1, h)
            + (tgt @ hw).view(b, -1, width, self.att_hidden)
        )
        a = self.att_out(a).squeeze(-1) * mask[:, None, :]  # (B, M, W)
        interest = a @ hist  # (B, M, d)
        scen = self.scenario_emb(self.target_scenario(ids, context))[:, None].expand_as(tgt)
        return self.net(torch.cat([interest, tgt, scen], -1)).squeeze(-1)


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation: (z - mean) / sqrt(var + eps) * (gamma * gamma_p) +
    (beta + beta_p), with shared and per-scenario scale/shift. Training uses the statistics of the
    batch's rows of each scenario (the paper's batches hold one scenario each; ours may mix, so
    each scenario is normalised by its own rows) and updates per-scenario running averages, which
    evaluation uses."""

    def __init__(self, width: int, n_scenarios: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.gamma, self.beta = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))
        self.gamma_p = nn.Parameter(torch.ones(n_scenarios, width))
        self.beta_p = nn.Parameter(torch.zeros(n_scenarios, width))
        self.register_buffer("running_mean", torch.zeros(n_scenarios, width))
        self.register_buffer("running_var", torch.ones(n_scenarios, width))
        self.momentum, self.eps, self.n = momentum, eps, n_scenarios

    def forward(self, z: torch.Tensor, scen: torch.Tensor) -> torch.Tensor:
        """z (R, width) rows, scen (R,) their scenarios."""
        if self.training:
            count = torch.bincount(scen, minlength=self.n).to(z.dtype)[:, None]
            total = torch.zeros(self.n, z.shape[1], device=z.device).index_add(0, scen, z)
            mean = total / count.clamp(min=1)
            sq = torch.zeros_like(total).index_add(0, scen, (z - mean[scen]) ** 2)
            var = sq / count.clamp(min=1)
            with torch.no_grad():
                seen = count > 0
                m = self.momentum
                upd_mean = (1 - m) * self.running_mean + m * mean
                upd_var = (1 - m) * self.running_var + m * var * count / (count - 1).clamp(min=1)
                self.running_mean.copy_(torch.where(seen, upd_mean, self.running_mean))
                self.running_var.copy_(torch.where(seen, upd_var, self.running_var))
        else:
            mean, var = self.running_mean, self.running_var
        zn = (z - mean[scen]) / torch.sqrt(var[scen] + self.eps)
        return zn * (self.gamma * self.gamma_p[scen]) + (self.beta + self.beta_p[scen])


class StarLinear(nn.Module):
    """STAR's star-topology FC: scenario p uses W * W_p and b + b_p (shared weights times /
    plus its own; W_p starts at 1 and b_p at 0, so every scenario starts from the shared net)."""

    def __init__(self, d_in: int, d_out: int, n_scenarios: int) -> None:
        super().__init__()
        self.shared = nn.Linear(d_in, d_out)
        self.w_p = nn.Parameter(torch.ones(n_scenarios, d_out, d_in))
        self.b_p = nn.Parameter(torch.zeros(n_scenarios, d_out))

    def forward(self, x: torch.Tensor, scen: torch.Tensor) -> torch.Tensor:
        """x (R, d_in), scen (R,): every scenario's layer applied, each row's one kept."""
        out = torch.einsum("ri,poi->rpo", x, self.shared.weight * self.w_p)
        out = out[torch.arange(len(x), device=x.device), scen]
        return out + self.shared.bias + self.b_p[scen]


class STAR(_Scenarios):
    """STAR (Sheng et al., "One Model to Serve All: Star Topology Adaptive Recommender for
    Multi-Domain CTR Prediction", CIKM 2021).

    Input [history summary (module doc), candidate embedding] -> partitioned normalisation ->
    star-topology FC layers (ReLU; 3d -> 2d -> d -> 1 here) with the request's scenario
    selecting the specific weights; plus the auxiliary network, a small MLP on [scenario
    embedding, candidate embedding], whose logit is added to the main one.
    """

    def __init__(
        self, n_items: int, dim: int = 64, max_len: int = 50, n_scenarios: int = 2
    ) -> None:
        super().__init__(n_items, dim, max_len, n_scenarios)
        self.pn = PartitionedNorm(3 * dim, n_scenarios)
        sizes = [3 * dim, 2 * dim, dim, 1]
        self.layers = nn.ModuleList(
            StarLinear(a, b, n_scenarios) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.aux = mlp([2 * dim, dim, 1], act=nn.ReLU)

    def pair_score(
        self, ids: torch.Tensor, mask: torch.Tensor, items: torch.Tensor, context: Context
    ) -> torch.Tensor:
        b, m = items.shape
        tgt = self.item_vectors(items)
        summ = self.summary(ids, mask, context)[:, None].expand(-1, m, -1)
        scen = self.target_scenario(ids, context)[:, None].expand(-1, m).reshape(-1)
        x = self.pn(torch.cat([summ, tgt], -1).reshape(b * m, -1), scen)
        for i, layer in enumerate(self.layers):
            x = layer(x, scen)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        aux = self.aux(torch.cat([self.scenario_emb(scen), tgt.reshape(b * m, -1)], -1))
        return (x + aux).view(b, m)


class GateNU(nn.Module):
    """PEPNet's gate unit: gamma * sigmoid(W2 relu(W1 x + b1) + b2), gamma = 2 (the paper's)."""

    def __init__(self, d_in: int, d_out: int, hidden: int, gamma: float = 2.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, d_out))
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.net(x))


class PEPNet(_Scenarios):
    """PEPNet (Chang et al., "PEPNet: Parameter and Embedding Personalized Network for Infusing
    with Personalized Prior Information", KDD 2023), one task (the next item).

    General input E = [history summary (module doc), candidate embedding] (3d). EPNet: a
    `GateNU` on [scenario embedding, stop-gradient(E)] gives a per-dimension gate, E' = gate * E.
    PPNet: the personalised prior is [history summary, candidate embedding] (the paper uses
    user / item / author id embeddings; the interface has no user id, so the history stands
    for the user); before each DNN layer a `GateNU` on [prior, stop-gradient(E')] gates that
    layer's input. DNN: 3d -> 2d -> d -> 1, ReLU.
    """

    def __init__(
        self, n_items: int, dim: int = 64, max_len: int = 50, n_scenarios: int = 2
    ) -> None:
        super().__init__(n_items, dim, max_len, n_scenarios)
        width = 3 * dim
        self.ep_gate = GateNU(dim + width, width, dim)
        sizes = [width, 2 * dim, dim, 1]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.pp_gates = nn.ModuleList(GateNU(width + width, a, dim) for a in sizes[:-1])

    def pair_score(
        self, ids: torch.Tensor, mask: torch.Tensor, items: torch.Tensor, context: Context
    ) -> torch.Tensor:
        b, m = items.shape
        tgt = self.item_vectors(items)
        summ = self.summary(ids, mask, context)[:, None].expand(-1, m, -1)
        e = torch.cat([summ, tgt], -1)  # (B, M, 3d)
        scen = self.scenario_emb(self.target_scenario(ids, context))[:, None].expand(-1, m, -1)
        e = self.ep_gate(torch.cat([scen, e.detach()], -1)) * e
        prior = torch.cat([summ, tgt], -1)
        x = e
        for i, (layer, gate) in enumerate(zip(self.layers, self.pp_gates, strict=True)):
            x = layer(gate(torch.cat([prior, e.detach()], -1)) * x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x.squeeze(-1)


__all__ = ["DIN", "PEPNet", "STAR", "GateNU", "PartitionedNorm", "StarLinear"]
