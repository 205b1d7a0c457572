"""`recgym/UserAuthor-v0`: the session MDP seen through user-author pairs (RLIV-UA's SCRI-MDP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from recgym.data.asa import sequential_counters
from recgym.envs.contract import (
    CANDIDATE_FEATURES,
    FLOAT_HIGH,
    FLOAT_LOW,
    UA_AUTHOR_COLUMNS,
    UA_CANDIDATE_FEATURES,
    UA_COUNTER_COLUMNS,
    candidate_columns,
)
from recgym.envs.session import SessionEnv, SessionMDP
from recgym.envs.vector import Info, MDPVectorEnv, Obs
from recgym.simulators import scri

_COUNT_COLUMNS = np.array([c != "watch_s" for c in scri.UA_COUNTERS])


class UACounterTable:
    """Sparse UA_COUNTERS per (user, author): for each user met, sorted author ids and a
    (m, len(UA_COUNTERS)) float32 row per author. Pairs never met read as zeros."""

    def __init__(self) -> None:
        self._by_user: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def clear(self) -> None:
        self._by_user.clear()

    def __len__(self) -> int:
        """Number of pairs with a row."""
        return sum(len(keys) for keys, _ in self._by_user.values())

    def lookup(self, user: int, authors: np.ndarray) -> np.ndarray:
        """(...) author ids -> (..., len(UA_COUNTERS)) float32 counters of (user, author)."""
        authors = np.asarray(authors, dtype=np.int64)
        out = np.zeros(authors.shape + (len(scri.UA_COUNTERS),), dtype=np.float32)
        entry = self._by_user.get(int(user))
        if entry is None or len(entry[0]) == 0:
            return out
        keys, values = entry
        idx = np.minimum(np.searchsorted(keys, authors), len(keys) - 1)
        found = keys[idx] == authors
        out[found] = values[idx[found]]
        return out

    def set(self, user: int, authors: np.ndarray, values: np.ndarray) -> None:
        """Overwrite the counters of (user, a) for distinct `authors` (K,) with `values` (K, 6)."""
        authors = np.asarray(authors, dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        keys, table = self._by_user.get(
            int(user),
            (np.zeros(0, dtype=np.int64), np.zeros((0, len(scri.UA_COUNTERS)), np.float32)),
        )
        idx = np.minimum(np.searchsorted(keys, authors), max(len(keys) - 1, 0))
        found = (keys[idx] == authors) if len(keys) else np.zeros(len(authors), dtype=bool)
        table[idx[found]] = values[found]
        new = ~found
        if new.any():
            at = np.searchsorted(keys, authors[new])
            keys = np.insert(keys, at, authors[new])
            table = np.insert(table, at, values[new], axis=0)
            order = np.argsort(keys, kind="stable")  # np.insert of unsorted new keys
            keys, table = keys[order], table[order]
        self._by_user[int(user)] = (keys, table)

    def items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All rows: users (P,), authors (P,), counters (P, 6), ordered by (user, author)."""
        users, authors, values = [], [], []
        for user in sorted(self._by_user):
            keys, table = self._by_user[user]
            users.append(np.full(len(keys), user, dtype=np.int64))
            authors.append(keys)
            values.append(table)
        if not users:
            return (
                np.zeros(0, dtype=np.int64),
                np.zeros(0, dtype=np.int64),
                np.zeros((0, len(scri.UA_COUNTERS)), dtype=np.float32),
            )
        return np.concatenate(users), np.concatenate(authors), np.concatenate(values)


def candidate_states(obs: Mapping[str, Any]) -> np.ndarray:
    """SCRI states s_ua (..., n_candidates, state_dim) of every candidate, from observations
    (one UserAuthor-v0 observation dict or a batch of them).

    Layout `[f_u | f_a | f_ua]` of `simulators.scri` with RAW counters: ``expm1`` of the observed
    log1p values, count counters rounded to integers (exact), watch_s to float32 precision
    (observations clip at 10, so watch_s above e^10 - 1 s, about 6 hours, reads as that).
    """
    user = np.asarray(obs["user"])
    f_a = candidate_columns(obs, UA_AUTHOR_COLUMNS)
    f_ua = candidate_columns(obs, UA_COUNTER_COLUMNS)
    f_ua = np.expm1(f_ua.astype(np.float64))
    f_ua = np.where(_COUNT_COLUMNS, np.round(f_ua), f_ua)
    f_u = np.broadcast_to(user[..., None, :], f_a.shape[:-1] + (user.shape[-1],))
    return np.concatenate([f_u, f_a, f_ua], axis=-1).astype(np.float32)


