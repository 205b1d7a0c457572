"""Adjacent State Approximation over logs: KuaiRand-format exposures -> SCRI samples (RLIV-UA).

`asa_samples` is the one function that turns a log into the offline buffer RLIV-UA and the
offline baselines train on: one SCRI sample ``(s_ua, a, r_ua, s'_ua)`` per logged exposure row,
in the Tianshou ``ReplayBuffer`` layout of the contract (`recgym.simulators.scri`, whose names it
uses). How the samples are built:

- Rows are processed per user in time order: a stable sort by (user_id, timestamp), so rows
  with equal timestamps keep their order in the log (for KuaiRand: file order).
- ``f_ua`` (UA_COUNTERS) of each (user, author) pair starts at 0 at the pair's first logged
  row and advances by Eq. 4 (`scri.counter_increments`) after every row of that pair, and only
  then: rows of the same user with other authors in between leave it alone (the SCRI-MDP's
  sparse transitions). s_ua of a row holds the counters *before* it, s'_ua those after it.
  Counters add as float32, one interaction after the other (`sequential_counters`), which is
  bit-identical to applying `scri.asa_next_counters` row by row, as the env does.
- Rewards are `scri.task_rewards` over all TASKS (the gift column is 0 unless the log has an
  ``is_gift`` column; KuaiRand has none, world logs do). `tasks` says which towers the source
  supports.
- ``info.item_x`` is the shown item's static row `Catalogue.item_features` (ITEM_FEATURES):
  the backend's catalogue with ``backend=``, else a catalogue read from the log (the item's
  median logged ``duration_ms``, its exposure-share popularity, no live authors).
- ``f_u`` and ``f_a`` are static. Without a backend: ``f_u`` is
  `simulators.features.user_feature_matrix` over the dataset's user table (users logged but
  absent from it get the row of an empty record), built exactly as the learned simulator
  builds its ``user_x``, and for world-written logs equal to ``World.user_features`` (both
  tested); ``f_a`` is `scri.author_features` of a catalogue read from the log: the items
  table's author_id (items without one share an 'unknown' author, id -1, as the learned
  simulator pools them), popularity = the item's share of the log's exposures with add-one
  smoothing (the learned simulator uses its training split only), no live authors (KuaiRand
  has no such flag). With ``backend=`` (the env's `UserModel`), ids are mapped into the
  backend's id space (a learned simulator's dense indices; the world's ids are the logged ids)
  and ``f_u``, ``f_a`` are read from the backend, so the samples match the env's states
  exactly: pass it when the buffer trains an agent evaluated on that env.

Large logs: `iter_asa` yields the samples in chunks of about ``chunk_rows`` rows without ever
holding more than one chunk's samples (users never straddle chunks, so every pair's counters
live in one chunk); `asa_samples` fills one preallocated buffer from those chunks.

The buffer's ``terminated``/``truncated`` are all False and each row carries its own
``obs_next``: train with 1-step targets (consecutive rows are not one trajectory).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recgym.simulators import scri
from recgym.simulators.features import user_feature_matrix
from recgym.simulators.protocol import Catalogue, UserModel

if TYPE_CHECKING:
    from tianshou.data import Batch, ReplayBuffer

    from recgym.data.schema import Dataset

FORMAT_VERSION = 2
"""2: ``info.item_x`` (the shown item's static features) added."""
UNKNOWN_AUTHOR = -1
"""Raw author id of items the items table gives no author (all such items share it)."""

# log column -> behaviour name of `scri.task_rewards` / `scri.counter_increments`
LOG_BEHAVIOURS: dict[str, str] = {
    "is_click": "click",
    "long_view": "long_view",
    "play_time_ms": "watch_ms",
    "is_follow": "follow",
    "is_comment": "comment",
    "is_gift": "gift",
}
OPTIONAL_COLUMNS = ("is_gift",)


@dataclass(kw_only=True)
class SCRISamples:
    """SCRI samples in a Tianshou ``ReplayBuffer`` (layout: `simulators.scri`) and what they mean.

    `buffer` rows are in (user, time) order. `tasks` are the TASKS the source supports (the
    reward columns are always all of TASKS; an unsupported one is all zero).
    """

    buffer: ReplayBuffer
    tasks: tuple[str, ...]
    user_dim: int
    id_space: str  # "dataset" (raw ids of the log) or "backend" (the backend's ids)
    source: str
    unknown_author_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def state_dim(self) -> int:
        return scri.state_dim(self.user_dim)

    def meta(self) -> dict[str, Any]:
        """What the JSON sidecar beside the HDF5 file holds."""
        return {
            "format_version": FORMAT_VERSION,
            "tasks": list(self.tasks),
            "reward_columns": list(scri.TASKS),
            "ua_counters": list(scri.UA_COUNTERS),
            "author_features": list(scri.AUTHOR_FEATURES),
            "item_features": list(scri.ITEM_FEATURES),
            "user_dim": self.user_dim,
            "state_dim": self.state_dim,
            "n_samples": len(self.buffer),
            "id_space": self.id_space,
            "source": self.source,
            "unknown_author_rows": self.unknown_author_rows,
            **self.extra,
        }

    def save(self, path: str | Path, compression: str | None = None) -> Path:
        """Write `path` (``ReplayBuffer.save_hdf5``) and the sidecar `sidecar_path(path)`."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.buffer.save_hdf5(str(path), compression=compression)
        sidecar_path(path).write_text(json.dumps(self.meta(), indent=2))
        return path


def sidecar_path(path: str | Path) -> Path:
    """The JSON file beside an SCRI HDF5 file: ``<name>.json`` (e.g. scri.h5 -> scri.h5.json)."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_asa(path: str | Path) -> SCRISamples:
    """Read samples written by `SCRISamples.save` (``ReplayBuffer.load_hdf5`` plus the sidecar)."""
    from tianshou.data import ReplayBuffer

    path = Path(path)
    meta = json.loads(sidecar_path(path).read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{sidecar_path(path)}: SCRI format {meta.get('format_version')}, this recgym reads "
            f"{FORMAT_VERSION}"
        )
    if tuple(meta["reward_columns"]) != scri.TASKS or tuple(meta["ua_counters"]) != (
        scri.UA_COUNTERS
    ):
        raise ValueError(f"{sidecar_path(path)}: written for another SCRI layout")
    known = {
        "format_version",
        "tasks",
        "reward_columns",
        "ua_counters",
        "author_features",
        "item_features",
        "user_dim",
        "state_dim",
        "n_samples",
        "id_space",
        "source",
        "unknown_author_rows",
    }
    return SCRISamples(
        buffer=ReplayBuffer.load_hdf5(str(path)),
        tasks=tuple(meta["tasks"]),
        user_dim=int(meta["user_dim"]),
        id_space=meta["id_space"],
        source=meta["source"],
        unknown_author_rows=int(meta["unknown_author_rows"]),
        extra={k: v for k, v in meta.items() if k not in known},
    )


def asa_samples(
    source: Dataset | str | Path,
    *,
    backend: UserModel | None = None,
    tasks: tuple[str, ...] | None = None,
    chunk_rows: int = 250_000,
    path: str | Path | None = None,
    seed: int = 42,
) -> SCRISamples:
    """SCRI samples, one per logged exposure, from a KuaiRand-format log (module docstring).

    `source`: a loaded `recgym.data.Dataset` or a directory `recgym.data.load` reads.
    `backend`: the env's UserModel whose ids and static features to use (default: the log's).
    `tasks`: the supported TASKS to record (default: `scri.tasks_for` the log's behaviours,
    i.e. gift only with an ``is_gift`` column). `path`: also save there (`SCRISamples.save`).
    `seed`: the buffer's sampling seed (Tianshou's default is a fixed 42).
    """
    from tianshou.data import Batch, ReplayBuffer

    plan = _Plan.build(source, backend, tasks, chunk_rows)
    n, sd = plan.n_rows, plan.state_dim
    data = {
        "obs": np.empty((n, sd), dtype=np.float32),
        "act": np.empty(n, dtype=np.int64),
        "rew": np.empty(n, dtype=np.float32),
        "obs_next": np.empty((n, sd), dtype=np.float32),
    }
    info = {
        "user": np.empty(n, dtype=np.int64),
        "author": np.empty(n, dtype=np.int64),
        "item_x": np.empty((n, len(scri.ITEM_FEATURES)), dtype=np.float32),
        "rewards": np.empty((n, len(scri.TASKS)), dtype=np.float32),
        "timestamp": np.empty(n, dtype=np.int64),
    }
    at = 0
    for chunk in plan.chunks():
        m = len(chunk["act"])
        for key, arr in data.items():
            arr[at : at + m] = chunk[key]
        for key, arr in info.items():
            arr[at : at + m] = chunk[key]
        at += m
    flags = np.zeros(n, dtype=bool)
    buffer = ReplayBuffer(max(n, 1), random_seed=seed)
    if n:
        buffer.set_batch(
            Batch(
                **data,
                terminated=flags,
                truncated=flags.copy(),
                done=flags.copy(),
                info=Batch(**info),
            )
        )
        buffer._size = n
    samples = SCRISamples(
        buffer=buffer,
        tasks=plan.tasks,
        user_dim=plan.user_dim,
        id_space=plan.id_space,
        source=plan.source,
        unknown_author_rows=plan.unknown_author_rows,
    )
    if path is not None:
        samples.save(path)
    return samples


def iter_asa(
    source: Dataset | str | Path,
    *,
    backend: UserModel | None = None,
    chunk_rows: int = 250_000,
) -> Iterator[Batch]:
    """The samples of `asa_samples` as Batches of about `chunk_rows` rows (whole users each).

    Each Batch has obs, act, rew, obs_next (the buffer's keys; terminated/truncated are
    False) and info (user, author, rewards, timestamp); chunks come in (user, time) order.
    """
    from tianshou.data import Batch

    plan = _Plan.build(source, backend, None, chunk_rows)
    for chunk in plan.chunks():
        m = len(chunk["act"])
        yield Batch(
            obs=chunk["obs"],
            act=chunk["act"],
            rew=chunk["rew"],
            obs_next=chunk["obs_next"],
            terminated=np.zeros(m, dtype=bool),
            truncated=np.zeros(m, dtype=bool),
            info=Batch(
                user=chunk["user"],
                author=chunk["author"],
                item_x=chunk["item_x"],
                rewards=chunk["rewards"],
                timestamp=chunk["timestamp"],
            ),
        )


def sequential_counters(
    pair: np.ndarray, increments: np.ndarray, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """UA counters before and after each of n interactions given in time order.

    `pair` (n,) int64 labels each interaction's (user, author) pair; `increments` (n, c)
    float32 the ASA increments of each (`scri.counter_increments`); `start` (n, c) the counters
    of each row's pair before these rows (read at each pair's first row only; default 0).
    Per pair, ``after = before + increment`` in float32 and the next row's ``before`` is this
    ``after``: exactly `scri.asa_next_counters` applied interaction by interaction, so an env
    and ASA over its log agree bit for bit. Vectorised over pairs: one pass per rank within a
    pair (as many passes as the longest pair has rows).
    """
    pair = np.asarray(pair, dtype=np.int64)
    inc = np.asarray(increments, dtype=np.float32)
    n = len(pair)
    before = np.zeros_like(inc)
    after = np.zeros_like(inc)
    if n == 0:
        return before, after
    order = np.argsort(pair, kind="stable")  # grouped by pair, time order kept within
    p = pair[order]
    first = np.ones(n, dtype=bool)
    first[1:] = p[1:] != p[:-1]
    if first.all():  # every pair once (a slate of distinct authors): no chaining needed
        before[:] = 0.0 if start is None else np.asarray(start, dtype=np.float32)
        after[:] = before + inc
        return before, after
    starts = np.flatnonzero(first)
    rank = np.arange(n) - starts[np.cumsum(first) - 1]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank))])
    inc_sorted = inc[order]
    b = np.empty_like(inc_sorted)
    a = np.empty_like(inc_sorted)
    for j in range(len(bounds) - 1):
        idx = by_rank[bounds[j] : bounds[j + 1]]  # sorted positions of each pair's j-th row
        if j == 0:
            b[idx] = 0.0 if start is None else np.asarray(start, dtype=np.float32)[order[idx]]
        else:
            b[idx] = a[idx - 1]
        a[idx] = b[idx] + inc_sorted[idx]
    before[order] = b
    after[order] = a
    return before, after


