"""`recgym/UserAuthor-v0`: UA counters, SCRI transitions in info, agreement with ASA over its log.

The API checks every env gets (check_env, determinism, pickling, vector envs, the learned
backend) run over the registry in test_envs.py.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import recgym  # noqa: F401  (registers the envs)
from recgym.data.asa import asa_samples
from recgym.data.schema import Dataset, LoadReport
from recgym.envs.contract import UA_AUTHOR_COLUMNS, candidate_columns
from recgym.envs.session import CANDIDATE_FEATURES
from recgym.envs.user_author import UA_CANDIDATE_FEATURES, UserAuthorEnv, candidate_states
from recgym.simulators import scri
from recgym.simulators.world import Dynamics, World, WorldConfig

ENV_ID = "recgym/UserAuthor-v0"
SMALL_WORLD = {"n_users": 60, "n_items": 300, "n_authors": 30}


def make(**kwargs) -> UserAuthorEnv:
    kwargs.setdefault("world_config", SMALL_WORLD)
    return gym.make(ENV_ID, **kwargs).unwrapped


def run(env: UserAuthorEnv, steps: int, seed: int) -> list[dict]:
    """Random slates for `steps` requests (resets without a seed in between); per step the
    info["scri"] arrays plus the responses."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    out = []
    for _ in range(steps):
        *_, term, trunc, info = env.step(env.action_space.sample())
        out.append({**info["scri"], "responses": info["responses"]})
        if term or trunc:
            env.reset()
    return out


def test_scri_transitions_are_what_asa_computes_from_the_envs_own_log() -> None:
    # few users: many returning sessions; follows made common (they are ~1/1000 views by
    # default) so the follow counter is exercised under any random draws
    world = World(WorldConfig(**SMALL_WORLD), Dynamics(follow_bias=-4.0))
    env = make(backend=world, users=np.array([0, 1, 2]), max_steps=6)
    steps = run(env, steps=90, seed=3)
    k = len(steps[0]["item"])
    cat = env.catalogue

    def col(name: str) -> np.ndarray:
        return np.concatenate([np.asarray(s["responses"][name]) for s in steps])

    log = pd.DataFrame(
        {
            "user_id": np.concatenate([s["user"] for s in steps]),
            "item_id": np.concatenate([s["item"] for s in steps]),
            "timestamp": np.arange(len(steps) * k) * 1000,  # display order = time order
            "is_click": col("click").astype(np.int8),
            "long_view": col("long_view").astype(np.int8),
            "play_time_ms": col("watch_ms").astype(np.int64),
            "is_follow": col("follow").astype(np.int8),
            "is_comment": col("comment").astype(np.int8),
            "is_gift": col("gift").astype(np.int8),
        }
    )
    dataset = Dataset(
        format="kuairand",
        source=Path("env-rollout"),
        interactions=log,
        users=env.model.user_table(),
        items=pd.DataFrame({"item_id": np.arange(cat.n_items), "author_id": cat.author}),
        report=LoadReport(),
    )
    samples = asa_samples(dataset, backend=env.model)
    b = samples.buffer[np.arange(len(samples.buffer))]
    assert samples.tasks == env.tasks == scri.TASKS
    assert log["is_follow"].sum() > 0 and (log["is_click"] > 0).mean() > 0.1

    # the env's transitions in the buffer's (user, time) order
    env_rows = {key: np.concatenate([s[key] for s in steps]) for key in scri_keys()}
    order = np.lexsort((np.arange(len(log)), env_rows["user"]))
    np.testing.assert_array_equal(b.info.user, env_rows["user"][order])
    np.testing.assert_array_equal(b.act, env_rows["item"][order])
    np.testing.assert_array_equal(b.info.author, env_rows["author"][order])
    np.testing.assert_array_equal(b.obs, env_rows["obs"][order])
    np.testing.assert_array_equal(b.obs_next, env_rows["obs_next"][order])
    np.testing.assert_array_equal(b.info.rewards, env_rows["rewards"][order])
    # f_u from the world's user table, as ASA reads a log without a backend: the same
    plain = asa_samples(dataset).buffer
    ud = env.user_dim
    np.testing.assert_array_equal(plain.obs[:, :ud], b.obs[:, :ud])
    np.testing.assert_array_equal(plain.obs[:, -6:], b.obs[:, -6:])
    # some pair came back across sessions with its counters intact
    counters = env_rows["obs"][:, -len(scri.UA_COUNTERS) :]
    assert (counters[:, scri.UA_COUNTERS.index("clicks")] >= 3).any()


def scri_keys() -> tuple[str, ...]:
    return ("user", "author", "item", "obs", "obs_next", "rewards")


