"""One batched MDP core, two faces: a `gym.Env` (1 slot) and a native `gymnasium.vector.VectorEnv`.

An MDP writes its dynamics once, over a leading *slot* axis (`BatchedMDP`): ``reset_slots(slots)``
begins episodes in some slots, ``step_slots(actions, slots)`` advances some slots, each with one
backend call for all of them. This module turns such a core into

- `MDPEnv`, a plain `gym.Env` over a 1-slot core (what ``gym.make(ID)`` returns), and
- `MDPVectorEnv`, a `gymnasium.vector.VectorEnv` over an N-slot core (what
  ``gym.make_vec(ID, num_envs=N, vectorization_mode="vector_entry_point")`` returns), with
  Gymnasium 1.x *next-step* autoreset (``metadata["autoreset_mode"]``): a slot that ended at step
  t is reset at step t+1, its action then ignored, its reward 0, ``terminated``/``truncated``
  False and its info the reset's;

and `register_mdp` registers an id with both entry points.

The contract a core keeps (`BatchedMDP`):

- ``n_slots``, ``name`` (for error messages), ``single_observation_space`` (a ``spaces.Dict``)
  and ``single_action_space``: the spaces of one slot, fixed in ``__init__``.
- ``seed(seed, np_random)``: Gymnasium's reset-seed semantics for every slot at once (a seed
  restarts the core's streams and state; ``None`` continues, or on the first call seeds from
  `np_random`).
- ``reset_slots(slots, options) -> (obs, info)`` and ``step_slots(actions, slots) -> (obs,
  reward, terminated, truncated, info)`` for ``slots`` a int64 array of distinct slot
  indices; ``actions`` has a leading ``len(slots)`` axis (the core validates it and raises a
  ``ValueError`` naming itself). Every returned observation entry and every ``np.ndarray`` in
  ``info`` (nested dicts allowed) has a leading ``len(slots)`` axis and is a fresh array, never
  a view of the core's state; any other info value (a str, a tuple) is shared by the slots.
  ``reward`` is float64 (m,), ``terminated`` / ``truncated`` bool (m,).
- optionally ``autoreset_step(actions, stepped, resetting) -> (obs, reward, terminated,
  truncated, step_info, reset_info)``: a step of the `stepped` slots and a reset of the
  `resetting` ones (together all slots; both non-empty) in one go, with every slot's
  observation, reward and ends and the two parts' infos; `MDPVectorEnv` uses it for its
  autoreset steps when the core has it (recgym's session MDPs retrieve and observe all slots
  in one call there).
- optionally ``vector_step(actions, autoreset) -> (obs, reward, terminated, truncated,
  info)``: a whole vector step, the slots in the bool (n_slots,) `autoreset` reset (their
  actions ignored) and the others stepped by their rows of the (n_slots, ...) `actions`,
  returning Gymnasium's vector info itself (every array over all slots, ``"_<key>"`` masks
  beside); `MDPVectorEnv.step` then only passes it through (the device-resident Session-v0,
  which has every slot's results at once, saves the per-part copies).

Seeding rule. ``MDPVectorEnv.reset(seed=s)`` calls ``core.seed(s)`` once for all slots; the
core decides what a slot sees (recgym's cores use `envs.driver.EpisodeDriver`: slot i draws
its users from child i of the seed's users stream and the slots share one backend and its
candidates/responses streams, because they are one population of users stepped in one call).
A 1-slot `MDPVectorEnv` seeded s replays the single env seeded s exactly (tested); an N-slot
one is a different, equally seeded sample of the same population, not N independent copies.
``reset(seed=[...])`` (one seed per slot) is a ``ValueError``: the slots share one seed tree.

Info. `MDPEnv` returns slot 0's info (every array indexed by 0). `MDPVectorEnv` returns
Gymnasium's vector info: the arrays with a leading ``num_envs`` axis and, beside each key, a
boolean ``"_<key>"`` mask of the slots that set it (after an autoreset step the stepped
slots carry the step's keys and the reset slots the reset's).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

Obs = dict[str, np.ndarray]
Info = dict[str, Any]


class BatchedMDP(ABC):
    """An MDP over ``n_slots`` concurrent episodes (see the module docstring for the contract)."""

    n_slots: int
    name: str
    single_observation_space: spaces.Dict
    single_action_space: spaces.Space

    @abstractmethod
    def seed(self, seed: int | None, np_random: np.random.Generator) -> None:
        """Restart (a seed) or continue (None) the core's random streams and state."""

    @abstractmethod
    def reset_slots(
        self, slots: np.ndarray, options: Mapping[str, Any] | None = None
    ) -> tuple[Obs, Info]:
        """Begin an episode in each of `slots`."""

    @abstractmethod
    def step_slots(
        self, actions: Any, slots: np.ndarray
    ) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, Info]:
        """Advance each of `slots` by its action (a leading ``len(slots)`` axis)."""


