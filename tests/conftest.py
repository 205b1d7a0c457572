"""Shared fixtures: a tiny world's logs and a simulator checkpoint fitted on them (once per run)."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_WORLD = {"n_users": 120, "n_items": 400, "n_authors": 40, "seed": 11}
"""WorldConfig fields of the tiny world behind `tiny_logs` and `tiny_checkpoint`."""


@pytest.fixture(scope="session")
def tiny_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KuaiRand-format logs (4 days) of the tiny world, with world.json and its truth."""
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    out = tmp_path_factory.mktemp("tiny_logs")
    generate(out, WorldConfig(**TINY_WORLD), LogConfig(days=4, seed=11), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulator checkpoint fitted briefly on `tiny_logs`: for API tests, not fidelity."""
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.train import train_simulator

    out = tmp_path_factory.mktemp("tiny_checkpoint")
    config = SimulatorConfig(
        epochs=1, hidden=(32,), embedding_dim=8, author_dim=4, leave_steps=100, heldout_days=1
    )
    train_simulator(tiny_logs, out, config, progress=False)
    return out
