"""Environment registration: the one place recgym env ids are defined (versioned)."""

from __future__ import annotations

import gymnasium as gym

from recgym.envs.contract import FlattenCandidates
from recgym.envs.driver import EpisodeDriver
from recgym.envs.session import SessionEnv

ENV_IDS: dict[str, str] = {
    "recgym/Session-v0": "recgym.envs.session:SessionEnv",
    "recgym/UserAuthor-v0": "recgym.envs.user_author:UserAuthorEnv",
    "recgym/MTFSession-v0": "recgym.envs.mtf:MTFSessionEnv",
    "recgym/MultiScenario-v0": "recgym.envs.multi_scenario:MultiScenarioEnv",
    "recgym/InterestAllocation-v0": "recgym.envs.interest_allocation:InterestAllocationEnv",
}

VECTOR_ENTRY_POINTS: dict[str, str] = {
    "recgym/Session-v0": "recgym.envs.session:session_vector_env",
    "recgym/UserAuthor-v0": "recgym.envs.user_author:user_author_vector_env",
    "recgym/MTFSession-v0": "recgym.envs.mtf:mtf_vector_env",
    "recgym/MultiScenario-v0": "recgym.envs.multi_scenario:multi_scenario_vector_env",
    "recgym/InterestAllocation-v0": (
        "recgym.envs.interest_allocation:interest_allocation_vector_env"
    ),
}
"""Native vector envs (`envs.vector.MDPVectorEnv`) for ``gym.make_vec(ID, num_envs=N,
vectorization_mode="vector_entry_point")``."""


def register_all() -> None:
    """Register every recgym env with Gymnasium (idempotent)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in gym.registry:
            vector = VECTOR_ENTRY_POINTS.get(env_id)
            gym.register(id=env_id, entry_point=entry_point, vector_entry_point=vector)


def make_env(env_id: str = "recgym/Session-v0", **kwargs):
    """Picklable factory (usable with SubprocVectorEnv): `gym.make` after registering.

    The envs return the Dict observation of `envs.contract`; wrap in `FlattenCandidates` for
    the flat Box ``[user | context | candidate rows]``."""
    register_all()
    return gym.make(env_id, **kwargs)


register_all()

__all__ = [
    "ENV_IDS",
    "VECTOR_ENTRY_POINTS",
    "EpisodeDriver",
    "FlattenCandidates",
    "SessionEnv",
    "make_env",
    "register_all",
]
