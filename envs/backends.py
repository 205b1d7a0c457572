"""The users behind an env: the ground-truth world, a learned simulator or any UserModel."""

from __future__ import annotations

from recgym.simulators.protocol import UserModel
from recgym.simulators.world import World, WorldConfig


def make_backend(
    backend: str | UserModel,
    checkpoint: str | None = None,
    world_config: dict | None = None,
    world_dir: str | None = None,
    device: str = "auto",
) -> UserModel:
    """The env's users: 'world', 'learned' (a checkpoint) or a UserModel passed through.

    ``backend="world"``: with `world_dir` (a directory written by `recgym world generate`), the
    world that wrote those logs *as it stood after writing them* (`simulators.world_state`) -
    the user state a simulator learned from the same logs starts from, so world and simulator
    are compared on the same users; otherwise a fresh `World` from `world_config` (a dict of
    WorldConfig fields), at its pre-log state. ``backend="learned"`` loads the checkpoint onto
    `device` (`recgym.device.resolve_device`; 'auto' = CUDA when available); the world is numpy
    and ignores it. `world_dir` with `world_config`, or with another
    backend, is a ValueError: the directory already fixes the world.
    """
    if world_dir is not None:
        if backend != "world":
            raise ValueError(
                f"world_dir={str(world_dir)!r} only applies to backend='world' "
                f"(got backend={backend if isinstance(backend, str) else type(backend).__name__!r})"
            )
        if world_config is not None:
            raise ValueError(
                "pass world_dir or world_config, not both: the world directory's world.json "
                "already fixes the world's config"
            )
        from recgym.simulators.world_state import load_world

        return load_world(world_dir)
    if not isinstance(backend, str):
        return backend
    if backend == "world":
        return World(WorldConfig(**(world_config or {})))
    if backend == "learned":
        if checkpoint is None:
            raise ValueError(
                "backend='learned' needs checkpoint=PATH (from `recgym simulator train`)"
            )
        from recgym.simulators.learned import LearnedSimulator

        return LearnedSimulator.load(checkpoint, device=device)
    raise ValueError(f"unknown backend {backend!r}; expected 'world', 'learned' or a UserModel")
