"""API tests over every registered recgym env: check_env, determinism, pickling, vector envs,
paired random streams, invalid actions."""

from __future__ import annotations

import functools
import pickle

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import recgym  # noqa: F401  (registers the envs)
from recgym.envs import ENV_IDS, make_env

SMALL_WORLD = {"n_users": 60, "n_items": 300, "n_authors": 30}
ENV_KWARGS = {eid: {"world_config": SMALL_WORLD} for eid in ENV_IDS}
LEARNED_ENV_IDS = sorted(set(ENV_IDS) - {"recgym/MultiScenario-v0"})
"""Envs that run on a KuaiRand-trained simulator checkpoint (MultiScenario-v0 needs a backend
that models the scenario switch; tests/test_multi_scenario.py checks its refusal)."""
SCORE_ENV_IDS = sorted(set(ENV_IDS) - {"recgym/MTFSession-v0", "recgym/InterestAllocation-v0"})
"""Envs acting with candidate scores / an index (MTFSession-v0 acts with fusion vectors and has
its own observation columns: tests/test_mtf.py covers its observation and invalid actions)."""


def flat(obs: dict) -> np.ndarray:
    """Every entry of an observation dict, in key order, as one float64 vector."""
    return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in sorted(obs)])


def rollout(env: gym.Env, seed: int, steps: int = 40) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [(flat(obs), info["user_id"])]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((flat(obs), r, term, trunc, tuple(info["slate"])))
        if term or trunc:
            obs, info = env.reset()
            out.append((flat(obs), info["user_id"]))
    return out


def same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        all(np.array_equal(x, y) for x, y in zip(p, q, strict=True))
        for p, q in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_check_env_passes(env_id: str) -> None:
    env = gym.make(env_id, **ENV_KWARGS[env_id])
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_same_seed_same_episode(env_id: str) -> None:
    a = rollout(gym.make(env_id, **ENV_KWARGS[env_id]), seed=5)
    b = rollout(gym.make(env_id, **ENV_KWARGS[env_id]), seed=5)
    c = rollout(gym.make(env_id, **ENV_KWARGS[env_id]), seed=6)
    assert same(a, b)
    assert not same(a, c)


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_reseeding_an_used_env_replays_the_episode(env_id: str) -> None:
    env = gym.make(env_id, **ENV_KWARGS[env_id])
    first = rollout(env, seed=9)
    assert same(first, rollout(env, seed=9))


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_pickle_round_trip_continues_identically(env_id: str) -> None:
    env = gym.make(env_id, **ENV_KWARGS[env_id])
    env.reset(seed=1)
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    a = env.step(action)
    b = clone.step(action)
    assert np.array_equal(flat(a[0]), flat(b[0])) and a[1:4] == b[1:4]


@pytest.fixture
def learned_kwargs(tiny_checkpoint) -> dict:
    return {"backend": "learned", "checkpoint": str(tiny_checkpoint)}


