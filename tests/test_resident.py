"""The learned simulator's device-resident step (issue 16), checked on the CPU where it can be
forced: the same predictions and state updates as the host path, its own reproducible draws from
the same distributions, pickling, moving between paths, the host fallback for user-author counts
too large for the device, and the native vector env on top of it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.simulators.learned import LearnedSimulator
from recgym.simulators.learned import resident as resident_module
from recgym.simulators.learned.config import LONG_VIEW_MS


def _pair(path: Path, device: str = "cpu") -> tuple[LearnedSimulator, LearnedSimulator]:
    host = LearnedSimulator.load(path, device="cpu")
    dev = LearnedSimulator.load(path, device=device, resident=True)
    assert not host.resident and dev.resident
    return host, dev


def _assert_same_state(host: LearnedSimulator, dev: LearnedSimulator) -> None:
    state, session = dev.state.to_host()
    for field in ("clicked", "skipped", "counts", "totals"):
        np.testing.assert_array_equal(getattr(host.state, field), getattr(state, field))
    np.testing.assert_array_equal(host._session.count, session.count)
    np.testing.assert_allclose(host._session.sums, session.sums, rtol=1e-12)
    np.testing.assert_array_equal(host._session.recent, session.recent)
    host.state.pairs.compact()
    np.testing.assert_array_equal(host.state.pairs.keys, state.pairs.keys)
    np.testing.assert_allclose(host.state.pairs.values, state.pairs.values)


def _replay(
    host: LearnedSimulator, dev: LearnedSimulator, steps: int = 4, rtol: float = 1e-5
) -> None:
    """Step `host`, feed its sampled responses to `dev.observe`: every prediction, hazard and
    state update must agree."""
    rng = np.random.default_rng(0)
    users = rng.choice(host.n_users, 40, replace=False)
    host.begin_session(users, rng)
    dev.begin_session(users, rng)
    for step in range(steps):
        slate = rng.integers(0, host.catalogue.n_items, (len(users), 6))
        scenario = rng.integers(0, 2, len(users))
        expected_h = host.expected_responses(users, slate, scenario)
        expected_d = dev.expected_responses(users, slate, scenario)
        for key in expected_h:
            np.testing.assert_allclose(expected_h[key], expected_d[key], rtol=rtol, atol=1e-6)
        result = host.step(users, slate, np.random.default_rng(step), scenario)
        seen = dev.observe(users, slate, result.responses, scenario)
        np.testing.assert_allclose(result.info["hazard"], seen["hazard"], rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(result.info["p_leave"], seen["p_leave"], rtol=rtol, atol=1e-7)
        np.testing.assert_array_equal(host.history(users), dev.history(users))
    _assert_same_state(host, dev)


def test_resident_path_predicts_and_updates_like_the_host_path(tiny_checkpoint: Path) -> None:
    _replay(*_pair(tiny_checkpoint))


@pytest.fixture(scope="module")
def view_seconds_checkpoint(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny checkpoint whose leave model also reads the seconds watched up to 18 s."""
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.train import train_simulator

    out = tmp_path_factory.mktemp("view_seconds_checkpoint")
    config = SimulatorConfig(
        epochs=1,
        hidden=(32,),
        embedding_dim=8,
        author_dim=4,
        leave_steps=50,
        heldout_days=1,
        leave_view_seconds=True,
    )
    train_simulator(tiny_logs, out, config, progress=False)
    return out


def test_leave_view_seconds_is_a_tenth_signal_on_both_paths(view_seconds_checkpoint: Path) -> None:
    host, dev = _pair(view_seconds_checkpoint)
    assert host.config.leave_view_seconds
    assert host._session.sums.shape[1] == 10 and dev.state.sums.shape[1] == 10
    _replay(host, dev)
    assert np.any(host._session.sums[:, 9] > 0)  # the signal was summed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resident_path_on_cuda_predicts_and_updates_like_the_host_path(
    tiny_checkpoint: Path,
) -> None:
    """Where there is a GPU (`recgym bench gpu`'s machine): the CUDA-resident simulator against
    the CPU host path (float32 kernels differ slightly between devices, hence rtol 1e-4)."""
    host, dev = _pair(tiny_checkpoint, device="cuda")
    assert dev.state.clicked.is_cuda and dev.state.pairs.is_cuda
    _replay(host, dev, rtol=1e-4)
    a, _ = _first_step(dev, 1)
    b, _ = _first_step(dev, 1)
    np.testing.assert_array_equal(a.responses["watch_ms"], b.responses["watch_ms"])


