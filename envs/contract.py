"""The observation / policy contract shared by every recgym slate env and every agent.

**Observation.** `recgym/Session-v0` and `recgym/UserAuthor-v0` return a `spaces.Dict`
(`slate_observation_space`) with

- ``"user"``: float32 (U,), the backend's static user features;
- ``"context"``: float32 (len(SESSION_FEATURES),), the per-request session features;
- ``"candidates"``: float32 (N, F), one row per candidate, columns `row_features(F)`
  (CANDIDATE_FEATURES; UserAuthor-v0 appends its author and user-author columns, so a
  column name sits at the same index in both envs);
- ``"item_id"``, ``"author_id"``, ``"category_id"``: int64 (N,), the candidates' catalogue ids;
- ``"mask"``: int8 (N,), 1 for a valid candidate (all ones: N is fixed in these envs);
- ``"user_id"``: int64 (1,), the backend's id of the user in session (not in the issue's
  list: ranking models with user-id embeddings, DeepFM and RLIV-UA, need it, and it was in
  ``info`` before; ``info["user_id"]`` stays).

All float entries are clipped to [-10, 10]; the numbers are exactly those of the former flat
vector ``[user | context | candidates.ravel()]``, which `flatten_observation` and the
`FlattenCandidates` wrapper rebuild for algorithms that want a Box.

**Policies** act on observations only: ``policy.act(obs) -> action`` for one observation dict.
Which action to return is fixed when the policy is made (its ``action_space``: ``None`` or a
``Box`` means per-candidate scores, ``Discrete(N)`` the index of one candidate;
`with_action_space` gives a copy for another space). `action_from_values` turns per-candidate
values into either. `TianshouSlatePolicy` lets any such policy collect through a Tianshou
``Collector`` (Dummy or Subproc vector envs). Oracles that read the world's hidden state are
the one exception and say so with ``reads_hidden_state = True``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from recgym.simulators import scri

CANDIDATE_FEATURES: tuple[str, ...] = (
    "log_duration",
    "log_popularity",
    "author_is_live",
    "history_category_share",
    "history_author_share",
    "session_category_exposure",
    "shown_this_session",
)
"""Session-v0's per-candidate columns, in order."""

SESSION_FEATURES: tuple[str, ...] = (
    "step_fraction",
    "last_click_rate",
    "last_watch_ratio",
    "history_fill",
)
"""The ``"context"`` entries, in order."""

UA_AUTHOR_COLUMNS: tuple[str, ...] = tuple(f"f_a_{name}" for name in scri.AUTHOR_FEATURES)
"""Names of the f_a columns of UserAuthor-v0's rows (prefixed: ``log_popularity`` is also an
item column of CANDIDATE_FEATURES)."""

UA_COUNTER_COLUMNS: tuple[str, ...] = tuple(f"log1p_{c}" for c in scri.UA_COUNTERS)
"""Names of the log1p f_ua columns of UserAuthor-v0's rows."""

UA_CANDIDATE_FEATURES: tuple[str, ...] = (
    *CANDIDATE_FEATURES,
    *UA_AUTHOR_COLUMNS,
    *UA_COUNTER_COLUMNS,
)
"""UserAuthor-v0's per-candidate columns (16): Session-v0's, then f_a, then log1p f_ua."""

ID_KEYS: tuple[str, ...] = ("item_id", "author_id", "category_id")
"""Per-candidate id entries of the observation."""

FLOAT_LOW, FLOAT_HIGH = -10.0, 10.0
"""Bounds of every float entry (observations are clipped to them)."""

_ROW_TABLES = (CANDIDATE_FEATURES, UA_CANDIDATE_FEATURES)
assert all(len(set(t)) == len(t) for t in _ROW_TABLES), "column names must be unique"


def row_features(width: int) -> tuple[str, ...]:
    """Names of the candidate columns of a row of `width` (Session-v0's 7 or UserAuthor-v0's 16)."""
    for names in _ROW_TABLES:
        if len(names) == width:
            return names
    raise ValueError(
        f"no recgym env has candidate rows of {width} columns "
        f"(Session-v0: {len(CANDIDATE_FEATURES)}, UserAuthor-v0: {len(UA_CANDIDATE_FEATURES)})"
    )


