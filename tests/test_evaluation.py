"""Unit tests of `envs.evaluation`: metric definitions on hand-made sessions, the seeding contract
of `evaluate`, the interval, and the results table."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from scipy import stats

from recgym.agents.baselines import RandomPolicy
from recgym.envs import make_env
from recgym.envs.evaluation import (
    METRICS,
    SlatePolicy,
    evaluate,
    format_table,
    seed_metrics,
    session_totals,
    summarize,
    t_interval,
)


def step_info(click, watch_ms, follow, categories) -> dict:
    return {
        "responses": {
            "click": np.asarray(click, dtype=bool),
            "watch_ms": np.asarray(watch_ms, dtype=np.int64),
            "follow": np.asarray(follow, dtype=bool),
        },
        "categories": np.asarray(categories),
    }


class ScriptedEnv(gym.Env):
    """Sessions of `length` requests showing 2 items: the first is clicked and watched 12 s, the
    second skimmed 0.5 s; one follow on the first request; categories (t % 3, 7) at request t."""

    observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, length: int) -> None:
        self.length = length
        self.t = 0
        self.reset_seeds: list[int | None] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.reset_seeds.append(seed)
        self.t = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        info = step_info([1, 0], [12_000, 500], [self.t == 1, 0], [self.t % 3, 7])
        return np.zeros(1, dtype=np.float32), 12.5, self.t >= self.length, False, info


class FirstItem:
    def act(self, obs):
        return 0


def test_session_totals_of_a_hand_made_session():
    infos = [
        step_info([1, 0, 1], [20_000, 800, 10_000], [0, 0, 1], [3, 4, 3]),
        step_info([0, 0, 0], [300, 1_000, 200], [0, 0, 0], [5, 5, 5]),
    ]
    totals = session_totals(infos)
    assert totals == {
        "requests": 2.0,
        "watch_s": 32.3,
        "clicks": 2.0,
        "shown": 6.0,
        "valid_views": 1.0,  # 10_000 ms is not > 10 s
        "categories": 3.0,
        "follows": 1.0,
    }


def test_missing_behaviours_count_as_zero():
    info = {"responses": {"click": np.array([True])}, "categories": np.array([2])}
    totals = session_totals([info])
    assert totals["watch_s"] == 0.0 and totals["follows"] == 0.0 and totals["clicks"] == 1.0


def test_seed_metrics_average_sessions_and_pool_ctr():
    a = {"requests": 2, "watch_s": 30, "clicks": 3, "shown": 12, "valid_views": 1,
         "categories": 5, "follows": 0}  # fmt: skip
    b = {"requests": 4, "watch_s": 10, "clicks": 3, "shown": 4, "valid_views": 3,
         "categories": 1, "follows": 2}  # fmt: skip
    m = seed_metrics([a, b])
    assert m == {
        "session_length": 3.0,
        "watch_time_s": 20.0,
        "ctr": 6 / 16,  # pooled clicks / shown, not the mean of 3/12 and 3/4
        "valid_consumption": 2.0,
        "diversity": 3.0,
        "follows": 1.0,
    }
    assert tuple(m) == METRICS


def test_evaluate_on_a_scripted_env_gives_exact_numbers():
    envs: list[ScriptedEnv] = []

    def env_fn(seed: int) -> gym.Env:
        envs.append(ScriptedEnv(length=seed + 2))
        return envs[-1]

    res = evaluate(FirstItem(), env_fn, episodes=3, seeds=(0, 1, 2))
    assert set(res) == set(METRICS)
    # a seed fixes the run: the first reset is seeded, the following ones continue
    assert [e.reset_seeds for e in envs] == [[0, None, None], [1, None, None], [2, None, None]]
    assert res["session_length"]["per_seed"] == [2.0, 3.0, 4.0]
    assert res["watch_time_s"]["per_seed"] == pytest.approx([25.0, 37.5, 50.0])
    assert res["ctr"]["per_seed"] == [0.5, 0.5, 0.5]
    assert res["valid_consumption"]["per_seed"] == [2.0, 3.0, 4.0]
    assert res["diversity"]["per_seed"] == [3.0, 4.0, 4.0]  # {1, 2, 7}, {0, 1, 2, 7}, ...
    assert res["follows"]["per_seed"] == [1.0, 1.0, 1.0]
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of (2, 3, 4) is 1
    sl = res["session_length"]
    assert sl["mean"] == 3.0
    assert sl["ci_low"] == pytest.approx(3.0 - half) and sl["ci_high"] == pytest.approx(3.0 + half)
    assert res["ctr"]["ci_low"] == res["ctr"]["ci_high"] == 0.5


def test_interval_shape():
    m, lo, hi = t_interval([1.0, 2.0, 4.0, 3.0])
    assert lo < m < hi and m == 2.5
    assert hi - m == pytest.approx(m - lo)
    m, lo, hi = t_interval([5.0])
    assert m == 5.0 and math.isnan(lo) and math.isnan(hi)
    res = summarize([dict.fromkeys(METRICS, i / 4) for i in range(5)])  # in every range
    for name in METRICS:
        assert set(res[name]) == {"mean", "ci_low", "ci_high", "per_seed"}
        assert len(res[name]["per_seed"]) == 5
        assert res[name]["ci_low"] < res[name]["mean"] == 0.5 < res[name]["ci_high"]
    # wider with more confidence
    assert t_interval([1.0, 2.0, 4.0], 0.99)[1] < t_interval([1.0, 2.0, 4.0], 0.9)[1]


def test_format_table():
    one = {"mean": 2.0, "ci_low": 1.5, "ci_high": 2.5, "per_seed": [1.5, 2.0, 2.5]}
    big = {"mean": 1234.4, "ci_low": 1000.2, "ci_high": 1468.6, "per_seed": []}
    single = {"mean": 0.25, "ci_low": math.nan, "ci_high": math.nan, "per_seed": [0.25]}
    results = {
        "random": {name: one for name in METRICS},
        "ranker": {**{name: one for name in METRICS}, "watch_time_s": big, "ctr": single},
    }
    lines = format_table(results).splitlines()
    assert lines[0] == "| agent | " + " | ".join(METRICS) + " |"
    assert lines[1] == "|---|" + "---|" * len(METRICS)
    assert lines[2] == "| random | " + " | ".join(["2.00 [1.50, 2.50]"] * len(METRICS)) + " |"
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells[0] == "ranker"
    assert cells[1 + METRICS.index("watch_time_s")] == "1234 [1000, 1469]"
    assert cells[1 + METRICS.index("ctr")] == "0.250"


def test_evaluate_is_deterministic_on_the_session_env():
    def env_fn(seed: int) -> gym.Env:
        return make_env(world_config={"n_users": 50, "n_items": 200, "n_authors": 20})

    assert isinstance(RandomPolicy(), SlatePolicy)
    a = evaluate(RandomPolicy(seed=3), env_fn, episodes=4, seeds=(0, 1))
    b = evaluate(RandomPolicy(seed=99), env_fn, episodes=4, seeds=(0, 1))  # reset(seed) reseeds
    assert a == b
    c = evaluate(RandomPolicy(), env_fn, episodes=4, seeds=(2, 3))
    assert c["watch_time_s"]["per_seed"] != a["watch_time_s"]["per_seed"]
