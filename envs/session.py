"""`recgym/Session-v0`: the request-level session MDP every other recgym env extends."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recgym.envs.backends import make_backend
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.protocol import UserModel

# Per-candidate observation features, in order.
CANDIDATE_FEATURES = (
    "log_duration",
    "log_popularity",
    "author_is_live",
    "history_category_share",
    "history_author_share",
    "session_category_exposure",
    "shown_this_session",
)
SESSION_FEATURES = ("step_fraction", "last_click_rate", "last_watch_ratio", "history_fill")
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
    A flat ``float32`` vector: the backend's static user features, then SESSION_FEATURES
    (request index / max_steps, click rate and mean watch ratio of the previous request, fill of
    the history), then ``n_candidates`` rows of CANDIDATE_FEATURES (log duration, log
    popularity, live author, share of the user's history in the candidate's category and by
    its author, how often its category was shown this session (decayed), whether it was shown
    already this session). Candidate ids are in ``info["candidates"]``.

    ## Starting State
    ``reset`` draws a user uniformly from ``users`` (default: all), starts a session for them
    in the backend (time passes since their last one) and retrieves the first candidates.
    ``reset(seed=...)`` also returns the backend to its initial state, so the same seed gives
    the same episode.

    ## Rewards
    ``sum_k sum_b reward_weights[b] * response_b[k]`` over shown items k and behaviours b.
    Default: watch time in seconds. Behaviours a backend does not produce count as zero.

    ## Episode End
    ``terminated`` when the user leaves (the backend's leave model); ``truncated`` after
    ``max_steps`` requests.

    ## Arguments
    backend ("world" | "learned" | a UserModel), checkpoint (for "learned"), world_config (dict
    of WorldConfig fields), slate_size (6), n_candidates (50), action_mode ("scores" |
    "discrete"), reward_weights ({behaviour: weight}), max_steps (100), users (ids to sample).

    ## Version History
    v0: initial version.
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
    ):
        self.model: UserModel = make_backend(backend, checkpoint, world_config)
        if action_mode not in ("scores", "discrete"):
            raise ValueError(f"action_mode must be 'scores' or 'discrete', got {action_mode!r}")
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
        self.users = np.arange(self.model.n_users) if users is None else np.asarray(users)
        self.catalogue = self.model.catalogue
        self.generator = CandidateGenerator(
            catalogue=self.catalogue, n_candidates=self.n_candidates
        )
        self._initial_state = _snapshot(self.model)
        n_obs = (
            self.model.user_feature_dim
            + len(SESSION_FEATURES)
            + self.n_candidates * len(CANDIDATE_FEATURES)
        )
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(n_obs,), dtype=np.float32)
        if action_mode == "scores":
            self.action_space = spaces.Box(-1.0, 1.0, shape=(self.n_candidates,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(self.n_candidates)
        self._user = np.zeros(1, dtype=np.int64)
        self._candidates = np.zeros((1, self.n_candidates), dtype=np.int64)
        self._session_exposure = np.zeros(self.catalogue.n_categories)
        self._shown = np.zeros(self.catalogue.n_items, dtype=bool)
        self._last = np.zeros(2)
        self._steps = 0

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:
            _restore(self.model, self._initial_state)
        user = (options or {}).get("user")
        if user is None:
            user = self.users[self.np_random.integers(len(self.users))]
        self._user = np.array([int(user)], dtype=np.int64)
        self.model.begin_session(self._user, self.np_random)
        self._session_exposure[:] = 0.0
        self._shown[:] = False
        self._last[:] = 0.0
        self._steps = 0
        self._candidates = self.generator(self.model.history(self._user), self.np_random)
        return self._observation(), {
            "user_id": int(self._user[0]),
            "candidates": self._candidates[0],
        }

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        slate = self.slate_from_action(action)
        res = self.model.step(self._user, slate[None, :], self.np_random)
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
            "user_id": int(self._user[0]),
            "slate": slate,
            "categories": cats,
            "responses": r,
            "candidates_shown": self._candidates[0],
        }
        info.update(self._after_responses(slate, r))
        self._candidates = self.generator(self.model.history(self._user), self.np_random)
        info["candidates"] = self._candidates[0]
        return self._observation(), reward, terminated, truncated, info

    # ------------------------------------------------------------------ helpers
    def _after_responses(self, slate: np.ndarray, responses: dict) -> dict[str, Any]:
        """Hook for envs that extend this one: runs after the user responded to `slate` and
        before the next candidates and observation are made; returns extra `info` entries."""
        return {}

    def slate_from_action(self, action) -> np.ndarray:
        """The item ids an action shows: top-`slate_size` candidates by score, or the chosen one."""
        cand = self._candidates[0]
        if self.action_mode == "discrete":
            return cand[[int(np.asarray(action).reshape(-1)[0])]]
        scores = np.asarray(action, dtype=np.float64).reshape(-1)
        if scores.shape[0] != self.n_candidates:
            raise ValueError(f"expected {self.n_candidates} scores, got shape {np.shape(action)}")
        order = np.argsort(-scores, kind="stable")[: self.slate_size]
        return cand[order]

    def _observation(self) -> np.ndarray:
        return observe(
            self.model,
            self._user,
            self._candidates,
            session=np.array(
                [[self._steps / self.max_steps, self._last[0], self._last[1]]], dtype=np.float64
            ),
            session_exposure=self._session_exposure[None, :],
            shown=self._shown[None, :],
        )[0]


def observe(
    model: UserModel,
    users: np.ndarray,
    candidates: np.ndarray,
    session: np.ndarray,
    session_exposure: np.ndarray,
    shown: np.ndarray,
) -> np.ndarray:
    """Observation rows for a batch: (B,) users, (B, N) candidates -> (B, obs_dim) float32.

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
    ).reshape(b, -1)
    history_fill = valid.mean(axis=1, keepdims=True)
    obs = np.concatenate([model.user_features(users), session, history_fill, per_cand], axis=1)
    return np.clip(obs, -10.0, 10.0).astype(np.float32)


def _snapshot(model: UserModel) -> Any:
    return model.snapshot() if hasattr(model, "snapshot") else None


def _restore(model: UserModel, snapshot: Any) -> None:
    """Back to the state the env started from (`restore`), else to the model's initial state."""
    if snapshot is not None and hasattr(model, "restore"):
        model.restore(snapshot)
    elif hasattr(model, "reset_state"):
        model.reset_state()