# ============================================================================ internals
@dataclass(kw_only=True)
class _Plan:
    """A log prepared for ASA: sorted row order, chunk bounds, id maps and static features."""

    columns: dict[str, np.ndarray]  # raw log columns (file order)
    order: np.ndarray  # (N,) rows in (user, time) order
    bounds: np.ndarray  # chunk edges into `order`, at user boundaries
    user_index: np.ndarray  # (N,) row of `user_x` of each log row (file order)
    user_out: np.ndarray  # (N,) user id written to the samples
    item_out: np.ndarray  # (N,) item id written (act)
    author_index: np.ndarray  # (N,) row of `author_x`
    author_out: np.ndarray  # (N,) author id written
    user_x: np.ndarray  # (U, user_dim) float32 f_u
    author_x: np.ndarray  # (A, 3) float32 f_a
    item_x: np.ndarray  # (I, len(ITEM_FEATURES)) float32 static item rows
    item_row: np.ndarray  # (N,) row of `item_x` of each log row (file order)
    tasks: tuple[str, ...]
    id_space: str
    source: str
    unknown_author_rows: int

    @property
    def n_rows(self) -> int:
        return len(self.order)

    @property
    def user_dim(self) -> int:
        return self.user_x.shape[1]

    @property
    def state_dim(self) -> int:
        return scri.state_dim(self.user_dim)

    @classmethod
    def build(
        cls,
        source: Any,
        backend: UserModel | None,
        tasks: tuple[str, ...] | None,
        chunk_rows: int,
    ) -> _Plan:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        dataset, label = _dataset(source)
        inter = dataset.interactions
        missing = [
            c
            for c in ("user_id", "item_id", "timestamp", *LOG_BEHAVIOURS)
            if c not in inter and c not in OPTIONAL_COLUMNS
        ]
        if missing:
            raise ValueError(
                f"{label}: the log lacks the KuaiRand column(s) {', '.join(missing)} ASA needs"
            )
        cols = {
            "user_id": inter["user_id"].to_numpy(np.int64),
            "item_id": inter["item_id"].to_numpy(np.int64),
            "timestamp": inter["timestamp"].to_numpy(np.int64),
        }
        for name in LOG_BEHAVIOURS:
            if name in inter:
                dtype = np.int64 if name == "play_time_ms" else np.int8
                values = pd.to_numeric(inter[name], errors="coerce").fillna(0)
                cols[name] = values.to_numpy().astype(dtype)
        behaviours = tuple(b for c, b in LOG_BEHAVIOURS.items() if c in cols)
        if tasks is None:
            tasks = scri.tasks_for(behaviours)
        tasks = tuple(tasks)
        unknown = sorted(set(tasks) - set(scri.TASKS))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; expected a subset of {scri.TASKS}")

        raw_user, raw_item = cols["user_id"], cols["item_id"]
        order = np.lexsort((cols["timestamp"], raw_user))  # stable: ties keep log order
        if backend is None:
            maps = _dataset_maps(dataset, raw_user, raw_item)
        else:
            maps = _backend_maps(backend, raw_user, raw_item, label)
        return cls(
            columns=cols,
            order=order,
            bounds=_chunk_bounds(raw_user[order], chunk_rows),
            tasks=tasks,
            source=label,
            **maps,
        )

    def chunks(self) -> Iterator[dict[str, np.ndarray]]:
        """Sample arrays per chunk (see `asa_samples` for the keys)."""
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            yield self._chunk(self.order[lo:hi])

    def _chunk(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        cols = self.columns
        responses = {
            behaviour: cols[column][rows]
            for column, behaviour in LOG_BEHAVIOURS.items()
            if column in cols
        }
        user = self.user_index[rows]
        author = self.author_index[rows]
        pair = user * len(self.author_x) + author
        before, after = sequential_counters(pair, scri.counter_increments(responses))
        static = np.concatenate([self.user_x[user], self.author_x[author]], axis=1)
        rewards = scri.task_rewards(responses, scri.TASKS)
        return {
            "obs": np.concatenate([static, before], axis=1),
            "obs_next": np.concatenate([static, after], axis=1),
            "act": self.item_out[rows],
            "rew": rewards[:, scri.TASKS.index("watch_time")],
            "user": self.user_out[rows],
            "author": self.author_out[rows],
            "item_x": self.item_x[self.item_row[rows]],
            "rewards": rewards,
            "timestamp": cols["timestamp"][rows],
        }


def _dataset(source: Any) -> tuple[Any, str]:
    if isinstance(source, str | Path):
        from recgym.data import load

        return load(source), str(source)
    if not hasattr(source, "interactions"):
        raise TypeError(f"expected a recgym.data.Dataset or a path, got {type(source).__name__}")
    return source, str(getattr(source, "source", "<dataset>"))


def _chunk_bounds(sorted_user: np.ndarray, chunk_rows: int) -> np.ndarray:
    """Edges of chunks of about `chunk_rows` rows that never split a user (a user larger than
    `chunk_rows` is one chunk of its own)."""
    n = len(sorted_user)
    starts = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]]) if n else []
    starts = np.append(np.asarray(starts, dtype=np.int64), n)
    edges = [0]
    while edges[-1] < n:
        target = edges[-1] + chunk_rows
        k = np.searchsorted(starts, target)  # first user start at or after the target
        edges.append(int(starts[min(k, len(starts) - 1)]))
    return np.asarray(edges, dtype=np.int64)


