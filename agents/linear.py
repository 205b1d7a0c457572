"""The linear ranking adapter the continuous agents (TD3, CQL, RLUR) act through.

**The adapter.** A slate env's action is a score per candidate (``Box(-1, 1, (N,))``) or one
candidate (``Discrete(N)``), which ties the action to N and to the candidates' order. Here the
agent's action is instead a weight vector ``w in [-1, 1]^J`` and candidate i's score is the
linear ranking function ``w · x_i`` over J columns of its observation row (by default all of
its CANDIDATE_FEATURES). The env shows the candidates with the highest scores
(`rank_scores`), or the best one on ``Discrete(N)``. So the action space is small, the same for
any N and for any candidate order, and it has the form both papers' continuous baselines use
(RLUR's action, `agents.rlur`, is the same with predicted feedbacks as the columns). What it
cannot express is any ranking that is not linear in the row features: the agent chooses
*how to weigh* features per request, not items.

**Observation layout.** The networks read the flat vector of `envs.contract.flatten_observation`
(a context vector followed by N rows of per-candidate features, described by the contract's
`RowLayout`, `row_layout(env.observation_space)`): Session-v0's user + session features and
CANDIDATE_FEATURES rows, or UserAuthor-v0's UA_CANDIDATE_FEATURES rows that add author
features and log1p user-author counters. An `AgentView` turns the env's observation dict into
that vector. Networks pool over rows (actor) or attend over them under ``w`` (critic), so they
work for any row width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tianshou.utils.net.common import ModuleWithVectorOutput
from tianshou.utils.net.continuous import AbstractContinuousCritic
from torch import nn

from recgym.envs import make_env
from recgym.envs.contract import (
    Obs,
    RowLayout,
    action_from_values,
    flatten_observation,
    row_layout,
)


def linear_scores(layout: RowLayout, obs: Any, weights: Any) -> Any:
    """Candidate scores ``rows[:, score_cols] @ w``: (..., obs_dim), (..., J) -> (..., N).

    Works on numpy arrays (float64 result) and on torch tensors (differentiable in w).
    """
    _, rows = layout.split(obs)
    cols = list(layout.cols)
    x = rows[..., cols]
    if isinstance(x, torch.Tensor):
        return (x * weights.unsqueeze(-2)).sum(-1)
    x = np.asarray(x, dtype=np.float64)
    return np.einsum("...nj,...j->...n", x, np.asarray(weights, dtype=np.float64))


class AgentView(Protocol):
    """What a linear-ranking agent observes and how its weights become scores.

    `layout` describes `observe`'s output; its `score_cols` are the columns w combines.
    """

    layout: RowLayout

    def observe(self, obs: Obs) -> np.ndarray:
        """The env's observation dict -> the agent's (layout.obs_dim,) vector."""
        ...


@dataclass
class CandidateRowsView:
    """The agent sees the env's observation flattened (`flatten_observation`) and weighs its
    candidate rows' columns."""

    layout: RowLayout

    def observe(self, obs: Obs) -> np.ndarray:
        return flatten_observation(obs)


RewardFn = Callable[[float, Mapping[str, Any], bool, bool], float]
"""(env reward, step info, terminated, truncated) -> the reward the agent learns from."""