@pytest.mark.parametrize("env_id", LEARNED_ENV_IDS)
def test_learned_backend_passes_the_same_api_checks(env_id: str, learned_kwargs: dict) -> None:
    """check_env, same seed -> same episode, and pickling, on a learned-simulator checkpoint."""
    env = gym.make(env_id, **learned_kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    a = rollout(gym.make(env_id, **learned_kwargs), seed=5)
    b = rollout(gym.make(env_id, **learned_kwargs), seed=5)
    assert same(a, b)
    env.reset(seed=2)
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    x, y = env.step(action), clone.step(action)
    assert np.array_equal(flat(x[0]), flat(y[0])) and x[1:4] == y[1:4]


def test_learned_backend_in_a_subproc_vector_env(learned_kwargs: dict) -> None:
    from tianshou.env import SubprocVectorEnv

    # spawn, not fork: a child forked after torch ran in the parent can deadlock in its
    # OpenMP pool (the learned simulator runs torch); spawn is the safe choice for users too
    venv = SubprocVectorEnv([functools.partial(make_env, **learned_kwargs)] * 2, context="spawn")
    try:
        venv.seed(4)
        obs, _ = venv.reset()
        acts = np.stack([sp.sample() for sp in venv.action_space])
        obs, rew, *_ = venv.step(acts)
        assert len(obs) == 2 and np.isfinite(rew).all()
    finally:
        venv.close()


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
@pytest.mark.parametrize("kind", ["dummy", "subproc"])
def test_tianshou_vector_envs(kind: str, env_id: str) -> None:
    from tianshou.env import DummyVectorEnv, SubprocVectorEnv

    fns = [functools.partial(make_env, env_id, **ENV_KWARGS[env_id])] * 2
    venv = DummyVectorEnv(fns) if kind == "dummy" else SubprocVectorEnv(fns)
    try:
        venv.seed(3)
        obs, _ = venv.reset()
        assert len(obs) == 2
        acts = np.stack([sp.sample() for sp in venv.action_space])
        obs, rew, term, trunc, infos = venv.step(acts)
        assert len(obs) == 2 and rew.shape == (2,)
        assert venv.observation_space[0].contains(obs[0])
    finally:
        venv.close()


def test_slate_is_top_scores_and_reward_is_weighted_behaviours() -> None:
    env = gym.make(
        "recgym/Session-v0",
        world_config=SMALL_WORLD,
        reward_weights={"click": 1.0, "watch_ms": 0.0},
    )
    _, info = env.reset(seed=0)
    scores = np.linspace(-1, 1, 50).astype(np.float32)
    _, reward, *_, step_info = env.step(scores)
    assert np.array_equal(step_info["slate"], info["candidates"][::-1][:6])
    assert reward == step_info["responses"]["click"].sum()


def test_discrete_mode_shows_one_item() -> None:
    env = gym.make("recgym/Session-v0", world_config=SMALL_WORLD, action_mode="discrete")
    _, info = env.reset(seed=0)
    *_, step_info = env.step(7)
    assert list(step_info["slate"]) == [info["candidates"][7]]


def test_episode_ends_by_leaving_or_by_max_steps() -> None:
    env = gym.make("recgym/Session-v0", world_config=SMALL_WORLD, max_steps=3)
    env.reset(seed=0)
    ends = []
    for _ in range(200):
        *_, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            ends.append((term, trunc, env.unwrapped._steps))
            env.reset()
    assert any(t for t, _, _ in ends) and any(tr for _, tr, _ in ends)
    assert all(steps == 3 for _, tr, steps in ends if tr)
    assert not any(t and tr for t, tr, _ in ends)


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match="action_mode"):
        gym.make("recgym/Session-v0", world_config=SMALL_WORLD, action_mode="nope")
    with pytest.raises(ValueError, match="behaviours"):
        gym.make("recgym/Session-v0", world_config=SMALL_WORLD, reward_weights={"purchase": 1})
    with pytest.raises(ValueError, match="checkpoint"):
        gym.make("recgym/Session-v0", backend="learned")


# --------------------------------------------------------------------------- the Dict observation
@pytest.mark.parametrize("env_id", SCORE_ENV_IDS)
def test_observation_is_the_contract_dict_with_catalogue_ids(env_id: str) -> None:
    from recgym.envs.contract import FlattenCandidates, flatten_observation

    env = make_env(env_id, **ENV_KWARGS[env_id])
    base = env.unwrapped
    obs, info = env.reset(seed=2)
    assert env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs["item_id"], info["candidates"])
    np.testing.assert_array_equal(obs["author_id"], base.catalogue.author[info["candidates"]])
    np.testing.assert_array_equal(obs["category_id"], base.catalogue.category[info["candidates"]])
    assert obs["user_id"].tolist() == [info["user_id"]]
    assert (obs["mask"] == 1).all() and obs["mask"].dtype == np.int8
    wrapped = FlattenCandidates(make_env(env_id, **ENV_KWARGS[env_id]))
    flat_obs, _ = wrapped.reset(seed=2)
    assert wrapped.observation_space.contains(flat_obs)
    np.testing.assert_array_equal(flat_obs, flatten_observation(obs))
    n_user = base.model.user_feature_dim
    np.testing.assert_array_equal(flat_obs[:n_user], obs["user"])
    np.testing.assert_array_equal(flat_obs[n_user + 4 :], obs["candidates"].ravel())