def _dataset_maps(dataset: Any, raw_user: np.ndarray, raw_item: np.ndarray) -> dict[str, Any]:
    """Ids and static features from the dataset itself (learned-simulator conventions)."""
    users_table = dataset.users.drop_duplicates("user_id")
    user_ids = np.union1d(users_table["user_id"].to_numpy(np.int64), raw_user)
    frame = users_table.set_index("user_id").reindex(user_ids).reset_index(drop=True)
    user_x = user_feature_matrix(frame)

    items = dataset.items.drop_duplicates("item_id")
    item_ids = np.union1d(items["item_id"].to_numpy(np.int64), raw_item)
    item_index = np.searchsorted(item_ids, raw_item)
    if "author_id" in items:
        author_raw = pd.to_numeric(
            items.set_index("item_id")["author_id"].reindex(item_ids), errors="coerce"
        )
        author_raw = author_raw.fillna(UNKNOWN_AUTHOR).to_numpy(np.int64)
    else:
        author_raw = np.full(len(item_ids), UNKNOWN_AUTHOR, dtype=np.int64)
    author_ids, author_of_item = np.unique(author_raw, return_inverse=True)
    counts = np.bincount(item_index, minlength=len(item_ids)).astype(np.float64)
    n_authors = len(author_ids)
    duration = np.ones(len(item_ids), dtype=np.int64)
    if "duration_ms" in dataset.interactions:  # the item's median logged duration
        logged = pd.to_numeric(dataset.interactions["duration_ms"], errors="coerce")
        median = logged.groupby(item_index).median().dropna()
        duration[median.index.to_numpy()] = np.maximum(median.to_numpy(), 1).astype(np.int64)
    catalogue = Catalogue(
        author=author_of_item.astype(np.int64),
        category=np.zeros(len(item_ids), dtype=np.int64),
        top_category=np.zeros(len(item_ids), dtype=np.int64),
        duration_ms=duration,
        popularity=(counts + 1.0) / (counts.sum() + len(item_ids)),
        n_authors=n_authors,
        n_categories=1,
        author_is_live=np.zeros(n_authors, dtype=bool),
    )
    author_index = author_of_item[item_index]
    author_out = author_ids[author_index]
    return {
        "user_index": np.searchsorted(user_ids, raw_user),
        "user_out": raw_user,
        "item_out": raw_item,
        "author_index": author_index,
        "author_out": author_out,
        "user_x": user_x,
        "author_x": scri.author_features(catalogue),
        "item_x": catalogue.item_features(np.arange(len(item_ids))),
        "item_row": item_index,
        "id_space": "dataset",
        "unknown_author_rows": int((author_out == UNKNOWN_AUTHOR).sum()),
    }


