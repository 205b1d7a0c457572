"""RDRSR (Shao et al., "Gumble Softmax For User Behavior Modeling"): a dynamic number of interests.

`RDRSR` is a `agents.sequence.SequenceRecommender` (the padding convention there: int64 (B, L),
-1 padding on the left, newest last), so `agents.sequence.fit` trains it and `rank_targets` /
`evaluate` rank it like every baseline. The paper (section 3) read top to bottom:

1. *Embedding* (3.2): E = item embedding + learnable position embedding (positions counted from
   the newest item). The user embedding e_u is the mean of the sequence's item embeddings: the
   paper uses a user-id table, which cannot serve the world's users nor a user first seen at
   test time (deviation, recorded here).
2. *Dynamic Interest Discriminator* (3.3): ``n_blocks`` bidirectional self-attention blocks
   (no causal mask: every item sees the whole sequence) give F; attention pooling with e_u
   (eq. 4-5) gives f, logits over the interest number 1..k; Gumbel-softmax (eq. 6-8) with
   temperature ``temperature`` (the paper's T = 10) samples h in training and takes the most
   likely number at prediction (the paper is silent; a ranking must be deterministic). The
   forward pass uses the one-hot of h, the backward pass the relaxation z (straight-through).
3. *Dynamic Interest Allocator* (3.4): interests p_1..p_k start at e_u (only the first h are
   usable); for T = 1..t the state s_T = W0 [sum_j alpha_j p_j, F_T, z] with alpha_j =
   softmax_j(p_j . F_T) over the usable interests (eq. 11-12; W0 also reads z, as eq. 11 says,
   so it is (2d + k) x d rather than the 2d x d stated after it); the policy (eq. 9) is
   softmax(W2 ReLU(W1 s + b1) + b2) over the usable interests; the chosen p_a becomes the
   mean of the F of the items it holds (eq. 10's "average pooling" read as the sub-sequence's
   running mean; e_u only stands in for an interest until its first item).
4. *Reward* (eq. 13-17): the target goes through the same state and policy, choosing p_target;
   R_c is its sampled-softmax probability of the target against ``n_negatives`` uniform items
   (a negative equal to the target is masked); the baseline averages that over the usable
   interests; R_orthogonal = -mean |p_i . p_j| over usable pairs; R_s = R_c - R_baseline +
   lambda_o R_orthogonal (lambda_o = 0.001), detached.
5. *Loss* (eq. 22-24): CE (the same sampled softmax, eq. 23) + beta * (-R_s * sum of the log-
   probabilities of every allocation and of the target's choice), beta = 1.
6. *Prediction* (eq. 25): allocations take the policy's most likely interest; each candidate is
   put through the policy and scored by p_a . e_candidate with its chosen interest (the paper
   "ranks by the reward of eq. 13"; its numerator is this dot product, and the per-interest
   normaliser of a sampled softmax is not defined for a ranking over the catalogue).

``dynamic=False`` is RDRSR-F (Table 4): the DID is off (no self-attention, F = E; h = k fixed).

Options that are *not* the paper's (all off by default). With the paper's settings the allocator
learns to put (almost) every item of a sequence in one interest (bench rdrsr, "world, true
interests"). Three options were tried against that in exploratory runs and did not fix it
reliably (not benchmarked):
``open_baseline`` averages the baseline over the interests that hold an item (the env's reading
of "all generated interests") instead of all h usable ones, so an empty interest (still at e_u)
no longer makes "one interest for everything" look better than the average; ``similarity_state``
appends the k similarities p_j . F_T to the state (eq. 11 sees only their softmax-weighted sum);
``normalize_reward`` divides R_s by its batch standard deviation before REINFORCE.

``similarity_policy`` is the one that works: the policy *is* a similarity, as eq. 12's alpha_j
already is, instead of an MLP that must learn to read it. An item joins interest j with logit s *
cos(p_j, e_T) over the open interests (those holding an item) or opens the first empty usable
interest with logit s * c, s > 0 (init 10) and c (init 0) learned by the same REINFORCE term; the
other empty interests are masked, so "which empty one" is not a choice (k! relabellings of one
grouping become one). It clusters the item embeddings e_T, not F_T: the interests are the running
means of their items' embeddings and candidates are scored against them as above. F_T mixes every
item with the whole sequence (bidirectional attention) and carries the position embedding, so items
of one category are not closer in F: the same similarity policy on F gave per-user ARI 0.05 (seed
0, 10 epochs, the world below, each user's next 10 clicks: only 9 users with two true interests)
against 0.32 on e. The DID (h) still reads F; W0 and the policy MLP are unused. Measured on the
learning test's world (300 users, 600 items, k = 4, d = 32, 30 training clicks per user; ARI over
the users' next 30 clicks in windows of 10, the 72 windows with two or more true interests; paired
95% intervals):

=================  ======  =====  =====  =========================
variant            epochs  seed   ARI    minus random (paired)
=================  ======  =====  =====  =========================
paper settings     3       2      -0.005 -0.012 [-0.063, 0.040]
paper settings     3       3      -0.001 -0.007 [-0.056, 0.042]
paper settings     3       4      -0.001 -0.007 [-0.057, 0.043]
paper settings     10      0      0.000  -0.007 [-0.055, 0.042]
similarity_policy  3       0      0.186  0.180 [0.094, 0.266]
similarity_policy  3       1      0.596  0.589 [0.487, 0.691]
similarity_policy  3       2      0.497  0.491 [0.383, 0.599]
similarity_policy  3       3      0.430  0.423 [0.301, 0.546]
similarity_policy  3       4      0.583  0.576 [0.457, 0.695]
similarity_policy  10      0      0.386  0.380 [0.264, 0.495]
similarity_policy  10      1      0.724  0.718 [0.623, 0.812]
=================  ======  =====  =====  =========================

Minus one interest (ARI 0 by definition) the intervals are as wide. ``open_baseline`` on top
changes little (3 epochs: the same numbers for seeds 0 and 1; 10 epochs: 0.362 and 0.755).
Ranking the next click among 99 unseen items (the learning test's protocol, seed 0): paper
settings NDCG@10 0.213 / HR@10 0.370 after 3 epochs, 0.409 / 0.633 after 10; similarity_policy
0.370 / 0.567 and 0.413 / 0.663.

Where it does not help (single runs, not benchmarked). (a) It needs item embeddings trained
enough to group categories: on the bench's quick world (1,000 items, 5 training prefixes per
user, 2 epochs, lr 1e-3; the bench's test prefixes, 32 users with two true interests) ARI stays
at 0 +- 0.06 for both variants, seeds 0-4; with every prefix, 3 epochs and lr 3e-3 it is 0.36
and 0.23 for seeds 1 and 2 (paper settings 0.00). (b) The DID can still choose h = 1 for every
user, and then nothing can be grouped: seed 0 of that run (ARI 0.00, mean h 1.0; the learned
s = 12.5 and c = 0.26 are as in the working seeds); with ``dynamic=False`` (h = k) ARI is 0.22,
0.14 and 0.18 for seeds 0-2. (c) On the paper datasets (quick preset: d = 32, 2 epochs, 5
prefixes per user, 99 unseen negatives, seeds 0-2) HR@10 moves from 0.151 / 0.136 / 0.160 to
0.117 / 0.100 / 0.099 on ML-100k (worse), from 0.164 / 0.166 / 0.165 to 0.216 / 0.242 / 0.213
on Last.fm, and from 0.346 / 0.384 / 0.346 to 0.736 / 0.780 / 0.755 on Foursquare (with
repeats: 94% of its targets are items the user clicked, which sit close to an interest that
is the mean of clicked items' embeddings). Mixed, so it stays off by default.

Why not Tianshou's `Reinforce`: the allocation episode lives inside one forward pass (its states
are differentiable functions of the encoder, and the policy-gradient term is summed with the
cross-entropy into one loss, eq. 24), whereas Tianshou's `Reinforce` learns from collected
transitions of detached observations with returns from a buffer. The REINFORCE estimator here
is eq. 21 itself; the same policy also acts in `recgym/InterestAllocation-v0` through
`RDRSRAllocationPolicy` (observations only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.sequence.base import Context, SequenceRecommender


@dataclass
class Allocation:
    """One forward pass of the allocator over a batch (tensors; see `RDRSR.allocate`)."""

    interests: torch.Tensor  # (B, k, d) interest vectors after the sequence
    usable: torch.Tensor  # (B, k) bool: interests 0..h-1
    z: torch.Tensor  # (B, k) the interest-number one-hot (straight-through in training)
    actions: torch.Tensor  # (B, W) chosen interest per position, -1 at padding
    log_prob: torch.Tensor  # (B,) sum of the log-probabilities of the actions
    sizes: torch.Tensor  # (B, k) items allocated to each interest
    logits_h: torch.Tensor  # (B, k) the DID's interest-number logits


class RDRSR(SequenceRecommender):
    """RDRSR and RDRSR-F (module doc). ``k`` is the maximum interest number (3-5 in the paper)."""

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 10,
        k: int = 4,
        dynamic: bool = True,
        n_blocks: int = 2,
        n_heads: int = 1,
        dropout: float = 0.1,
        temperature: float = 10.0,
        n_negatives: int = 99,
        lambda_o: float = 0.001,
        beta: float = 1.0,
        normalize_reward: bool = False,
        similarity_state: bool = False,
        open_baseline: bool = False,
        similarity_policy: bool = False,
    ) -> None:
        super().__init__(n_items, dim, max_len)
        if k < 1 or n_negatives < 1 or temperature <= 0:
            raise ValueError(
                f"RDRSR: k and n_negatives must be >= 1 and temperature > 0, got {k}, "
                f"{n_negatives}, {temperature}"
            )
        self.k, self.dynamic = int(k), bool(dynamic)
        self.n_interests = self.k
        self.temperature, self.n_negatives = float(temperature), int(n_negatives)
        self.lambda_o, self.beta = float(lambda_o), float(beta)
        self.normalize_reward = bool(normalize_reward)
        self.similarity_state = bool(similarity_state)
        self.open_baseline = bool(open_baseline)
        self.similarity_policy = bool(similarity_policy)
        if self.similarity_policy:
            self.log_sim_scale = nn.Parameter(torch.tensor(float(np.log(10.0))))
            self.new_threshold = nn.Parameter(torch.tensor(0.0))
        self.pos_emb = nn.Embedding(max_len, dim)
        self.dropout = nn.Dropout(dropout)
        if self.dynamic:
            layer = nn.TransformerEncoderLayer(
                dim, n_heads, dim_feedforward=dim, dropout=dropout, batch_first=True
            )
            self.encoder = nn.TransformerEncoder(layer, n_blocks, enable_nested_tensor=False)
            self.w_f1 = nn.Linear(dim, dim, bias=False)
            self.w_u = nn.Linear(dim, dim, bias=False)
            self.w_f2 = nn.Linear(dim, 1)
            self.w_k = nn.Linear(dim, self.k)
        self.w0 = nn.Linear(2 * dim + (2 if similarity_state else 1) * self.k, dim)
        self.policy = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, self.k))

    # ------------------------------------------------------------------ DID
    def _represent(
        self, ids: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(F (B, W, d), e_u (B, d), logits over the interest number (B, k))."""
        e = self.item_emb(ids)
        n = mask.sum(1, keepdim=True).clamp(min=1)
        e_u = (e * mask[..., None]).sum(1) / n
        x = self.dropout(e + self.pos_emb(self.positions(mask))[None])
        if not self.dynamic:
            logits = torch.full((len(ids), self.k), -1e9, device=ids.device)
            logits[:, -1] = 0.0
            return x * mask[..., None], e_u, logits
        pad = ~mask
        pad[:, -1] &= mask.any(1)  # an empty row keeps one key, so attention stays finite
        f = self.encoder(x, src_key_padding_mask=pad) * mask[..., None]
        att = self.w_f2(torch.tanh(self.w_f1(f) + self.w_u(e_u)[:, None])).squeeze(-1)
        att = att.masked_fill(~mask, -1e9).softmax(1)
        logits = self.w_k((att[..., None] * f).sum(1))
        return f, e_u, logits

    def _interest_number(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, k) one-hot of h - 1: Gumbel-softmax sample in training (straight-through to the
        relaxation at `temperature`), the most likely number at prediction."""
        log_f = logits.log_softmax(1)
        if not self.training or not self.dynamic:
            return F.one_hot(log_f.argmax(1), self.k).to(logits.dtype)
        u = torch.rand_like(log_f).clamp(1e-10, 1.0 - 1e-10)
        y = log_f - torch.log(-torch.log(u))
        z = (y / self.temperature).softmax(1)
        hard = F.one_hot(y.argmax(1), self.k).to(z.dtype)
        return hard + z - z.detach()

    # ------------------------------------------------------------------ DIA
    def _policy_logits(
        self,
        p: torch.Tensor,
        usable: torch.Tensor,
        item: torch.Tensor,
        z: torch.Tensor,
        sizes: torch.Tensor,
    ) -> torch.Tensor:
        """Policy logits (..., k) for item representations `item` (..., d) given interests
        p (B, k, d) holding `sizes` (B, k) items; leading dims of `item` after B broadcast
        (candidates)."""
        b, d, k = p.shape[0], p.shape[2], self.k
        lead = item.shape[:-1]
        x = item.reshape(b, -1, d)  # (B, N, d)
        if self.similarity_policy:
            return self._similarity_logits(p, usable, x, sizes).reshape(*lead, k)
        keep = usable[:, None, :]
        sim = torch.einsum("bnd,bkd->bnk", x, p).masked_fill(~keep, -1e9)
        summary = torch.einsum("bnk,bkd->bnd", sim.softmax(-1), p)
        # W0 [summary, item, z (, sim)] + b0 with W0 split by block: z's part once per row
        w = self.w0.weight
        s = summary @ w[:, :d].T + x @ w[:, d : 2 * d].T
        s = s + (z @ w[:, 2 * d : 2 * d + k].T + self.w0.bias)[:, None, :]
        if self.similarity_state:
            s = s + sim.masked_fill(~keep, 0.0) @ w[:, 2 * d + k :].T
        logits = self.policy(s).masked_fill(~keep, -1e9)
        return logits.reshape(*lead, k)

    def _similarity_logits(
        self, p: torch.Tensor, usable: torch.Tensor, x: torch.Tensor, sizes: torch.Tensor
    ) -> torch.Tensor:
        """`similarity_policy` (module doc): logits (B, N, k) = scale * cos(p_j, x) over the
        open interests, scale * threshold for the first empty usable one, -1e9 elsewhere."""
        open_ = (sizes > 0) & usable
        empty = usable & ~open_
        first_empty = empty & (empty.cumsum(1) == 1)
        cos = torch.einsum("bnd,bkd->bnk", F.normalize(x, dim=-1), F.normalize(p, dim=-1))
        score = torch.where(open_[:, None], cos, self.new_threshold.expand_as(cos))
        keep = (open_ | first_empty)[:, None].expand_as(cos)
        return (self.log_sim_scale.exp() * score).masked_fill(~keep, -1e9)

    def allocate(self, ids: torch.Tensor, mask: torch.Tensor, sample: bool) -> Allocation:
        """Run the DID and the allocator over shifted ids (B, W) with mask (B, W)."""
        f, e_u, logits_h = self._represent(ids, mask)
        if self.similarity_policy:  # cluster the item embeddings themselves (module doc)
            f = self.item_emb(ids) * mask[..., None]
        z = self._interest_number(logits_h)
        h = z.detach().argmax(1) + 1
        usable = torch.arange(self.k, device=ids.device)[None] < h[:, None]
        p = e_u[:, None].expand(-1, self.k, -1)
        count = torch.zeros(len(ids), self.k, device=ids.device)
        log_prob = torch.zeros(len(ids), device=ids.device)
        actions = []
        for t in range(ids.shape[1]):
            logits = self._policy_logits(p, usable, f[:, t], z, count)
            if sample:
                a = torch.multinomial(logits.softmax(-1), 1).squeeze(1)
            else:
                a = logits.argmax(-1)
            valid = mask[:, t]
            log_prob = log_prob + logits.log_softmax(-1).gather(1, a[:, None]).squeeze(1) * valid
            onehot = F.one_hot(a, self.k).to(p.dtype) * valid[:, None]
            count = count + onehot
            p = p + onehot[..., None] * (f[:, t, None] - p) / count.clamp(min=1)[..., None]
            actions.append(torch.where(valid, a, torch.full_like(a, -1)))
        acts = torch.stack(actions, 1) if actions else torch.zeros_like(ids)
        return Allocation(p, usable, z, acts, log_prob, count, logits_h)

    # ------------------------------------------------------------------ the SequenceRecommender API
    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        """(B, k, d) interest vectors (prediction mode); unusable interests are zero."""
        out = self.allocate(ids, mask, sample=False)
        return out.interests * out.usable[..., None]

    def score(
        self,
        seq: np.ndarray | torch.Tensor,
        items: np.ndarray | torch.Tensor | None = None,
        context: Context = None,
        chunk: int = 512,
    ) -> torch.Tensor:
        """(B, n_items) or (B, M): each candidate scored by the interest the policy puts it in."""
        ids, mask = self.prepare(seq)
        out = self.allocate(ids, mask, sample=False)
        if items is None:
            every = torch.arange(self.n_items, device=ids.device)
            return torch.cat(
                [self._score(out, part.expand(len(ids), -1)) for part in every.split(chunk)], 1
            )
        return self._score(out, self._check_items(items))

    def _score(self, out: Allocation, items: torch.Tensor) -> torch.Tensor:
        e = self.item_vectors(items)  # (B, M, d)
        choice = self._policy_logits(out.interests, out.usable, e, out.z, out.sizes).argmax(-1)
        p = out.interests.gather(1, choice[..., None].expand(-1, -1, self.dim))
        return (p * e).sum(-1)

    def loss(
        self,
        seq: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        context: Context = None,
    ) -> torch.Tensor:
        """CE + beta * REINFORCE (module doc, eq. 24), averaged over the batch."""
        return self.loss_parts(seq, target)["loss"]

    def loss_parts(
        self, seq: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss and its parts: ce, rl, reward (mean R_s), n_interests (mean h)."""
        ids, mask = self.prepare(seq)
        target = self._check_target(target, len(ids))
        out = self.allocate(ids, mask, sample=True)
        e_t = self.item_vectors(target)
        logits = self._policy_logits(out.interests, out.usable, e_t, out.z, out.sizes)
        a_t = torch.multinomial(logits.softmax(-1), 1).squeeze(1)
        log_prob = out.log_prob + logits.log_softmax(-1).gather(1, a_t[:, None]).squeeze(1)
        neg = self.sample_items((len(ids), self.n_negatives), ids.device)
        cand = self.item_vectors(torch.cat([target[:, None], neg], 1))  # (B, 1 + o, d)
        same = torch.cat(
            [torch.zeros_like(target[:, None], dtype=torch.bool), neg == target[:, None]], 1
        )
        all_logits = torch.einsum("bkd,bcd->bkc", out.interests, cand).masked_fill(
            same[:, None], float("-inf")
        )
        rows = torch.arange(len(ids), device=ids.device)
        chosen = all_logits[rows, a_t]  # (B, 1 + o)
        ce = F.cross_entropy(chosen, torch.zeros_like(target))
        with torch.no_grad():
            prob = all_logits.softmax(-1)[..., 0]  # (B, k)
            r_c = prob[rows, a_t]
            usable = out.usable.to(prob.dtype)
            open_ = (out.sizes > 0).to(prob.dtype) if self.open_baseline else usable
            n_open = open_.sum(1)
            base = torch.where(n_open > 0, (prob * open_).sum(1) / n_open.clamp(min=1), r_c)
            gram = torch.einsum("bid,bjd->bij", out.interests, out.interests).abs()
            pair = (
                usable[:, :, None] * usable[:, None, :] * (1 - torch.eye(self.k, device=ids.device))
            )
            n_pairs = pair.sum((1, 2))
            orth = -torch.where(n_pairs > 0, (gram * pair).sum((1, 2)) / n_pairs.clamp(min=1), 0.0)
            reward = r_c - base + self.lambda_o * orth
            signal = reward
            if self.normalize_reward and len(reward) > 1:
                signal = reward / reward.std().clamp(min=1e-8)
        rl = -(signal * log_prob).mean()
        return {
            "loss": ce + self.beta * rl,
            "ce": ce.detach(),
            "rl": rl.detach(),
            "reward": reward.mean(),
            "n_interests": out.usable.sum(1).float().mean(),
        }

    # ------------------------------------------------------------------ allocation for analysis
    @torch.no_grad()
    def allocations(self, seq: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Prediction-mode allocation of each sequence: (B, W) interest per item (-1 at
        padding) and (B,) interest number h."""
        was = self.training
        self.eval()
        try:
            ids, mask = self.prepare(seq)
            out = self.allocate(ids, mask, sample=False)
        finally:
            self.train(was)
        return out.actions.cpu().numpy(), out.usable.sum(1).cpu().numpy()


class RDRSRAllocationPolicy:
    """RDRSR's allocator acting in `recgym/InterestAllocation-v0` from observations only.

    Reads "sequence" and "position" (and "item_id" on the target step) and returns the interest
    the model's prediction-mode allocation gives that item; `item_map` (optional) maps the
    env's item ids to the model's (default: identity). The env's k must be at least the model's.
    """

    def __init__(self, model: RDRSR, item_map: np.ndarray | None = None) -> None:
        self.model, self.item_map = model, item_map
        self._cache: tuple[bytes, np.ndarray, Allocation] | None = None

    def _ids(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.int64)
        if self.item_map is None:
            return x
        return np.where(x >= 0, self.item_map[np.maximum(x, 0)], -1)

    @torch.no_grad()
    def act(self, obs: dict[str, Any]) -> int:
        seq = self._ids(obs["sequence"])[None]
        key = seq.tobytes()
        if self._cache is None or self._cache[0] != key:
            self.model.eval()
            ids, mask = self.model.prepare(seq)
            out = self.model.allocate(ids, mask, sample=False)
            self._cache = (key, out.actions[0].cpu().numpy(), out)
        _, actions, out = self._cache
        pos = int(np.asarray(obs["position"]).reshape(-1)[0])
        width = len(actions)
        if pos < len(obs["sequence"]):
            return int(max(actions[pos - (len(obs["sequence"]) - width)], 0))
        item = self.model.item_vectors(torch.as_tensor(self._ids(obs["item_id"]))[None])
        logits = self.model._policy_logits(out.interests, out.usable, item, out.z, out.sizes)
        return int(logits.argmax(-1)[0, 0])


__all__ = ["RDRSR", "Allocation", "RDRSRAllocationPolicy"]
