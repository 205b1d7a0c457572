"""Environment registration: the one place recgym env ids are defined (versioned)."""

from __future__ import annotations

import gymnasium as gym

from recgym.envs.contract import FlattenCandidates
from recgym.envs.driver import EpisodeDriver
from recgym.envs.session import SessionEnv

ENV_IDS: dict[str, str] = {
    "recgym/Session-v0": "recgym.envs.session:SessionEnv",
    "recgym/UserAuthor-v0": "recgym.envs.user_author:UserAuthorEnv",
}


def register_all() -> None:
    """Register every recgym env with Gymnasium (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)


def make_env(env_id: str = "recgym/Session-v0", **kwargs):
    """Picklable factory (usable with SubprocVectorEnv): `gym.make` after registering.

    The envs return the Dict observation of `envs.contract`; wrap in `FlattenCandidates` for
    the flat Box ``[user | context | candidate rows]``."""
    register_all()
    return gym.make(env_id, **kwargs)


register_all()

__all__ = [
    "ENV_IDS",
    "EpisodeDriver",
    "FlattenCandidates",
    "SessionEnv",
    "make_env",
    "register_all",
]
