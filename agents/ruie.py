"""RUIE (Feng, Zheng & Xiao, "Reinforcing User Interest Evolution in Multi-Scenario Learning for
recommender systems", CIKM 2025): NextItNet + a scenario-aware user intent module trained with
Double Q-learning over scenarios, whose Q-value gates a triplet loss.

The model is a `agents.sequence.SequenceRecommender` (the padding convention of
`agents.sequence.base`: int64 (B, L) 0-based ids, -1 = padding, left-padded, newest last), so
`agents.sequence.fit` trains it and `rank_targets` ranks with it. It needs ``context``:

- ``"scenario"`` (B, L) the scenario of each sequence item (0 feed, 1 search) and
  ``"target_scenario"`` (B,) the scenario of the target (the next behaviour);
- for training, ``"reward"`` (B, L) and ``"target_reward"`` (B,): the reward of each behaviour
  (the paper's click 1, forward/share 2, follow 3, like 3; `behaviour_reward`).
  `SequenceData.from_user_sequences(..., aligned={"scenario": ..., "reward": ...})` builds both.

Parts (paper section 2):

- *Embedding layer*: item embeddings E_I (the base class's, tied with scoring) and scenario
  embeddings E_S.
- *Behaviour sequence module*: `agents.sequence.NextItNetEncoder` (dilated causal residual
  blocks); v_U is its output after the newest item. With SUIM the encoder reads e_i + e_s
  (the paper puts items and scenarios in one embedding space before the module; choice where the
  paper's text is ambiguous); without SUIM it reads items only ("NextItNet alone").
- *Scenario-aware user intent module (SUIM)*: two contextual Q estimators Q^A and Q^B. Each is
  4-head attention with Q = e_i, K = V = e_i + e_s under a causal + padding mask; the output at
  the newest position (the "next position" representation) is concatenated with v_U and passed
  through two FC layers and a softmax over scenarios. Without MHA only the two FC layers over
  v_U remain.
- *Double Q-learning* (Algorithm 1, gamma 0.5): state s = the prefix, action a = the target's
  scenario, r = the target's reward, s' = the prefix with the target appended. Each batch picks
  A or B at random (torch's generator); for A the target is ``y = r + gamma * Q^B(s', argmax_a
  Q^A(s', a))`` and the loss ``(Q^A(s, a) - y)^2`` (B symmetric). As in the paper the
  estimators end in a softmax and the rewards are raw (a click alone is 1), so every target is
  >= 1 and out of the softmax's reach: the loss pushes the estimator's mass onto the scenario
  taken, more strongly the larger the reward, and its values act as the next-scenario
  probabilities the paper's gate calls ``next_scenario_prob``. (Scaling rewards into [0, 1]
  was tried and inverts this: targets below 1/2 push the taken scenario's value *down*, and
  Q(search) then ranks the next scenario with an AUC near 0 on the world.)
- *Intent representation learning*: three FC layers (ReLU between) map v_U to a predicted target
  embedding a; triplet loss ``max(0, |a - p| - |a - n| + margin)`` with p the target's embedding
  and ``n_negatives`` (10) uniform random items (a negative equal to the target or in the
  sequence is masked out).
- *Gate*: ``1 / (1 - q + eps)`` with q the mean of Q^A and Q^B at the target's scenario; the
  loss is ``loss_q + gate * triplet``. Choice: the gate is detached (a gradient through it
  would push the true scenario's Q down to shrink the weighted loss, against loss_q), and
  ``eps = 0.05`` (the paper: "a very small number"; 0.05 bounds the weight at 20).

Scoring (full ranking): ``-|a - e_i|^2``, the distance the triplet loss trains.

Ablations (paper Table 2): ``variant="ruie"``, ``"no_mha"`` (w/o MHA), ``"no_mha_gate"`` (w/o MHA
& gate: gate 1), ``"no_mha_gate_suim"`` (w/o MHA & gate & SUIM: NextItNet + the triplet loss).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recgym.agents.sequence.base import PAD, Context, SequenceRecommender, as_long_tensor
from recgym.agents.sequence.conv import NextItNetEncoder

VARIANTS: tuple[str, ...] = ("ruie", "no_mha", "no_mha_gate", "no_mha_gate_suim")
"""The full model and the paper's three ablations (Table 2), in the paper's order reversed."""
PAPER_REWARD: dict[str, float] = {"click": 1.0, "forward": 2.0, "follow": 3.0, "like": 3.0}
"""Section 3.3's rewards per behaviour (share = forward)."""


