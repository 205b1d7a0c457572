"""recgym/MultiScenario-v0: API checks, the cross-scenario sequence, scenarios and queries,
rewards, invalid actions and the native vector env."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from recgym.data.writers import KEYWORD_TOKEN_BASE
from recgym.envs.multi_scenario import (
    ENV_ID,
    PAPER_REWARD,
    MultiScenarioEnv,
    multi_scenario_vector_env,
)
from recgym.simulators.protocol import REC, SEARCH

SMALL = {"n_users": 60, "n_items": 300, "n_authors": 30}


def flat(obs: dict) -> np.ndarray:
    return np.concatenate([np.asarray(obs[k], dtype=np.float64).ravel() for k in sorted(obs)])


def rollout(env, seed: int, steps: int = 60) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [flat(obs)]
    for _ in range(steps):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        out.append(np.r_[flat(obs), r, term, trunc])
        if term or trunc:
            obs, _ = env.reset()
            out.append(flat(obs))
    return out


def test_check_env_determinism_and_pickle():
    env = MultiScenarioEnv(world_config=SMALL)
    check_env(env, skip_render_check=True)
    a = rollout(MultiScenarioEnv(world_config=SMALL), 3)
    b = rollout(MultiScenarioEnv(world_config=SMALL), 3)
    c = rollout(MultiScenarioEnv(world_config=SMALL), 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len(a) != len(c) or not all(np.array_equal(x, y) for x, y in zip(a, c, strict=False))
    env.reset(seed=1)
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(5):
        action = env.action_space.sample()
        x, y = env.step(action), clone.step(action)
        assert np.array_equal(flat(x[0]), flat(y[0])) and x[1:4] == y[1:4]


def test_sequence_records_clicks_with_their_scenario_and_responses():
    env = MultiScenarioEnv(world_config=SMALL, max_steps=200)
    obs, info = env.reset(seed=0)
    seen_search = False
    for _ in range(60):
        scenario = int(obs["scenario"][0])
        obs, _, term, trunc, step = env.step(env.action_space.sample())
        clicked = step["slate"][step["responses"]["click"]]
        if len(clicked):
            n = len(clicked)
            tail = slice(env.mdp.seq_len - n, None)
            np.testing.assert_array_equal(obs["seq_item"][tail], clicked[-env.mdp.seq_len :])
            assert (obs["seq_scenario"][tail] == scenario).all()
            assert (obs["seq_response"][tail, 0] == 1).all()
            seen_search |= scenario == SEARCH
        valid = obs["seq_item"] >= 0
        assert (obs["seq_scenario"][~valid] == -1).all() and (
            obs["seq_response"][~valid] == 0
        ).all()
        assert (np.diff(valid.astype(int)) >= 0).all()  # left-padded, newest last
        if term or trunc:
            obs, _ = env.reset()
    assert seen_search


def test_search_requests_carry_a_query_and_candidates_of_its_category():
    env = MultiScenarioEnv(world_config=SMALL, max_steps=200)
    obs, info = env.reset(seed=2)
    searches = 0
    for _ in range(80):
        if obs["scenario"][0] == SEARCH:
            searches += 1
            category = obs["query"][0] - KEYWORD_TOKEN_BASE
            assert category == info["query_category"] and 0 <= obs["query"][1] < KEYWORD_TOKEN_BASE
            in_category = int((env.unwrapped.catalogue.category == category).sum())
            assert (obs["category_id"] == category).sum() >= min(in_category, 5)
        else:
            assert obs["scenario"][0] == REC and (obs["query"] == -1).all()
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            obs, info = env.reset()
    assert searches >= 5


def test_reward_is_the_papers_weighted_behaviours():
    env = MultiScenarioEnv(world_config=SMALL)
    env.reset(seed=0)
    for _ in range(20):
        _, reward, term, trunc, info = env.step(env.action_space.sample())
        r = info["responses"]
        expected = sum(w * r[b].sum() for b, w in PAPER_REWARD.items())
        assert reward == pytest.approx(expected)
        if term or trunc:
            env.reset()
    custom = MultiScenarioEnv(world_config=SMALL, reward_weights={"click": 1.0})
    custom.reset(seed=0)
    _, reward, *_, info = custom.step(custom.action_space.sample())
    assert reward == info["responses"]["click"].sum()
    with pytest.raises(ValueError, match=ENV_ID):
        MultiScenarioEnv(world_config=SMALL, reward_weights={"applause": 1.0})


@pytest.mark.parametrize(
    ("mode", "action", "match"),
    [
        ("discrete", 999, "outside Discrete"),
        ("discrete", 2.5, "integer"),
        ("scores", np.zeros(49, dtype=np.float32), r"shape \(50,\)"),
        ("scores", np.full(50, np.nan, dtype=np.float32), "finite"),
    ],
)
def test_invalid_actions_raise_value_errors_naming_the_env(mode, action, match):
    env = MultiScenarioEnv(world_config=SMALL, action_mode=mode)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match) as err:
        env.step(action)
    assert ENV_ID in str(err.value)


def test_discrete_mode_is_next_item():
    env = MultiScenarioEnv(world_config=SMALL, action_mode="discrete")
    obs, info = env.reset(seed=0)
    _, _, _, _, step = env.step(7)
    assert step["slate"].tolist() == [info["candidates"][7]]


def test_a_backend_without_scenarios_is_refused_by_name():
    from recgym.simulators.world import World, WorldConfig

    world = World(WorldConfig(**SMALL))
    world.next_scenario = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match=f"{ENV_ID}.*next_scenario"):
        MultiScenarioEnv(backend=world)


def test_one_slot_vector_env_replays_the_single_env_and_n_slots_step_together():
    single = MultiScenarioEnv(world_config=SMALL)
    vec = multi_scenario_vector_env(num_envs=1, world_config=SMALL)
    obs_s, _ = single.reset(seed=5)
    obs_v, _ = vec.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(15):
        a = rng.uniform(-1, 1, 50).astype(np.float32)
        s = single.step(a)
        v = vec.step(a[None])
        if s[2] or s[3]:
            break
        np.testing.assert_array_equal(flat(s[0]), flat({k: x[0] for k, x in v[0].items()}))
        assert s[1] == v[1][0]
    many = multi_scenario_vector_env(num_envs=4, world_config=SMALL)
    obs, _ = many.reset(seed=1)
    assert obs["seq_item"].shape == (4, 20) and obs["scenario"].shape == (4, 1)
    for _ in range(10):
        obs, reward, *_ = many.step(many.action_space.sample())
    assert many.observation_space.contains(obs)


@pytest.fixture(scope="module")
def scenario_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny learned simulator with a ScenarioModel fitted on the same world's logs written
    in KuaiSAR's schema (conftest's tiny world and log config: the same logs)."""
    import shutil

    from recgym.simulators.generate import generate
    from recgym.simulators.learned import LearnedSimulator
    from recgym.simulators.learned.scenario import fit_scenario_model
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    from .conftest import TINY_WORLD

    root = tmp_path_factory.mktemp("scenario")
    generate(root / "sar", WorldConfig(**TINY_WORLD), LogConfig(days=4, seed=11), "kuaisar", False)
    ckpt = root / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    sim = LearnedSimulator.load(ckpt, device="cpu")
    model = fit_scenario_model(root / "sar", sim.catalogue, sim.item_ids, sim.user_ids)
    model.save(ckpt)
    return ckpt, model