def _backend_maps(
    backend: UserModel, raw_user: np.ndarray, raw_item: np.ndarray, label: str
) -> dict[str, Any]:
    """Ids and static features of `backend`: raw ids -> its indices via `user_ids`/`item_ids`
    when it has them (a learned simulator), else the raw ids are its indices (the world)."""
    user = _index(getattr(backend, "user_ids", None), raw_user, backend.n_users, "user", label)
    cat = backend.catalogue
    item = _index(getattr(backend, "item_ids", None), raw_item, cat.n_items, "item", label)
    author = cat.author[item]
    return {
        "user_index": user,
        "user_out": user,
        "item_out": item,
        "author_index": author,
        "author_out": author,
        "user_x": np.asarray(backend.user_features(np.arange(backend.n_users)), np.float32),
        "author_x": scri.author_features(cat),
        "item_x": cat.item_features(np.arange(cat.n_items)),
        "item_row": item,
        "id_space": "backend",
        "unknown_author_rows": 0,
    }


def _index(ids: np.ndarray | None, raw: np.ndarray, n: int, what: str, label: str) -> np.ndarray:
    if ids is None:
        bad = (raw < 0) | (raw >= n)
        index = raw
    else:
        ids = np.asarray(ids, dtype=np.int64)
        index = np.minimum(np.searchsorted(ids, raw), max(len(ids) - 1, 0))
        bad = ids[index] != raw if len(ids) else np.ones(len(raw), dtype=bool)
    if bad.any():
        raise ValueError(
            f"{label}: {int(bad.sum()):,} rows have a {what}_id the backend does not know "
            f"(e.g. {int(raw[bad][0])}); pass the backend fitted on (or generating) this log"
        )
    return np.asarray(index, dtype=np.int64)


__all__ = [
    "LOG_BEHAVIOURS",
    "UNKNOWN_AUTHOR",
    "SCRISamples",
    "asa_samples",
    "iter_asa",
    "load_asa",
    "sequential_counters",
    "sidecar_path",
]
