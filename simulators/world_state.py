"""The ground-truth world on disk: its user state after writing logs, and loading it back.

`recgym world generate` writes, beside its logs, `world.json` (the configs) and
`world_state.npz`: every `UserState` array of the world *as it stood after writing the logs*.
The static parts of a world (catalogue, user/item truth) are not stored: `World(config)`
rebuilds them deterministically from the seed. So that a load under another code version or
config cannot silently pair a rebuilt world with a state it never produced, the state file
carries a fingerprint of the static parts and of the dynamics constants, and `load_world`
refuses (`WorldStateError`, naming the file and what differs) when the rebuilt world's
fingerprint is not the saved one.

Why the post-log state matters: a simulator learned from the logs starts where the logs end
(users' histories, interests, bonds, follows as logged), so an env on the world backend must
start there too, or every simulator-vs-world comparison mixes two user states.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from recgym.simulators.world import Dynamics, UserState, World, WorldConfig

CONFIG_FILE = "world.json"
"""The configs a world was built with (written by `simulators.generate`)."""
STATE_FILE = "world_state.npz"
"""The world's `UserState` after its logs were written."""
STATE_VERSION = 1
"""Layout version of `STATE_FILE`; bumped when the file's layout (not the world) changes."""
STATES = ("final", "initial")
"""What `load_world` can return: the world after its logs, or as it was built (before them)."""

_META = "__meta__"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same state gives the same bytes


class WorldStateError(ValueError):
    """A world directory's state file is missing, unreadable or belongs to another world."""