def test_learned_switch_rises_with_the_feed_run_as_in_the_world(scenario_checkpoint):
    """Fitted on world logs, the switch table shows the world's mechanism: after a search that
    found something, the chance of a search grows with the feed requests since."""
    _, model = scenario_checkpoint
    p = np.asarray(model.p_search)
    assert p.shape == (5, 3) and ((p > 0) & (p < 1)).all()
    assert p[4, 2] > p[0, 2] + 0.1, p[:, 2]


def test_learned_backend_passes_the_api_checks(scenario_checkpoint):
    ckpt, _ = scenario_checkpoint
    env = MultiScenarioEnv(backend="learned", checkpoint=str(ckpt))
    check_env(env, skip_render_check=True)
    a = rollout(MultiScenarioEnv(backend="learned", checkpoint=str(ckpt)), 3, steps=25)
    b = rollout(MultiScenarioEnv(backend="learned", checkpoint=str(ckpt)), 3, steps=25)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    env.reset(seed=1)
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    x, y = env.step(action), clone.step(action)
    assert np.array_equal(flat(x[0]), flat(y[0])) and x[1:4] == y[1:4]
    scenarios = [o[flat_index_of_scenario(env)] for o in a]
    assert 0 < np.mean(scenarios) < 1  # both scenarios occur


def flat_index_of_scenario(env) -> int:
    """Index of the "scenario" entry in `flat` (keys in sorted order)."""
    offset = 0
    for key in sorted(env.observation_space.spaces):
        if key == "scenario":
            return offset
        offset += int(np.prod(env.observation_space[key].shape))
    raise KeyError("scenario")


def test_learned_backend_without_a_scenario_model_is_refused_by_name(tiny_checkpoint):
    with pytest.raises(ValueError, match=f"{ENV_ID}.*scenario.json"):
        MultiScenarioEnv(backend="learned", checkpoint=str(tiny_checkpoint))
