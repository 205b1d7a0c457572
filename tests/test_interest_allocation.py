"""Click sequences (`data.sequences`), world true interests, `recgym/InterestAllocation-v0`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.data.schema import DataError
from recgym.data.sequences import PAPER_CORE, SequenceSet, from_dataset, paper_sequences

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SMALL_WORLD = {"n_users": 60, "n_items": 300, "n_authors": 30}


# --------------------------------------------------------------------------- sequences
def test_sequence_set_from_lists_and_windows() -> None:
    s = SequenceSet.from_lists(
        [[0, 1, 2, 3], [4, 4, 2]], n_items=5, interest=[[0, 0, 1, 1], [2, 2, 1]]
    )
    assert s.n_users == 2 and s.n_items == 5 and s.lengths.tolist() == [4, 3]
    items, interest = s.window(np.array([3, 3]), 4)
    assert items.tolist() == [[-1, 0, 1, 2], [-1, 4, 4, 2]]
    assert interest.tolist() == [[-1, 0, 0, 1], [-1, 2, 2, 1]]
    assert [x.tolist() for x in s.user_sequences()] == [[0, 1, 2, 3], [4, 4, 2]]
    assert s.popularity(upto=np.array([2, 1])).tolist() == [1, 1, 0, 0, 1]


def test_sequence_errors_name_the_user_and_item() -> None:
    with pytest.raises(
        ValueError, match="user 1's sequence has 2 clicks, fewer than the minimum 3"
    ):
        SequenceSet.from_lists([[0, 1, 2], [1, 2]], n_items=3)
    with pytest.raises(ValueError, match="unknown item id 7 in user 1's sequence"):
        SequenceSet.from_lists([[0, 1, 2], [1, 7, 2]], n_items=3)


def _toy_dataset(rows: list[tuple[int, int, int]]):
    from recgym.data.schema import Dataset, LoadReport

    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).astype("int64")
    return Dataset(
        format="lastfm",
        source=Path("toy"),
        interactions=inter,
        users=pd.DataFrame({"user_id": inter["user_id"].unique()}),
        items=pd.DataFrame({"item_id": inter["item_id"].unique()}),
        report=LoadReport(),
    )


def test_paper_preprocessing_on_a_toy_log_reports_every_step() -> None:
    # user 9 clicks items 1..5 once each at t = 1..5, with a duplicate tag row at t = 3;
    # user 8 clicks item 1 once: the 5-core drops it and (then) nothing else
    rows = [(9, i, i) for i in range(1, 6)] + [(9, 3, 3), (8, 1, 0)]
    rows += [(u, i, 10 + u) for u in range(10, 14) for i in range(1, 6)]
    s = paper_sequences(_toy_dataset(rows))
    assert PAPER_CORE["lastfm"] == 5
    steps = {st["step"]: st for st in s.steps}
    assert list(steps) == ["implicit_feedback", "dedup", "sort_by_time", "k_core"]
    assert steps["dedup"]["removed"] == 1 and steps["k_core"]["removed"] == 1
    assert 8 not in s.user_ids.tolist() and s.n_users == 5
    assert s.item_ids.tolist() == [1, 2, 3, 4, 5]
    assert s.sequence(int(np.flatnonzero(s.user_ids == 9)[0])).tolist() == [0, 1, 2, 3, 4]


def test_empty_after_k_core_and_short_sequences_are_clear_errors() -> None:
    with pytest.raises(DataError, match="no interactions survive the 5-core"):
        paper_sequences(_toy_dataset([(1, 1, 1), (1, 2, 2), (2, 1, 3)]))
    ds = _toy_dataset([(1, 1, 1), (1, 2, 2), (2, 1, 3)])
    with pytest.raises(ValueError, match="fewer than the minimum 3"):
        from_dataset(ds)
    with pytest.raises(DataError, match="no interactions left"):
        from_dataset(dataclasses.replace(ds, interactions=ds.interactions.iloc[:0]))


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
@pytest.mark.parametrize(
    "folder,users,items", [("ml-100k", 801, 1108), ("foursquare-nyc", 159, 863)]
)
def test_paper_preprocessing_on_the_shared_subsets(folder: str, users: int, items: int) -> None:
    from recgym.data.loaders import load

    s = paper_sequences(load(SHARED / folder, cache=False))
    assert (s.n_users, s.n_items) == (users, items)
    assert s.lengths.min() >= 10 and np.bincount(s.items).min() >= 10
    assert s.steps[-1]["step"] == "k_core" and s.steps[-1]["removed"] > 0


# --------------------------------------------------------------------------- the env
def _world_env(**kwargs):
    from recgym.envs.interest_allocation import InterestAllocationEnv

    return InterestAllocationEnv(world_config=SMALL_WORLD, **kwargs)


def _episode(env, seed: int, policy=None) -> list:
    obs, info = env.reset(seed=seed)
    out = [obs["sequence"].tolist(), info["user_id"]]
    t = 0
    while True:
        a = t % env.k if policy is None else policy(obs)
        obs, r, term, trunc, info = env.step(a)
        out.append((obs["item_id"].tolist(), obs["assignment"].tolist(), r))
        t += 1
        if term or trunc:
            return out + [info]


def test_check_env_determinism_and_pickle_on_the_world() -> None:
    import pickle

    from gymnasium.utils.env_checker import check_env

    env = _world_env()
    check_env(env, skip_render_check=True)
    a, b, c = _episode(_world_env(), 3), _episode(_world_env(), 3), _episode(_world_env(), 4)
    assert a[:-1] == b[:-1] and a[:-1] != c[:-1]
    env.reset(seed=2)
    env.step(1)
    clone = pickle.loads(pickle.dumps(env))
    x, y = env.step(2), clone.step(2)
    assert x[1:4] == y[1:4]
    for key in x[0]:
        np.testing.assert_array_equal(x[0][key], y[0][key])


def test_episode_allocates_the_sequence_then_rewards_the_target() -> None:
    env = _world_env(k=3, length=6)
    obs, _ = env.reset(seed=0)
    seq = obs["sequence"].copy()
    assert obs["max_k"].tolist() == [3] and obs["n_open"].tolist() == [0]
    rewards = []
    for t in range(6):
        assert obs["item_id"][0] == seq[t] and obs["position"][0] == t
        obs, r, term, trunc, info = env.step(0 if t < 3 else 2)
        rewards.append(r)
        assert not term
    assert obs["context"][2] == 1.0 and obs["position"][0] == 6  # the target is shown
    assert obs["assignment"].tolist() == [0, 0, 0, 2, 2, 2] and obs["n_open"][0] == 2
    assert obs["interest_size"].tolist() == [3, 0, 3]
    np.testing.assert_allclose(obs["interests"][0], env.vectors[seq[:3]].mean(0), rtol=1e-5)
    _, r, term, _, info = env.step(1)  # an empty interest predicts uniformly: R_c = 1 / (o + 1)
    assert term and rewards == [0.0] * 6
    assert info["r_c"] == pytest.approx(1 / 100)
    assert r == pytest.approx(info["r_advantage"] + 0.001 * info["r_orthogonal"])
    assert info["true_interest"].shape == (6,)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_reward_by_hand() -> None:
    from recgym.envs.interest_allocation import allocation_reward, interest_vectors

    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]], dtype=np.float32)
    p, sizes = interest_vectors(vectors, np.array([[0, 1, -1]]), np.array([[0, 1, -1]]), 3)
    assert sizes.tolist() == [[1, 1, 0]]
    out = allocation_reward(vectors, p, sizes, np.array([2]), np.array([0]), np.array([[3]]), 0.5)
    # interest 0 = (1, 0): target score e^1 / (e^1 + e^0); same for interest 1 -> advantage 0
    r_c = np.e / (np.e + 1)
    assert out["r_c"][0] == pytest.approx(r_c) and out["r_advantage"][0] == pytest.approx(0.0)
    assert out["r_orthogonal"][0] == pytest.approx(0.0)  # (1, 0) . (0, 1) = 0
    out = allocation_reward(vectors, p, sizes, np.array([0]), np.array([1]), np.array([[3]]), 0.5)
    base = (np.e / (np.e + 1) + 0.5) / 2
    assert out["reward"][0] == pytest.approx(0.5 - base)


def test_invalid_actions_and_arguments_name_the_env() -> None:
    env = _world_env()
    env.reset(seed=0)
    for bad in (-1, 4, 1.5, np.nan, [0, 1]):
        with pytest.raises(ValueError, match="InterestAllocation-v0"):
            env.step(bad)
    with pytest.raises(ValueError, match="intermediate_reward"):
        _world_env(intermediate_reward="sometimes")
    with pytest.raises(ValueError, match="item_vectors"):
        _world_env(item_vectors=np.zeros((3, 2)))


def test_world_clicks_carry_their_true_interest() -> None:
    from recgym.envs.interest_allocation import world_sequences
    from recgym.simulators.world import World, WorldConfig

    s = world_sequences(12, world_config=SMALL_WORLD, seed=1)
    assert s.n_users == 60 and (s.lengths == 12).all() and s.interest is not None
    labelled = s.interest >= 0
    assert 0.2 < labelled.mean() < 1.0
    world = World(WorldConfig(**SMALL_WORLD))
    # a label is the clicked item's leaf category
    np.testing.assert_array_equal(s.interest[labelled], world.catalogue.category[s.items[labelled]])
    again = world_sequences(12, world_config=SMALL_WORLD, seed=1)
    np.testing.assert_array_equal(s.items, again.items)


def test_dataset_source_allocates_a_users_training_clicks() -> None:
    from recgym.envs.interest_allocation import InterestAllocationEnv

    seqs = SequenceSet.from_lists([list(range(i, i + 8)) for i in range(6)], n_items=14)
    env = InterestAllocationEnv(seqs, k=3, length=4, n_negatives=5)
    obs, info = env.reset(seed=0, options={"user": 2})
    assert obs["sequence"].tolist() == [3, 4, 5, 6] and info["user_id"] == 2
    for _ in range(4):
        obs, *_ = env.step(0)
    assert obs["item_id"].tolist() == [7]  # the target: the click before validation and test
    *_, term, _, info = env.step(0)
    assert term and info["true_interest"].tolist() == [-1] * 4
    with pytest.raises(ValueError, match="source='world'"):
        InterestAllocationEnv(seqs, world_config=SMALL_WORLD)


def test_native_vector_env_steps_slots_together_and_one_slot_replays_the_env() -> None:
    from recgym.envs.interest_allocation import interest_allocation_vector_env

    single = _world_env(k=3, length=4)
    vec1 = interest_allocation_vector_env(1, world_config=SMALL_WORLD, k=3, length=4)
    obs_s, _ = single.reset(seed=7)
    obs_v, _ = vec1.reset(seed=7)
    for t in range(5):
        for key in obs_s:
            np.testing.assert_array_equal(obs_s[key], obs_v[key][0])
        obs_s, r_s, term_s, *_ = single.step(t % 3)
        obs_v, r_v, term_v, *_ = vec1.step(np.array([t % 3]))
        assert r_s == r_v[0] and term_s == term_v[0]
    vec = interest_allocation_vector_env(3, world_config=SMALL_WORLD, k=3, length=4)
    obs, info = vec.reset(seed=1)
    assert obs["sequence"].shape == (3, 4) and len(set(info["user_id"].tolist())) == 3
    ends = 0
    for _ in range(12):
        obs, reward, term, trunc, info = vec.step(np.array([0, 1, 2]))
        ends += int(term.sum())
        assert reward.shape == (3,) and vec.observation_space.contains(obs)
    assert ends >= 6  # 5 steps an episode, next-step autoreset
    with pytest.raises(ValueError, match="InterestAllocation-v0"):
        vec.step(np.array([0, 1]))


def test_cooccurrence_vectors_put_co_clicked_items_together() -> None:
    from recgym.data.sequences import cooccurrence_vectors

    rng = np.random.default_rng(0)
    # users click within {0..4} or within {5..9}; the last 2 clicks (held out) cross over
    seqs = [np.r_[rng.integers(0, 5, 20) + 5 * (u % 2), 9 - 5 * (u % 2), 0] for u in range(40)]
    vec = cooccurrence_vectors(SequenceSet.from_lists(seqs, n_items=10), dim=4)
    unit = vec / np.linalg.norm(vec, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = np.add.outer(np.arange(10) // 5, np.arange(10) // 5) != 1
    assert cos[same].mean() > 0.5 > cos[~same].mean()
    assert np.linalg.norm(vec, axis=1).mean() == pytest.approx(2.0, rel=1e-4)


def test_next_item_intermediate_rewards_score_each_click_against_the_interests_before_it() -> None:
    from recgym.envs.interest_allocation import allocation_reward, interest_vectors

    dense, sparse = _world_env(length=5, intermediate_reward="next_item"), _world_env(length=5)
    obs, _ = dense.reset(seed=3)
    sparse.reset(seed=3)
    _, r0, *_ = dense.step(0)
    assert r0 == 0.0  # nothing allocated yet: no interest to score the first click with
    p, sizes = interest_vectors(
        dense.vectors, obs["sequence"][None], np.array([[0, -1, -1, -1, -1]]), 4
    )
    rng_state = dense.mdp._neg_rng.bit_generator.state
    _, r1, *_ = dense.step(1)  # click 2 opens interest 1: scored by an empty interest
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    from recgym.envs.interest_allocation import sample_other_items

    item = np.array([obs["sequence"][1]])
    negs = sample_other_items(item, 99, dense.mdp.n_items, rng)
    expected = allocation_reward(dense.vectors, p, sizes, item, np.array([1]), negs, 0.001)
    assert r1 == pytest.approx(float(expected["reward"][0])) and r1 != 0.0
    assert expected["r_c"][0] == pytest.approx(1 / 100)
    assert [sparse.step(0)[1] for _ in range(5)] == [0.0] * 5


def test_first_clicks_drop_repeats_and_short_users() -> None:
    s = SequenceSet.from_lists(
        [[0, 1, 0, 2, 1, 3], [4, 4, 4, 5], [1, 2, 3]],
        n_items=6,
        interest=[[0, 1, 0, 2, 1, 3], [4, 4, 4, 5], [1, 2, 3]],
    )
    f = s.first_clicks()
    assert [x.tolist() for x in f.user_sequences()] == [[0, 1, 2, 3], [1, 2, 3]]
    assert f.interest.tolist() == [0, 1, 2, 3, 1, 2, 3] and f.user_ids.tolist() == [0, 2]
    assert f.steps[-1]["removed"] == 6 and f.steps[-1]["users_dropped"] == 1
    rows = [(u, i, t) for u in range(10, 16) for t, i in enumerate([1, 2, 1, 3, 4, 5, 2, 6])]
    kept = paper_sequences(_toy_dataset(rows), core=3)
    once = paper_sequences(_toy_dataset(rows), core=3, repeats=False)
    assert kept.lengths.tolist() == [8] * 6 and once.lengths.tolist() == [6] * 6
    assert [st["step"] for st in once.steps][-2:] == ["dedup", "k_core"]
