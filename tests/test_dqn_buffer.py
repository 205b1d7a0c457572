"""`agents.dqn`'s training-speed changes that must leave the weights as they were:
`NewRowsNullCheckBuffer` (Tianshou's full-buffer NaN check, answered from new rows) and the
test episodes run side by side."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from tianshou.data import Batch, VectorReplayBuffer
from tianshou.data.batch import create_value
from tianshou.data.buffer import manager as buffer_manager

import recgym.agents.dqn as dqn
from recgym.agents.dqn import DQNConfig, NewRowsNullCheckBuffer, train_dqn

N_ENVS = 3


def _step(rng: np.random.Generator, t: int) -> Batch:
    """One Collector-like add for N_ENVS envs; some steps carry a NaN or None somewhere."""
    obs, obs_next = rng.normal(size=(N_ENVS, 4)), rng.normal(size=(N_ENVS, 4))
    rew = rng.normal(size=N_ENVS)
    if t in (7, 30, 63):
        obs_next[1, 2] = np.nan
    if t == 12:
        rew[0] = np.nan
    if t == 21:
        obs[2, 0] = np.nan
    info = {}
    if t >= 42:  # a key that appears late: the rows written before it hold None
        info["tag"] = np.array(["a"] * N_ENVS, dtype=object)
        if t == 55:
            info["tag"][1] = None
    return Batch(
        obs=obs,
        act=rng.integers(0, 5, N_ENVS),
        rew=rew,
        terminated=rng.random(N_ENVS) < 0.25,
        truncated=np.zeros(N_ENVS, dtype=bool),
        obs_next=obs_next,
        info=info,
    )


def test_the_new_rows_check_answers_as_the_full_scan_after_every_add() -> None:
    """Side by side with a plain VectorReplayBuffer fed the same adds (a 12-row buffer wraps
    around several times, so NaN rows get overwritten), asked every third add: NaNs in obs,
    obs_next and rew; a key that first appears right after a clean check (the rows before it
    hold None, rows that answered clean); a reset with a NaN row still unchecked; NaNs written
    by `set_array_at_key` just after a clean check. Each answer is asked twice (a True must stay
    True while the NaN row is there)."""
    rng = np.random.default_rng(0)
    plain = VectorReplayBuffer(4 * N_ENVS, N_ENVS)
    ours = NewRowsNullCheckBuffer(4 * N_ENVS, N_ENVS)

    def check(t: int) -> bool:
        expected = plain.hasnull()
        assert ours.hasnull() == expected, t
        assert ours.hasnull() == expected, t
        return expected

    answers = []
    for t in range(90):
        batch = _step(rng, t)
        plain.add(copy.deepcopy(batch))
        ours.add(copy.deepcopy(batch))
        if t == 64:  # the NaN row of t=63 is unchecked; afterwards it is no longer valid
            plain.reset()
            ours.reset()
        if t % 3 == 2:  # the trainer asks after each collect of a few steps
            answers.append(check(t))
        if t == 77:
            assert not answers[-1]  # a clean check, then NaNs written without `add`
            rew = np.full(len(plain._meta.rew), np.nan)
            plain.set_array_at_key(rew, "rew")
            ours.set_array_at_key(rew, "rew")
            assert check(t)
            plain.set_array_at_key(np.zeros_like(rew), "rew")
            ours.set_array_at_key(np.zeros_like(rew), "rew")
            assert not check(t)
    assert True in answers and False in answers


def test_a_loaded_buffer_checks_in_full_first(tmp_path) -> None:
    """Pickled or `load_hdf5`-ed (no ``__init__``), the next check scans every row."""
    import pickle

    rng = np.random.default_rng(1)
    buf = NewRowsNullCheckBuffer(4 * N_ENVS, N_ENVS)
    for t in range(7):
        buf.add(_step(rng, t))
    assert not buf.hasnull() and not buf._check_all
    buf.save_hdf5(tmp_path / "buf.h5")
    for again in (
        pickle.loads(pickle.dumps(buf)),
        NewRowsNullCheckBuffer.load_hdf5(tmp_path / "buf.h5"),
    ):
        assert again._check_all and not again.hasnull()
        again.add(_step(rng, 7))  # a NaN in obs_next
        assert again.hasnull()


def _assert_same_storage(got: Batch, want: Batch, path: str = "") -> None:
    assert sorted(got.get_keys()) == sorted(want.get_keys()), path
    for key in want.get_keys():
        a, b = got[key], want[key]
        if isinstance(b, Batch):
            _assert_same_storage(a, b, f"{path}{key}.")
            continue
        assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape, path + key
        assert a.tolist() == b.tolist(), path + key  # None == None in object arrays


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_the_first_add_allocates_what_tianshou_allocates_on_untouched_pages() -> None:
    """The storage the first `add` allocates has Tianshou's keys, dtypes, shapes and values
    (zeros; None in object arrays), Tianshou's `create_value` is back in place afterwards, and
    the buffer's untouched rows cost no memory: a 200,000-row buffer of 1,000 float32 features
    (1.6 GB for obs and obs_next) takes well under 100 MB once one row is written."""
    batch = _step(np.random.default_rng(2), 50)  # floats, ints, bools, an object array
    plain, ours = VectorReplayBuffer(8 * N_ENVS, N_ENVS), NewRowsNullCheckBuffer(8 * N_ENVS, N_ENVS)
    plain.add(copy.deepcopy(batch))
    ours.add(copy.deepcopy(batch))
    assert buffer_manager.create_value is create_value
    _assert_same_storage(ours._meta, plain._meta)

    if not Path("/proc/self/statm").exists():
        pytest.skip("resident memory is read from /proc (Linux)")
    rows, width = 200_000, 1_000
    before = _resident_bytes()
    big = NewRowsNullCheckBuffer(rows, 2)
    big.add(
        Batch(
            obs=np.ones((2, width), np.float32),
            act=np.zeros(2, np.int64),
            rew=np.zeros(2),
            terminated=np.zeros(2, bool),
            truncated=np.zeros(2, bool),
            obs_next=np.ones((2, width), np.float32),
            info={},
        )
    )
    assert big._meta.obs.shape == (rows, width)
    assert _resident_bytes() - before < 100_000_000


TINY_DQN = DQNConfig(
    env_steps=96, epochs=2, warmup_steps=32, test_episodes=4, hidden_sizes=(16,), seed=3
)
TINY_ENV = {"world_config": {"n_users": 40, "n_items": 300, "n_authors": 30}, "max_steps": 10}


def test_train_dqn_gives_the_same_weights_with_the_plain_buffer(monkeypatch) -> None:
    """The buffer changes how the trainer's NaN check is computed, nothing it samples."""
    torch.set_num_threads(1)
    cfg = replace(TINY_DQN, test_episodes=1)
    algo, stats = train_dqn(TINY_ENV, cfg, progress=False)
    monkeypatch.setattr(dqn, "NewRowsNullCheckBuffer", VectorReplayBuffer)
    plain, plain_stats = train_dqn(TINY_ENV, cfg, progress=False)
    assert stats.learning_curve == plain_stats.learning_curve
    weights, plain_weights = algo.state_dict(), plain.state_dict()
    for key, value in weights.items():
        if torch.is_tensor(value):
            assert torch.equal(value, plain_weights[key]), key


def test_test_episodes_side_by_side_leave_training_as_it_is(monkeypatch) -> None:
    """`train_dqn` runs its greedy test episodes in one vector env (up to TEST_SLOTS at once):
    the same weights as one test episode after another (they draw nothing from the global
    RNG); the test rewards are another sample of users, so the curve's values differ."""
    torch.set_num_threads(1)
    algo, stats = train_dqn(TINY_ENV, TINY_DQN, progress=False)
    monkeypatch.setattr(dqn, "TEST_SLOTS", 1)
    serial, serial_stats = train_dqn(TINY_ENV, TINY_DQN, progress=False)
    assert [row[0] for row in stats.learning_curve] == [
        row[0] for row in serial_stats.learning_curve
    ]
    weights, serial_weights = algo.state_dict(), serial.state_dict()
    for key, value in weights.items():
        if torch.is_tensor(value):
            assert torch.equal(value, serial_weights[key]), key