class UserAuthorMDP(SessionMDP):
    """UserAuthor-v0's dynamics over ``n_slots`` concurrent sessions (`SessionMDP` plus the UA
    table); arguments as `SessionMDP`. The UA table's lookups and updates run per slot (a
    Python loop over the slots of a request: the table is a dict of sorted per-user arrays)."""

    def __init__(self, *args: Any, name: str = "recgym/UserAuthor-v0", **kwargs: Any):
        super().__init__(*args, name=name, **kwargs)
        self.tasks = scri.tasks_for(tuple(self.model.behaviours))
        self.user_dim = int(self.model.user_feature_dim)
        self.state_dim = scri.state_dim(self.user_dim)
        self.ua_counters = UACounterTable()
        self._author_x = scri.author_features(self.catalogue)
        self.single_observation_space = self._observation_space(len(UA_CANDIDATE_FEATURES))

    def seed(self, seed: int | None, np_random: np.random.Generator | None = None) -> None:
        if seed is not None:
            self.ua_counters.clear()
        super().seed(seed, np_random)

    def _after_responses(self, slots: np.ndarray, slate: np.ndarray, responses: dict) -> Info:
        """The request's SCRI transitions; the UA table advances before the next observation."""
        users = self.driver.user[slots]
        parts = [
            self._interact(int(users[j]), slate[j], {b: v[j] for b, v in responses.items()})
            for j in range(len(slots))
        ]
        scri_info: Info = {
            key: np.stack([part[key] for part in parts]) for key in parts[0] if key != "tasks"
        }
        scri_info["tasks"] = self.tasks
        return {"scri": scri_info}

    # ------------------------------------------------------------------ helpers
    def states(self, user: int, items: np.ndarray) -> np.ndarray:
        """Current s_ua (len(items), state_dim) of (user, author of each item), raw counters."""
        items = np.asarray(items, dtype=np.int64)
        authors = self.catalogue.author[items]
        return self._states(user, authors, self.ua_counters.lookup(user, authors))

    def _states(self, user: int, authors: np.ndarray, counters: np.ndarray) -> np.ndarray:
        f_u = self.model.user_features(np.array([user], dtype=np.int64))[0]
        f_u = np.broadcast_to(f_u, (len(authors), self.user_dim))
        return np.concatenate([f_u, self._author_x[authors], counters], axis=1).astype(np.float32)

    def _interact(self, user: int, slate: np.ndarray, responses: dict) -> dict[str, Any]:
        """SCRI transitions of a shown slate (display order); advances the UA table."""
        authors = self.catalogue.author[slate]
        start = self.ua_counters.lookup(user, authors)
        # after = before + increments per item, chained over items of one author (Eq. 4)
        before, after = sequential_counters(authors, scri.counter_increments(responses), start)
        k = len(slate)
        last = k - 1 - np.unique(authors[::-1], return_index=True)[1]  # last item per author
        self.ua_counters.set(user, authors[last], after[last])
        return {
            "user": np.full(k, user, dtype=np.int64),
            "author": authors.astype(np.int64),
            "item": np.asarray(slate, dtype=np.int64),
            "obs": self._states(user, authors, before),
            "obs_next": self._states(user, authors, after),
            "rewards": scri.task_rewards(responses, scri.TASKS),
            "tasks": self.tasks,
        }

    def _observed_counters(self, user: int, candidates: np.ndarray) -> np.ndarray:
        counters = self.ua_counters.lookup(user, self.catalogue.author[candidates])
        return np.minimum(np.log1p(counters.astype(np.float64)), 10.0).astype(np.float32)

    def _observe(self, slots: np.ndarray) -> Obs:
        obs = super()._observe(slots)
        cand = self.candidates[slots]
        users = self.driver.user[slots]
        assert obs["candidates"].shape[-1] == len(CANDIDATE_FEATURES)
        counters = np.stack(
            [self._observed_counters(int(users[j]), cand[j]) for j in range(len(slots))]
        )
        rows = [
            obs["candidates"],
            np.clip(self._author_x[self.catalogue.author[cand]], FLOAT_LOW, FLOAT_HIGH),
            counters,
        ]
        obs["candidates"] = np.concatenate(rows, axis=-1).astype(np.float32)
        return obs


