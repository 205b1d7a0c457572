"""Native vector envs (`envs.vector`) and the Tianshou view of them (`envs.tianshou_vector`)."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch
from tianshou.algorithm.algorithm_base import RandomActionPolicy
from tianshou.data import Collector, CollectStats, VectorReplayBuffer
from tianshou.env import DummyVectorEnv

from recgym.envs import ENV_IDS, VECTOR_ENTRY_POINTS, make_env
from recgym.envs.contract import FlattenCandidates
from recgym.envs.tianshou_vector import TianshouVectorEnv
from recgym.envs.vector import MDPVectorEnv

WORLD = {"n_users": 40, "n_items": 300, "n_authors": 30}
KWARGS = {"world_config": WORLD, "n_candidates": 12, "slate_size": 3, "max_steps": 5}


def make_vec(env_id: str, n: int, **kwargs) -> gym.vector.VectorEnv:
    return gym.make_vec(
        env_id, num_envs=n, vectorization_mode="vector_entry_point", **{**KWARGS, **kwargs}
    )


def actions_for(space: gym.Space, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, space.n, n)
    return rng.uniform(-1, 1, (n,) + space.shape).astype(np.float32)


def assert_obs_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_every_env_id_has_a_native_vector_env() -> None:
    assert set(VECTOR_ENTRY_POINTS) <= set(ENV_IDS)
    for env_id in ("recgym/Session-v0", "recgym/UserAuthor-v0"):
        assert isinstance(make_vec(env_id, 2).unwrapped, MDPVectorEnv)


@pytest.mark.parametrize("env_id", ["recgym/Session-v0", "recgym/UserAuthor-v0"])
@pytest.mark.parametrize("mode", ["scores", "discrete"])
def test_one_slot_vector_env_replays_the_single_env(env_id: str, mode: str) -> None:
    """Same seed, same actions: the 1-slot vector env (next-step autoreset) and the single env
    (reset by hand when an episode ends) give the same observations, rewards and ends."""
    single = make_env(env_id, **KWARGS, action_mode=mode)
    vec = make_vec(env_id, 1, action_mode=mode)
    rng = np.random.default_rng(1)
    obs, info = single.reset(seed=7)
    vobs, vinfo = vec.reset(seed=7)
    assert_obs_equal(obs, {k: v[0] for k, v in vobs.items()})
    assert vinfo["user_id"][0] == info["user_id"]
    episodes, done = 0, False
    while episodes < 4:
        action = actions_for(single.action_space, rng, 1)
        vobs, vrew, vterm, vtrunc, vinfo = vec.step(action)
        if done:  # the vector env resets this step and ignores the action
            obs, info = single.reset()
            assert vrew[0] == 0.0 and not vterm[0] and not vtrunc[0]
            assert vinfo["user_id"][0] == info["user_id"]
            done = False
        else:
            obs, reward, terminated, truncated, info = single.step(action[0])
            assert vrew[0] == reward and vterm[0] == terminated and vtrunc[0] == truncated
            np.testing.assert_array_equal(vinfo["slate"][0], info["slate"])
            done = terminated or truncated
            episodes += done
        assert_obs_equal(obs, {k: v[0] for k, v in vobs.items()})


@pytest.mark.parametrize("env_id", ["recgym/Session-v0", "recgym/UserAuthor-v0"])
def test_n_slot_vector_env_is_seeded_autoresets_and_keeps_users_distinct(env_id: str) -> None:
    n = 6

    def rollout(seed: int) -> list:
        vec = make_vec(env_id, n)
        rng = np.random.default_rng(0)
        obs, _ = vec.reset(seed=seed)
        trace, ended = [obs["user_id"][:, 0].copy()], np.zeros(n, dtype=bool)
        for _ in range(25):
            obs, reward, terminated, truncated, info = vec.step(
                actions_for(vec.single_action_space, rng, n)
            )
            assert vec.observation_space.contains(obs)
            users = obs["user_id"][:, 0]
            assert len(np.unique(users)) == n  # one population: distinct users in the slots
            # next-step autoreset: slots that ended last step restart with reward 0
            assert (reward[ended] == 0).all() and not (terminated | truncated)[ended].any()
            stepped = info.get("_slate", np.zeros(n, dtype=bool))
            assert stepped.tolist() == (~ended).tolist()
            assert (info["_user_id"]).all()
            trace.append((users.copy(), reward.copy(), terminated | truncated))
            ended = terminated | truncated
        return trace

    a, b = rollout(3), rollout(3)
    assert all(
        all(np.array_equal(x, y) for x, y in zip(ta, tb, strict=True))
        if isinstance(ta, tuple)
        else np.array_equal(ta, tb)
        for ta, tb in zip(a, b, strict=True)
    )
    ends = np.array([t[2] for t in a[1:]])
    assert ends.any() and ends.sum(axis=0).max() >= 2  # several episodes per slot


def test_vector_env_rejects_per_slot_seeds_and_too_many_slots() -> None:
    vec = make_vec("recgym/Session-v0", 2)
    with pytest.raises(ValueError, match="one int seed"):
        vec.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="users"):
        make_vec("recgym/Session-v0", 3, users=np.array([0, 1]))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="distinct"):
        vec.reset(seed=0, options={"user": 4})  # the same user in both slots
    with pytest.raises(ValueError, match="recgym/Session-v0"):
        vec.step(np.zeros((2, 11), dtype=np.float32))


def test_learned_backend_vector_env(tiny_checkpoint) -> None:
    kwargs = {"backend": "learned", "checkpoint": str(tiny_checkpoint)}
    single = make_env("recgym/Session-v0", **kwargs, n_candidates=12, slate_size=3)
    vec = gym.make_vec(
        "recgym/Session-v0",
        num_envs=1,
        vectorization_mode="vector_entry_point",
        **kwargs,
        n_candidates=12,
        slate_size=3,
    )
    obs, _ = single.reset(seed=2)
    vobs, _ = vec.reset(seed=2)
    action = np.linspace(-1, 1, 12, dtype=np.float32)
    for _ in range(3):
        obs, reward, terminated, truncated, _ = single.step(action)
        vobs, vrew, vterm, vtrunc, _ = vec.step(action[None])
        assert_obs_equal(obs, {k: v[0] for k, v in vobs.items()})
        assert vrew[0] == reward
        if terminated or truncated:
            break
    wide = gym.make_vec(
        "recgym/Session-v0", num_envs=8, vectorization_mode="vector_entry_point", **kwargs
    )
    wide.reset(seed=0)
    for _ in range(4):
        obs, *_ = wide.step(wide.action_space.sample())
        assert wide.observation_space.contains(obs)


# --------------------------------------------------------------------------- Tianshou
def _flat_env(**kwargs) -> gym.Env:
    return FlattenCandidates(make_env("recgym/Session-v0", **kwargs))


def _buffer_arrays(buf) -> dict:
    batch = buf[np.arange(len(buf))]
    return {k: np.asarray(batch[k]) for k in ("obs", "act", "rew", "terminated", "truncated")} | {
        "obs_next": np.asarray(batch.obs_next)
    }


def _collect(venv, policy, seed: int) -> dict:
    venv.seed(seed)
    buf = VectorReplayBuffer(1_000, len(venv))
    collector = Collector[CollectStats](policy, venv, buf, exploration_noise=True)
    collector.reset()
    collector.collect(n_step=60 * len(venv), random=True)
    return _buffer_arrays(buf)


@pytest.mark.parametrize("info", ["full", "none"])
def test_collector_over_the_native_env_equals_collector_over_dummy_vector_env(info: str) -> None:
    """One slot, flat observations (as DQN trains): the same transitions either way, whatever
    the infos."""
    kwargs = {**KWARGS, "action_mode": "discrete"}
    dummy = DummyVectorEnv([functools.partial(_flat_env, **kwargs)])
    native = TianshouVectorEnv(
        make_vec("recgym/Session-v0", 1, action_mode="discrete"), flatten=True, info=info
    )
    policy = RandomActionPolicy(dummy.action_space[0])
    a, b = _collect(dummy, policy, 5), _collect(native, policy, 5)
    assert a["terminated"].any() or a["truncated"].any()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


class _ObsHashPolicy(RandomActionPolicy):
    """Acts on the observation alone (a deterministic function of it), so two collections see
    the same actions exactly when they see the same observations; records the info keys the
    Collector hands it."""

    def __init__(self, action_space: gym.spaces.Discrete) -> None:
        super().__init__(action_space)
        self.info_keys: set[tuple[str, ...]] = set()

    def forward(self, batch, state=None, **kwargs):
        from tianshou.data import Batch

        self.info_keys.add(tuple(sorted(batch.info.get_keys())))
        obs = np.asarray(batch.obs, dtype=np.float64)
        act = (np.abs(obs).sum(axis=1) * 1e4).astype(np.int64) % self.action_space.n
        return Batch(act=act, state=state)


def test_collector_over_the_native_env_without_infos_collects_the_same_transitions() -> None:
    """info="none" vs "full", several slots, a policy that acts (not the Collector's random
    draw): the same buffer rows; "none" stores no info and hands the policy an empty one."""
    n = 3

    def run(info: str) -> tuple[dict, VectorReplayBuffer, _ObsHashPolicy]:
        venv = TianshouVectorEnv(
            make_vec("recgym/Session-v0", n, action_mode="discrete"), flatten=True, info=info
        )
        venv.seed(2)
        policy = _ObsHashPolicy(venv.action_space[0])
        buf = VectorReplayBuffer(600, n)
        collector = Collector[CollectStats](policy, venv, buf)
        collector.reset()
        collector.collect(n_step=40 * n)
        return _buffer_arrays(buf), buf, policy

    (full, full_buf, full_policy), (none, none_buf, none_policy) = run("full"), run("none")
    assert full["terminated"].any() or full["truncated"].any()
    for key in full:
        np.testing.assert_array_equal(full[key], none[key], err_msg=key)
    assert "env_id" in full_buf.info.get_keys()
    assert all("env_id" in keys for keys in full_policy.info_keys)
    assert len(none_buf.info.get_keys()) == 0 and none_policy.info_keys == {()}


def test_collector_over_a_wide_native_env_with_dict_observations() -> None:
    """Several slots, Dict observations, full infos: transitions chain within each env's
    episodes, infos carry the env's step info, and a seed replays the same buffer."""
    torch.set_num_threads(1)
    n = 4

    def run() -> tuple[dict, object]:
        venv = TianshouVectorEnv(make_vec("recgym/UserAuthor-v0", n), info="full")
        venv.seed(1)
        buf = VectorReplayBuffer(800, n)
        collector = Collector[CollectStats](RandomActionPolicy(venv.action_space[0]), venv, buf)
        collector.reset()
        collector.collect(n_step=40 * n, random=True)
        return buf

    buf, again = run(), run()
    for key in ("rew", "terminated", "truncated"):
        np.testing.assert_array_equal(
            buf[np.arange(len(buf))][key], again[np.arange(len(again))][key]
        )
    size = buf.maxsize // n
    for env in range(n):
        rows = np.arange(env * size, env * size + 40)
        batch = buf[rows]
        np.testing.assert_array_equal(batch.info.env_id, env)
        assert batch.info.scri.obs.shape == (40, 3, batch.info.scri.obs.shape[-1])
        cont = ~(batch.terminated | batch.truncated)[:-1]
        np.testing.assert_array_equal(
            batch.obs_next.candidates[:-1][cont], batch.obs.candidates[1:][cont]
        )
        np.testing.assert_array_equal(
            batch.obs_next.user_id[:-1][cont], batch.obs.user_id[1:][cont]
        )