def slate_observation_space(
    *,
    user_dim: int,
    n_candidates: int,
    row_width: int,
    n_users: int,
    n_items: int,
    n_authors: int,
    n_categories: int,
) -> spaces.Dict:
    """The Dict observation space of a slate env (see the module docstring)."""
    n = int(n_candidates)

    def floats(shape: tuple[int, ...]) -> spaces.Box:
        return spaces.Box(FLOAT_LOW, FLOAT_HIGH, shape=shape, dtype=np.float32)

    def ids(count: int, shape: tuple[int, ...]) -> spaces.Box:
        return spaces.Box(0, max(int(count) - 1, 0), shape=shape, dtype=np.int64)

    return spaces.Dict(
        {
            "user": floats((int(user_dim),)),
            "context": floats((len(SESSION_FEATURES),)),
            "candidates": floats((n, int(row_width))),
            "item_id": ids(n_items, (n,)),
            "author_id": ids(n_authors, (n,)),
            "category_id": ids(n_categories, (n,)),
            "mask": spaces.Box(0, 1, shape=(n,), dtype=np.int8),
            "user_id": ids(n_users, (1,)),
        }
    )


# --------------------------------------------------------------------------- accessors
Obs = Mapping[str, Any]
"""One observation dict, or a batch of them (a dict of stacked arrays or a Tianshou Batch)."""


def _get(obs: Obs, key: str) -> np.ndarray:
    try:
        value = obs[key]
    except (KeyError, IndexError, TypeError, AttributeError):
        raise KeyError(
            f"observation has no {key!r} entry: expected a recgym slate observation dict "
            f"(user, context, candidates, item_id, author_id, category_id, mask, user_id)"
        ) from None
    return np.asarray(value)


def n_candidates(obs: Obs) -> int:
    """N, the number of candidates of an observation (or of each observation of a batch)."""
    return int(_get(obs, "candidates").shape[-2])


def column_index(names: str | tuple[str, ...] | list[str], width: int) -> list[int]:
    """Indices of candidate columns `names` in rows of `width`; unknown names raise ValueError."""
    names = [names] if isinstance(names, str) else list(names)
    row = row_features(width)
    missing = [n for n in names if n not in row]
    if missing:
        raise ValueError(f"candidate rows of {width} columns have no {missing} (columns: {row})")
    return [row.index(n) for n in names]


def candidate_columns(obs: Obs, names: str | tuple[str, ...] | list[str]) -> np.ndarray:
    """(..., N, len(names)) candidate columns by name (a str gives (..., N))."""
    cands = _get(obs, "candidates")
    cols = column_index(names, cands.shape[-1])
    out = cands[..., cols]
    return out[..., 0] if isinstance(names, str) else out


def user_id(obs: Obs) -> np.ndarray:
    """The user id of an observation: () for one, (B,) for a batch."""
    return _get(obs, "user_id")[..., 0].astype(np.int64)


