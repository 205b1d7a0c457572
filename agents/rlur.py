"""RLUR (Cai et al. 2023, "Reinforcing user retention in a billion scale short video recommender
system"): RL over the weights that fuse a supervised ranker's predicted feedbacks into one score.

What is implemented (the RLUR paper was not available to us; this follows the RLIV-UA paper's
summary, "optimize the weights of each predicted user feedback when ranking items under the
long-term rewards with designed heuristic rewards", and public summaries of RLUR):

- **Action**: a weight vector ``w in [-1, 1]^J``, one weight per predicted feedback of the
  supervised ranker (`DeepFMRanker.feedback_names`: P(click), predicted watch seconds,
  P(long view), P(like), P(follow); or P(click) and watch seconds of the MLP `RankingModel`).
  Candidate i's score is ``sum_j w_j z_j(i)``, where ``z_j`` is prediction j standardised over
  the request's candidates (so the weights of feedbacks on different scales are comparable);
  the top-scored candidates are shown (`agents.continuous.LinearScoreEnv`).
- **State**: the env's observation (user and session context, candidate rows) with the z-scored
  predictions appended to each candidate row (`FeedbackView`).
- **Reward** (`rlur_reward`): a retention reward plus heuristic immediate-engagement rewards,
  ``r_t = retention_reward * [user stays after request t] + sum_b immediate_weights[b] *
  sum_k response_b[k]``. RLUR's retention signal is the user's return time to the app after a
  session (sparse and delayed); a Session-v0 episode is one session and exposes no return time,
  so the retention reward here is *session continuation*: a constant for every request after
  which the user does not leave (its undiscounted sum is the session length). The heuristic
  rewards are the immediate feedback of the shown items (watch minutes, clicks, likes, follows,
  comments, forwards, minus hates, by default) and carry the denser signal.
- **Learner**: Tianshou's TD3, unchanged, on the sum of both rewards. RLUR learns the retention
  and the heuristic returns with separate critics; with one discount factor the sum of the two
  Q-functions is the Q-function of the summed reward, so one (twin) critic is equivalent.

Simplifications against RLUR as published (as far as we know it): no Random-Network-
Distillation intrinsic (exploration) reward, no retention-uncertainty normalisation by a
return-time classifier, no per-activity-group treatment of user bias, no soft regularisation
of the actor, no per-critic discounts; the retention signal is session continuation, not return
time. The fused predictions come from our supervised ranker, not a production multi-task model.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from recgym.agents.baselines import RankingModel
from recgym.agents.continuous import (
    SESSION_ENV_ID,
    LinearScoreEnv,
    LinearScorePolicy,
    RowLayout,
    RunStats,
    TD3Config,
    build_td3,
    config_from_dict,
    train_online,
)
from recgym.agents.deepfm import DeepFMRanker
from recgym.device import load_state
from recgym.envs import make_env
from recgym.envs.contract import Obs, flatten_observation, row_layout

DEFAULT_IMMEDIATE_WEIGHTS: dict[str, float] = {
    "watch_ms": 1.0 / 60_000.0,
    "click": 0.05,
    "like": 0.1,
    "follow": 0.3,
    "comment": 0.1,
    "forward": 0.1,
    "hate": -0.3,
}
"""Heuristic immediate reward per unit of each behaviour: watch time in minutes, counts else."""


@dataclass(kw_only=True)
class RLURConfig(TD3Config):
    """TD3 on RLUR's fusion weights, plus RLUR's reward (see the module docstring)."""

    retention_reward: float = 1.0
    """Reward for every request after which the user stays (session continuation)."""
    immediate_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_IMMEDIATE_WEIGHTS)
    )
    """Heuristic immediate reward per unit of each behaviour, summed over the shown items."""


@dataclass(kw_only=True)
class RLURReward:
    """One request's RLUR reward and its parts."""

    retention: float
    """retention_reward if the user stays after the request, else 0."""
    immediate: float
    """The heuristic immediate-engagement reward of the shown items."""

    @property
    def total(self) -> float:
        return self.retention + self.immediate