class LinearScoreEnv(gym.Env):
    """A slate env whose action is a weight vector: shows candidates ranked by ``w · x_i``.

    The observation is `view.observe(obs)` (the env's observation flattened for
    `CandidateRowsView`); the action is ``Box(-1, 1, (J,))``; the reward is the env's, or
    ``reward_fn(reward, info, terminated, truncated)``. Info dicts are dropped unless
    ``keep_info`` (Tianshou would copy each into the replay buffer); the last raw observation
    and info stay readable as `raw_obs` / `raw_info`.

    It holds the slate env as `env` rather than being a `gym.Wrapper`: Tianshou's vector-env
    workers read spaces from ``env.unwrapped``, which would skip a wrapper's action space.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        env: gym.Env,
        view: AgentView,
        reward_fn: RewardFn | None = None,
        keep_info: bool = False,
    ) -> None:
        self.env = env
        self.view = view
        self.reward_fn = reward_fn
        self.keep_info = keep_info
        layout = view.layout
        self.action_space = spaces.Box(-1.0, 1.0, shape=(layout.action_dim,), dtype=np.float32)
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(layout.obs_dim,), dtype=np.float32)
        self.raw_obs: Obs | None = None
        self.raw_info: dict[str, Any] = {}
        self._obs: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observe(obs, info), (info if self.keep_info else {})

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert self._obs is not None, "call reset first"
        w = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        scores = linear_scores(self.view.layout, self._obs, w)
        obs, reward, terminated, truncated, info = self.env.step(
            action_from_values(scores, self.env.action_space)
        )
        if self.reward_fn is not None:
            reward = self.reward_fn(float(reward), info, terminated, truncated)
        return (
            self._observe(obs, info),
            float(reward),
            terminated,
            truncated,
            info if self.keep_info else {},
        )

    def close(self) -> None:
        self.env.close()

    def _observe(self, obs: Obs, info: dict[str, Any]) -> np.ndarray:
        self.raw_obs, self.raw_info = obs, info
        agent_obs = self.view.observe(obs)
        self._obs = np.clip(agent_obs, -10.0, 10.0).astype(np.float32)
        return self._obs


def make_linear_env(
    env_id: str,
    env_kwargs: Mapping[str, Any] | None,
    view: AgentView | None = None,
    reward_fn: RewardFn | None = None,
    keep_info: bool = False,
) -> LinearScoreEnv:
    """`make_env(env_id, **env_kwargs)` wrapped in `LinearScoreEnv` (picklable via partial)."""
    env = make_env(env_id, **dict(env_kwargs or {}))
    view = view or CandidateRowsView(row_layout(env.observation_space))
    return LinearScoreEnv(env, view, reward_fn, keep_info)


# --------------------------------------------------------------------------- networks
class RowPoolingNet(ModuleWithVectorOutput):
    """Per-request state encoder: MLP over [context ⊕ mean row ⊕ max row] (N-independent)."""

    def __init__(self, layout: RowLayout, hidden_sizes: tuple[int, ...]) -> None:
        if not hidden_sizes:
            raise ValueError("RowPoolingNet needs at least one hidden layer")
        super().__init__(output_dim=hidden_sizes[-1])
        self.layout = layout
        self.mlp = _mlp(layout.context_dim + 2 * layout.row_dim, hidden_sizes, out=None)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        x = torch.as_tensor(obs, dtype=torch.float32, device=_device(self))
        context, rows = self.layout.split(x)
        return self.mlp(torch.cat([context, rows.mean(-2), rows.amax(-2)], dim=-1)), state


class SlateCritic(AbstractContinuousCritic):
    """Q(s, w) from [context ⊕ mean row ⊕ soft "shown" row ⊕ w].

    The soft shown row is the rows' average under ``softmax(w · x_i / T)`` over candidates
    (learned temperature T): a differentiable stand-in for the features of what w would put on
    top, so the critic sees *which* items the weights select, not just the weights.
    """

    def __init__(
        self, layout: RowLayout, hidden_sizes: tuple[int, ...], temperature: float = 0.1
    ) -> None:
        super().__init__(output_dim=1)
        self.layout = layout
        n_in = layout.context_dim + 2 * layout.row_dim + layout.action_dim
        self.mlp = _mlp(n_in, hidden_sizes, out=1)
        self.log_temperature = nn.Parameter(torch.tensor(float(np.log(temperature))))

    def forward(self, obs: Any, act: Any = None, info: Any = None) -> torch.Tensor:
        device = _device(self)
        x = torch.as_tensor(obs, dtype=torch.float32, device=device)
        w = torch.as_tensor(act, dtype=torch.float32, device=device).reshape(x.shape[0], -1)
        context, rows = self.layout.split(x)
        attention = torch.softmax(linear_scores(self.layout, x, w) / self.log_temperature.exp(), -1)
        shown = (attention.unsqueeze(-1) * rows).sum(-2)
        return self.mlp(torch.cat([context, rows.mean(-2), shown, w], dim=-1))


def _mlp(n_in: int, hidden_sizes: tuple[int, ...], out: int | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden_sizes:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    if out is not None:
        layers.append(nn.Linear(width, out))
    return nn.Sequential(*layers)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def behaviour_weights(
    layout: RowLayout, agent_obs: np.ndarray, values: np.ndarray | None
) -> np.ndarray:
    """The linear-action projection of a ranker: weights w whose scores ``rows·w`` best match
    the ranker's per-candidate `values` (least squares on standardised values and centred
    score columns), scaled to max |w_j| = 1 (ranking is invariant to a positive scale).
    None or constant values give w = 0 (every candidate tied)."""
    j = layout.action_dim
    if values is None:
        return np.zeros(j)
    v = np.asarray(values, dtype=np.float64)
    if v.std() < 1e-12:
        return np.zeros(j)
    _, rows = layout.split(np.asarray(agent_obs, dtype=np.float64))
    x = rows[:, list(layout.cols)]
    x = x - x.mean(axis=0)
    w, *_ = np.linalg.lstsq(x, (v - v.mean()) / v.std(), rcond=None)
    scale = np.abs(w).max()
    return w / scale if scale > 1e-12 else np.zeros(j)


__all__ = [
    "AgentView",
    "CandidateRowsView",
    "LinearScoreEnv",
    "RewardFn",
    "RowPoolingNet",
    "SlateCritic",
    "behaviour_weights",
    "linear_scores",
    "make_linear_env",
]