def flatten_observation(obs: Obs) -> np.ndarray:
    """The flat float32 vector(s) ``[user | context | candidates.ravel()]`` (..., obs_dim)."""
    user, context, cands = _get(obs, "user"), _get(obs, "context"), _get(obs, "candidates")
    lead = cands.shape[:-2]
    return np.concatenate(
        [user, context, cands.reshape(*lead, cands.shape[-2] * cands.shape[-1])], axis=-1
    ).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class RowLayout:
    """A flat observation as ``[context (context_dim) | n_rows rows of len(row_names)]``.

    The context starts with ``user_dim`` static user features (then SESSION_FEATURES).
    `score_cols` are the row columns a linear ranking's weights combine (empty: all).
    """

    user_dim: int
    context_dim: int
    n_rows: int
    row_names: tuple[str, ...]
    score_cols: tuple[int, ...] = ()

    @property
    def row_dim(self) -> int:
        return len(self.row_names)

    @property
    def obs_dim(self) -> int:
        return self.context_dim + self.n_rows * self.row_dim

    @property
    def cols(self) -> tuple[int, ...]:
        """The score columns, explicit."""
        return self.score_cols or tuple(range(self.row_dim))

    @property
    def action_dim(self) -> int:
        """J, the length of a weight vector over the score columns."""
        return len(self.cols)

    def split(self, obs: Any) -> tuple[Any, Any]:
        """(..., obs_dim) numpy array or tensor -> context (..., C), rows (..., N, F)."""
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"observation of size {obs.shape[-1]}, layout expects {self.obs_dim}")
        rows = obs[..., self.context_dim :]
        return obs[..., : self.context_dim], rows.reshape(
            *obs.shape[:-1], self.n_rows, self.row_dim
        )

    def with_rows(self, extra: tuple[str, ...], score_extra_only: bool) -> RowLayout:
        """The layout after appending columns `extra` to every row (scoring on them if asked)."""
        names = self.row_names + tuple(extra)
        cols = tuple(range(self.row_dim, len(names))) if score_extra_only else self.score_cols
        return RowLayout(
            user_dim=self.user_dim,
            context_dim=self.context_dim,
            n_rows=self.n_rows,
            row_names=names,
            score_cols=cols,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RowLayout:
        return cls(
            user_dim=int(data["user_dim"]),
            context_dim=int(data["context_dim"]),
            n_rows=int(data["n_rows"]),
            row_names=tuple(data["row_names"]),
            score_cols=tuple(int(c) for c in data["score_cols"]),
        )


def row_layout(space: spaces.Dict) -> RowLayout:
    """The `RowLayout` of `flatten_observation` for observations of a slate env's Dict `space`."""
    if not isinstance(space, spaces.Dict) or "candidates" not in space.spaces:
        raise TypeError(f"expected a recgym slate observation space (a Dict), got {space}")
    user_dim = int(space["user"].shape[0])
    n, width = space["candidates"].shape
    return RowLayout(
        user_dim=user_dim,
        context_dim=user_dim + int(space["context"].shape[0]),
        n_rows=int(n),
        row_names=row_features(int(width)),
    )


class FlattenCandidates(gym.ObservationWrapper):
    """A slate env with the flat Box observation ``[user | context | candidates.ravel()]``.

    For algorithms that want a Box (Tianshou's DQN, TD3 and CQL here). The ids and the mask
    are dropped; ``info`` is untouched.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.layout = row_layout(env.observation_space)
        self.observation_space = spaces.Box(
            FLOAT_LOW, FLOAT_HIGH, shape=(self.layout.obs_dim,), dtype=np.float32
        )

    def observation(self, observation: Obs) -> np.ndarray:
        return flatten_observation(observation)


# --------------------------------------------------------------------------- actions
class UniformBox(spaces.Box):
    """A float `spaces.Box` with one finite lower and one finite upper bound for every
    coordinate (the score and fusion-weight action spaces).

    `sample` is one ``np_random.uniform(low, high, shape)`` draw cast to the dtype: the same
    values from the same generator state as `spaces.Box.sample`, which draws the bounded
    coordinates with per-coordinate bound arrays into a float64 buffer and then casts (tested),
    at about an eighth of its cost (1.8 vs 14.5 us for 50 scores). Tianshou's
    `RandomActionPolicy` calls `sample` once per env per step. Everything else (equality with a
    plain Box of the same bounds, `batch_space`, pickling) is `spaces.Box`'s.
    """

    def __init__(
        self,
        low: float,
        high: float,
        shape: tuple[int, ...],
        dtype: type[np.floating] = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(low, high, shape=shape, dtype=dtype, seed=seed)
        if self.dtype.kind != "f" or not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(f"UniformBox needs finite bounds and a float dtype, got {self}")
        # the stored (dtype-rounded) bounds, as Box.sample reads them
        self._bounds = (float(self.low.flat[0]), float(self.high.flat[0]))

    def sample(self, mask: None = None, probability: None = None) -> np.ndarray:
        if mask is not None or probability is not None:
            return super().sample(mask, probability)  # raises, as for any Box
        low, high = self._bounds
        return self.np_random.uniform(low, high, self.shape).astype(self.dtype)


def slate_action_space(action_mode: str, n_candidates: int) -> spaces.Space:
    """A slate env's action space: ``"scores"``, one score in [-1, 1] per candidate (the top
    ``slate_size`` are shown; a `UniformBox`), or ``"discrete"``, the index of one candidate."""
    if action_mode == "scores":
        return UniformBox(-1.0, 1.0, shape=(int(n_candidates),))
    return spaces.Discrete(int(n_candidates))


def rank_scores(values: np.ndarray) -> np.ndarray:
    """(..., N) values -> float32 scores in [-1, 1] with the same order (best = 1, worst = -1).

    Ranks rather than raw values, so any value scale fits the Box action space; ties keep the
    candidate order.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[-1]
    order = np.argsort(-values, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n), axis=-1)
    return (1.0 - 2.0 * rank / max(n - 1, 1)).astype(np.float32)