def behaviour_reward(
    responses: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """Reward of each behaviour: ``sum_b weights[b] * responses[b]`` (missing behaviours 0)."""
    weights = PAPER_REWARD if weights is None else weights
    out = None
    for name, w in weights.items():
        if name in responses:
            part = w * np.asarray(responses[name], dtype=np.float64)
            out = part if out is None else out + part
    if out is None:
        raise ValueError(f"behaviour_reward: none of {sorted(weights)} in the responses")
    return out


class ContextualQ(nn.Module):
    """One contextual Q estimator: masked 4-head attention (optional) + two FC layers + softmax."""

    def __init__(self, dim: int, n_scenarios: int, heads: int = 4, use_mha: bool = True):
        super().__init__()
        self.use_mha = use_mha
        if use_mha:
            self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        width = 2 * dim if use_mha else dim
        self.fc1 = nn.Linear(width, dim)
        self.fc2 = nn.Linear(dim, n_scenarios)

    def forward(
        self, e_item: torch.Tensor, e_both: torch.Tensor, mask: torch.Tensor, v_u: torch.Tensor
    ) -> torch.Tensor:
        """(B, n_scenarios) softmax values from (B, W, d) embeddings, mask (B, W) and v_U."""
        x = v_u
        if self.use_mha:
            w = mask.shape[1]
            causal = torch.ones(w, w, dtype=torch.bool, device=mask.device).triu(1)
            # a row whose item is padding still needs one key: let it attend to itself
            blocked = causal[None] | ~mask[:, None, :]
            blocked = blocked & ~torch.eye(w, dtype=torch.bool, device=mask.device)[None]
            attn_mask = blocked.repeat_interleave(self.mha.num_heads, dim=0)
            out, _ = self.mha(e_item, e_both, e_both, attn_mask=attn_mask, need_weights=False)
            x = torch.cat([out[:, -1] * mask[:, -1:], v_u], 1)
        return torch.softmax(self.fc2(F.relu(self.fc1(x))), dim=-1)


class RUIE(SequenceRecommender):
    """RUIE (module docstring). ``variant`` picks the full model or an ablation."""

    uses_context: ClassVar[bool] = True

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        max_len: int = 20,
        n_scenarios: int = 2,
        variant: str = "ruie",
        heads: int = 4,
        gamma: float = 0.5,
        margin: float = 0.5,
        n_negatives: int = 10,
        eps: float = 0.05,
        dilations: tuple[int, ...] = (1, 4, 1, 4),
    ) -> None:
        super().__init__(n_items, dim, max_len)
        if variant not in VARIANTS:
            raise ValueError(f"RUIE: variant must be one of {VARIANTS}, got {variant!r}")
        if dim % heads:
            raise ValueError(f"RUIE: dim {dim} must be divisible by heads {heads}")
        if not 0 <= gamma < 1 or margin < 0 or n_negatives < 1 or eps <= 0:
            raise ValueError("RUIE: need 0 <= gamma < 1, margin >= 0, n_negatives >= 1, eps > 0")
        self.variant, self.n_scenarios = variant, int(n_scenarios)
        self.gamma, self.margin, self.n_negatives = float(gamma), float(margin), int(n_negatives)
        self.eps = float(eps)
        self.use_suim = variant != "no_mha_gate_suim"
        self.use_gate = variant in ("ruie", "no_mha")
        use_mha = variant == "ruie"
        self.scen_emb = nn.Embedding(self.n_scenarios, dim)
        nn.init.normal_(self.scen_emb.weight, std=dim**-0.5)
        self.encoder = NextItNetEncoder(
            n_items, dim, max_len, dilations=dilations, item_emb=self.item_emb
        )
        self.intent = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)
        )
        if self.use_suim:
            self.q_a = ContextualQ(dim, self.n_scenarios, heads, use_mha)
            self.q_b = ContextualQ(dim, self.n_scenarios, heads, use_mha)

    # ------------------------------------------------------------------ pieces
    def _scenarios(self, context: Context, like: torch.Tensor) -> torch.Tensor:
        s = self.context_tensor(context, "scenario", like)
        if s.numel() and s.max() >= self.n_scenarios:
            raise ValueError(f"RUIE: scenario ids must lie in [0, {self.n_scenarios})")
        return s

    def _states(
        self, ids: torch.Tensor, mask: torch.Tensor, scen: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(v_U (B, d), item embeddings (B, W, d), item + scenario embeddings (B, W, d))."""
        e_item = self.item_emb(ids)
        e_both = e_item if scen is None else e_item + self.scen_emb(scen) * mask[..., None]
        h = self.encoder.encode_embedded(e_both if self.use_suim else e_item, mask)
        return h[:, -1], e_item, e_both

    def encode(self, ids: torch.Tensor, mask: torch.Tensor, context: Context) -> torch.Tensor:
        """The predicted target embedding a (B, d)."""
        scen = self._scenarios(context, ids) if self.use_suim else None
        v_u, _, _ = self._states(ids, mask, scen)
        return self.intent(v_u)

    def score_state(self, state: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """``-|a - e_i|^2`` for the whole catalogue (B, n_items) or candidates (B, M)."""
        v = self.item_vectors(items)
        if items is None:
            return -torch.cdist(state, v).pow(2)
        return -(state[:, None, :] - v).pow(2).sum(-1)

    @torch.no_grad()
    def q_values(self, seq: np.ndarray | torch.Tensor, context: Context) -> torch.Tensor:
        """(B, n_scenarios): the mean of Q^A and Q^B at the state `seq` (eval mode as is).
        Raises ValueError for the variant without SUIM (it has no Q)."""
        if not self.use_suim:
            raise ValueError("RUIE variant 'no_mha_gate_suim' has no Q estimator")
        ids, mask = self.prepare(seq)
        scen = self._scenarios(context, ids)
        v_u, e_item, e_both = self._states(ids, mask, scen)
        return 0.5 * (self.q_a(e_item, e_both, mask, v_u) + self.q_b(e_item, e_both, mask, v_u))

    # ------------------------------------------------------------------ loss
    def loss(
        self,
        seq: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        context: Context = None,
    ) -> torch.Tensor:
        """``loss_q + gate * triplet`` (module docstring); triplet only without SUIM."""
        ids, mask = self.prepare(seq)
        target = self._check_target(target, len(ids))
        scen = self._scenarios(context, ids) if self.use_suim else None
        v_u, e_item, e_both = self._states(ids, mask, scen)
        a = self.intent(v_u)
        p = self.item_vectors(target)
        neg = self.sample_items((len(ids), self.n_negatives), ids.device)
        bad = (neg == target[:, None]) | ((neg + 1)[:, :, None] == ids[:, None, :]).any(-1)
        d_pos = (a - p).norm(dim=-1, keepdim=True)
        d_neg = (a[:, None, :] - self.item_vectors(neg)).norm(dim=-1)
        per_neg = F.relu(d_pos - d_neg + self.margin) * (~bad)
        triplet = per_neg.sum(1) / (~bad).sum(1).clamp(min=1)
        if not self.use_suim:
            return triplet.mean()
        loss_q, q_now = self._double_q_loss(ids, mask, scen, target, context, v_u, e_item, e_both)
        gate = torch.ones_like(triplet)
        if self.use_gate:
            gate = 1.0 / (1.0 - q_now.detach() + self.eps)
        return loss_q + (gate * triplet).mean()

    def _double_q_loss(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        scen: torch.Tensor,
        target: torch.Tensor,
        context: Context,
        v_u: torch.Tensor,
        e_item: torch.Tensor,
        e_both: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Double Q loss of the updated estimator, mean Q of both at the taken scenario (B,))."""
        action = self.context_tensor(context, "target_scenario", target)
        reward = self.context_tensor(context, "target_reward", target, required=False)
        r = torch.ones(len(ids), device=ids.device) if reward is None else reward.float()
        # s': the prefix with the target appended (its scenario too), newest last
        next_ids = torch.cat([ids[:, 1:], (target + 1)[:, None]], 1)
        next_mask = torch.cat([mask[:, 1:], torch.ones_like(mask[:, :1])], 1)
        next_scen = torch.cat([scen[:, 1:], action[:, None]], 1)
        qa = self.q_a(e_item, e_both, mask, v_u)
        qb = self.q_b(e_item, e_both, mask, v_u)
        with torch.no_grad():
            v_next, e_item_n, e_both_n = self._states(next_ids, next_mask, next_scen)
            qa_next = self.q_a(e_item_n, e_both_n, next_mask, v_next)
            qb_next = self.q_b(e_item_n, e_both_n, next_mask, v_next)
        update_a = bool(torch.rand(()) < 0.5)  # Algorithm 1, line 4: choose A or B at random
        pick = qa if update_a else qb
        pick_next, other_next = (qa_next, qb_next) if update_a else (qb_next, qa_next)
        best = pick_next.argmax(1, keepdim=True)
        y = r + self.gamma * other_next.gather(1, best).squeeze(1)
        q_sa = pick.gather(1, action[:, None]).squeeze(1)
        q_now = 0.5 * (qa + qb).gather(1, action[:, None]).squeeze(1)
        return F.mse_loss(q_sa, y), q_now


class RUIEPolicy:
    """Acts in `recgym/MultiScenario-v0` with a trained RUIE (or any context-using
    `SequenceRecommender`): scores the candidates by the model from the observation's
    cross-scenario sequence (``seq_item``, ``seq_scenario``) and the request's scenario."""

    reads_hidden_state = False

    def __init__(self, model: SequenceRecommender, action_space: Any = None):
        self.model, self.action_space = model, action_space

    @torch.no_grad()
    def values(self, obs: Mapping[str, Any]) -> np.ndarray:
        """(N,) model scores of the observation's candidates."""
        seq = np.asarray(obs["seq_item"], dtype=np.int64)[None]
        scen = np.asarray(obs["seq_scenario"], dtype=np.int64)[None]
        context = {
            "scenario": torch.as_tensor(np.where(seq == PAD, 0, scen)),
            "target_scenario": torch.as_tensor(np.asarray(obs["scenario"]).reshape(1)),
        }
        items = as_long_tensor(np.asarray(obs["item_id"])[None])
        self.model.eval()
        return self.model.score(seq, items, context)[0].cpu().numpy()

    def act(self, obs: Mapping[str, Any]) -> Any:
        from recgym.envs.contract import action_from_values

        return action_from_values(self.values(obs), self.action_space, obs.get("mask"))


__all__ = ["PAPER_REWARD", "RUIE", "VARIANTS", "ContextualQ", "RUIEPolicy", "behaviour_reward"]
