"""API tests over every registered recgym env: check_env, determinism, pickling, vector envs."""

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


def rollout(env: gym.Env, seed: int, steps: int = 40) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [(obs.copy(), info["user_id"])]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out.append((obs.copy(), r, term, trunc, tuple(info["slate"])))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs.copy(), info["user_id"]))
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
    assert np.array_equal(a[0], b[0]) and a[1:4] == b[1:4]


@pytest.fixture
def learned_kwargs(tiny_checkpoint) -> dict:
    return {"backend": "learned", "checkpoint": str(tiny_checkpoint)}


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
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
    assert np.array_equal(x[0], y[0]) and x[1:4] == y[1:4]


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
        assert obs.shape[0] == 2 and np.isfinite(rew).all()
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
        assert obs.shape[0] == 2
        acts = np.stack([sp.sample() for sp in venv.action_space])
        obs, rew, term, trunc, infos = venv.step(acts)
        assert obs.shape[0] == 2 and rew.shape == (2,)
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