def action_from_values(
    values: np.ndarray, action_space: gym.Space | None = None, mask: np.ndarray | None = None
) -> np.ndarray | int:
    """Per-candidate values (N,) -> the action showing the best: `rank_scores` for a Box or
    None (scores), the argmax for Discrete(N). Candidates with ``mask == 0`` rank last."""
    values = np.asarray(values, dtype=np.float64)
    if mask is not None:
        values = np.where(np.asarray(mask) > 0, values, -np.inf)
    if isinstance(action_space, spaces.Discrete):
        return int(np.argmax(values))
    if action_space is not None and not isinstance(action_space, spaces.Box):
        raise TypeError(f"expected a Box or Discrete action space, got {action_space}")
    return rank_scores(np.where(np.isfinite(values), values, np.finfo(np.float64).min))


class SlatePolicy(Protocol):
    """Anything that picks an action from one observation dict, reading nothing else."""

    def act(self, obs: Obs) -> Any: ...


P = TypeVar("P")


def with_action_space(policy: P, action_space: gym.Space | None) -> P:
    """A shallow copy of `policy` whose ``action_space`` is `action_space` (shares weights)."""
    clone = copy.copy(policy)
    clone.action_space = action_space  # type: ignore[attr-defined]
    return clone


def for_env(policy: P, env: gym.Env) -> P:
    """`policy` set up for `env`'s backend ids, before any acting: a policy trained on logs with
    the logs' raw ids (DeepFM, RLUR over DeepFM) defines ``for_backend(backend)`` returning a
    copy that maps the observation's ids to raw ids; any other policy is returned as is.
    Harnesses (`envs.evaluation`, the benchmarks) call this once per env they build."""
    if hasattr(policy, "for_backend"):
        return policy.for_backend(env.unwrapped.model)  # type: ignore[attr-defined]
    return policy


# --------------------------------------------------------------------------- Tianshou
def _tianshou_policy_class() -> type:
    """Built on first use, so importing the envs does not import Tianshou (and torch)."""
    from tianshou.algorithm.algorithm_base import Policy
    from tianshou.data import Batch

    class TianshouSlatePolicy(Policy):
        """Any ``act(obs)`` slate policy as a Tianshou `Policy`, to collect with a `Collector`.

        ``TianshouSlatePolicy(policy, action_space, observation_space=None)``. Tianshou stacks
        Dict observations of a vector env into a `Batch` (one array per key); each row is
        handed to ``policy.act`` as a plain dict of numpy arrays, so the wrapped policy sees
        exactly what a single env returns. It should return actions of `action_space` (see
        `with_action_space`). Nothing is learned here.
        """

        def __init__(
            self,
            policy: SlatePolicy,
            action_space: gym.Space,
            observation_space: gym.Space | None = None,
        ) -> None:
            super().__init__(
                action_space=action_space,
                observation_space=observation_space,
                action_scaling=False,
                action_bound_method=None,
            )
            self.slate_policy = policy

        def forward(self, batch: Batch, state: Any = None, **kwargs: Any) -> Batch:
            obs = batch.obs
            keys = list(obs.keys())
            columns = {k: np.asarray(obs[k]) for k in keys}
            size = len(columns[keys[0]])
            acts = [self.slate_policy.act({k: columns[k][i] for k in keys}) for i in range(size)]
            if isinstance(self.action_space, spaces.Discrete):
                act = np.asarray(acts, dtype=np.int64)
            else:
                act = np.stack([np.asarray(a, dtype=np.float32) for a in acts])
            return Batch(act=act, state=state)

    TianshouSlatePolicy.__module__ = __name__
    TianshouSlatePolicy.__qualname__ = "TianshouSlatePolicy"
    return TianshouSlatePolicy


def __getattr__(name: str) -> Any:
    if name == "TianshouSlatePolicy":
        cls = _tianshou_policy_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CANDIDATE_FEATURES",
    "FlattenCandidates",
    "ID_KEYS",
    "RowLayout",
    "SESSION_FEATURES",
    "SlatePolicy",
    "TianshouSlatePolicy",  # noqa: F822  (built on first access, `__getattr__`)
    "UA_AUTHOR_COLUMNS",
    "UA_CANDIDATE_FEATURES",
    "UA_COUNTER_COLUMNS",
    "UniformBox",
    "action_from_values",
    "candidate_columns",
    "column_index",
    "flatten_observation",
    "for_env",
    "n_candidates",
    "rank_scores",
    "row_features",
    "row_layout",
    "slate_action_space",
    "slate_observation_space",
    "user_id",
    "with_action_space",
]
