"""Implicit Q-Learning (Kostrikov, Nair and Levine 2021) as a Tianshou 2 offline algorithm.

Tianshou 2.0.1 has no IQL; this follows the paper (its Algorithm 1), on a Box observation and
a Box action in [-1, 1]:

- value: ``L_V = E[L2_tau(min_k Q'_k(s, a) - V(s))]`` with the expectile loss
  ``L2_tau(u) = |tau - 1(u < 0)| u^2`` (`expectile_loss`): V approaches an upper expectile of Q
  over the data's actions, never querying actions outside the data;
- critics: ``L_Q = E[(r + gamma (1 - terminated) V(s') - Q_k(s, a))^2]`` for two critics,
  targets Polyak-averaged with rate tau;
- actor: advantage-weighted regression, ``L_pi = E[exp(beta (Q'(s, a) - V(s))) * -log pi(a|s)]``
  with the weight clipped at `max_weight` (`awr_weights`). Our policy is a Gaussian with a
  fixed standard deviation around a tanh mean, so ``-log pi(a|s)`` is, up to constants, the
  squared error ``|mu(s) - a|^2``; the policy acts with its mean.
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
from tianshou.data import Batch, ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from torch import nn

from recgym.agents.seeding import seed_buffer_sampler, seeded_global_rngs
from recgym.agents.tb import update_curve
from recgym.device import resolve_device


@dataclass(kw_only=True)
class IQLConfig:
    """IQL hyper-parameters (the paper's locomotion values where they fit)."""

    expectile: float = 0.7
    """tau of the value's expectile loss (0.5 = mean; higher = closer to the max)."""
    beta: float = 3.0
    """Inverse temperature of the advantage weights."""
    max_weight: float = 100.0
    """Advantage weights are clipped here (the paper's 100)."""
    gamma: float = 0.9
    """Discount per step."""
    tau: float = 0.005
    """Polyak rate of the critics' targets."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """MLP widths of the actor, critics and value network."""
    lr: float = 1e-3
    """Adam learning rate of every network."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gradient_steps: int = 2000
    """Gradient steps."""
    seed: int = 0
    """Seeds initialisation and the buffer's sampler."""
    device: str = "auto"
    """Torch device of the networks (`recgym.device.resolve_device`; initialised on the CPU)."""


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Mean of ``|expectile - 1(diff < 0)| * diff^2`` (IQL's L2_tau)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


def awr_weights(advantage: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(beta * advantage), max_weight)``, the actor's per-sample weights."""
    return torch.exp(beta * advantage).clamp(max=max_weight)


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class IQLPolicy(Policy):
    """The actor's mean, tanh-squashed to [-1, 1], on standardised observations."""

    def __init__(self, *, obs_dim: int, action_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__(
            action_space=spaces.Box(-1.0, 1.0, shape=(action_dim,), dtype=np.float32),
            observation_space=spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32),
            action_scaling=False,
            action_bound_method=None,
        )
        self.actor = _mlp(obs_dim, hidden, action_dim)
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def norm(self, obs: Any) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.mean.device)
        return (x - self.mean) / self.std

    def mu(self, obs: Any) -> torch.Tensor:
        return torch.tanh(self.actor(self.norm(obs)))

    def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
        with torch.no_grad():
            return Batch(act=self.mu(batch.obs).cpu().numpy(), state=state)

    def act_array(self, obs: np.ndarray) -> np.ndarray:
        """(B, obs_dim) -> (B, action_dim) deterministic actions."""
        with torch.no_grad():
            return self.mu(obs).cpu().numpy()


@dataclass(kw_only=True)
class IQLStats(TrainingStats):
    value_loss: float
    critic_loss: float
    actor_loss: float
    advantage: float


class IQL(OfflineAlgorithm[IQLPolicy]):
    """IQL's learner (module doc); batches are flat (obs, act, rew, obs_next, terminated)."""

    def __init__(self, *, policy: IQLPolicy, config: IQLConfig) -> None:
        super().__init__(policy=policy)
        cfg = self.config = config
        obs_dim, act_dim = policy.mean.numel(), int(policy.action_space.shape[0])
        hidden = tuple(cfg.hidden_sizes)
        self.critic1 = _mlp(obs_dim + act_dim, hidden, 1)
        self.critic2 = _mlp(obs_dim + act_dim, hidden, 1)
        self.critic1_target = copy.deepcopy(self.critic1)
        self.critic2_target = copy.deepcopy(self.critic2)
        self.value = _mlp(obs_dim, hidden, 1)
        lr = AdamOptimizerFactory(lr=cfg.lr)
        self.actor_optim = self._create_optimizer(policy.actor, lr)
        self.critic_optim = self._create_optimizer(nn.ModuleList([self.critic1, self.critic2]), lr)
        self.value_optim = self._create_optimizer(self.value, lr)

    def _update_with_batch(self, batch: Batch) -> IQLStats:
        cfg, pol = self.config, self.policy
        s, s2 = pol.norm(batch.obs), pol.norm(batch.obs_next)
        dev = pol.mean.device
        a = torch.as_tensor(np.asarray(batch.act), dtype=torch.float32, device=dev)
        r = torch.as_tensor(np.asarray(batch.rew), dtype=torch.float32, device=dev)
        alive = 1.0 - torch.as_tensor(np.asarray(batch.terminated), dtype=torch.float32, device=dev)
        sa = torch.cat([s, a], dim=-1)
        with torch.no_grad():
            q_target = torch.min(self.critic1_target(sa), self.critic2_target(sa))[:, 0]
        v = self.value(s)[:, 0]
        value_loss = expectile_loss(q_target - v, cfg.expectile)
        self.value_optim.step(value_loss)

        with torch.no_grad():
            target = r + cfg.gamma * alive * self.value(s2)[:, 0]
        critic_loss = (self.critic1(sa)[:, 0] - target).pow(2).mean() + (
            self.critic2(sa)[:, 0] - target
        ).pow(2).mean()
        self.critic_optim.step(critic_loss)

        with torch.no_grad():
            advantage = q_target - self.value(s)[:, 0]
            weight = awr_weights(advantage, cfg.beta, cfg.max_weight)
        actor_loss = (weight * (pol.mu(batch.obs) - a).pow(2).sum(-1)).mean()
        self.actor_optim.step(actor_loss)

        with torch.no_grad():
            for tgt, src in (
                (self.critic1_target, self.critic1),
                (self.critic2_target, self.critic2),
            ):
                for p_t, p in zip(tgt.parameters(), src.parameters(), strict=True):
                    p_t.mul_(1.0 - cfg.tau).add_(cfg.tau * p)
        return IQLStats(
            value_loss=float(value_loss.detach()),
            critic_loss=float(critic_loss.detach()),
            actor_loss=float(actor_loss.detach()),
            advantage=float(advantage.mean()),
        )


def train_iql(
    buffer: ReplayBuffer, config: IQLConfig | None = None
) -> tuple[IQL, dict[str, float]]:
    """Train IQL on a flat offline `buffer` (observations standardised with its statistics)."""
    cfg = config or IQLConfig()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = buffer[np.arange(len(buffer))]
    obs = np.asarray(data.obs, dtype=np.float32)
    with seeded_global_rngs(cfg.seed):
        policy = IQLPolicy(
            obs_dim=obs.shape[1],
            action_dim=np.asarray(data.act).shape[1],
            hidden=tuple(cfg.hidden_sizes),
        )
        policy.mean.copy_(torch.as_tensor(obs.mean(0)))
        policy.std.copy_(torch.as_tensor(obs.std(0)).clamp_min(1e-3))
        # built on the CPU (the seeded initial weights), then moved with its optimizers' parameters
        algo = IQL(policy=policy, config=cfg).to(resolve_device(cfg.device))
        seed_buffer_sampler(buffer, cfg.seed)
        stats: Any = None
        with policy_within_training_step(policy), update_curve("IQL", cfg.seed) as log:
            for step in range(cfg.gradient_steps):
                stats = algo.update(buffer=buffer, sample_size=min(cfg.batch_size, len(buffer)))
                log(step + 1, stats)  # TensorBoard inside a stage
    policy.eval()
    out = {
        k: float(getattr(stats, k))
        for k in ("value_loss", "critic_loss", "actor_loss", "advantage")
    }
    out["seconds"] = time.perf_counter() - start
    return algo, out


__all__ = [
    "IQL",
    "IQLConfig",
    "IQLPolicy",
    "IQLStats",
    "awr_weights",
    "expectile_loss",
    "train_iql",
]