def test_resident_path_with_user_author_counts_on_the_host(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resident_module, "PAIR_TABLE_BYTES", 0)
    host, dev = _pair(tiny_checkpoint)
    assert dev.state.pairs_on_host
    _replay(host, dev)


def _first_step(sim: LearnedSimulator, seed: int):
    sim.reset_state()
    users = np.arange(sim.n_users)
    slate = np.random.default_rng(7).integers(0, sim.catalogue.n_items, (len(users), 6))
    return sim.step(users, slate, np.random.default_rng(seed)), slate


def test_resident_draws_are_reproducible_and_from_the_same_distributions(
    tiny_checkpoint: Path,
) -> None:
    host, dev = _pair(tiny_checkpoint)
    a, slate = _first_step(dev, 1)
    b, _ = _first_step(dev, 1)
    for key in a.responses:
        np.testing.assert_array_equal(a.responses[key], b.responses[key])
    np.testing.assert_array_equal(a.left, b.left)
    # the draws follow the predictions: both paths see the same p_click at the same state ...
    h, _ = _first_step(host, 1)
    np.testing.assert_allclose(a.info["p_click"], h.info["p_click"], rtol=1e-5)
    # ... and over many seeds the click rate, watch time and leave rate agree with it
    draws = {"host": [], "resident": []}
    for seed in range(30):
        for name, sim in (("host", host), ("resident", dev)):
            r, _ = _first_step(sim, seed)
            draws[name].append(
                [r.responses["click"].mean(), r.responses["watch_ms"].mean(), r.left.mean()]
            )
    host_mean, dev_mean = np.mean(draws["host"], 0), np.mean(draws["resident"], 0)
    spread = np.std(draws["host"], 0) / np.sqrt(30)
    assert np.all(np.abs(host_mean - dev_mean) < 5 * spread + 1e-9), (host_mean, dev_mean)
    assert abs(dev_mean[0] - a.info["p_click"].mean()) < 0.02
    # KuaiRand's long-view rule holds on the resident path too
    duration = dev.catalogue.duration_ms[slate]
    long_view = a.responses["watch_ms"] >= np.minimum(duration, LONG_VIEW_MS)
    np.testing.assert_array_equal(a.responses["long_view"], long_view)
    assert a.responses["watch_ms"].dtype == np.int64 and a.left.dtype == bool
    assert np.all(a.responses["watch_ms"] <= duration) and np.all(a.elapsed_ms > 0)


def test_resident_simulator_pickles_and_moves_between_paths(tiny_checkpoint: Path) -> None:
    _, dev = _pair(tiny_checkpoint)
    users = np.arange(10)
    slate = np.arange(60).reshape(10, 6)
    dev.step(users, slate, np.random.default_rng(0))
    twin = pickle.loads(pickle.dumps(dev))
    assert twin.resident and isinstance(twin.state.clicked, torch.Tensor)
    np.testing.assert_array_equal(twin.history(users), dev.history(users))
    a = dev.step(users, slate, np.random.default_rng(1))
    b = twin.step(users, slate, np.random.default_rng(1))
    np.testing.assert_array_equal(a.responses["watch_ms"], b.responses["watch_ms"])
    history = dev.history(users)
    dev.resident_option = False
    dev.to("cpu")  # back to the host path, the state with it
    assert not dev.resident and isinstance(dev.state.clicked, np.ndarray)
    np.testing.assert_array_equal(dev.history(users), history)
    meta = LearnedSimulator.load(tiny_checkpoint, device="meta")
    assert not meta.resident  # shapes only: nothing to keep a state in


def test_native_vector_env_runs_on_the_resident_backend(tiny_checkpoint: Path) -> None:
    import gymnasium as gym

    from recgym.envs import register_all

    register_all()

    def run() -> list[np.ndarray]:
        sim = LearnedSimulator.load(tiny_checkpoint, device="cpu", resident=True)
        venv = gym.make_vec("recgym/Session-v0", num_envs=8,
                            vectorization_mode="vector_entry_point", backend=sim)  # fmt: skip
        obs, _ = venv.reset(seed=3)
        out = [obs["item_id"]]
        actions = np.random.default_rng(0).uniform(
            -1, 1, (12, 8, venv.single_action_space.shape[0])
        )
        for a in actions.astype(np.float32):
            obs, reward, *_ = venv.step(a)
            out += [obs["item_id"], reward]
        venv.close()
        return out

    first, second = run(), run()
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