# ---------------------------------------------------------------------- fast paths (issue 10)
# Each fast path of the env's hot loop claims the exact result of the plain numpy it replaced;
# these compare them on inputs with the awkward cases (ties, -0.0, repeats, empty rows).


def _replace_duplicates_reference(cand: np.ndarray, n_items: int, rng) -> np.ndarray:
    """The former implementation: stable argsorts over every still-active row."""
    cand = cand.copy()
    active = np.arange(cand.shape[0])
    for _ in range(100):
        sub = cand[active]
        order = np.argsort(sub, axis=1, kind="stable")
        s = np.take_along_axis(sub, order, axis=1)
        dup_sorted = np.zeros(s.shape, dtype=bool)
        dup_sorted[:, 1:] = s[:, 1:] == s[:, :-1]
        if not dup_sorted.any():
            return cand
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        sub[dup] = rng.integers(0, n_items, int(dup.sum()))
        cand[active] = sub
        active = active[dup.any(axis=1)]
    raise RuntimeError("no distinct rows")


def test_candidate_fast_paths_draw_what_searchsorted_and_argsort_drew() -> None:
    from recgym.simulators.candidates import CandidateGenerator, _replace_duplicates
    from recgym.simulators.world import World, WorldConfig

    world = World(WorldConfig(**WORLD))
    generator = CandidateGenerator(catalogue=world.catalogue, n_candidates=12)
    u = np.random.default_rng(0).random((64, 40))
    u[0, :4] = [0.0, generator._pop_cdf[0], generator._pop_cdf[5], np.nextafter(1.0, 0.0)]
    np.testing.assert_array_equal(generator._popular(u), np.searchsorted(generator._pop_cdf, u))
    cand = np.random.default_rng(1).integers(0, 20, (50, 12))  # many repeats per row
    cand[0] = 7  # a row of one item
    fast = _replace_duplicates(cand, 300, np.random.default_rng(2))
    np.testing.assert_array_equal(
        fast, _replace_duplicates_reference(cand, 300, np.random.default_rng(2))
    )
    assert all(len(set(row)) == 12 for row in fast.tolist())


