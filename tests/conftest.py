"""Shared fixtures: a tiny world's logs and a simulator checkpoint fitted on them (once per run),
and a check for host synchronisation (what CUDA-graph capture forbids) run on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

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


class SyncCheck(TorchDispatchMode):
    """Records ops that would synchronise with the host (or copy from it) on a GPU: what a
    CUDA graph cannot capture, checked by op name on the CPU."""

    FORBIDDEN = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "lift_fresh", "item")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = str(func.overloadpacket.__name__)
        if any(bad in name for bad in self.FORBIDDEN):
            self.seen.append(name)
        if name == "index" and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in (args[1] or [])
        ):
            self.seen.append("index with a bool mask")
        if name == "repeat_interleave" and isinstance(args[1], torch.Tensor):
            self.seen.append("repeat_interleave with tensor repeats")
        accumulate = kwargs.get("accumulate") if kwargs else None
        if name in ("index_put", "index_put_", "_index_put_impl_") and len(args) > 3:
            accumulate = args[3]
        if accumulate:  # CUDA's sort-based accumulation (advanced indexing's backward)
            self.seen.append(f"{name} with accumulate")
        return func(*args, **(kwargs or {}))


@pytest.fixture
def sync_check() -> type[SyncCheck]:
    """`SyncCheck`, the class: ``with sync_check() as check: ...; assert check.seen == []``."""
    return SyncCheck


@pytest.fixture
def host_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Download` taking CPU tensors through its device path (staging, pooled result buffers)
    with unpinned host memory: what it does from CUDA, minus the asynchronous copy."""
    from recgym.device import Download

    monkeypatch.setattr(Download, "_copied_through_host", staticmethod(lambda tensor: True))
    monkeypatch.setattr(
        Download, "_pinned", staticmethod(lambda n, dtype: torch.empty(n, dtype=dtype))
    )