def take_slot(tree: Any, index: int | np.ndarray) -> Any:
    """`tree` (an observation or info) with every array indexed by `index` along its slot axis."""
    if isinstance(tree, np.ndarray):
        return tree[index]
    if isinstance(tree, dict):
        return {key: take_slot(value, index) for key, value in tree.items()}
    return tree


def scatter_info(parts: list[tuple[np.ndarray, Info]], n: int) -> Info:
    """Gymnasium vector info of `n` slots from (slots, per-slot info) parts: each array goes to
    its slots (zeros elsewhere) with a ``"_<key>"`` mask beside it; nested dicts likewise."""
    out: Info = {}
    for slots, info in parts:
        _scatter_into(out, slots, info, n)
    return out


def _scatter_into(out: Info, slots: np.ndarray, info: Info, n: int) -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            sub = out.get(key)
            if not isinstance(sub, dict):
                sub = out[key] = {}
            _scatter_into(sub, slots, value, n)
        elif isinstance(value, np.ndarray):
            full = out.get(key)
            if not isinstance(full, np.ndarray) or full.shape[1:] != value.shape[1:]:
                out[key] = np.zeros((n,) + value.shape[1:], dtype=value.dtype)
                out[f"_{key}"] = np.zeros(n, dtype=bool)
            out[key][slots] = value
            out[f"_{key}"][slots] = True
        else:
            out[key] = value


def _full_info(info: Info, n: int) -> Info:
    """Vector info when every slot set every key: the arrays as they are, all-True masks."""
    out: Info = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = _full_info(value, n)
        else:
            out[key] = value
            if isinstance(value, np.ndarray):
                out[f"_{key}"] = np.ones(n, dtype=bool)
    return out


_SLOT0 = np.zeros(1, dtype=np.int64)


class MDPEnv(gym.Env):
    """A `gym.Env` over a 1-slot `BatchedMDP`: the same dynamics as its vector env, one user.

    Subclasses set ``self.mdp`` (a 1-slot core) and call `attach` in ``__init__``.
    """

    metadata = {"render_modes": []}
    mdp: BatchedMDP

    def attach(self, mdp: BatchedMDP) -> None:
        """Take `mdp` (1 slot) as this env's core and its spaces as the env's."""
        if mdp.n_slots != 1:
            raise ValueError(f"{mdp.name}: a gym.Env needs a 1-slot core, got {mdp.n_slots}")
        self.mdp = mdp
        self.observation_space = mdp.single_observation_space
        self.action_space = mdp.single_action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, Info]:
        super().reset(seed=seed)
        self.mdp.seed(seed, self.np_random)
        obs, info = self.mdp.reset_slots(_SLOT0, options)
        return {key: value[0] for key, value in obs.items()}, take_slot(info, 0)

    def step(self, action: Any) -> tuple[Obs, float, bool, bool, Info]:
        try:
            batch = np.asarray(action)[None]
        except (TypeError, ValueError):
            raise ValueError(f"{self.mdp.name}: invalid action {action!r}") from None
        obs, reward, terminated, truncated, info = self.mdp.step_slots(batch, _SLOT0)
        return (
            {key: value[0] for key, value in obs.items()},
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            take_slot(info, 0),
        )


