"""ASA over logs (`recgym.data.asa`): exact samples on a hand-made log, chunking, HDF5 round trip,
and static features consistent with the world and the learned simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.data import load
from recgym.data.asa import (
    UNKNOWN_AUTHOR,
    asa_samples,
    iter_asa,
    load_asa,
    sequential_counters,
    sidecar_path,
)
from recgym.data.schema import Dataset, LoadReport
from recgym.simulators import scri
from recgym.simulators.features import user_feature_matrix

REAL_KUAIRAND = Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairand"


def _dataset(rows: list[tuple], gift: bool = False) -> Dataset:
    """A KuaiRand-schema Dataset from (user, item, t, click, long_view, play_ms, follow,
    comment[, gift]) tuples, in file order."""
    cols = ["user_id", "item_id", "timestamp", "is_click", "long_view", "play_time_ms"]
    cols += ["is_follow", "is_comment"] + (["is_gift"] if gift else [])
    inter = pd.DataFrame(rows, columns=cols)
    for c in cols[3:]:
        if c != "play_time_ms":
            inter[c] = inter[c].astype("int8")
    users = pd.DataFrame(
        {
            "user_id": [1, 2],
            "user_active_degree": pd.Categorical(["high_active", "middle_active"]),
            "register_days": [100, 2000],
            "is_video_author": [1, 0],
            "follow_user_num": [5, 0],
            "fans_user_num": [0, 40],
            "onehot_feat0": [1, 0],
            "onehot_feat1": [3, 6],
        }
    )
    # item 40 is logged but has no row: its author is unknown
    items = pd.DataFrame({"item_id": [10, 11, 20, 30, 50], "author_id": [100, 100, 200, 300, 300]})
    return Dataset(
        format="kuairand",
        source=Path("hand-made"),
        interactions=inter,
        users=users,
        items=items,
        report=LoadReport(),
    )


# (user, item, t, click, long_view, play_ms, follow, comment, gift); authors: 10, 11 -> 100,
# 20 -> 200, 30 -> 300, 40 -> unknown. File order is deliberately not time order.
HAND_ROWS = [
    (2, 10, 2500, 1, 1, 30000, 0, 0, 0),  # u2 #3
    (1, 10, 5000, 1, 1, 18000, 1, 1, 1),  # u1 #5: a100 again, after a gap (a200, a300)
    (1, 10, 1000, 1, 1, 20000, 0, 0, 0),  # u1 #1
    (2, 10, 1500, 1, 0, 2500, 0, 0, 0),  # u2 #1 (tie with the next: file order decides)
    (2, 11, 1500, 0, 0, 100, 0, 0, 0),  # u2 #2, same author as #1
    (1, 20, 2000, 1, 0, 3000, 1, 1, 0),  # u1 #2
    (3, 40, 700, 1, 0, 1234, 0, 0, 0),  # u3: no user features, unknown author
    (1, 11, 3000, 0, 0, 500, 0, 0, 0),  # u1 #3: a100, not clicked: only watch seconds
    (1, 30, 4000, 1, 1, 40000, 0, 0, 0),  # u1 #4
]

# expected in (user, time) order: user, item, author, f_ua before, f_ua after
# counters: clicks, long_views, follows, comments, gifts, watch_s
EXPECTED = [
    (1, 10, 100, [0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 20.0]),
    (1, 20, 200, [0, 0, 0, 0, 0, 0], [1, 0, 1, 1, 0, 3.0]),
    (1, 11, 100, [1, 1, 0, 0, 0, 20.0], [1, 1, 0, 0, 0, 20.5]),
    (1, 30, 300, [0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 40.0]),
    (1, 10, 100, [1, 1, 0, 0, 0, 20.5], [2, 2, 1, 1, 1, 38.5]),
    (2, 10, 100, [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 2.5]),
    (2, 11, 100, [1, 0, 0, 0, 0, 2.5], [1, 0, 0, 0, 0, 2.6]),
    (2, 10, 100, [1, 0, 0, 0, 0, 2.6], [2, 1, 0, 0, 0, 32.6]),
    (3, 40, UNKNOWN_AUTHOR, [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1.234]),
]


def test_hand_made_log_gives_the_exact_samples() -> None:
    samples = asa_samples(_dataset(HAND_ROWS, gift=True), chunk_rows=2)
    buf = samples.buffer
    assert len(buf) == len(EXPECTED)
    assert samples.tasks == scri.TASKS  # the log has an is_gift column
    assert samples.unknown_author_rows == 1 and samples.id_space == "dataset"
    b = buf[np.arange(len(buf))]
    ud = samples.user_dim
    f_u, f_a, f_ua = scri.split_state(b.obs, ud)
    _, _, f_ua_next = scri.split_state(b.obs_next, ud)
    for i, (user, item, author, before, after) in enumerate(EXPECTED):
        assert (b.info.user[i], b.act[i], b.info.author[i]) == (user, item, author), i
        np.testing.assert_allclose(f_ua[i], before, rtol=1e-6, err_msg=str(i))
        np.testing.assert_allclose(f_ua_next[i], after, rtol=1e-6, err_msg=str(i))
    # static parts of s and s' agree; counters are the only thing that moves
    np.testing.assert_array_equal(b.obs[:, : ud + 3], b.obs_next[:, : ud + 3])
    # rewards: click, watch seconds, follow, gift; rew is the watch-time task
    np.testing.assert_allclose(b.info.rewards[4], [1, 18.0, 1, 1])
    np.testing.assert_allclose(b.info.rewards[6], [0, 0.1, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(b.rew, b.info.rewards[:, 1])
    assert list(b.info.timestamp) == [1000, 2000, 3000, 4000, 5000, 1500, 1500, 2500, 700]
    assert not b.terminated.any() and not b.truncated.any() and not b.done.any()
    # f_u: the user table through user_feature_matrix; user 3 (absent) reads as an empty record
    table = _dataset(HAND_ROWS, gift=True).users
    np.testing.assert_array_equal(f_u[0], user_feature_matrix(table)[0])
    np.testing.assert_array_equal(f_u[5], user_feature_matrix(table)[1])
    np.testing.assert_array_equal(f_u[8], user_feature_matrix(pd.DataFrame(index=[0]))[0])
    # f_a: 2 items of author 100 (both logged 3+2 times), popularity = add-one share of exposures
    exposures = {10: 4, 11: 2, 20: 1, 30: 1, 40: 1, 50: 0}
    pop = {k: (v + 1) / (9 + 6) for k, v in exposures.items()}
    author_pop = {100: pop[10] + pop[11], 200: pop[20], 300: pop[30] + pop[50], -1: pop[40]}
    n_items = {100: 2, 200: 1, 300: 2, -1: 1}
    for i, (_, _, author, _, _) in enumerate(EXPECTED):
        rel = np.clip(np.log(author_pop[author] * 4 + 1e-9) / 5.0, -3, 3)
        np.testing.assert_allclose(f_a[i], [np.log1p(n_items[author]) / 3, rel, 0.0], rtol=1e-6)


def test_without_a_gift_column_there_is_no_gift_task() -> None:
    rows = [r[:-1] for r in HAND_ROWS]
    samples = asa_samples(_dataset(rows))
    assert samples.tasks == ("click", "watch_time", "follow")
    b = samples.buffer[np.arange(len(samples.buffer))]
    assert (b.info.rewards[:, scri.TASKS.index("gift")] == 0).all()
    _, _, f_ua_next = scri.split_state(b.obs_next, samples.user_dim)
    assert (f_ua_next[:, scri.UA_COUNTERS.index("gifts")] == 0).all()


def test_chunks_hold_whole_users_and_do_not_change_the_samples() -> None:
    ds = _dataset(HAND_ROWS, gift=True)
    whole = asa_samples(ds).buffer
    one_by_one = asa_samples(ds, chunk_rows=1).buffer
    for key in ("obs", "obs_next", "act", "rew"):
        np.testing.assert_array_equal(getattr(whole, key), getattr(one_by_one, key))
    chunks = list(iter_asa(ds, chunk_rows=3))
    assert [len(c.act) for c in chunks] == [5, 3, 1]  # users 1 | 2 | 3, never split
    users = [set(c.info.user.tolist()) for c in chunks]
    assert users == [{1}, {2}, {3}]
    np.testing.assert_array_equal(np.concatenate([c.obs for c in chunks]), whole.obs)


def test_sequential_counters_chain_float32_additions_per_pair() -> None:
    rng = np.random.default_rng(0)
    pair = rng.integers(0, 4, 200)
    inc = rng.random((200, 2)).astype(np.float32)
    start = rng.random((200, 2)).astype(np.float32)
    before, after = sequential_counters(pair, inc, start)
    state: dict[int, np.ndarray] = {}
    for i, p in enumerate(pair):  # the obvious loop, one interaction at a time
        cur = state.get(int(p), start[i])
        assert np.array_equal(before[i], cur)
        state[int(p)] = cur + inc[i]
        assert np.array_equal(after[i], state[int(p)])


def test_hdf5_round_trip_keeps_buffer_info_and_tasks(tmp_path: Path) -> None:
    from tianshou.data import ReplayBuffer

    path = tmp_path / "scri.h5"
    made = asa_samples(_dataset([r[:-1] for r in HAND_ROWS]), path=path, seed=3)
    assert path.is_file() and sidecar_path(path).is_file()
    back = load_asa(path)
    assert back.tasks == made.tasks and back.user_dim == made.user_dim
    assert back.meta() == made.meta()
    a, b = made.buffer, back.buffer
    assert len(a) == len(b) == len(HAND_ROWS)
    for key in ("obs", "act", "rew", "obs_next", "terminated", "truncated", "done"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype and np.array_equal(x, y), key
    for key in ("user", "author", "rewards", "timestamp"):
        x, y = a.info[key], b.info[key]
        assert x.dtype == y.dtype and np.array_equal(x, y), key
    # plain Tianshou reads it too, and sampling works (with the seed given)
    plain = ReplayBuffer.load_hdf5(str(path))
    batch, idx = plain.sample(4)
    assert batch.obs.shape == (4, made.state_dim) and batch.info.rewards.shape == (4, 4)
    np.testing.assert_array_equal(batch.info.rewards, a.info.rewards[idx])


def test_world_logs_f_u_is_what_the_world_and_the_learned_simulator_see(
    tiny_logs: Path, tiny_checkpoint: Path
) -> None:
    from recgym.simulators.generate import load_world
    from recgym.simulators.learned import LearnedSimulator

    ds = load(tiny_logs)
    samples = asa_samples(ds)
    b = samples.buffer
    assert samples.tasks == scri.TASKS  # world logs write the optional is_gift column
    assert len(b) == len(ds.interactions) and samples.unknown_author_rows == 0
    f_u = b.obs[:, : samples.user_dim]
    world = load_world(tiny_logs)
    np.testing.assert_array_equal(f_u, world.user_features(b.info.user))
    np.testing.assert_array_equal(b.info.author, world.catalogue.author[b.act])
    sim = LearnedSimulator.load(tiny_checkpoint)
    dense = np.searchsorted(sim.user_ids, b.info.user)
    np.testing.assert_array_equal(f_u, sim.user_features(dense))
    # with a backend: its ids and its f_a; counters and rewards do not depend on it
    for backend in (world, sim):
        other = asa_samples(ds, backend=backend).buffer
        assert np.array_equal(other.obs[:, -6:], b.obs[:, -6:])
        assert np.array_equal(other.info.rewards, b.info.rewards)
        f_a = other.obs[:, samples.user_dim : samples.user_dim + 3]
        expected = scri.author_features(backend.catalogue)[other.info.author]
        np.testing.assert_array_equal(f_a, expected)
    # a pair's counters only grow, and s' of a row is s of the pair's next row
    key = b.info.user * 10_000 + b.info.author
    order = np.lexsort((np.arange(len(key)), key))
    same = key[order][1:] == key[order][:-1]
    np.testing.assert_array_equal(b.obs[order][1:][same], b.obs_next[order][:-1][same])


def test_bad_input_fails_clearly() -> None:
    ds = _dataset([r[:-1] for r in HAND_ROWS])
    ds.interactions = ds.interactions.drop(columns=["play_time_ms"])
    with pytest.raises(ValueError, match="play_time_ms"):
        asa_samples(ds)
    with pytest.raises(ValueError, match="unknown tasks"):
        asa_samples(_dataset([r[:-1] for r in HAND_ROWS]), tasks=("click", "purchase"))


@pytest.mark.skipif(not REAL_KUAIRAND.is_dir(), reason="real KuaiRand sample not available")
def test_real_kuairand_rows_run(tmp_path: Path) -> None:
    ds = load(REAL_KUAIRAND, cache_dir=tmp_path)
    samples = asa_samples(ds)
    assert len(samples.buffer) == len(ds.interactions)
    assert samples.tasks == ("click", "watch_time", "follow")
    assert np.isfinite(samples.buffer.obs).all() and np.isfinite(samples.buffer.obs_next).all()