class UserAuthorEnv(SessionEnv):
    """The session env where every candidate is also a user-author (UA) pair with a history.

    ## Description
    `recgym/Session-v0` (same users, candidates, slates, responses and leave model) plus the
    SCRI-MDP of RLIV-UA (`simulators.scri`): the env keeps, for every (user, author) pair, the
    UA_COUNTERS f_ua (clicks, long views, follows, comments, gifts, seconds watched) of all
    the pair's interactions since the env was created or last reseeded, across requests and
    sessions of the same user. A shown item is one interaction of the pair (user, its
    author), whatever the response; f_ua advances by ASA (Eq. 4, `scri.asa_next_counters`)
    and nothing else changes it. Items of a slate are processed in display order, so when two
    items of one author are shown together the second's state already includes the first's
    increments (what ASA over the logged rows in time order gives).

    ## Action Space
    As `recgym/Session-v0`: ``Box(-1, 1, (n_candidates,))`` scores (top ``slate_size`` shown,
    best first), or ``Discrete(n_candidates)`` with ``action_mode="discrete"``.

    ## Observation Space
    Session-v0's ``Dict`` (`envs.contract`) with 16 columns per candidate row:
    ``"candidates"`` float32 (n_candidates, 16) rows of UA_CANDIDATE_FEATURES =
    CANDIDATE_FEATURES (7, as Session-v0) + AUTHOR_FEATURES f_a of its author (3, named
    ``f_a_<feature>``, `scri.author_features`) + ``log1p`` of UA_COUNTERS between the user and
    that author (6, named ``log1p_<counter>``, clipped at 10); ``"user"`` is f_u (the
    backend's ``user_feature_dim``, 23 for the world and for learned simulators);
    ``"context"``, ``"item_id"``, ``"author_id"``, ``"category_id"``, ``"mask"`` and
    ``"user_id"`` as Session-v0. `candidate_states` turns an observation into
    per-candidate s_ua with raw counters (the user id and ``"author_id"`` name the pairs).

    ## Starting State
    As Session-v0 (backend, user draw and random streams are its `envs.driver.EpisodeDriver`,
    ``env.driver``). The UA table starts empty; ``reset(seed=...)`` empties it again (and
    restores the backend), so the same seed gives the same episode; ``reset()`` keeps it.

    ## Rewards
    As Session-v0 (default: watch time in seconds). The per-item SCRI transitions of each step
    are in ``info["scri"]``, arrays over the K shown items in display order: ``user`` (K,),
    ``author`` (K,), ``item`` (K,), ``obs`` s_ua^t (K, state_dim) and ``obs_next`` the ASA
    s'_ua (K, state_dim), both ``[f_u | f_a | f_ua]`` with RAW counters, ``rewards``
    (K, len(TASKS)) `scri.task_rewards` in TASKS order (gift 0 where the backend has no
    gifts), and ``tasks`` the TASKS the backend supports (`scri.tasks_for`; also ``env.tasks``).

    ## Episode End
    As Session-v0: ``terminated`` when the user leaves, ``truncated`` after ``max_steps``.
    A UA pair's own process never ends; its next state is its next interaction's.

    ## Arguments
    Those of Session-v0: backend ("world" | "learned" | a UserModel), checkpoint, world_config,
    slate_size (6), n_candidates (50), action_mode, reward_weights, max_steps (100), users,
    world_dir.

    ## Version History
    v0: initial version. Changed in place with Session-v0 before the first release (see its
    Version History): the Dict observation, the four seeded random streams, ``ValueError`` on
    invalid actions, ``world_dir`` and the calibrated world.
    """

    mdp: UserAuthorMDP
    mdp_class = UserAuthorMDP

    @property
    def tasks(self) -> tuple[str, ...]:
        """The TASKS the backend supports (`scri.tasks_for`)."""
        return self.mdp.tasks

    @property
    def user_dim(self) -> int:
        return self.mdp.user_dim

    @property
    def state_dim(self) -> int:
        return self.mdp.state_dim

    @property
    def ua_counters(self) -> UACounterTable:
        """The UA table (shared by every slot of a vector env: the slots' users are distinct)."""
        return self.mdp.ua_counters

    def states(self, user: int, items: np.ndarray) -> np.ndarray:
        """Current s_ua (len(items), state_dim) of (user, author of each item), raw counters."""
        return self.mdp.states(user, items)


def user_author_vector_env(num_envs: int = 1, **kwargs: Any) -> MDPVectorEnv:
    """`recgym/UserAuthor-v0`'s native vector env: `num_envs` concurrent sessions."""
    return MDPVectorEnv(UserAuthorMDP(n_slots=num_envs, **kwargs))


__all__ = [
    "UA_CANDIDATE_FEATURES",
    "UACounterTable",
    "UserAuthorEnv",
    "UserAuthorMDP",
    "candidate_states",
    "user_author_vector_env",
]
