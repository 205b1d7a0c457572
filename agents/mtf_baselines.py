"""Tianshou's DDPG, CQL+SAC and BCQ (BatchRL-MTF) as per-request MTF learners, offline.

Each learns on the same exploration transitions as IntegratedRL-MTF, flattened to one
(user-level state, request action, list reward, next state) per request
(`agents.mtf_data.flat_buffer`), with observations standardised by the data's mean and std.
The algorithms are Tianshou 2.0.1's own, used as they are: DDPG (an off-policy algorithm,
updated here from the fixed buffer only, which is how the MTF papers ran it), CQL with its
SAC actor (``min_action=1.0`` for Tianshou 2.0.1's U(-min_action, max_action) sampling,
see /work/shared/notes/tianshou2.md) and BCQ (BatchRL-MTF is BCQ-based). The trained policy
acts through `agents.mtf_data.StateFusion`, one fusion vector per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from tianshou.algorithm import BCQ, CQL, DDPG
from tianshou.algorithm.imitation.bcq import BCQPolicy
from tianshou.algorithm.modelfree.ddpg import ContinuousDeterministicPolicy
from tianshou.algorithm.modelfree.sac import AutoAlpha, SACPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Batch, to_numpy
from tianshou.utils.net.common import MLP, Net
from tianshou.utils.net.continuous import (
    VAE,
    ContinuousActorDeterministic,
    ContinuousActorProbabilistic,
    ContinuousCritic,
    Perturbation,
)
from tianshou.utils.torch_utils import policy_within_training_step

from recgym.agents.mtf_data import StateFusion, flat_buffer
from recgym.agents.seeding import seed_buffer_sampler, seeded_global_rngs
from recgym.agents.tb import update_curve
from recgym.device import resolve_device
from recgym.envs.mtf import ACTION_DIM

BASELINES: tuple[str, ...] = ("ddpg", "cql_sac", "bcq")
"""The Tianshou learners of Table 1, by name."""


@dataclass(kw_only=True)
class BaselineConfig:
    """Shared settings of the Tianshou MTF baselines."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """MLP widths of every network."""
    lr: float = 1e-3
    """Adam learning rate (critics; actors use lr / 3)."""
    gamma: float = 0.9
    """Discount per request."""
    tau: float = 0.005
    """Polyak rate of the targets."""
    cql_weight: float = 1.0
    """CQL's conservative penalty weight."""
    batch_size: int = 256
    """Transitions per gradient step."""
    gradient_steps: int = 2000
    """Gradient steps."""
    seed: int = 0
    """Seeds initialisation and the buffer's sampler."""
    device: str = "auto"
    """Torch device of the networks (`recgym.device.resolve_device`; initialised on the CPU)."""


def _critic(obs_dim: int, hidden: tuple[int, ...]) -> ContinuousCritic:
    return ContinuousCritic(
        preprocess_net=Net(
            state_shape=(obs_dim,), action_shape=(ACTION_DIM,), hidden_sizes=hidden, concat=True
        )
    )


def build(name: str, obs_dim: int, cfg: BaselineConfig) -> Any:
    """A fresh Tianshou algorithm `name` (one of `BASELINES`) for states of `obs_dim`, on
    `cfg.device` (initialised on the CPU, then moved)."""
    return _build(name, obs_dim, cfg).to(resolve_device(cfg.device))