def test_two_items_of_one_author_in_a_slate_are_processed_in_display_order() -> None:
    env = make(slate_size=4)
    _, info = env.reset(seed=0)
    authors = env.catalogue.author[info["candidates"]]
    values, counts = np.unique(authors, return_counts=True)
    twice = values[counts >= 2][0]
    first, second = np.flatnonzero(authors == twice)[:2]
    scores = np.full(env.n_candidates, -1.0, dtype=np.float32)
    scores[[first, second]] = [1.0, 0.9]  # shown at slots 0 and 1
    *_, info = env.step(scores)
    s = info["scri"]
    assert s["author"][0] == s["author"][1] == twice
    assert s["obs"][1, -1] > s["obs"][0, -1]  # the first item's watch seconds already count
    np.testing.assert_array_equal(s["obs"][1], s["obs_next"][0])
    second_responses = {name: np.asarray(v)[1] for name, v in info["responses"].items()}
    np.testing.assert_array_equal(
        s["obs_next"][1, -6:], scri.asa_next_counters(s["obs"][1, -6:], second_responses)
    )
    stored = env.ua_counters.lookup(int(s["user"][0]), [twice])[0]
    np.testing.assert_array_equal(stored, s["obs_next"][1, -6:])


def test_counters_persist_across_sessions_and_a_seeded_reset_clears_them() -> None:
    env = make(users=np.array([7]), max_steps=3)
    env.reset(seed=1)
    env.action_space.seed(1)
    done = False
    while not done:
        *_, term, trunc, info = env.step(env.action_space.sample())
        done = term or trunc
    met = info["scri"]["author"]
    before = env.ua_counters.lookup(7, met)
    assert before[:, -1].sum() > 0  # watch seconds at least
    obs, info = env.reset()  # the same user's next session
    np.testing.assert_array_equal(env.ua_counters.lookup(7, met), before)
    states = candidate_states(obs)
    exact = env.states(7, obs["item_id"])
    np.testing.assert_array_equal(states[:, :-1], exact[:, :-1])
    np.testing.assert_allclose(states[:, -1], exact[:, -1], rtol=1e-5)
    # the next session's first transition of a known author starts from the stored counters
    *_, info = env.step(env.action_space.sample())
    s = info["scri"]
    known = np.isin(s["author"], met)
    first_of = {a: i for i, a in reversed(list(enumerate(s["author"])))}
    for a in set(s["author"][known].tolist()):
        i = first_of[a]
        np.testing.assert_array_equal(s["obs"][i, -6:], before[list(met).index(a)])
    assert len(env.ua_counters) > 0
    obs, _ = env.reset(seed=1)
    assert len(env.ua_counters) == 0
    assert (obs["candidates"][:, -6:] == 0).all()


def test_observation_extends_the_session_observation() -> None:
    ua = make()
    session = gym.make("recgym/Session-v0", world_config=SMALL_WORLD).unwrapped
    obs, info = ua.reset(seed=4)
    base, _ = session.reset(seed=4)
    assert obs["candidates"].shape == ua.observation_space["candidates"].shape == (50, 16)
    assert len(UA_CANDIDATE_FEATURES) == 16
    n_c = len(CANDIDATE_FEATURES)
    for key in ("user", "context", "item_id", "author_id", "category_id", "mask", "user_id"):
        np.testing.assert_array_equal(obs[key], base[key])
    np.testing.assert_array_equal(obs["candidates"][:, :n_c], base["candidates"])
    authors = ua.catalogue.author[info["candidates"]]
    f_a = scri.author_features(ua.catalogue)[authors]
    np.testing.assert_array_equal(candidate_columns(obs, UA_AUTHOR_COLUMNS), f_a)
    # after a step the observed counters are those after the request (the table's)
    for _ in range(5):
        obs, *_, info = ua.step(ua.action_space.sample())
    exact = ua.states(int(obs["user_id"][0]), obs["item_id"])
    got = candidate_states(obs)
    assert (exact[:, -6:] > 0).any()
    np.testing.assert_array_equal(got[:, :-1], exact[:, :-1])
    np.testing.assert_allclose(got[:, -1], exact[:, -1], rtol=1e-5)
    # a batch of observations (stacked entries) gives a batch of states
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert candidate_states(batch).shape == (2, 50, ua.state_dim)
    with pytest.raises(ValueError, match="no \\['clicks'\\]|have no"):
        candidate_columns(base, ["log1p_clicks"])  # Session-v0 rows have no UA columns


def test_learned_backend_has_no_gift_task_and_runs(tiny_checkpoint: Path) -> None:
    env = make(backend="learned", checkpoint=str(tiny_checkpoint), world_config=None)
    assert env.tasks == ("click", "watch_time", "follow")
    steps = run(env, steps=25, seed=2)
    rewards = np.concatenate([s["rewards"] for s in steps])
    assert rewards.shape[1] == len(scri.TASKS)
    assert (rewards[:, scri.TASKS.index("gift")] == 0).all()
    assert rewards[:, scri.TASKS.index("watch_time")].sum() > 0
    obs = np.concatenate([s["obs"] for s in steps])
    f_u = obs[:, : env.user_dim]
    users = np.concatenate([s["user"] for s in steps])
    np.testing.assert_array_equal(f_u, env.model.user_features(users))
    assert all(s["tasks"] == env.tasks for s in steps)