class MDPVectorEnv(gym.vector.VectorEnv):
    """A native `gymnasium.vector.VectorEnv` over an N-slot `BatchedMDP` (next-step autoreset).

    One ``step`` makes one ``step_slots`` call for the running slots and, where slots ended at
    the previous step, one ``reset_slots`` call for those. ``reset(options=...)`` passes the
    options to the core for every slot; autoresets pass none.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, mdp: BatchedMDP):
        self.mdp = mdp
        self.num_envs = int(mdp.n_slots)
        self.single_observation_space = mdp.single_observation_space
        self.single_action_space = mdp.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._all = np.arange(self.num_envs, dtype=np.int64)
        self._autoreset = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Obs, Info]:
        if seed is not None and not isinstance(seed, int | np.integer):
            raise ValueError(
                f"{self.mdp.name}: the native vector env takes one int seed for all "
                f"{self.num_envs} slots (they share one seed tree), got {seed!r}"
            )
        super().reset(seed=None if seed is None else int(seed))
        self.mdp.seed(None if seed is None else int(seed), self.np_random)
        obs, info = self.mdp.reset_slots(self._all, options)
        self._autoreset[:] = False
        return obs, _full_info(info, self.num_envs)

    def step(self, actions: Any) -> tuple[Obs, np.ndarray, np.ndarray, np.ndarray, Info]:
        whole = getattr(self.mdp, "vector_step", None)
        if whole is not None:
            obs, reward, terminated, truncated, info = whole(actions, self._autoreset.copy())
            self._autoreset = terminated | truncated
            return obs, reward, terminated, truncated, info
        if not self._autoreset.any():
            obs, reward, terminated, truncated, info = self.mdp.step_slots(actions, self._all)
            self._autoreset = terminated | truncated
            return obs, reward, terminated, truncated, _full_info(info, self.num_envs)
        stepped = np.flatnonzero(~self._autoreset)
        resetting = np.flatnonzero(self._autoreset)
        n = self.num_envs
        fused = getattr(self.mdp, "autoreset_step", None)
        if fused is not None and len(stepped):
            picked = self._picked(actions, stepped)
            obs, reward, terminated, truncated, info_s, info_r = fused(picked, stepped, resetting)
            self._autoreset = terminated | truncated
            info = scatter_info([(stepped, info_s), (resetting, info_r)], n)
            return obs, reward, terminated, truncated, info
        reward = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        parts: list[tuple[np.ndarray, Obs, Info]] = []
        if len(stepped):
            picked = self._picked(actions, stepped)
            obs_s, rew_s, term_s, trunc_s, info_s = self.mdp.step_slots(picked, stepped)
            reward[stepped], terminated[stepped], truncated[stepped] = rew_s, term_s, trunc_s
            parts.append((stepped, obs_s, info_s))
        obs_r, info_r = self.mdp.reset_slots(resetting, None)
        parts.append((resetting, obs_r, info_r))
        obs = {}
        for key, value in parts[0][1].items():
            full = np.empty((n,) + value.shape[1:], dtype=value.dtype)
            for slots, part_obs, _ in parts:
                full[slots] = part_obs[key]
            obs[key] = full
        info = scatter_info([(slots, part_info) for slots, _, part_info in parts], n)
        self._autoreset = terminated | truncated
        return obs, reward, terminated, truncated, info

    def _picked(self, actions: Any, slots: np.ndarray) -> np.ndarray:
        """The actions of `slots` (rows of the (num_envs, ...) actions)."""
        try:
            return np.asarray(actions)[slots]
        except (TypeError, ValueError, IndexError):
            raise ValueError(
                f"{self.mdp.name}: actions must have a leading axis of {self.num_envs} slots"
            ) from None


def register_mdp(
    env_id: str,
    entry_point: str,
    vector_entry_point: str | Callable[..., gym.vector.VectorEnv],
) -> None:
    """Register `env_id` with Gymnasium: `entry_point` for ``gym.make`` and
    `vector_entry_point` (called as ``f(num_envs=N, **kwargs)``) for ``gym.make_vec(...,
    vectorization_mode="vector_entry_point")``. Idempotent."""
    if env_id not in gym.registry:
        gym.register(id=env_id, entry_point=entry_point, vector_entry_point=vector_entry_point)


__all__ = [
    "BatchedMDP",
    "Info",
    "MDPEnv",
    "MDPVectorEnv",
    "Obs",
    "register_mdp",
    "scatter_info",
    "take_slot",
]
