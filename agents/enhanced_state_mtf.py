"""Enhanced-State RL-MTF (Liu et al. 2024) as a Tianshou 2 offline algorithm.

The actor mu(s_tj) maps the *enhanced state* of a user-item pair, ``s_tj = [user | context
(flush num) | history summary | the item's row (features and MTL predictions)]``, to that
pair's fusion vector in [-1, 1]^10. Learning, on compact exploration transitions
(`agents.mtf_data`: per request the l shown items and a few unshown candidates with reward
0, so that an item's own action - which decides whether it is shown - has an effect the
critic can see; the sums over j below run over those rows):

- m independent critics Q^i(s_tj, a_tj) (one batched ensemble, randomly initialised apart),
  each with a target network; the TD error is on the list sums (Formula 7)::

      sum_j Q^i(s_tj, a_tj)  vs  sum_j r_tj + (1 - terminated) * sum_j (gamma * Q'^i(s'_j,
      mu'(s'_j)) - delta * d(mu'(s'_j), mu_bp(s'_j), lower_b, upper_b))

  the bound penalty on the next action enters the target (Formula 7 adds it to the loss,
  where it would carry no gradient to the critic; the issue puts it in the target);
- the actor minimises ``-mean_i Q^i + eta * d + lambda * std_i Q^i`` per sub-state
  (Formula 5), with the bound penalty (Formula 6, per action dimension, summed)::

      d = exp((mu - (mu_bp + upper_b)) / (beta * (upper_b - lower_b)))   above the bound,
          exp(((mu_bp + lower_b) - mu) / (beta * (upper_b - lower_b)))   below it, 0 inside;

- targets (actor and critics) soft-updated with rate tau every ``target_delay`` updates
  (the paper's w = 0.08, L = 15).

``per_item=False`` is the same learner on the user-level state with one action per request
(IntegratedRL-MTF, `agents.integrated_mtf`).

The item critic (``item_critic``; the paper is silent on how a pair's action reaches its
critic). A pair's action matters only through whether the fused score puts the item in the
top l, and that depends on the *other* items' scores, which Q(s_tj, a_tj) cannot see. Since
every item reward is >= 0, the literal critic (``"pair"``) learns "being shown is good" for
every item and pushes all scores the same way, so it cannot learn a ranking: measured on the
tiny world (12 exploration episodes of 64 users, 400 steps), its weighted GAUC was 0.072 below
IntegratedRL-MTF's. The default ``"ranked"`` critic values the item *if shown*:
U^i(s_tj) = R^i(s_tj) + F^i(s_tj), R fitted to the item's own logged reward and F by the TD
error on the list (sum over the l shown rows of F^i vs gamma * the next list's sum of U'^i over
the target actor's top l - delta * d); the actor maximises the soft top-l weights of its fused
scores times the ensemble's value, ``sum_j w_j (mean_i U^i_j - lambda std_i U^i_j)`` with
``w = l * softmax(score / (tau * std(score)))`` over the request's rows (shift-invariant: raising
one item's score lowers the others' weights), minus eta * d as in Formula 5. It ranks the
logged items well (weighted GAUC 0.78 against 0.55 for mu_bp and 0.61-0.63 for
IntegratedRL-MTF, the paper's 0.798) but its values are close to the items' immediate rewards:
online it ranks long videos first and sessions end sooner (UVC about 15 against mu_bp's 24).
The fused score is the default product form with the default ranges (`envs.mtf_fusion`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, Policy, TrainingStats
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from recgym.agents.mtf_data import state_of, to_buffer
from recgym.agents.seeding import seeded_global_rngs
from recgym.agents.tb import update_curve
from recgym.device import resolve_device
from recgym.envs.mtf import ACTION_DIM, action_to_fusion, fused_values


@dataclass(kw_only=True)
class MTFRLConfig:
    """Enhanced-State RL-MTF / IntegratedRL-MTF hyper-parameters (paper's values noted)."""

    per_item: bool = True
    """Act per user-item pair on the enhanced state (False: per request, IntegratedRL-MTF)."""
    item_critic: str = "ranked"
    """How a per-item critic reads the pair's action (per_item only; module doc, "The item
    critic"): ``"ranked"`` (default) values the item if shown, U(s_tj), and the action enters
    through the soft top-l weight of its fused score; ``"pair"`` is the paper's literal
    Q(s_tj, a_tj)."""
    rank_temperature: float = 1.0
    """tau of the ranked critic's soft top-l weights ``l * softmax(score / (tau * std))``."""
    n_critics: int = 10
    """m, independent critics (paper: 10)."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """MLP widths of the actor and of each critic (the paper's are not given)."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics."""
    gamma: float = 0.9
    """Discount per request."""
    tau: float = 0.08
    """Soft-update rate of the targets (paper: 0.08)."""
    target_delay: int = 15
    """Updates between soft updates of the targets (paper: L = 15)."""
    eta: float = 1.0
    """Weight of the bound penalty in the actor loss."""
    lam: float = 0.5
    """lambda, weight of the critics' standard deviation in the actor loss."""
    beta: float = 0.5
    """Temperature of the bound penalty (Formula 6)."""
    delta: float = 0.1
    """Weight of the next action's bound penalty in the TD target (Formula 7)."""
    batch_size: int = 256
    """Transitions per gradient step (paper: 256)."""
    gradient_steps: int = 2000
    """Gradient steps (paper: 300,000 epochs; far beyond a 2-core CPU budget)."""
    seed: int = 0
    """Seeds initialisation and the buffer's sampler."""
    device: str = "auto"
    """Torch device of the networks (`recgym.device.resolve_device`; initialised on the CPU)."""


def bound_penalty(
    mu: torch.Tensor,
    mu_bp: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Formula 6 summed over action dimensions: (..., 10) each (bounds broadcast) -> (...,)."""
    hi, lo = mu_bp + upper, mu_bp + lower
    width = (beta * (upper - lower)).clamp_min(1e-6)
    above = torch.exp(((mu - hi) / width).clamp(max=10.0))
    below = torch.exp(((lo - mu) / width).clamp(max=10.0))
    zero = torch.zeros_like(mu)
    return (torch.where(mu > hi, above, zero) + torch.where(mu < lo, below, zero)).sum(-1)


class EnsembleMLP(nn.Module):
    """m independent MLPs evaluated in one batched pass: (..., n_in) -> (m, ..., n_out)."""

    def __init__(self, n_members: int, n_in: int, hidden: tuple[int, ...], n_out: int) -> None:
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            w = torch.empty(n_members, a, b)
            for i in range(n_members):  # each member its own default Linear initialisation
                nn.init.kaiming_uniform_(w[i].T, a=5**0.5)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(n_members, 1, b)))
        self.n_members = n_members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1]).expand(self.n_members, -1, -1)
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.weights) - 1:
                h = torch.relu(h)
        return h.reshape(self.n_members, *lead, -1)


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class FusionActorPolicy(Policy):
    """The actor as a Tianshou `Policy`; also a batched MTF policy (`actions(obs)`).

    Inputs are standardised with the dataset's mean and std (buffers). ``forward`` takes a
    Batch whose ``obs`` holds ``state`` (B, S) and ``rows`` (B, L, F) and returns ``act``
    (B, L, 10) (per request: (B, 1, 10)).
    """

    def __init__(self, *, n_in: int, hidden: tuple[int, ...], per_item: bool) -> None:
        shape = (ACTION_DIM,)
        super().__init__(
            action_space=spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float32),
            action_scaling=False,
            action_bound_method=None,
        )
        self.actor = mlp(n_in, hidden, ACTION_DIM)
        self.per_item = per_item
        self.register_buffer("mean", torch.zeros(n_in))
        self.register_buffer("std", torch.ones(n_in))

    def sub_states(self, state: Any, rows: Any) -> torch.Tensor:
        """(B, S), (B, L, F) -> (B, L, S + F) standardised (per request: (B, 1, S))."""
        dev = self.mean.device
        state = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=dev)
        if self.per_item:
            rows = torch.as_tensor(np.asarray(rows), dtype=torch.float32, device=dev)
            x = torch.cat([state[:, None, :].expand(-1, rows.shape[1], -1), rows], dim=-1)
        else:
            x = state[:, None, :]
        return (x - self.mean) / self.std

    def mu(self, x: torch.Tensor, actor: nn.Module | None = None) -> torch.Tensor:
        return torch.tanh((actor or self.actor)(x))

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        with torch.no_grad():
            act = self.mu(self.sub_states(batch.obs.state, batch.obs.rows))
        return Batch(act=act.cpu().numpy(), state=state)

    def actions(self, obs: Any) -> np.ndarray:
        """(B, N, 10) fusion actions for a batch of MTFSession observations."""
        rows = np.asarray(obs["candidates"])
        with torch.no_grad():
            act = self.mu(self.sub_states(state_of(obs), rows)).cpu().numpy().astype(np.float64)
        return np.broadcast_to(act, (*rows.shape[:2], ACTION_DIM)).copy()


@dataclass(kw_only=True)
class MTFRLStats(TrainingStats):
    critic_loss: float
    actor_loss: float
    q_mean: float
    q_std: float
    penalty: float


class EnhancedStateMTF(OfflineAlgorithm[FusionActorPolicy]):
    """The learner (module doc). `_update_with_batch` takes buffer batches of `to_buffer`."""

    def __init__(self, *, policy: FusionActorPolicy, config: MTFRLConfig) -> None:
        super().__init__(policy=policy)
        cfg = self.config = config
        if cfg.item_critic not in ("ranked", "pair"):
            raise ValueError(f"item_critic must be 'ranked' or 'pair', got {cfg.item_critic!r}")
        self.ranked = policy.per_item and cfg.item_critic == "ranked"
        n_in = int(policy.mean.numel())
        n_act = 0 if self.ranked else ACTION_DIM
        n_out = 2 if self.ranked else 1  # ranked: the item's reward and its future, apart
        self.critics = EnsembleMLP(cfg.n_critics, n_in + n_act, tuple(cfg.hidden_sizes), n_out)
        self.critics_target = copy.deepcopy(self.critics)
        self.actor_target = copy.deepcopy(policy.actor)
        self.actor_optim = self._create_optimizer(
            policy.actor, AdamOptimizerFactory(lr=cfg.actor_lr)
        )
        self.critic_optim = self._create_optimizer(
            self.critics, AdamOptimizerFactory(lr=cfg.critic_lr)
        )
        self._updates = 0

    def _t(self, a: Any) -> torch.Tensor:
        """A batch field as float32 on the networks' device."""
        return torch.as_tensor(np.asarray(a), dtype=torch.float32, device=self.policy.mean.device)

    def _q(self, critics: nn.Module, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return critics(torch.cat([x, a], dim=-1))[..., 0]  # (m, B, L)

    def _pieces(self, obs: Batch) -> tuple[torch.Tensor, ...]:
        x = self.policy.sub_states(obs.state, obs.rows)
        mu_bp = self._t(obs.mu_bp)
        if not self.policy.per_item:  # the request's baseline: the mean over its rows
            mu_bp = mu_bp.mean(dim=1, keepdim=True)
        lower = self._t(obs.lower)[:, None, :]
        upper = self._t(obs.upper)[:, None, :]
        return x, mu_bp, lower, upper

    def _fused(self, act: torch.Tensor, rows: Any) -> torch.Tensor:
        """(B, L, 10) actions, raw (B, L, F) rows -> (B, L) product-form fused scores
        (`envs.mtf_fusion.product_fusion` in torch, the default ranges)."""
        power, bias = action_to_fusion(act)
        values = self._t(fused_values(np.asarray(rows)))
        return (power * torch.log(values + bias)).sum(-1)

    def _soft_top(self, score: torch.Tensor, n_shown: int) -> torch.Tensor:
        """(B, L) scores -> (B, L) soft top-l weights ``l * softmax(score / (tau * std))``
        (std over the request's rows, detached): shift-invariant, so raising one item's
        score lowers the others' weights - the competition for the l slots."""
        scale = score.detach().std(-1, keepdim=True).clamp_min(1e-3) * self.config.rank_temperature
        return n_shown * torch.softmax(score / scale, dim=-1)

    def _update_ranked(self, batch: Batch) -> MTFRLStats:
        """One update of the ranked item critic (module doc, "The item critic")."""
        cfg, pol = self.config, self.policy
        x, mu_bp, lower, upper = self._pieces(batch.obs)
        n_shown = int(np.asarray(batch.info.item_reward).shape[1])
        alive = 1.0 - self._t(batch.terminated)
        with torch.no_grad():
            x2, mu_bp2, lower2, upper2 = self._pieces(batch.obs_next)
            a2 = pol.mu(x2, self.actor_target)
            pen2 = bound_penalty(a2, mu_bp2, lower2, upper2, cfg.beta).sum(-1)
            top2 = self._fused(a2, batch.obs_next.rows).topk(n_shown, dim=-1).indices
            u2 = self.critics_target(x2).sum(-1)  # (m, B, L) reward + future
            q2 = u2.gather(-1, top2.expand(u2.shape[0], -1, -1)).sum(-1)  # (m, B)
            target = alive * (cfg.gamma * q2 - cfg.delta * pen2)
        heads = self.critics(x[:, :n_shown])  # the logged list: its first l rows
        item_loss = (heads[..., 0] - self._t(batch.info.item_reward)).pow(2).mean()
        future_loss = (heads[..., 1].sum(-1) - target).pow(2).mean()
        critic_loss = item_loss + future_loss
        self.critic_optim.step(critic_loss)

        mu = pol.mu(x)
        with torch.no_grad():
            u = self.critics(x).sum(-1)
            value = u.mean(0) - cfg.lam * u.std(0)  # (B, L)
        weight = self._soft_top(self._fused(mu, batch.obs.rows), n_shown)
        pen = bound_penalty(mu, mu_bp, lower, upper, cfg.beta)
        actor_loss = (-(weight * value).sum(-1) + cfg.eta * pen.sum(-1)).mean() / n_shown
        self.actor_optim.step(actor_loss)
        self._soft_update()
        return MTFRLStats(
            critic_loss=float(critic_loss.detach()),
            actor_loss=float(actor_loss.detach()),
            q_mean=float(u.mean()),
            q_std=float(u.std(0).mean()),
            penalty=float(pen.detach().mean()),
        )

    def _soft_update(self) -> None:
        cfg = self.config
        self._updates += 1
        if self._updates % cfg.target_delay == 0:
            with torch.no_grad():
                for tgt, src in (
                    (self.critics_target, self.critics),
                    (self.actor_target, self.policy.actor),
                ):
                    for p_t, p in zip(tgt.parameters(), src.parameters(), strict=True):
                        p_t.mul_(1.0 - cfg.tau).add_(cfg.tau * p)

    def _update_with_batch(self, batch: Batch) -> MTFRLStats:
        if self.ranked:
            return self._update_ranked(batch)
        cfg, pol = self.config, self.policy
        x, mu_bp, lower, upper = self._pieces(batch.obs)
        if pol.per_item:
            a = self._t(batch.act)
        else:
            a = self._t(batch.obs.req_act)[:, None, :]
        rew = self._t(batch.rew)
        alive = 1.0 - self._t(batch.terminated)
        with torch.no_grad():
            x2, mu_bp2, lower2, upper2 = self._pieces(batch.obs_next)
            a2 = pol.mu(x2, self.actor_target)
            pen2 = bound_penalty(a2, mu_bp2, lower2, upper2, cfg.beta).sum(-1)
            q2 = self._q(self.critics_target, x2, a2).sum(-1)  # (m, B)
            target = rew + alive * (cfg.gamma * q2 - cfg.delta * pen2)
        q = self._q(self.critics, x, a).sum(-1)
        critic_loss = (q - target).pow(2).mean()
        self.critic_optim.step(critic_loss)

        mu = pol.mu(x)
        q_pi = self._q(self.critics, x, mu)  # (m, B, L)
        pen = bound_penalty(mu, mu_bp, lower, upper, cfg.beta)
        actor_loss = (-q_pi.mean(0) + cfg.eta * pen + cfg.lam * q_pi.std(0)).mean()
        self.actor_optim.step(actor_loss)
        self._soft_update()
        return MTFRLStats(
            critic_loss=float(critic_loss.detach()),
            actor_loss=float(actor_loss.detach()),
            q_mean=float(q_pi.detach().mean()),
            q_std=float(q_pi.detach().std(0).mean()),
            penalty=float(pen.detach().mean()),
        )


def build(tr: dict[str, np.ndarray], config: MTFRLConfig) -> EnhancedStateMTF:
    """A fresh learner whose input standardisation comes from transitions `tr`."""
    if config.per_item:
        x = np.concatenate(
            [np.repeat(tr["state"][:, None, :], tr["rows"].shape[1], axis=1), tr["rows"]], -1
        ).reshape(-1, tr["state"].shape[1] + tr["rows"].shape[2])
    else:
        x = tr["state"]
    policy = FusionActorPolicy(
        n_in=x.shape[1], hidden=tuple(config.hidden_sizes), per_item=config.per_item
    )
    policy.mean.copy_(torch.as_tensor(x.mean(0), dtype=torch.float32))
    policy.std.copy_(torch.as_tensor(x.std(0), dtype=torch.float32).clamp_min(1e-3))
    # built on the CPU (the seeded initial weights), then moved with its optimizers' parameters
    return EnhancedStateMTF(policy=policy, config=config).to(resolve_device(config.device))


def train(
    tr: dict[str, np.ndarray],
    config: MTFRLConfig | None = None,
    algo: EnhancedStateMTF | None = None,
) -> tuple[EnhancedStateMTF, dict[str, float]]:
    """Train offline on transitions `tr` for ``gradient_steps`` (continuing `algo` if given,
    as the progressive training mode does); returns the learner (its ``policy`` acts) and
    the last update's stats."""
    cfg = config or (algo.config if algo is not None else MTFRLConfig())
    torch.set_num_threads(1)
    start = time.perf_counter()
    with seeded_global_rngs(cfg.seed):
        algo = algo or build(tr, cfg)
        buf = to_buffer(tr, seed=cfg.seed)
        stats: Any = None
        name = "Enhanced-State" if cfg.per_item else "IntegratedRL-MTF"
        with policy_within_training_step(algo.policy), update_curve(name, cfg.seed) as log:
            for step in range(cfg.gradient_steps):
                stats = algo.update(buffer=buf, sample_size=min(cfg.batch_size, len(buf)))
                log(step + 1, stats)  # TensorBoard inside a stage
    out = {
        k: float(getattr(stats, k))
        for k in ("critic_loss", "actor_loss", "q_mean", "q_std", "penalty")
    }
    out["seconds"] = time.perf_counter() - start
    algo.policy.eval()
    return algo, out


__all__ = [
    "EnhancedStateMTF",
    "EnsembleMLP",
    "FusionActorPolicy",
    "MTFRLConfig",
    "MTFRLStats",
    "bound_penalty",
    "build",
    "train",
]