def rlur_reward(
    responses: Mapping[str, np.ndarray],
    terminated: bool,
    retention_reward: float = 1.0,
    immediate_weights: Mapping[str, float] | None = None,
) -> RLURReward:
    """RLUR's reward of one request from the shown items' responses and whether the user left.

    ``terminated`` is True when the user left after this request (a time-limit truncation is
    not leaving). Behaviours missing from `responses` count as zero.
    """
    weights = DEFAULT_IMMEDIATE_WEIGHTS if immediate_weights is None else immediate_weights
    immediate = sum(w * float(np.sum(responses[b])) for b, w in weights.items() if b in responses)
    return RLURReward(
        retention=0.0 if terminated else float(retention_reward), immediate=float(immediate)
    )


@dataclass
class RLURShaping:
    """The `LinearScoreEnv` reward function that replaces the env's reward by `rlur_reward`."""

    retention_reward: float
    immediate_weights: dict[str, float]

    def __call__(
        self, reward: float, info: Mapping[str, Any], terminated: bool, truncated: bool
    ) -> float:
        return rlur_reward(
            info["responses"], terminated, self.retention_reward, self.immediate_weights
        ).total


# --------------------------------------------------------------------------- predicted feedbacks
class FeedbackRanker(Protocol):
    """A supervised ranker that predicts several feedbacks per candidate."""

    feedback_names: tuple[str, ...]

    def feedbacks(self, obs: Obs) -> np.ndarray:
        """(N, len(feedback_names)) predictions for the candidates of one observation dict."""
        ...


@dataclass
class RankingModelFeedbacks:
    """The MLP `RankingModel`'s two heads as RLUR feedbacks: P(click) and watch seconds."""

    model: RankingModel
    feedback_names: tuple[str, ...] = ("p_click", "watch_s")

    def feedbacks(self, obs: Obs) -> np.ndarray:
        pred = self.model.predict(obs)
        return np.stack([pred["click"], pred["watch_ms"] / 1000.0], axis=1)


def standardise(values: np.ndarray) -> np.ndarray:
    """(N, J) -> each column z-scored over the N candidates (a constant column becomes 0)."""
    v = np.asarray(values, dtype=np.float64)
    std = v.std(axis=0)
    return np.where(std > 1e-8, (v - v.mean(axis=0)) / np.maximum(std, 1e-8), 0.0)


class FeedbackView:
    """RLUR's observation: the env's observation with each candidate row extended by the
    ranker's z-scored predicted feedbacks; the weights act on those appended columns."""

    def __init__(self, ranker: FeedbackRanker, env_layout: RowLayout) -> None:
        self.ranker = ranker
        self.env_layout = env_layout
        names = tuple(f"z_{name}" for name in ranker.feedback_names)
        self.layout = env_layout.with_rows(names, score_extra_only=True)

    def observe(self, obs: Obs) -> np.ndarray:
        context, rows = self.env_layout.split(flatten_observation(obs))
        z = standardise(self.ranker.feedbacks(obs))
        rows = np.concatenate([rows, z.astype(np.float32)], axis=1)
        return np.concatenate([context, rows.reshape(-1)]).astype(np.float32)


def _rlur_env(
    env_id: str, env_kwargs: Mapping[str, Any], ranker: FeedbackRanker, shaping: RLURShaping
) -> LinearScoreEnv:
    env = make_env(env_id, **dict(env_kwargs))
    ranker = _for_backend(ranker, env.unwrapped.model)
    view = FeedbackView(ranker, row_layout(env.observation_space))
    return LinearScoreEnv(env, view, reward_fn=shaping)


def _as_feedback_ranker(ranker: Any) -> FeedbackRanker:
    return RankingModelFeedbacks(ranker) if isinstance(ranker, RankingModel) else ranker


def _for_backend(ranker: Any, backend: Any) -> Any:
    """The ranker reading `backend`'s ids (DeepFM's raw-id maps), else the ranker itself."""
    return ranker.for_backend(backend) if hasattr(ranker, "for_backend") else ranker