def test_top_scores_is_the_stable_argsort_of_the_negated_scores() -> None:
    from recgym.envs.session import top_scores

    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (40, 50)).astype(np.float32)
    scores[0] = 0.5  # all tied
    scores[1] = -np.abs(scores[1])  # the zeros below are the row's highest scores
    scores[1, :10] = -0.0
    scores[1, 10:20] = 0.0  # -0.0 ties with 0.0, as in argsort
    scores[2, ::3] = np.float32(1e-38)  # subnormal-ish and tiny values
    scores[3] = rng.integers(-2, 3, 50)  # few distinct values
    for s in (scores, scores.astype(np.float64)):  # float64 holding float32 values: fast path
        expected = np.argsort(-np.asarray(s, np.float64), axis=1, kind="stable")[:, :6]
        np.testing.assert_array_equal(top_scores(s, 6), expected)
    wide = rng.normal(size=(40, 50))  # float64 a float32 cannot hold: the argsort itself
    np.testing.assert_array_equal(
        top_scores(wide, 6), np.argsort(-wide, axis=1, kind="stable")[:, :6]
    )


def test_add_at_and_gather_equal_numpy_fancy_indexing() -> None:
    from recgym.simulators.arrays import add_at, gather

    rng = np.random.default_rng(0)
    target = rng.random((30, 7)) * 1e-3  # non-integer sums: the order of additions shows
    rows, cols = rng.integers(0, 30, 500), rng.integers(0, 7, 500)  # many repeats
    expected = target.copy()
    np.add.at(expected, (rows, cols), 0.1)
    add_at(target, (rows, cols), 0.1)
    np.testing.assert_array_equal(target, expected)
    counts = rng.random((30, 7, 3)).astype(np.float32)
    values = rng.random((500, 3)).astype(np.float32)
    expected = counts.copy()
    np.add.at(expected, (rows, cols), values)
    add_at(counts, (rows, cols), values)
    np.testing.assert_array_equal(counts, expected)
    strided = np.zeros((7, 30)).T  # not C-contiguous: np.add.at itself
    add_at(strided, (rows, cols), 1.0)
    np.testing.assert_array_equal(
        strided, np.bincount(rows * 7 + cols, minlength=210).reshape(30, 7)
    )
    table = rng.random((30, 7))
    np.testing.assert_array_equal(
        gather(table, rows[:, None], cols[None, :3]), table[rows[:, None], cols[None, :3]]
    )
    np.testing.assert_array_equal(gather(table.T, cols, rows), table.T[cols, rows])
