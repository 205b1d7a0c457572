"""Reference policies on hand-built Dict observations, on the world's truth, and on a real env."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from recgym.agents.references import (
    REFERENCE_NAMES,
    ClickOracle,
    DurationDiversity,
    LongestFirst,
    PatienceOracle,
    rankers_from_model,
    reference_panel,
)
from recgym.envs.contract import CANDIDATE_FEATURES, SESSION_FEATURES
from recgym.simulators import oracle as truth_rules
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.world import World, WorldConfig

WORLD = WorldConfig(n_users=40, n_items=300, n_authors=30, seed=5)


def hand_obs(log_duration, category, mask=None, items=None, user=0) -> dict[str, np.ndarray]:
    """A Session-v0 observation dict with the given candidate durations and categories."""
    n = len(log_duration)
    cands = np.zeros((n, len(CANDIDATE_FEATURES)), dtype=np.float32)
    cands[:, CANDIDATE_FEATURES.index("log_duration")] = log_duration
    cands[:, CANDIDATE_FEATURES.index("log_popularity")] = np.linspace(1, -1, n)  # a decoy
    return {
        "user": np.zeros(23, dtype=np.float32),
        "context": np.zeros(len(SESSION_FEATURES), dtype=np.float32),
        "candidates": cands,
        "item_id": np.arange(n, dtype=np.int64) if items is None else np.asarray(items),
        "author_id": np.zeros(n, dtype=np.int64),
        "category_id": np.asarray(category, dtype=np.int64),
        "mask": np.ones(n, dtype=np.int8) if mask is None else np.asarray(mask, dtype=np.int8),
        "user_id": np.array([user], dtype=np.int64),
    }


def shown(scores: np.ndarray, k: int) -> list[int]:
    """The candidate indices a Box action shows, best first (the env's rule)."""
    return np.argsort(-np.asarray(scores), kind="stable")[:k].tolist()


# --------------------------------------------------------------------------- rules
def test_longest_first_ranks_by_the_duration_column_and_skips_masked():
    obs = hand_obs([0.2, 0.9, 0.5, 0.7, 0.1], [0, 1, 2, 3, 4])
    box = spaces.Box(-1, 1, (5,))
    scores = LongestFirst(box).act(obs)
    assert box.contains(scores)
    assert shown(scores, 5) == [1, 3, 2, 0, 4]
    obs["mask"][1] = 0  # the longest is not a valid candidate
    assert shown(LongestFirst(box).act(obs), 2) == [3, 2]
    assert shown(LongestFirst().act(obs), 5)[-1] == 1  # None: scores too
    assert LongestFirst(spaces.Discrete(5)).act(obs) == 3
    assert LongestFirst.reads_hidden_state is False


def test_duration_diversity_takes_each_category_s_longest_first():
    # durations fall with the index; categories 0,0,1,1,2,3
    obs = hand_obs([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0, 0, 1, 1, 2, 3])
    policy = DurationDiversity(spaces.Box(-1, 1, (6,)))
    assert shown(policy.act(obs), 6) == [0, 2, 4, 5, 1, 3]
    # a slate of 4 has 4 categories; longest-first's would repeat two
    assert len(set(obs["category_id"][shown(policy.act(obs), 4)])) == 4
    assert len(set(obs["category_id"][shown(LongestFirst().act(obs), 4)])) == 2
    # masking category 0's longest hands category 0 to its next item; the masked one goes last
    obs["mask"][0] = 0
    assert shown(policy.act(obs), 6) == [1, 2, 4, 5, 3, 0]
    assert DurationDiversity(spaces.Discrete(6)).act(obs) == 1


def test_duration_diversity_fills_with_the_longest_when_categories_run_out():
    obs = hand_obs([0.1, 0.9, 0.8, 0.3], [7, 7, 7, 2])
    assert shown(DurationDiversity().act(obs), 4) == [1, 3, 2, 0]


# --------------------------------------------------------------------------- oracles
def world_obs(world: World, user: int, seed: int = 0, n: int = 30) -> dict[str, np.ndarray]:
    """An observation of `world` for `user` with candidates from the env's generator."""
    gen = CandidateGenerator(catalogue=world.catalogue, n_candidates=n)
    items = gen(world.history(np.array([user])), np.random.default_rng(seed))[0]
    obs = hand_obs(np.zeros(n), world.catalogue.category[items], items=items, user=user)
    return obs


def test_oracles_follow_the_truth_rules_for_the_observed_user_and_candidates():
    world = World(WORLD)
    box = spaces.Box(-1, 1, (30,))
    for user in (0, 17, 39):
        obs = world_obs(world, user, seed=user)
        items = obs["item_id"]
        for cls, rule in ((PatienceOracle, truth_rules.patience_keeper),
                          (ClickOracle, truth_rules.greedy_click)):  # fmt: skip
            scores = cls(world, box, slate_size=4).act(obs)
            expected = rule(world, np.array([user]), items[None], 4, np.random.default_rng(0))
            assert items[shown(scores, 4)].tolist() == expected[0].tolist()
            assert cls.reads_hidden_state is True
    # Discrete: the rule's single best item
    obs = world_obs(world, 3)
    p = world.expected_responses(np.array([3]), obs["item_id"][None])["click"][0]
    assert ClickOracle(world, spaces.Discrete(30)).act(obs) == int(np.argmax(p))


def test_oracle_respects_the_mask_and_refuses_another_world():
    world = World(WORLD)
    obs = world_obs(world, 5)
    best = shown(ClickOracle(world, slate_size=3).act(obs), 3)
    obs["mask"][best[0]] = 0
    again = shown(ClickOracle(world, slate_size=3).act(obs), 3)
    assert best[0] not in again and again[:2] == best[1:]
    other = World(WorldConfig(n_users=40, n_items=300, n_authors=30, seed=6))
    with pytest.raises(ValueError, match="not items of the oracle's world"):
        PatienceOracle(other).act(world_obs(world, 5))
    with pytest.raises(TypeError, match="no truth to read"):
        PatienceOracle(object())  # type: ignore[arg-type]


def test_oracle_make_env_runs_on_its_world_from_its_starting_state():
    world = World(WORLD)
    oracle = PatienceOracle(world, slate_size=6)
    start = world.snapshot()
    env = oracle.make_env(n_candidates=30, max_steps=15)
    assert env.unwrapped.model is world
    oracle.action_space = env.action_space
    obs, _ = env.reset(seed=1)
    done, steps = False, 0
    while not done:
        user = np.array([int(obs["user_id"][0])])
        expected = truth_rules.patience_keeper(world, user, obs["item_id"][None], 6, None)[0]
        obs, _, term, trunc, info = env.step(oracle.act(obs))
        assert info["slate"].tolist() == expected.tolist()  # read from the env's own world
        done, steps = term or trunc, steps + 1
    assert steps > 0
    assert not np.array_equal(world.state.clock_ms, start.clock_ms)
    oracle.make_env(n_candidates=30)  # a new env: the world is back at the oracle's start
    np.testing.assert_array_equal(world.state.clock_ms, start.clock_ms)
    np.testing.assert_array_equal(world.state.bond, start.bond)
    with pytest.raises(ValueError, match="uses the oracle's world"):
        oracle.make_env(backend="world")


# --------------------------------------------------------------------------- rankers, panel
class FakeModel:
    """Stands in for a fitted RankingModel: values per target, one shared `net`."""

    def __init__(self) -> None:
        self.target = "click"
        self.net = object()
        self.action_space = None


def test_rankers_from_model_share_the_fit_and_differ_only_in_target():
    model = FakeModel()
    click, watch = rankers_from_model(model, spaces.Discrete(4))
    assert (click.target, watch.target) == ("click", "watch")
    assert click.net is model.net and watch.net is model.net
    assert click.action_space == watch.action_space == spaces.Discrete(4)
    assert model.target == "click" and model.action_space is None  # the original is untouched


def test_reference_panel_names_and_oracle_only_with_a_world():
    world = World(WORLD)
    rankers = rankers_from_model(FakeModel())
    box = spaces.Box(-1, 1, (30,))
    panel = reference_panel(box, rankers=rankers, world=world, slate_size=6)
    assert tuple(panel) == REFERENCE_NAMES
    assert [n for n, p in panel.items() if getattr(p, "reads_hidden_state", False)] == [
        "oracle (reads hidden state)"
    ]
    assert all(p.action_space == box for p in panel.values())
    assert panel["myopic watch ranker"].target == "watch"
    assert tuple(reference_panel(box, rankers=rankers)) == REFERENCE_NAMES[:-1]
    with pytest.raises(ValueError, match="needs rankers"):
        reference_panel(box)


def test_the_panel_fitted_on_logs_plays_the_post_log_world(tiny_logs):
    """End to end: rankers fitted on the tiny world's logs, every reference scored with
    `evaluate` on the world as it stood after those logs (the oracle on its own copy of it)."""
    import gymnasium as gym

    from recgym.agents.baselines import RankerConfig
    from recgym.data import load
    from recgym.envs.evaluation import METRICS, evaluate
    from recgym.simulators.world_state import load_world

    env_kwargs = {"n_candidates": 20, "max_steps": 8}

    def env_fn(seed: int) -> gym.Env:
        return gym.make(
            "recgym/Session-v0", backend="world", world_dir=str(tiny_logs), **env_kwargs
        )

    box = env_fn(0).action_space
    panel = reference_panel(
        box,
        dataset=load(tiny_logs),
        world=load_world(tiny_logs),
        ranker_config=RankerConfig(epochs=1),
    )
    assert tuple(panel) == REFERENCE_NAMES
    click, watch = panel["click ranker"], panel["myopic watch ranker"]
    assert click.net is watch.net
    obs, _ = env_fn(0).reset(seed=0)
    pred = click.predict(obs)
    np.testing.assert_array_equal(watch.values(obs), pred["watch_ms"])
    np.testing.assert_array_equal(click.values(obs), pred["click"])
    results = {}
    for name, policy in panel.items():
        fn = env_fn
        if getattr(policy, "reads_hidden_state", False):
            fn = lambda seed, p=policy: p.make_env(**env_kwargs)  # noqa: E731
        results[name] = evaluate(policy, fn, episodes=3, seeds=(0, 1))
        assert set(METRICS) <= set(results[name]), name
    # the oracle's env starts from the post-log users too (after its own evaluation runs)
    oracle = panel[REFERENCE_NAMES[-1]]
    warm = oracle.make_env(**env_kwargs).unwrapped.model.state
    logged = load_world(tiny_logs).state
    np.testing.assert_array_equal(warm.history, logged.history)
    np.testing.assert_array_equal(warm.bond, logged.bond)
    assert results["longest-first"] != results["duration+diversity"]


def test_rules_and_the_oracle_collect_through_a_tianshou_collector():
    """Through the contract's Tianshou adapter (in-process DummyVectorEnv: the oracle must share
    the env's world object, which a subprocess would copy)."""
    from tianshou.data import Collector
    from tianshou.env import DummyVectorEnv

    from recgym.envs.contract import TianshouSlatePolicy

    world = World(WORLD)
    oracle = PatienceOracle(world, slate_size=6)
    env = oracle.make_env(n_candidates=30, max_steps=6)
    for policy in (oracle, DurationDiversity(env.action_space), LongestFirst(env.action_space)):
        venv = DummyVectorEnv([lambda: oracle.make_env(n_candidates=30, max_steps=6)])
        policy.action_space = env.action_space
        collector = Collector(TianshouSlatePolicy(policy, env.action_space), venv)
        stats = collector.collect(n_episode=2, reset_before_collect=True)
        assert stats.n_collected_episodes == 2 and stats.n_collected_steps >= 2
        venv.close()
