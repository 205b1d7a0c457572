"""Tianshou on a native vector env: a `BaseVectorEnv`-compatible view for `Collector`.

`TianshouVectorEnv(env)` takes a native recgym vector env (`envs.vector.MDPVectorEnv`, from
``gym.make_vec(ID, num_envs=N, vectorization_mode="vector_entry_point")``, or its `BatchedMDP`)
and offers what Tianshou 2.0.1's `Collector` calls on a vector env: ``len``, ``env_num``,
``is_async`` (False), per-env ``action_space`` / ``observation_space`` lists, ``seed``,
``reset(env_id)``, ``step(action, id)`` and ``close``. Each call is one `reset_slots` /
`step_slots` of the core, so a Collector step over N envs is one backend call.

Semantics are Tianshou's (those of `DummyVectorEnv`), not Gymnasium's: there is no autoreset;
the Collector resets the envs whose episode ended through ``reset(env_id=...)``. ``seed(s)``
seeds the core once with `s` (the slots share one seed tree, `envs.vector`), seeds env i's action
space with ``s + i`` and resets every slot, as `DummyVectorEnv.seed` does through its workers'
``env.reset(seed=s + i)``; so with one slot the transitions equal a `DummyVectorEnv` of the single
env seeded the same (tested).

Observations come back as a Tianshou `Batch` of the Dict entries with a leading env axis
(what the Collector makes of a `DummyVectorEnv`'s array of dicts), or, with ``flatten=True``, as
the flat float32 array of `envs.contract.FlattenCandidates` (N, obs_dim). Infos: ``info="full"``
gives one dict per env (the single env's info plus ``env_id``, as `DummyVectorEnv`);
``info="none"`` gives one empty dict per env, so the buffer stores no ``info`` entries and the
policy sees an empty ``batch.info`` (DQN reads no info; RLIV-UA's online phase needs "full" for
``info["scri"]``). "none" carries no ``env_id`` either: Tianshou 2.0.1's synchronous
`Collector` never reads it (it knows which envs it stepped); only `AsyncCollector` reads
``info["env_id"]``, which is meant for ``is_async`` envs (it logs an error for this one, whose
``is_async`` is False) and raises KeyError on "none" infos: use "full" there. An empty dict is
the case Tianshou's own info batching expects for falsy infos (`_HACKY_create_info_batch`
returns an empty Batch), whereas 256 ``{"env_id": i}`` dicts cost the Collector a Batch built
dict by dict at every step: with 256 slots, about a fifth of the collect time (Collector +
native world env, one batched random draw per step: 22-23k -> 29k env steps per CPU second at
load 3.3).
A buffer row's env is still its sub-buffer: rows ``i * size .. (i + 1) * size - 1`` of a
``VectorReplayBuffer(N * size, N)`` are env i's. Observations, actions, rewards and episode ends
are the same in both modes (tested).

Importing this module also turns on numba's on-disk cache for Tianshou's jitted kernels
(`cache_tianshou_kernels`): Tianshou compiles them in every new process (its replay-buffer
manager at construction, the n-step return at the first update), which cost 15-30 s per process
on the 2-core machine, more than a demo's whole DQN training; cached, the next process loads
them in about a second.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tianshou.data import Batch

from recgym.envs.contract import flatten_observation
from recgym.envs.vector import BatchedMDP, MDPVectorEnv, Obs, take_slot


def cache_tianshou_kernels() -> int:
    """Enable numba's on-disk cache (beside Tianshou's sources, else numba's user cache dir)
    for every numba function of Tianshou's buffer, segment tree and algorithm base that is not
    compiled yet; returns how many. Compiled code is reused while Tianshou's files are unchanged
    (numba keys its cache by source file and timestamp)."""
    from numba.core.dispatcher import Dispatcher
    from tianshou.algorithm import algorithm_base
    from tianshou.data.buffer import manager
    from tianshou.data.utils import segtree

    enabled = 0
    for module in (algorithm_base, manager, segtree):
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and not value.signatures:
                value.enable_caching()
                enabled += 1
    return enabled


cache_tianshou_kernels()


class TianshouVectorEnv:
    """A native vector env (or its core) seen as a Tianshou `BaseVectorEnv` (see the module)."""

    is_async = False

    def __init__(
        self,
        env: MDPVectorEnv | BatchedMDP | gym.vector.VectorEnv,
        *,
        flatten: bool = False,
        info: Literal["full", "none"] = "full",
    ):
        unwrapped = env.unwrapped if isinstance(env, gym.vector.VectorEnv) else env
        mdp = unwrapped.mdp if isinstance(unwrapped, MDPVectorEnv) else unwrapped
        if not isinstance(mdp, BatchedMDP):
            raise ValueError(
                f"TianshouVectorEnv needs a native recgym vector env (MDPVectorEnv) or its "
                f"BatchedMDP, got {type(env).__name__}"
            )
        if info not in ("full", "none"):
            raise ValueError(f"info must be 'full' or 'none', got {info!r}")
        self.mdp = mdp
        self.env_num = int(mdp.n_slots)
        self.flatten = bool(flatten)
        self.info_mode = info
        single_obs: spaces.Space = mdp.single_observation_space
        if self.flatten:
            sample = flatten_observation(mdp.single_observation_space.sample())
            single_obs = spaces.Box(-10.0, 10.0, shape=sample.shape, dtype=np.float32)
        self.single_observation_space = single_obs
        self.observation_space = [single_obs for _ in range(self.env_num)]
        self.action_space = [copy.deepcopy(mdp.single_action_space) for _ in range(self.env_num)]
        self._all = np.arange(self.env_num, dtype=np.int64)
        self.is_closed = False

    def __len__(self) -> int:
        return self.env_num

    # ------------------------------------------------------------------ Tianshou API
    def seed(self, seed: int | list[int] | None = None) -> list[list[int] | None]:
        """Seed the core with `seed` and env i's action space with ``seed + i``; resets every
        slot (see the module docstring). A list gives its first entry to the core."""
        first = seed[0] if isinstance(seed, list | tuple) else seed
        seeds = [None if first is None else int(first) + i for i in range(self.env_num)]
        for space, s in zip(self.action_space, seeds, strict=True):
            space.seed(s)
        self.mdp.seed(None if first is None else int(first), np.random.default_rng(first))
        self.mdp.reset_slots(self._all, None)
        return [[s] for s in seeds]

    def reset(
        self, env_id: int | list[int] | np.ndarray | None = None, **kwargs: Any
    ) -> tuple[Batch | np.ndarray, np.ndarray]:
        if not self.mdp_seeded:
            self.mdp.seed(None, np.random.default_rng())
        ids = self._ids(env_id)
        obs, info = self.mdp.reset_slots(ids, kwargs.get("options"))
        return self._obs(obs), self._infos(info, ids)

    def step(
        self, action: np.ndarray | Any, id: int | list[int] | np.ndarray | None = None
    ) -> tuple[Batch | np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ids = self._ids(id)
        if action is None or len(action) != len(ids):
            raise ValueError(f"{self.mdp.name}: step needs one action per env id ({len(ids)})")
        obs, reward, terminated, truncated, info = self.mdp.step_slots(np.asarray(action), ids)
        return self._obs(obs), reward, terminated, truncated, self._infos(info, ids)

    def close(self) -> None:
        self.is_closed = True

    def render(self, **kwargs: Any) -> list[Any]:
        return []

    # ------------------------------------------------------------------ helpers
    @property
    def mdp_seeded(self) -> bool:
        driver = getattr(self.mdp, "driver", None)
        return driver is None or driver.seeded

    def _ids(self, env_id: int | list[int] | np.ndarray | None) -> np.ndarray:
        if env_id is None:
            return self._all
        ids = np.asarray(env_id, dtype=np.int64).reshape(-1)
        if ((ids < 0) | (ids >= self.env_num)).any():
            raise ValueError(f"{self.mdp.name}: env ids {ids.tolist()} outside 0..{self.env_num}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{self.mdp.name}: env ids must be distinct, got {ids.tolist()}")
        return ids

    def _obs(self, obs: Obs) -> Batch | np.ndarray:
        if self.flatten:
            return flatten_observation(obs)
        return Batch(obs)

    def _infos(self, info: dict, ids: np.ndarray) -> np.ndarray:
        if self.info_mode == "none":
            return np.array([{} for _ in ids], dtype=object)  # fresh: a consumer may write
        out = np.empty(len(ids), dtype=object)
        for j, slot in enumerate(ids):
            one = take_slot(info, j)
            one["env_id"] = int(slot)
            out[j] = one
        return out


__all__ = ["TianshouVectorEnv", "cache_tianshou_kernels"]