# --------------------------------------------------------------------------- paired streams
class _FirstK:
    """Shows the first candidates (scores by position): a policy unlike random scores."""

    def act(self, obs: dict) -> np.ndarray:
        return np.linspace(1.0, -1.0, len(obs["mask"])).astype(np.float32)


def _sessions(env_id: str, policy, seed: int, episodes: int = 12) -> tuple[list[int], list]:
    from recgym.envs.evaluation import run_sessions

    env = make_env(env_id, **ENV_KWARGS[env_id], max_steps=15)
    users = []
    original_reset = env.reset

    def reset(**kwargs):
        obs, info = original_reset(**kwargs)
        users.append(info["user_id"])
        return obs, info

    env.reset = reset  # type: ignore[method-assign]
    return users, run_sessions(policy, env, episodes, seed)


@pytest.mark.parametrize("env_id", SCORE_ENV_IDS)
def test_two_policies_meet_the_same_users_in_the_same_order(env_id: str) -> None:
    from recgym.agents.baselines import RandomPolicy

    users_a, totals_a = _sessions(env_id, RandomPolicy(seed=1), seed=7)
    users_b, totals_b = _sessions(env_id, _FirstK(), seed=7)
    assert users_a == users_b
    # the policies did play different sessions (lengths or watch time differ somewhere)
    assert [t["requests"] for t in totals_a] != [t["requests"] for t in totals_b] or [
        t["watch_s"] for t in totals_a
    ] != [t["watch_s"] for t in totals_b]
    users_c, _ = _sessions(env_id, RandomPolicy(seed=1), seed=8)
    assert users_c != users_a


def test_identical_policies_give_zero_paired_difference() -> None:
    from recgym.agents.baselines import RandomPolicy
    from recgym.envs.evaluation import evaluate

    def env_fn(seed: int) -> gym.Env:
        return make_env("recgym/Session-v0", **ENV_KWARGS["recgym/Session-v0"], max_steps=10)

    a = evaluate(RandomPolicy(seed=3), env_fn, episodes=4, seeds=(0, 1))
    b = evaluate(RandomPolicy(seed=3), env_fn, episodes=4, seeds=(0, 1))
    for metric in a:
        diff = np.subtract(a[metric]["per_seed"], b[metric]["per_seed"])
        assert (diff == 0).all(), metric


def test_user_option_keeps_the_user_sequence_paired() -> None:
    env = make_env("recgym/Session-v0", **ENV_KWARGS["recgym/Session-v0"])
    other = make_env("recgym/Session-v0", **ENV_KWARGS["recgym/Session-v0"])
    env.reset(seed=4)
    other.reset(seed=4, options={"user": 0})
    assert [env.reset()[1]["user_id"] for _ in range(5)] == [
        other.reset()[1]["user_id"] for _ in range(5)
    ]


# --------------------------------------------------------------------------- invalid actions
@pytest.mark.parametrize("env_id", SCORE_ENV_IDS)
@pytest.mark.parametrize(
    ("mode", "action", "match"),
    [
        ("discrete", 999, "outside Discrete"),
        ("discrete", -1, "outside Discrete"),
        ("discrete", np.array([1, 2]), "one candidate index"),
        ("discrete", 2.5, "integer"),
        ("scores", np.zeros(49, dtype=np.float32), r"shape \(50,\)"),
        ("scores", np.zeros((2, 50), dtype=np.float32), r"shape \(50,\)"),
        ("scores", 3, r"shape \(50,\)"),
        ("scores", np.full(50, np.nan, dtype=np.float32), "finite"),
        ("scores", np.r_[np.zeros(49), np.inf].astype(np.float32), "finite"),
    ],
)
def test_invalid_actions_raise_value_errors_naming_the_env(
    env_id: str, mode: str, action, match: str
) -> None:
    env = make_env(env_id, **ENV_KWARGS[env_id], action_mode=mode)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match) as err:
        env.step(action)
    assert env_id in str(err.value)


def test_valid_discrete_actions_of_any_integer_kind_are_accepted() -> None:
    env = make_env("recgym/Session-v0", **ENV_KWARGS["recgym/Session-v0"], action_mode="discrete")
    env.reset(seed=0)
    for action in (3, np.int64(3), np.array(3), np.array([3]), 3.0):
        assert len(env.step(action)[4]["slate"]) == 1