# --------------------------------------------------------------------------- training and policy
def train_rlur(
    ranker: DeepFMRanker | RankingModel | FeedbackRanker,
    env_kwargs: Mapping[str, Any] | None = None,
    config: RLURConfig | None = None,
    env_id: str = SESSION_ENV_ID,
    progress: bool = True,
) -> tuple[RLURPolicy, RunStats]:
    """Train RLUR online (Tianshou TD3) on `make_env(env_id, **env_kwargs)` with a fitted
    `ranker`'s predictions as the fused feedbacks. The learning curve is in RLUR reward units."""
    cfg = config or RLURConfig()
    kwargs = dict(env_kwargs or {})
    feedback = _as_feedback_ranker(ranker)
    shaping = RLURShaping(cfg.retention_reward, dict(cfg.immediate_weights))
    factory = functools.partial(_rlur_env, env_id, kwargs, feedback, shaping)
    algo, stats = train_online(factory, cfg, progress=progress, desc="RLUR")
    agent_layout = algo.policy.actor.preprocess.layout
    view = FeedbackView(feedback, _env_layout_of(agent_layout, len(feedback.feedback_names)))
    return RLURPolicy(algo, view, cfg, env_id, kwargs), stats


def _env_layout_of(agent_layout: RowLayout, n_feedbacks: int) -> RowLayout:
    """The env's layout from RLUR's (the agent layout without the appended feedback columns)."""
    names = agent_layout.row_names[: agent_layout.row_dim - n_feedbacks]
    return RowLayout(
        user_dim=agent_layout.user_dim,
        context_dim=agent_layout.context_dim,
        n_rows=agent_layout.n_rows,
        row_names=names,
    )


class RLURPolicy(LinearScorePolicy):
    """RLUR's actor as a `SlatePolicy`: fusion weights from the actor, score ``w · z(i)``."""

    @property
    def kind(self) -> str:
        return "RLUR"

    @property
    def ranker(self) -> Any:
        fb = self.view.ranker
        return fb.model if isinstance(fb, RankingModelFeedbacks) else fb

    def for_backend(self, backend: Any) -> RLURPolicy:
        """A copy whose ranker reads `backend`'s ids (`DeepFMRanker.for_backend`); harnesses
        call it once per env, as for DeepFM itself."""
        clone = copy.copy(self)
        clone.view = FeedbackView(_for_backend(self.view.ranker, backend), self.view.env_layout)
        return clone

    def save(self, path: str | Path) -> Path:
        """`LinearScorePolicy.save` plus the ranker at `path` + ".ranker" (its own format)."""
        path = super().save(path)
        self.ranker.save(_ranker_path(path))
        return path

    @classmethod
    def load(
        cls, path: str | Path, action_space: gym.Space | None = None, device: str | None = None
    ) -> RLURPolicy:
        """Rebuild an RLUR policy saved by `save` (on any device) on `device` (None: the saved
        config's)."""
        path = Path(path)
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        if meta.get("kind") != "RLUR":
            raise ValueError(f"{path} holds a {meta.get('kind')} agent, not RLUR")
        cfg = config_from_dict(RLURConfig, meta["config"])
        if device is not None:
            cfg = dataclasses.replace(cfg, device=device)
        layout = RowLayout.from_dict(meta["layout"])
        algo = build_td3(layout, cfg)
        algo.load_state_dict(load_state(path, cfg.device))
        ranker_path = _ranker_path(path)
        ranker_meta = json.loads(ranker_path.with_name(ranker_path.name + ".json").read_text())
        ranker_cls = DeepFMRanker if ranker_meta["kind"] == "DeepFM" else RankingModel
        feedback = _as_feedback_ranker(ranker_cls.load(ranker_path))
        n = len(feedback.feedback_names)
        view = FeedbackView(feedback, _env_layout_of(layout, n))
        return cls(algo, view, cfg, meta["env_id"], meta["env_kwargs"], action_space)


def _ranker_path(path: Path) -> Path:
    return path.with_name(path.name + ".ranker")


__all__ = [
    "DEFAULT_IMMEDIATE_WEIGHTS",
    "FeedbackRanker",
    "FeedbackView",
    "RLURConfig",
    "RLURPolicy",
    "RLURReward",
    "RLURShaping",
    "RankingModelFeedbacks",
    "rlur_reward",
    "standardise",
    "train_rlur",
]
