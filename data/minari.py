"""Offline datasets as Minari datasets and back: episodes <-> Tianshou buffers <-> Minari.

recgym's offline data comes in three shapes, all turned into one list of *episodes* here:

- sessions logged through any env (`collect_episodes`: a policy acting on a `gym.Env`);
- Tianshou ``ReplayBuffer``s, e.g. the HDF5 buffers the agents and benches write
  (`buffer_to_episodes`);
- ASA (SCRI) samples (`data.asa`), which are ReplayBuffers too.

An episode (`Episode`) is Minari's layout: ``observations`` has T + 1 entries (the last is the
observation after the last step), ``actions``, ``rewards``, ``terminations`` and
``truncations`` T each; a Dict observation is a dict of arrays. `export_minari` writes episodes
as a Minari dataset (with the env spec recorded when one is given, so that
``dataset.recover_environment()`` makes the env), `load_minari` reads them back and
`episodes_to_buffer` makes a Tianshou ``ReplayBuffer`` of them (``obs``/``obs_next`` as a
`Batch` for Dict observations). Everything except `export_minari` / `load_minari` works without
Minari installed (extra ``recgym[minari]``).

Choices the issue leaves open:

- **Buffer rows to episodes.** Rows are read in insertion order (oldest first; a full circular
  buffer starts at its write index). An episode ends at a row with ``terminated`` or
  ``truncated``, *and* where a row's ``obs_next`` differs from the next row's ``obs`` (the rows
  are not one trajectory there). So a buffer whose transitions do not chain - ASA samples, one
  row per user-author interaction, whose next state is approximated - becomes mostly one-step
  episodes whose flags stay as stored (False), and a trailing unfinished episode keeps
  ``terminated = truncated = False``. Importing gives back exactly the rows, flags and infos.
- **Infos.** A buffer's per-row ``info`` fields are stored as Minari ``infos`` with one entry per
  *step* (Tianshou's convention: the info the step returned), not Minari's T + 1 (reset info
  first); the dataset description says so. Sessions collected through an env keep no infos (the
  envs' infos are nested, ragged per step, and the observation already holds what a policy sees).
- **Dataset ids** default to ``recgym/<env name>/<source>-v0`` (Minari's
  ``namespace/env/name-vN``).
- **Where datasets live.** `export_minari`/`load_minari` take `root`, which they set as
  ``MINARI_DATASETS_PATH`` for the call; ``None`` keeps Minari's own default
  (``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Obs = np.ndarray | dict[str, np.ndarray]


@dataclass
class Episode:
    """One episode in Minari's layout (see the module docstring)."""

    observations: Obs
    """T + 1 observations (an array, or a dict of arrays for a Dict observation)."""
    actions: np.ndarray
    """T actions."""
    rewards: np.ndarray
    """T rewards."""
    terminations: np.ndarray
    """T booleans: the MDP ended after the step (the user left)."""
    truncations: np.ndarray
    """T booleans: a time limit cut the episode after the step."""
    infos: dict[str, Any] = field(default_factory=dict)
    """Per-step info arrays (T entries each; nested dicts allowed); {} when none."""
    seed: int | None = None
    """The seed of the reset that began it, where one was given."""

    def __len__(self) -> int:
        return len(self.rewards)


# --------------------------------------------------------------------------- helpers
def _map(fn: Callable[[np.ndarray], Any], obs: Any) -> Any:
    """`fn` applied to every array of a (possibly nested) dict, or to the array itself."""
    if isinstance(obs, Mapping):
        return {k: _map(fn, v) for k, v in obs.items()}
    return fn(np.asarray(obs))


def _zip_map(fn: Callable[[np.ndarray, np.ndarray], Any], a: Any, b: Any) -> Any:
    """`fn(x, y)` over the matching arrays of two (possibly nested) dicts, or of two arrays."""
    if isinstance(a, Mapping):
        return {k: _zip_map(fn, a[k], b[k]) for k in a}
    return fn(np.asarray(a), np.asarray(b))


def _stack(items: Sequence[Any]) -> Any:
    """A list of observations (arrays or dicts of arrays) as one array / dict of arrays."""
    if isinstance(items[0], Mapping):
        return {k: _stack([o[k] for o in items]) for k in items[0]}
    return np.stack([np.asarray(x) for x in items])


def _length(obs: Any) -> int:
    if isinstance(obs, Mapping):
        lengths = {_length(v) for v in obs.values()}
        if len(lengths) != 1:
            raise ValueError(f"observation entries differ in length: {sorted(lengths)}")
        return lengths.pop()
    return len(obs)


def _from_batch(value: Any) -> Any:
    """A Tianshou `Batch` (possibly nested) as a dict of arrays; arrays stay."""
    from tianshou.data import Batch

    if isinstance(value, Batch):
        return {k: _from_batch(v) for k, v in value.items()}
    return np.asarray(value)


