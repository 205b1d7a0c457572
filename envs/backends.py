"""The users behind an env: the ground-truth world, a learned simulator or any UserModel."""

from __future__ import annotations

from recgym.simulators.protocol import UserModel
from recgym.simulators.world import World, WorldConfig


def make_backend(
    backend: str | UserModel,
    checkpoint: str | None = None,
    world_config: dict | None = None,
) -> UserModel:
    """'world' (a `World` from `world_config`), 'learned' (a checkpoint), or a UserModel."""
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

        return LearnedSimulator.load(checkpoint)
    raise ValueError(f"unknown backend {backend!r}; expected 'world', 'learned' or a UserModel")