def _build(name: str, obs_dim: int, cfg: BaselineConfig) -> Any:
    hidden = tuple(cfg.hidden_sizes)
    box = spaces.Box(-1.0, 1.0, shape=(ACTION_DIM,), dtype=np.float32)
    actor_lr, critic_lr = AdamOptimizerFactory(lr=cfg.lr / 3), AdamOptimizerFactory(lr=cfg.lr)
    if name == "ddpg":
        actor = ContinuousActorDeterministic(
            preprocess_net=Net(state_shape=(obs_dim,), hidden_sizes=hidden),
            action_shape=(ACTION_DIM,),
            max_action=1.0,
        )
        policy = ContinuousDeterministicPolicy(actor=actor, action_space=box, action_scaling=False)
        return DDPG(
            policy=policy,
            policy_optim=actor_lr,
            critic=_critic(obs_dim, hidden),
            critic_optim=critic_lr,
            tau=cfg.tau,
            gamma=cfg.gamma,
        )
    if name == "cql_sac":
        actor = ContinuousActorProbabilistic(
            preprocess_net=Net(state_shape=(obs_dim,), hidden_sizes=hidden),
            action_shape=(ACTION_DIM,),
            unbounded=True,
            conditioned_sigma=True,
        )
        # CQL puts its penalty weight on the policy's device when built: move the policy first
        policy = SACPolicy(actor=actor, action_space=box, action_scaling=False)
        policy.to(resolve_device(cfg.device))
        return CQL(
            policy=policy,
            policy_optim=actor_lr,
            critic=_critic(obs_dim, hidden),
            critic_optim=critic_lr,
            critic2=_critic(obs_dim, hidden),
            critic2_optim=critic_lr,
            cql_weight=cfg.cql_weight,
            tau=cfg.tau,
            gamma=cfg.gamma,
            alpha=AutoAlpha(
                target_entropy=-float(ACTION_DIM),
                log_alpha=float(np.log(0.2)),
                optim=AdamOptimizerFactory(lr=cfg.lr),
            ),
            with_lagrange=False,
            min_action=1.0,
            max_action=1.0,
            calibrated=False,
        )
    if name == "bcq":
        latent = 2 * ACTION_DIM
        perturb = Perturbation(
            preprocess_net=MLP(
                input_dim=obs_dim + ACTION_DIM, output_dim=ACTION_DIM, hidden_sizes=hidden
            ),
            max_action=1.0,
            phi=0.05,
        )
        vae = VAE(
            encoder=MLP(input_dim=obs_dim + ACTION_DIM, hidden_sizes=hidden),
            decoder=MLP(input_dim=obs_dim + latent, output_dim=ACTION_DIM, hidden_sizes=hidden),
            hidden_dim=hidden[-1],
            latent_dim=latent,
            max_action=1.0,
        )
        policy = BCQPolicy(
            actor_perturbation=perturb,
            action_space=box,
            critic=_critic(obs_dim, hidden),
            vae=vae,
            forward_sampled_times=20,
        )
        return BCQ(
            policy=policy,
            actor_perturbation_optim=actor_lr,
            critic_optim=critic_lr,
            vae_optim=critic_lr,
            critic2=_critic(obs_dim, hidden),
            critic2_optim=critic_lr,
            gamma=cfg.gamma,
            tau=cfg.tau,
        )
    raise ValueError(f"unknown MTF baseline {name!r}; expected one of {BASELINES}")


class _Standardised:
    """The trained Tianshou policy as ``(B, S) states -> (B, 10) actions`` (picklable)."""

    def __init__(self, policy: Any, mean: np.ndarray, std: np.ndarray) -> None:
        self.policy, self.mean, self.std = policy, mean, std

    def __call__(self, state: np.ndarray) -> np.ndarray:
        obs = ((np.asarray(state, np.float32) - self.mean) / self.std).astype(np.float32)
        with torch.no_grad():
            return np.asarray(to_numpy(self.policy(Batch(obs=obs, info={})).act), dtype=np.float64)


def train_baseline(
    name: str, tr: dict[str, np.ndarray], config: BaselineConfig | None = None
) -> tuple[StateFusion, dict[str, float]]:
    """Train baseline `name` offline on transitions `tr`; returns its per-request policy."""
    cfg = config or BaselineConfig()
    torch.set_num_threads(1)
    start = time.perf_counter()
    mean = tr["state"].mean(0)
    std = np.maximum(tr["state"].std(0), 1e-3)
    norm = dict(tr)
    norm["state"] = ((tr["state"] - mean) / std).astype(np.float32)
    norm["state_next"] = ((tr["state_next"] - mean) / std).astype(np.float32)
    with seeded_global_rngs(cfg.seed):
        algo = build(name, tr["state"].shape[1], cfg)
        buf = seed_buffer_sampler(flat_buffer(norm), cfg.seed)
        stats: Any = None
        with policy_within_training_step(algo.policy), update_curve(name, cfg.seed) as log:
            for step in range(cfg.gradient_steps):
                stats = algo.update(buffer=buf, sample_size=min(cfg.batch_size, len(buf)))
                log(step + 1, stats)  # TensorBoard inside a stage
    algo.policy.eval()
    out = {"seconds": time.perf_counter() - start}
    for key, value in vars(stats).items():
        if isinstance(value, float):
            out[key] = value
    return StateFusion(_Standardised(algo.policy, mean, std)), out


__all__ = ["BASELINES", "BaselineConfig", "build", "train_baseline"]