# --------------------------------------------------------------------------- fingerprint
def _hash_arrays(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over name, dtype, shape and values of each array (sorted by name).

    Floating arrays are hashed after a cast to float32: the world is rebuilt from its seed with
    numpy's elementwise exp/log/norm, whose last bit may differ between CPUs (SIMD paths); a
    float32 view makes such a difference flip the hash only at a rounding boundary (about 1e-9
    per element), while any change of config or construction code changes it for sure.
    """
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def world_fingerprint(world: World) -> dict[str, str]:
    """Hashes of what a world is rebuilt from and what drives its state: catalogue, truth, dynamics.

    These never change while the world steps, so the fingerprint of a world after its logs
    equals that of the same config freshly built by the same code.
    """
    cat = world.catalogue
    catalogue = {
        "author": cat.author,
        "category": cat.category,
        "top_category": cat.top_category,
        "duration_ms": cat.duration_ms,
        "popularity": cat.popularity,
        "author_is_live": cat.author_is_live,
        "n_authors": np.int64(cat.n_authors),
        "n_categories": np.int64(cat.n_categories),
    }
    truth = {f.name: getattr(world.truth, f.name) for f in fields(world.truth)}
    dynamics = json.dumps(asdict(world.dynamics), sort_keys=True)
    return {
        "catalogue": _hash_arrays(catalogue),
        "truth": _hash_arrays(truth),
        "dynamics": hashlib.sha256(dynamics.encode()).hexdigest(),
    }


# --------------------------------------------------------------------------- save
def save_world_state(world: World, directory: str | Path) -> Path:
    """Write `world`'s current user state to `directory/world_state.npz`; returns the path.

    The file holds one array per `UserState` field plus a JSON header (layout version, the
    world's config and dynamics, `world_fingerprint`). It is written to a temporary name and
    renamed, so a crash never leaves a half file; the bytes depend only on the state.
    """
    directory = Path(directory)
    path = directory / STATE_FILE
    meta = {
        "version": STATE_VERSION,
        "fields": [f.name for f in fields(UserState)],
        "config": asdict(world.config),
        "dynamics": asdict(world.dynamics),
        "fingerprint": world_fingerprint(world),
    }
    arrays = {f.name: np.asarray(getattr(world.state, f.name)) for f in fields(UserState)}
    arrays[_META] = np.array([json.dumps(meta, sort_keys=True)])
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, array, allow_pickle=False)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- load
def read_world_state(path: str | Path, world: World) -> UserState:
    """The `UserState` saved in `path`, checked against `world` (the world rebuilt from config).

    Raises `WorldStateError` naming the file when it is missing or unreadable, when its layout
    or fields are not this code's `UserState`, when an array's shape or dtype differs from the
    world's, or when the saved fingerprint is not `world`'s (the catalogue, truth or dynamics of
    this code version differ from those that produced the state).
    """
    path = Path(path)
    if not path.is_file():
        raise WorldStateError(
            f"{path}: no saved world state; logs written before recgym saved the post-log "
            "world lack it - regenerate them with `recgym world generate`, or load the "
            "pre-log world with load_world(dir, state='initial')"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop(_META)[0]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise WorldStateError(f"{path}: not a readable world state file ({exc})") from exc
    if meta.get("version") != STATE_VERSION:
        raise WorldStateError(
            f"{path}: state file layout version {meta.get('version')!r}, this code reads "
            f"{STATE_VERSION}; regenerate the world directory"
        )
    _check_fingerprint(path, meta, world)
    expected = [f.name for f in fields(UserState)]
    missing = [n for n in expected if n not in arrays]
    extra = [n for n in arrays if n not in expected]
    if missing or extra:
        raise WorldStateError(
            f"{path}: its user-state fields are not this code's UserState "
            f"(missing {missing}, unknown {extra}); regenerate the world directory"
        )
    current = world.state
    for name in expected:
        want = np.asarray(getattr(current, name))
        got = arrays[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise WorldStateError(
                f"{path}: field {name!r} is {got.dtype}{list(got.shape)}, the world built "
                f"from its config has {want.dtype}{list(want.shape)}"
            )
    return UserState(**{name: arrays[name] for name in expected})


def _check_fingerprint(path: Path, meta: dict, world: World) -> None:
    saved = meta.get("fingerprint") or {}
    now = world_fingerprint(world)
    differ = [part for part in now if saved.get(part) != now[part]]
    if not differ:
        return
    detail = ""
    if "dynamics" in differ:
        old, new = meta.get("dynamics") or {}, asdict(world.dynamics)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        detail = f"; dynamics constants that differ: {', '.join(changed) or '?'}"
    raise WorldStateError(
        f"{path}: saved by a different world - the {', '.join(differ)} of the world rebuilt "
        f"from {CONFIG_FILE} by this code version differ from those that produced the state"
        f"{detail}. Regenerate the directory (`recgym world generate`) with this code"
    )


def read_world_config(directory: str | Path) -> WorldConfig:
    """The `WorldConfig` in `directory/world.json`; errors name the file."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise WorldStateError(f"{path}: no such file; not a directory written by generate")
    try:
        cfg = json.loads(path.read_text())
        return WorldConfig(**cfg["world"])
    except (ValueError, KeyError, TypeError) as exc:
        raise WorldStateError(f"{path}: not a valid world config ({exc!r})") from exc


def read_world_dynamics(directory: str | Path) -> Dynamics:
    """The `Dynamics` recorded in `directory/world.json` (the defaults where a file written
    before dynamics were recorded has none); unknown or invalid entries: an error naming the
    file."""
    path = Path(directory) / CONFIG_FILE
    try:
        cfg = json.loads(path.read_text())
        return Dynamics(**cfg.get("dynamics", {}))
    except (OSError, ValueError, TypeError) as exc:
        raise WorldStateError(f"{path}: not valid world dynamics ({exc!r})") from exc


def dynamics_from_pairs(pairs: Sequence[str]) -> Dynamics:
    """``["name=value", ...]`` -> the calibrated `Dynamics` with those constants changed
    (floats): how the CLI and the benches take ``--dynamics``. A ValueError names a pair that
    is not NAME=VALUE, an unknown constant or a value that is not a number."""
    known = {f.name for f in fields(Dynamics)}
    changes: dict[str, float] = {}
    for pair in pairs:
        name, sep, value = str(pair).partition("=")
        if not sep:
            raise ValueError(f"{pair!r} is not NAME=VALUE")
        if name not in known:
            raise ValueError(f"unknown constant {name!r}; Dynamics has {', '.join(sorted(known))}")
        try:
            changes[name] = float(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not a number") from None
    return replace(Dynamics(), **changes)


def load_world(directory: str | Path, state: str = "final") -> World:
    """The world that wrote the logs in `directory`.

    ``state="final"`` (default): as it stood after writing its logs (`world_state.npz`), the
    state a simulator learned from those logs starts from. ``state="initial"``: freshly built
    from `world.json`, before any log (what replays of the logging run need).
    """
    if state not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {state!r}")
    directory = Path(directory)
    world = World(read_world_config(directory), read_world_dynamics(directory))
    if state == "final":
        world.restore(read_world_state(directory / STATE_FILE, world))
    return world


__all__ = [
    "CONFIG_FILE",
    "STATES",
    "STATE_FILE",
    "WorldStateError",
    "dynamics_from_pairs",
    "load_world",
    "read_world_config",
    "read_world_dynamics",
    "read_world_state",
    "save_world_state",
    "world_fingerprint",
]
