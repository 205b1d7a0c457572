"""ES: an evolution strategy over personalised per-request fusion weights (the MTF papers'
production benchmark).

The policy is linear in the standardised user-level state, ``a(s) = tanh(W s + b)`` (a small
model: the papers note ES limits the number of parameters), started at the fixed fusion mu_bp
(W = 0, b = atanh(mu_bp)). Each generation draws `population` antithetic Gaussian
perturbations of (W, b) (natural evolution strategies, Wierstra et al. 2008 / Salimans et al.
2017) and scores each on the same requests: the mean *instant* reward (Formula 3) of one
request for every slot of the core under the generation's seed (the backend returns to its
initial state on each seeded evaluation, so every candidate meets the same users and
candidates). ES optimises the instant reward, as the papers say, online in the backend it is
given; fitness is rank-normalised and the parameters move by plain gradient ascent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from recgym.agents.mtf_data import BASELINE_ACTION, StateFusion, state_of
from recgym.agents.tb import update_curve
from recgym.envs.mtf import ACTION_DIM, MTFCore


@dataclass(kw_only=True)
class ESConfig:
    """ES settings."""

    generations: int = 30
    """Generations (each: 2 x population evaluations of one request per slot)."""
    population: int = 8
    """Antithetic pairs per generation."""
    sigma: float = 0.1
    """Standard deviation of the parameter perturbations."""
    lr: float = 0.05
    """Step size on the rank-normalised fitness gradient."""
    seed: int = 0
    """Seeds the perturbations and the evaluation seeds."""


class LinearFusion:
    """``a(s) = tanh(W (s - mean) / std + b)``, one vector per request."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, theta: np.ndarray) -> None:
        self.mean, self.std, self.theta = mean, std, theta

    def __call__(self, state: np.ndarray) -> np.ndarray:
        s = (np.asarray(state, np.float64) - self.mean) / self.std
        w = self.theta[:-ACTION_DIM].reshape(ACTION_DIM, -1)
        return np.tanh(s @ w.T + self.theta[-ACTION_DIM:])


def train_es(core: MTFCore, config: ESConfig | None = None) -> tuple[StateFusion, dict[str, float]]:
    """Run ES in `core` (every slot one user per evaluation); returns the policy and stats."""
    cfg = config or ESConfig()
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    core.seed(cfg.seed * 7919 + 1)
    states = state_of(core.begin()).astype(np.float64)
    mean, std = states.mean(0), np.maximum(states.std(0), 1e-3)
    dim = states.shape[1]
    theta = np.zeros(ACTION_DIM * dim + ACTION_DIM)
    theta[-ACTION_DIM:] = np.arctanh(np.clip(BASELINE_ACTION, -0.99, 0.99))

    def fitness(params: np.ndarray, seed: int) -> float:
        core.seed(seed)
        obs = core.begin()
        policy = StateFusion(LinearFusion(mean, std, params))
        _, rew, *_ = core.step(policy.actions(obs))
        return float(rew.mean())

    best = 0.0
    with update_curve("ES", cfg.seed, every=1) as log:  # TensorBoard inside a stage
        for generation in range(cfg.generations):
            seed = int(rng.integers(2**31))
            eps = rng.standard_normal((cfg.population, len(theta)))
            f_pos = np.array([fitness(theta + cfg.sigma * e, seed) for e in eps])
            f_neg = np.array([fitness(theta - cfg.sigma * e, seed) for e in eps])
            ranks = np.argsort(np.argsort(np.r_[f_pos, f_neg])) / (2 * cfg.population - 1) - 0.5
            r_pos, r_neg = ranks[: cfg.population], ranks[cfg.population :]
            theta = theta + cfg.lr / (cfg.population * cfg.sigma) * ((r_pos - r_neg) @ eps)
            best = float(max(f_pos.max(), f_neg.max()))
            log(generation + 1, {"best_fitness": best, "mean_fitness": float(np.mean(f_pos))})
    policy = StateFusion(LinearFusion(mean, std, theta))
    return policy, {"last_best_fitness": best, "seconds": time.perf_counter() - start}


__all__ = ["ESConfig", "LinearFusion", "train_es"]
