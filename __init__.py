"""recgym: an offline-RL recommendation gym.

Four recommender MDPs as Gymnasium environments, on top of user simulators learned from real
logs or on a seeded ground-truth synthetic world. Importing the package registers the envs.
"""

from __future__ import annotations

__version__ = "0.1.0"

from recgym.envs import register_all as _register_all  # noqa: E402  (import registers envs)

_register_all()
