"""`recgym/Session-v0`: the request-level slate session MDP (UserAuthor-v0 extends its slates)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recgym.envs.contract import (
    CANDIDATE_FEATURES,
    FLOAT_HIGH,
    FLOAT_LOW,
    SESSION_FEATURES,
    slate_observation_space,
)
from recgym.envs.driver import EpisodeDriver
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.protocol import Catalogue, UserModel

DEFAULT_REWARD = {"watch_ms": 1e-3}  # watch time in seconds


class SessionEnv(gym.Env):
    """One user's session of requests; each request shows a slate chosen from candidates.

    ## Description
    A user (drawn from the backend's population) opens the app. At every request a candidate
    generator retrieves ``n_candidates`` items from the user's history categories, popularity and
    at random; the agent ranks them and the top ``slate_size`` are shown. The backend (the
    ground-truth world or a simulator learned from logs) returns a response per shown item and
    decides whether the user leaves. User state (history, interests, user-author bonds)
    persists across episodes of the same env, as a returning user's would.

    ## Action Space
    ``action_mode="scores"``: ``Box(-1, 1, (n_candidates,))``, a score per candidate; the
    ``slate_size`` highest are shown, best first.
    ``action_mode="discrete"``: ``Discrete(n_candidates)``,
    the single item shown in this request (the slate size is then 1).

    ## Observation Space
    A ``Dict`` (`envs.contract.slate_observation_space`): ``"user"`` float32 (U,) the backend's
    static user features; ``"context"`` float32 (4,) SESSION_FEATURES (request index /
    max_steps, click rate and mean watch ratio of the previous request, fill of the history);
    ``"candidates"`` float32 (n_candidates, 7) rows of CANDIDATE_FEATURES (log duration, log
    popularity, live author, share of the user's history in the candidate's category and by
    its author, how often its category was shown this session (decayed), whether it was shown
    already this session), all clipped to [-10, 10]; ``"item_id"``, ``"author_id"``,
    ``"category_id"`` int64 (n_candidates,) the candidates' catalogue ids; ``"mask"`` int8
    (n_candidates,) all ones; ``"user_id"`` int64 (1,). `envs.contract.FlattenCandidates`
    gives the flat Box ``[user | context | candidates.ravel()]`` of earlier versions.
    ``info["candidates"]`` (the item ids) and ``info["user_id"]`` stay for compatibility.

    ## Starting State
    ``reset`` draws a user uniformly from ``users`` (default: all), starts a session for them
    in the backend (time passes since their last one) and retrieves the first candidates.
    ``reset(seed=...)`` also returns the backend to its initial state, so the same seed gives
    the same episode.

    Backend, users and randomness are the env's `envs.driver.EpisodeDriver` (``env.driver``),
    the episode driver every recgym MDP composes. Randomness comes from its four generators
    spawned from the seed (`np.random.SeedSequence`): users (which user opens the next
    session: one draw per reset), time (the backend's `begin_session` draws, e.g. the world's
    time gaps), candidates (retrieval) and responses (the backend's `step`). So under one seed
    every policy meets the same users in the same order, whatever it showed and however long
    the sessions lasted (paired comparisons).

    ## Invalid actions
    ``step`` raises ``ValueError`` (naming the env) for a Discrete index outside
    [0, n_candidates) or not an integer, for scores that are not of shape (n_candidates,), and
    for NaN or infinite scores. Finite scores outside [-1, 1] are accepted: only their order
    counts.

    ## Rewards
    ``sum_k sum_b reward_weights[b] * response_b[k]`` over shown items k and behaviours b.
    Default: watch time in seconds. Behaviours a backend does not produce count as zero.

    ## Episode End
    ``terminated`` when the user leaves (the backend's leave model); ``truncated`` after
    ``max_steps`` requests.

    ## Arguments
    backend ("world" | "learned" | a UserModel), checkpoint (for "learned"), world_config (dict
    of WorldConfig fields), slate_size (6), n_candidates (50), action_mode ("scores" |
    "discrete"), reward_weights ({behaviour: weight}), max_steps (100), users (ids to sample),
    world_dir (a saved world to load, for backend "world").

    ## Version History
    v0: initial version. Changed in place before recgym's first release (0.1.0 is unpublished;
    ids are bumped from the first release on): the observation became the Dict above (its numbers
    are the former flat vector's), randomness was split into the four seeded streams above (so a
    given seed now draws different episodes than before), invalid actions raise ``ValueError``,
    ``world_dir`` starts the world where its logs ended, and the world's default dynamics were
    calibrated to KuaiRand (`simulators/world.py`; watched fraction falls with duration,
    patience drains with time spent and is restored by the seconds of satisfying views).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        backend: str | UserModel = "world",
        checkpoint: str | None = None,
        world_config: dict | None = None,
        slate_size: int = 6,
        n_candidates: int = 50,
        action_mode: str = "scores",
        reward_weights: dict[str, float] | None = None,
        max_steps: int = 100,
        users: np.ndarray | None = None,
        world_dir: str | None = None,
    ):
        if action_mode not in ("scores", "discrete"):
            raise ValueError(f"action_mode must be 'scores' or 'discrete', got {action_mode!r}")
        self.driver = EpisodeDriver(backend, checkpoint, world_config, world_dir, users=users)
        self.action_mode = action_mode
        self.slate_size = 1 if action_mode == "discrete" else int(slate_size)
        self.n_candidates = int(n_candidates)
        if self.slate_size > self.n_candidates:
            raise ValueError(f"slate_size {slate_size} exceeds n_candidates {n_candidates}")
        self.max_steps = int(max_steps)
        self.reward_weights = dict(DEFAULT_REWARD if reward_weights is None else reward_weights)
        unknown = set(self.reward_weights) - set(self.model.behaviours)
        if unknown - {"gift"}:
            raise ValueError(f"reward_weights name behaviours the backend lacks: {sorted(unknown)}")
        self.generator = CandidateGenerator(
            catalogue=self.catalogue, n_candidates=self.n_candidates
        )
        self.observation_space = self._observation_space(len(CANDIDATE_FEATURES))
        if action_mode == "scores":
            self.action_space = spaces.Box(-1.0, 1.0, shape=(self.n_candidates,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(self.n_candidates)
        self._candidates = np.zeros((1, self.n_candidates), dtype=np.int64)
        self._session_exposure = np.zeros(self.catalogue.n_categories)
        self._shown = np.zeros(self.catalogue.n_items, dtype=bool)
        self._last = np.zeros(2)
        self._steps = 0

    def _observation_space(self, row_width: int) -> spaces.Dict:
        return slate_observation_space(
            user_dim=self.model.user_feature_dim,
            n_candidates=self.n_candidates,
            row_width=row_width,
            n_users=self.model.n_users,
            n_items=self.catalogue.n_items,
            n_authors=self.catalogue.n_authors,
            n_categories=self.catalogue.n_categories,
        )

    @property
    def model(self) -> UserModel:
        """The backend (the driver's): the world, a learned simulator or any UserModel."""
        return self.driver.model

    @property
    def catalogue(self) -> Catalogue:
        return self.driver.catalogue

    @property
    def users(self) -> np.ndarray:
        """The user ids episodes draw from."""
        return self.driver.users

    @property
    def _name(self) -> str:
        return self.spec.id if self.spec is not None else type(self).__name__

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.driver.seed(seed, self.np_random)
        # one user draw per reset, even when options name the user: the sequence stays paired
        self.driver.begin(options)
        self._session_exposure[:] = 0.0
        self._shown[:] = False
        self._last[:] = 0.0
        self._steps = 0
        self._candidates = self.driver.retrieve(self.generator)
        return self._observation(), {
            "user_id": int(self.driver.user[0]),
            "candidates": self._candidates[0],
        }

    def step(self, action) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self.driver.seeded:
            raise RuntimeError(f"{self._name}: call reset() before step()")
        slate = self.slate_from_action(action)
        res = self.driver.respond(slate[None, :])
        r = {name: np.asarray(v)[0] for name, v in res.responses.items()}
        reward = float(sum(w * r[b].sum() for b, w in self.reward_weights.items() if b in r))
        cats = self.catalogue.category[slate]
        self._session_exposure *= 0.8
        np.add.at(self._session_exposure, cats, 1.0)
        self._shown[slate] = True
        ratio = r["watch_ms"] / np.maximum(self.catalogue.duration_ms[slate], 1)
        self._last[:] = (r["click"].mean(), ratio.mean())
        self._steps += 1
        terminated = bool(res.left[0])
        truncated = self._steps >= self.max_steps and not terminated
        info = {
            "user_id": int(self.driver.user[0]),
            "slate": slate,
            "categories": cats,
            "responses": r,
            "candidates_shown": self._candidates[0],
        }
        info.update(self._after_responses(slate, r))
        self._candidates = self.driver.retrieve(self.generator)
        info["candidates"] = self._candidates[0]
        return self._observation(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ helpers
    def _after_responses(self, slate: np.ndarray, responses: dict) -> dict[str, Any]:
        """Hook for envs that extend this one: runs after the user responded to `slate` and
        before the next candidates and observation are made; returns extra `info` entries."""
        return {}

    def slate_from_action(self, action) -> np.ndarray:
        """The item ids an action shows: top-`slate_size` candidates by score, or the chosen one.

        Raises ValueError for an invalid action (see the class docstring)."""
        cand = self._candidates[0]
        n = self.n_candidates
        if self.action_mode == "discrete":
            return cand[[self._index_from_action(action)]]
        try:
            scores = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self._name}: action must be {n} numeric scores, got {action!r}"
            ) from None
        if scores.shape != (n,):
            raise ValueError(
                f"{self._name}: action must be scores of shape ({n},) (one per candidate), "
                f"got shape {scores.shape}"
            )
        bad = ~np.isfinite(scores)
        if bad.any():
            raise ValueError(
                f"{self._name}: action scores must be finite; candidates "
                f"{np.flatnonzero(bad)[:10].tolist()} are NaN or infinite"
            )
        order = np.argsort(-scores, kind="stable")[: self.slate_size]
        return cand[order]

    def _index_from_action(self, action: Any) -> int:
        """A Discrete action as a candidate index: one integer (any int dtype, shape () or (1,))."""
        n = self.n_candidates
        a = np.asarray(action)
        if a.size != 1 or a.ndim > 1:
            raise ValueError(
                f"{self._name}: a Discrete({n}) action is one candidate index, got shape {a.shape}"
            )
        value = a.reshape(-1)[0]
        if not np.issubdtype(a.dtype, np.integer):
            if not (
                np.issubdtype(a.dtype, np.floating)
                and np.isfinite(value)
                and float(value).is_integer()
            ):
                raise ValueError(
                    f"{self._name}: a Discrete({n}) action must be an integer, got {value!r}"
                )
        index = int(value)
        if not 0 <= index < n:
            raise ValueError(
                f"{self._name}: action {index} is outside Discrete({n}) (valid: 0..{n - 1})"
            )
        return index

    def _observation(self) -> dict[str, np.ndarray]:
        obs = observe(
            self.model,
            self.driver.user,
            self._candidates,
            session=np.array(
                [[self._steps / self.max_steps, self._last[0], self._last[1]]], dtype=np.float64
            ),
            session_exposure=self._session_exposure[None, :],
            shown=self._shown[None, :],
        )
        return {key: value[0].copy() for key, value in obs.items()}  # never views of env state


def observe(
    model: UserModel,
    users: np.ndarray,
    candidates: np.ndarray,
    session: np.ndarray,
    session_exposure: np.ndarray,
    shown: np.ndarray,
) -> dict[str, np.ndarray]:
    """Session-v0 observations of a batch: (B,) users, (B, N) candidates -> the contract's
    entries with a leading B axis (user (B, U), context (B, 4), candidates (B, N, 7), ids...).

    `session` is (B, 3) (step fraction, last click rate, last watch ratio), `session_exposure`
    (B, C) decayed category counts of this session, `shown` (B, n_items) the items shown
    this session.
    """
    cat = model.catalogue
    b, n = candidates.shape
    history = model.history(users)
    valid = history >= 0
    n_hist = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    hist_cat = np.where(valid, cat.category[np.maximum(history, 0)], -1)
    hist_author = np.where(valid, cat.author[np.maximum(history, 0)], -1)
    cand_cat = cat.category[candidates]
    cand_author = cat.author[candidates]
    cat_share = (cand_cat[:, :, None] == hist_cat[:, None, :]).sum(axis=2) / n_hist
    author_share = (cand_author[:, :, None] == hist_author[:, None, :]).sum(axis=2) / n_hist
    exposure = np.take_along_axis(session_exposure, cand_cat, axis=1) / 3.0
    was_shown = np.take_along_axis(shown, candidates, axis=1)
    per_cand = np.concatenate(
        [
            cat.item_features(candidates),
            np.stack([cat_share, author_share, exposure, was_shown], axis=-1).astype(np.float32),
        ],
        axis=-1,
    )
    history_fill = valid.mean(axis=1, keepdims=True)

    def clip(x: np.ndarray) -> np.ndarray:
        return np.clip(x, FLOAT_LOW, FLOAT_HIGH).astype(np.float32)

    candidates = np.asarray(candidates, dtype=np.int64)
    return {
        "user": clip(model.user_features(users)),
        "context": clip(np.concatenate([session, history_fill], axis=1)),
        "candidates": clip(per_cand),
        "item_id": candidates,
        "author_id": cand_author.astype(np.int64),
        "category_id": cand_cat.astype(np.int64),
        "mask": np.ones((b, n), dtype=np.int8),
        "user_id": np.asarray(users, dtype=np.int64).reshape(b, 1),
    }


__all__ = ["CANDIDATE_FEATURES", "DEFAULT_REWARD", "SESSION_FEATURES", "SessionEnv", "observe"]