def _to_batch(value: Any) -> Any:
    from tianshou.data import Batch

    if isinstance(value, Mapping):
        return Batch({k: _to_batch(v) for k, v in value.items()})
    return np.asarray(value)


def check_episode(ep: Episode, where: str = "episode") -> None:
    """Raise a ValueError naming `where` and the field when `ep`'s lengths do not fit."""
    t = len(ep.rewards)
    for name in ("actions", "terminations", "truncations"):
        n = len(getattr(ep, name))
        if n != t:
            raise ValueError(f"{where}: {name} has {n} entries, rewards {t}")
    n_obs = _length(ep.observations)
    if n_obs != t + 1:
        raise ValueError(f"{where}: observations has {n_obs} entries, expected T + 1 = {t + 1}")
    if t == 0:
        raise ValueError(f"{where}: an episode needs at least one step")
    for name, arr in _flat_items(ep.infos):
        if len(arr) != t:
            raise ValueError(f"{where}: infos[{name!r}] has {len(arr)} entries, expected {t}")


def _flat_items(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _flat_items(v, f"{prefix}{k}.")
        else:
            yield prefix + k, np.asarray(v)


# --------------------------------------------------------------------------- sources
def collect_episodes(
    env: gym.Env,
    act: Callable[[Any], Any],
    episodes: int,
    seed: int,
    max_steps: int | None = None,
) -> list[Episode]:
    """`episodes` sessions of `act(obs) -> action` in `env` (no infos kept).

    The first reset is seeded with `seed` and the later ones are not, so the env's seeded
    streams go on (under one seed every policy meets the same users in the same order).
    `max_steps` caps an episode (it is then marked truncated); None trusts the env to end.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    out: list[Episode] = []
    obs, _ = env.reset(seed=seed)
    for i in range(episodes):
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            action = act(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            if max_steps is not None and len(rewards) + 1 >= max_steps:
                truncated = True
            observations.append(obs)
            actions.append(np.asarray(action))
            rewards.append(float(reward))
            terms.append(bool(terminated))
            truncs.append(bool(truncated))
            if terminated or truncated:
                break
        out.append(
            Episode(
                observations=_stack(observations),
                actions=np.stack(actions),
                rewards=np.asarray(rewards, dtype=np.float64),
                terminations=np.asarray(terms, dtype=bool),
                truncations=np.asarray(truncs, dtype=bool),
                seed=seed if i == 0 else None,
            )
        )
        if i + 1 < episodes:
            obs, _ = env.reset()
    return out


def _buffer_order(buffer: Any) -> np.ndarray:
    """Row indices of a Tianshou buffer, oldest first (per sub-buffer for a vector buffer)."""
    from tianshou.data import ReplayBufferManager

    if isinstance(buffer, ReplayBufferManager):
        parts = [
            _buffer_order(b) + offset
            for b, offset in zip(buffer.buffers, buffer._offset, strict=True)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    n = len(buffer)
    if n < buffer.maxsize:
        return np.arange(n)
    return (np.arange(n) + buffer._insertion_idx) % buffer.maxsize


def _rows_equal(a: Any, b: Any) -> np.ndarray:
    """Row-wise exact equality of two arrays / dicts of arrays with a leading row axis."""
    if isinstance(a, Mapping):
        eq = np.ones(_length(a), dtype=bool)
        for k in a:
            eq &= _rows_equal(a[k], b[k])
        return eq
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return np.zeros(0, dtype=bool)
    same = (a == b) | ((a != a) & (b != b))  # NaN == NaN for this purpose
    return same.reshape(len(a), -1).all(axis=1)


def buffer_to_episodes(buffer: Any) -> list[Episode]:
    """The rows of a Tianshou `ReplayBuffer` (or vector buffer) as episodes, exactly.

    An episode ends at ``terminated | truncated`` or where ``obs_next`` is not the next row's
    ``obs`` (module docstring); `episodes_to_buffer` gives the same rows back.
    """
    order = _buffer_order(buffer)
    if len(order) == 0:
        raise ValueError("the buffer is empty: nothing to export")
    data = buffer[order]
    obs, obs_next = _from_batch(data.obs), _from_batch(data.obs_next)
    term = np.asarray(data.terminated, dtype=bool)
    trunc = np.asarray(data.truncated, dtype=bool)
    chained = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        head = _map(lambda x: x[:-1], obs_next)
        tail = _map(lambda x: x[1:], obs)
        chained[:-1] = _rows_equal(head, tail)
    ends = np.flatnonzero(term | trunc | ~chained)  # the last row never chains
    infos = _from_batch(data.info) if len(data.info.keys()) else {}
    act, rew = np.asarray(data.act), np.asarray(data.rew)
    out, start = [], 0
    for end in ends:
        sl = slice(start, end + 1)
        observations = _zip_map(
            lambda o, nx, s=sl, e=end: np.concatenate([o[s], nx[e : e + 1]]), obs, obs_next
        )
        out.append(
            Episode(
                observations=observations,
                actions=act[sl],
                rewards=rew[sl],
                terminations=term[sl],
                truncations=trunc[sl],
                infos=_map(lambda x, s=sl: x[s], infos) if infos else {},
            )
        )
        start = end + 1
    return out


def episodes_to_buffer(episodes: Sequence[Episode], size: int | None = None, seed: int = 0) -> Any:
    """A Tianshou `ReplayBuffer` holding every step of `episodes`, in order.

    ``obs`` / ``obs_next`` are observations[:-1] / [1:] (a `Batch` for Dict observations),
    ``done = terminated | truncated``, ``info`` the episodes' infos where every episode has the
    same info keys. `size` (default: the number of steps) must hold them all; the buffer samples
    with ``RandomState(seed)``.
    """
    from tianshou.data import Batch, ReplayBuffer

    if not episodes:
        raise ValueError("no episodes to load")
    for i, ep in enumerate(episodes):
        check_episode(ep, f"episode {i}")
    n = sum(len(ep) for ep in episodes)
    size = n if size is None else int(size)
    if size < n:
        raise ValueError(f"a buffer of size {size} cannot hold the episodes' {n} steps")

    def cat(get: Callable[[Episode], Any]) -> Any:
        return _concat([get(ep) for ep in episodes])

    term, trunc = cat(lambda e: e.terminations).astype(bool), cat(lambda e: e.truncations)
    trunc = trunc.astype(bool)
    keys = [sorted(k for k, _ in _flat_items(ep.infos)) for ep in episodes]
    info = cat(lambda e: e.infos) if keys[0] and all(k == keys[0] for k in keys) else {}
    batch = Batch(
        obs=_to_batch(cat(lambda e: _map(lambda x: x[:-1], e.observations))),
        act=cat(lambda e: e.actions),
        rew=cat(lambda e: e.rewards),
        terminated=term,
        truncated=trunc,
        done=term | trunc,
        obs_next=_to_batch(cat(lambda e: _map(lambda x: x[1:], e.observations))),
        info=_to_batch(info) if info else Batch(),
    )
    buffer = ReplayBuffer(size, random_seed=seed)
    buffer.set_batch(batch if size == n else _pad(batch, size))
    buffer._size, buffer._insertion_idx = n, n % size
    buffer.last_index[0] = n - 1
    return buffer


def _concat(parts: Sequence[Any]) -> Any:
    if isinstance(parts[0], Mapping):
        return {k: _concat([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate([np.asarray(p) for p in parts])


def _pad(batch: Any, size: int) -> Any:
    """`batch` with every array zero-padded to `size` rows (room for a buffer to grow)."""
    from tianshou.data import Batch

    def pad(x: Any) -> Any:
        if isinstance(x, Batch):
            return Batch({k: pad(v) for k, v in x.items()})
        x = np.asarray(x)
        return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), dtype=x.dtype)])

    return pad(batch)


# --------------------------------------------------------------------------- spaces
def infer_space(values: Any) -> spaces.Space:
    """A space that holds every entry of `values` (stacked on axis 0; a dict gives a Dict).

    Integers give a Box of their dtype bounded by the observed min and max, floats an unbounded
    Box of their dtype, booleans a Box(0, 1) of bool: the data's own range, since a buffer does
    not record the space it was collected in (pass the env's spaces where they are known).
    """
    if isinstance(values, Mapping):
        return spaces.Dict({k: infer_space(v) for k, v in values.items()})
    arr = np.asarray(values)
    shape = arr.shape[1:]
    if arr.dtype == bool:
        return spaces.Box(0, 1, shape, dtype=bool)
    if np.issubdtype(arr.dtype, np.integer):
        return spaces.Box(int(arr.min()), int(arr.max()), shape, dtype=arr.dtype)
    if np.issubdtype(arr.dtype, np.floating):
        return spaces.Box(-np.inf, np.inf, shape, dtype=arr.dtype)
    raise ValueError(f"cannot infer a space for values of dtype {arr.dtype}")


def episode_spaces(episodes: Sequence[Episode]) -> tuple[spaces.Space, spaces.Space]:
    """(observation space, action space) inferred from every step of `episodes`."""
    obs = _concat([ep.observations for ep in episodes])
    act = np.concatenate([np.asarray(ep.actions) for ep in episodes])
    return infer_space(obs), infer_space(act)


def default_dataset_id(source: str, env_id: str | None = None) -> str:
    """``recgym/<env name>/<source>-v0`` (``recgym/<source>-v0`` without an env), lower case,
    with characters Minari's ids do not take (anything but letters, digits, ``_``) as ``_``."""
    import re

    def clean(text: str) -> str:
        return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "data"

    if env_id is None:
        return f"recgym/{clean(source)}-v0"
    name = env_id.split("/")[-1].rsplit("-v", 1)[0]
    return f"recgym/{clean(name)}/{clean(source)}-v0"


# --------------------------------------------------------------------------- Minari
@contextlib.contextmanager
def datasets_root(root: str | Path | None) -> Iterator[None]:
    """``MINARI_DATASETS_PATH`` = `root` inside the block (unchanged when `root` is None)."""
    if root is None:
        yield
        return
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _require_minari() -> Any:
    try:
        import minari
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "Minari export/import needs the optional extra: pip install 'recgym[minari]'"
        ) from exc
    return minari


def export_minari(
    episodes: Sequence[Episode],
    dataset_id: str,
    *,
    root: str | Path | None = None,
    env: gym.Env | gym.envs.registration.EnvSpec | str | None = None,
    observation_space: spaces.Space | None = None,
    action_space: spaces.Space | None = None,
    algorithm_name: str | None = None,
    description: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `episodes` as the Minari dataset `dataset_id` under `root`; returns its directory.

    With `env` (an env, its spec or a registered id) the spec - id, entry point and kwargs - is
    recorded, so ``minari.load_dataset(dataset_id).recover_environment()`` makes that env; the
    spaces are the env's unless given. Without `env`, spaces not given are inferred from the
    data (`infer_space`). An existing dataset of that id raises unless `overwrite`.
    """
    minari = _require_minari()
    from minari.data_collector import EpisodeBuffer

    if not episodes:
        raise ValueError(f"{dataset_id}: no episodes to export")
    for i, ep in enumerate(episodes):
        check_episode(ep, f"{dataset_id}: episode {i}")
    if env is None and (observation_space is None or action_space is None):
        obs_space, act_space = episode_spaces(episodes)
        observation_space = observation_space or obs_space
        action_space = action_space or act_space
    if isinstance(env, gym.Env):
        env = env.spec
    buffers = [
        EpisodeBuffer(
            id=i,
            seed=ep.seed,
            observations=ep.observations,
            actions=np.asarray(ep.actions),
            rewards=np.asarray(ep.rewards),
            terminations=np.asarray(ep.terminations, dtype=bool),
            truncations=np.asarray(ep.truncations, dtype=bool),
            infos=ep.infos or {},
        )
        for i, ep in enumerate(episodes)
    ]
    with datasets_root(root):
        if dataset_id in minari.list_local_datasets():
            if not overwrite:
                raise ValueError(
                    f"Minari dataset {dataset_id} exists under {minari.storage.get_dataset_path()}"
                    "; pass overwrite=True (--overwrite) to replace it"
                )
            minari.delete_dataset(dataset_id)
        with _quiet_minari():
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                buffers,
                env=env,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=algorithm_name,
                author="recgym",
                author_email="n/a",
                code_permalink="https://github.com/recgym/recgym",
                description=description or "recgym offline dataset",
                requirements=["recgym"] if env is not None else None,
                jpeg_encoding=False,
            )
        return Path(dataset.storage.data_path).parent


@contextlib.contextmanager
def _quiet_minari() -> Iterator[None]:
    """Minari warns about metadata recgym has no value for (eval env = env, ...): silence it."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
        yield


def load_minari(dataset_id: str, root: str | Path | None = None) -> list[Episode]:
    """Every episode of the Minari dataset `dataset_id` (under `root`), in order."""
    minari = _require_minari()
    with datasets_root(root):
        dataset = minari.load_dataset(dataset_id)
        return [
            Episode(
                observations=ep.observations,
                actions=np.asarray(ep.actions),
                rewards=np.asarray(ep.rewards),
                terminations=np.asarray(ep.terminations, dtype=bool),
                truncations=np.asarray(ep.truncations, dtype=bool),
                infos=dict(ep.infos or {}),
            )
            for ep in dataset.iterate_episodes()
        ]


def minari_to_buffer(
    dataset_id: str, root: str | Path | None = None, size: int | None = None, seed: int = 0
) -> Any:
    """The Minari dataset `dataset_id` as a Tianshou `ReplayBuffer` (`episodes_to_buffer`)."""
    return episodes_to_buffer(load_minari(dataset_id, root), size=size, seed=seed)


__all__ = [
    "Episode",
    "buffer_to_episodes",
    "check_episode",
    "collect_episodes",
    "datasets_root",
    "default_dataset_id",
    "episode_spaces",
    "episodes_to_buffer",
    "export_minari",
    "infer_space",
    "load_minari",
    "minari_to_buffer",
]
