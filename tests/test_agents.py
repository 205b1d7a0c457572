"""Agents: the ranker's log features against the world's truth, the ranker against random, one
contract test over every agent, and the DQN learning test."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from recgym import data
from recgym.agents.baselines import (
    QSlatePolicy,
    RandomPolicy,
    RankerConfig,
    RankingModel,
    log_features,
    rank_scores,
)
from recgym.agents.dqn import DQNConfig, build_dqn, load_dqn, save_dqn, train_dqn
from recgym.envs import make_env
from recgym.envs.contract import (
    CANDIDATE_FEATURES,
    SESSION_FEATURES,
    candidate_columns,
    row_layout,
    with_action_space,
)
from recgym.envs.evaluation import evaluate, t_interval
from recgym.simulators.features import USER_FEATURE_DIM
from recgym.simulators.generate import generate, load_world
from recgym.simulators.logs import LogConfig, simulate_logs
from recgym.simulators.world import WorldConfig

LOG_WORLD = {"n_users": 300, "n_items": 1000, "n_authors": 100}
SMALL_WORLD = {"n_users": 200, "n_items": 600, "n_authors": 60}


@pytest.fixture(scope="module")
def world_logs(tmp_path_factory):
    """A 5-day KuaiRand-schema log of a small world, its config, and the loaded Dataset."""
    out = tmp_path_factory.mktemp("world_logs")
    generate(out, WorldConfig(**LOG_WORLD), LogConfig(days=5), progress=False)
    return out, json.loads((out / "world.json").read_text()), data.load(out)


@pytest.fixture(scope="module")
def ranker(world_logs):
    _, _, ds = world_logs
    model = RankingModel(target="click")
    stats = model.fit(ds)
    return model, stats


# --------------------------------------------------------------------------- observation helpers
def test_observation_accessors_and_rank_scores():
    env = make_env(world_config=SMALL_WORLD, n_candidates=10)
    obs, info = env.reset(seed=0)
    assert obs["user"].shape == (USER_FEATURE_DIM,)
    assert obs["context"].shape == (len(SESSION_FEATURES),)
    assert obs["candidates"].shape == (10, len(CANDIDATE_FEATURES))
    model = env.unwrapped.model
    np.testing.assert_allclose(obs["user"], model.user_features(np.array([info["user_id"]]))[0])
    duration = model.catalogue.duration_ms[obs["item_id"]]
    log_duration = candidate_columns(obs, "log_duration")
    np.testing.assert_allclose(log_duration, np.log1p(duration / 1000.0) / 6.0, rtol=1e-6)
    batch = {k: np.stack([v, v]) for k, v in obs.items()}
    assert candidate_columns(batch, ["log_duration", "log_popularity"]).shape == (2, 10, 2)
    scores = rank_scores(np.array([0.3, 2.0, -1.0, 0.3]))
    np.testing.assert_allclose(scores, [1 / 3, 1.0, -1.0, -1 / 3], rtol=1e-6)
    assert scores.dtype == np.float32


# --------------------------------------------------------------------------- ranker features
def test_log_features_match_the_world_history_at_each_request(world_logs):
    """Per logged exposure, the category/author shares equal the env's formula applied to the
    world's history (the user's last 20 clicks) as of the start of the exposure's request."""
    out, cfg, ds = world_logs
    world = load_world(out, state="initial")  # the pre-log world, to replay the logs
    logs = simulate_logs(world, LogConfig(**cfg["logs"]), progress=False)  # the same run again
    logs = logs.sort_values(["user_id", "timestamp"], kind="stable", ignore_index=True)
    feats = log_features(ds, RankerConfig())
    inter = ds.interactions.sort_values(["user_id", "timestamp"], kind="stable")
    assert (inter["item_id"].to_numpy() == logs["item_id"].to_numpy()).all()
    cat, author = world.catalogue.category, world.catalogue.author
    # after logging, the world's history is each user's last 20 clicks in log order
    clicked = logs[logs["click"] > 0]
    last = clicked.groupby("user_id")["item_id"].apply(lambda s: s.to_numpy()[-20:])
    for u in last.index[:50]:
        h = world.state.history[u]
        np.testing.assert_array_equal(h[h >= 0], last[u])
    rng = np.random.default_rng(0)
    req_first = logs.groupby("request_id")["timestamp"].transform("min").to_numpy()
    user, item = logs["user_id"].to_numpy(), logs["item_id"].to_numpy()
    ts, click = logs["timestamp"].to_numpy(), logs["click"].to_numpy() > 0
    for r in rng.choice(len(logs), 300, replace=False):  # test-side loop: a direct recount
        before = (user == user[r]) & (ts < req_first[r]) & click
        hist = item[before][-20:]
        n = max(len(hist), 1)
        assert feats.cand_x[r, 2] == pytest.approx((cat[hist] == cat[item[r]]).sum() / n)
        assert feats.cand_x[r, 3] == pytest.approx((author[hist] == author[item[r]]).sum() / n)
    dur = np.log1p(world.catalogue.duration_ms[item] / 1000.0) / 6.0
    np.testing.assert_allclose(feats.cand_x[:, 0], dur, rtol=1e-5)
    np.testing.assert_allclose(feats.user_x, world.user_features(user), rtol=1e-6, atol=1e-6)


def test_ranker_fits_and_beats_random_on_ctr(world_logs, ranker):
    _, cfg, _ = world_logs
    model, stats = ranker
    assert stats.click_auc > 0.6, stats
    assert stats.watch_rmse < stats.watch_rmse_constant
    assert stats.n_train > 0 and stats.n_test > 0

    def env_fn(seed: int) -> gym.Env:
        return make_env(world_config=cfg["world"], slate_size=6)

    greedy = evaluate(model, env_fn, episodes=30)
    random = evaluate(RandomPolicy(), env_fn, episodes=30)
    assert greedy["ctr"]["mean"] > random["ctr"]["mean"] + 0.05, (greedy["ctr"], random["ctr"])
    assert all(
        g > r for g, r in zip(greedy["ctr"]["per_seed"], random["ctr"]["per_seed"], strict=True)
    )


# --------------------------------------------------------------------------- contract
def _agents(ranker_model: RankingModel) -> dict[str, object]:
    watch = RankingModel(target="watch")
    watch.net = ranker_model.net
    env = make_env(world_config=SMALL_WORLD, action_mode="discrete")
    algo = build_dqn(layout=row_layout(env.observation_space), config=DQNConfig(hidden_sizes=(16,)))
    return {
        "random": RandomPolicy(seed=1),
        "ranker_click": ranker_model,
        "ranker_watch": watch,
        "dqn_untrained": QSlatePolicy(algo),
    }


@pytest.mark.parametrize("action_mode", ["scores", "discrete"])
def test_every_agent_acts_inside_the_action_space(ranker, action_mode):
    agents = _agents(ranker[0])
    env = make_env(world_config=SMALL_WORLD, action_mode=action_mode, max_steps=5)
    for name, agent in agents.items():
        agent = with_action_space(agent, env.action_space)
        obs, info = env.reset(seed=0)
        for _ in range(5):
            action = agent.act(obs)
            assert env.action_space.contains(action), (name, action)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                obs, info = env.reset()


def test_ranker_save_load_round_trip(ranker, tmp_path):
    model, _ = ranker
    env = make_env(world_config=SMALL_WORLD)
    first = [env.reset(seed=s)[0] for s in range(3)]
    obs = {k: np.stack([o[k] for o in first]) for k in first[0]}  # a batch of observations
    path = model.save(tmp_path / "ranker.pt")
    loaded = RankingModel.load(path)
    assert loaded.target == model.target and loaded.config == model.config
    np.testing.assert_array_equal(loaded.values(obs), model.values(obs))
    assert loaded.values(obs).shape == (3, 50)
    np.testing.assert_array_equal(loaded.values(first[0]), model.values(obs)[0])


def test_dqn_update_returns_stats_and_save_load_round_trips(tmp_path):
    cfg = DQNConfig(
        env_steps=64, epochs=2, warmup_steps=32, test_episodes=1, hidden_sizes=(16,), seed=3
    )
    env_kwargs = {"world_config": SMALL_WORLD, "max_steps": 10}
    algo, stats = train_dqn(env_kwargs, cfg, progress=False)
    assert [step for step, _ in stats.learning_curve] == [0, 32, 64]
    assert stats.env_steps == 64 and stats.gradient_steps == 16
    assert all(np.isfinite(ret) for _, ret in stats.learning_curve)
    again, _ = train_dqn(env_kwargs, cfg, progress=False)  # same seed, same weights
    weights, weights_again = algo.policy.state_dict(), again.policy.state_dict()
    assert all(torch.equal(weights[k], weights_again[k]) for k in weights)
    path = save_dqn(algo, cfg, tmp_path / "dqn.pt", env_kwargs)
    loaded, loaded_cfg = load_dqn(path)
    assert loaded_cfg == cfg
    env = make_env(**env_kwargs)  # scores mode: the slate env the Q-values are evaluated on
    first = [env.reset(seed=s)[0] for s in range(4)]
    obs = {k: np.stack([o[k] for o in first]) for k in first[0]}
    np.testing.assert_array_equal(
        QSlatePolicy(loaded).q_values(obs), QSlatePolicy(algo).q_values(obs)
    )


# --------------------------------------------------------------------------- learning
# The calibrated world (issue 8) has no duration shortcut (longest-first ~ random): DQN must
# learn interests and patience from the observation. At 4,000 steps it scores below random, at
# 12,000 about 1.3x random, at 24,000 1.5x. Its learning curve over 5 test episodes swings from
# epoch to epoch because episode returns are heavy-tailed (one session 1 s, another 100 requests
# and 9,000 s); over 16 episodes the mean rises steadily (seed 1: 190 s at the start, 1,714 s at
# 24,000 steps).
LEARNING_CONFIG = {
    "hidden_sizes": (32, 32),
    "env_steps": 24_000,
    "epochs": 12,
    "eps_decay_steps": 16_000,
    "collect_steps": 16,
    "test_episodes": 5,
}
LEARNING_SEEDS = (0, 1, 2, 3, 4)


@pytest.mark.slow  # ~100 s on 2 cores (5 seeds x 24,000 env steps)
@pytest.mark.learning
def test_dqn_beats_random_on_watch_time_in_the_slate_env():
    """DQN trained online (one item per request) on a small world, shown as top-6 slates by Q,
    gets more watch time per session than random slates, by the evaluation protocol: 5 training
    seeds, training seed i evaluated on evaluation seed i against random on the same users (50
    sessions), the paired 95% interval of the difference over training seeds above 0, at least
    1.3x random on average and more than random for every seed (at 29f665a: +113 s [71, 155],
    1.5x on average, 1.34x-1.75x).

    It replaces a test at 12,000 steps that asked each of 3 training seeds' interval over 3
    evaluation seeds to clear random's: at every commit checked from 904bf4a on, DQN got
    1.3x-1.4x random there and the intervals overlapped."""

    def env_fn(seed: int) -> gym.Env:
        return make_env(world_config=SMALL_WORLD, slate_size=6)

    gains, ratios = [], []
    for seed in LEARNING_SEEDS:
        algo, _ = train_dqn(
            {"world_config": SMALL_WORLD}, DQNConfig(seed=seed, **LEARNING_CONFIG), progress=False
        )
        dqn = evaluate(QSlatePolicy(algo), env_fn, episodes=50, seeds=(seed,))
        random = evaluate(RandomPolicy(), env_fn, episodes=50, seeds=(seed,))
        dqn_watch, random_watch = dqn["watch_time_s"]["mean"], random["watch_time_s"]["mean"]
        gains.append(dqn_watch - random_watch)
        ratios.append(dqn_watch / random_watch)
    mean, low, high = t_interval(gains)
    print(  # the README's figure (`pytest -m slow -s tests/test_agents.py`)
        f"DQN - random watch time per session: {mean:+.0f} s [{low:.0f}, {high:.0f}] over "
        f"{len(gains)} training seeds; DQN / random {np.mean(ratios):.2f}x on average, "
        f"{min(ratios):.2f}-{max(ratios):.2f}x per seed"
    )
    assert low > 0, (gains, ratios)
    assert np.mean(ratios) >= 1.3, ratios
    assert min(ratios) > 1.0, ratios


# --------------------------------------------------------------------------- seeding
TINY_RUN = {"env_steps": 32, "epochs": 1, "warmup_steps": 16, "test_episodes": 1}
TINY_ENV = {"world_config": SMALL_WORLD, "n_candidates": 20, "slate_size": 4, "max_steps": 8}


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _train_all(seed: int, scri) -> dict[str, dict[str, torch.Tensor]]:
    """DQN, TD3, CQL and RLIV-UA (on `scri`, `data.asa` samples), each trained briefly with
    `seed`; their weights."""
    from recgym.agents.continuous import (
        CQLConfig,
        OfflineDataConfig,
        TD3Config,
        collect_offline_buffer,
        train_cql,
        train_td3,
    )
    from recgym.agents.rliv_ua import RLIVUAConfig, train_rliv_ua

    small = {"hidden_sizes": (16,), "seed": seed}
    dqn, _ = train_dqn(TINY_ENV, DQNConfig(**TINY_RUN, **small), progress=False)
    td3, _ = train_td3(TINY_ENV, TD3Config(**TINY_RUN, batch_size=16, **small), progress=False)
    offline = collect_offline_buffer(
        TINY_ENV, OfflineDataConfig(n_steps=32, seed=seed), None, progress=False
    )
    layout = row_layout(make_env(**TINY_ENV).observation_space)
    cql_config = CQLConfig(
        gradient_steps=4, epochs=1, batch_size=16, num_repeat_actions=2, test_episodes=1, **small
    )
    cql, _ = train_cql(offline, layout, cql_config, TINY_ENV, progress=False)
    rliv_config = RLIVUAConfig(
        tasks=scri.tasks, epochs=1, steps_per_epoch=4, batch_size=32, embedding_dim=4, **small
    )
    rliv, _ = train_rliv_ua(scri.buffer, rliv_config, progress=False)
    return {
        "dqn": _weights(dqn.policy),
        "td3": _weights(td3.algo.policy),
        "cql": _weights(cql.algo.policy),
        "rliv_ua": _weights(rliv.policy.net),
    }


def test_training_keeps_the_callers_global_rngs_and_a_seed_fixes_the_weights(world_logs):
    """Tianshou's ε-greedy and GaussianNoise read numpy's global RNG, network initialisation
    torch's global generator: each training seeds both for its run and restores the caller's."""
    from recgym.data.asa import asa_samples

    scri = asa_samples(world_logs[2])
    np.random.seed(123)
    torch.manual_seed(321)
    expected_np, expected_torch = np.random.random(4), torch.rand(4)
    np.random.seed(123)
    torch.manual_seed(321)
    first = _train_all(5, scri)
    assert np.array_equal(np.random.random(4), expected_np)
    assert torch.equal(torch.rand(4), expected_torch)
    np.random.seed(7)  # the same seed from another caller state gives the same weights
    torch.manual_seed(8)
    again = _train_all(5, scri)
    other = _train_all(6, scri)
    for name, weights in first.items():
        assert all(torch.equal(weights[k], again[name][k]) for k in weights), name
        assert not all(torch.equal(weights[k], other[name][k]) for k in weights), name


def test_supervised_fits_keep_the_callers_torch_rng_and_a_seed_fixes_the_weights(
    world_logs, tiny_logs
):
    """DeepFM, the RankingModel and the learned simulator draw their initial weights and batch
    order from their config's seed (a torch.Generator, or `agents.seeding` / a forked RNG for
    the modules' constructors): the caller's global torch generator is left where it was."""
    from recgym.agents.deepfm import DeepFMConfig, DeepFMRanker
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.learned.fit import fit_simulator
    from recgym.simulators.learned.simulator import LearnedSimulator
    from recgym.simulators.learned.table import build_log_table

    _, _, ds = world_logs
    logs = data.load(tiny_logs)

    def fit_all(seed: int) -> dict[str, dict[str, torch.Tensor]]:
        deepfm = DeepFMRanker(DeepFMConfig(epochs=1, seed=seed, hidden_sizes=(8,)))
        deepfm.fit(ds)
        ranker = RankingModel(RankerConfig(epochs=1, seed=seed, hidden_sizes=(8,)))
        ranker.fit(ds)
        config = SimulatorConfig(epochs=1, hidden=(8,), leave_steps=5, seed=seed)
        sim = fit_simulator(LearnedSimulator, build_log_table(logs, config))
        return {"deepfm": _weights(deepfm.net), "ranker": _weights(ranker.net),
                "simulator": _weights(sim.response)}  # fmt: skip

    torch.manual_seed(321)
    expected = torch.rand(4)
    torch.manual_seed(321)
    first = fit_all(5)
    assert torch.equal(torch.rand(4), expected)  # the caller's generator did not move
    torch.manual_seed(8)  # another caller state, the same seed: the same weights
    again, other = fit_all(5), fit_all(6)
    for name, weights in first.items():
        assert all(torch.equal(weights[k], again[name][k]) for k in weights), name
        assert not all(torch.equal(weights[k], other[name][k]) for k in weights), name


def test_seeded_global_rngs_restore_the_callers_state_after_an_error():
    from recgym.agents.seeding import seeded_global_rngs

    np.random.seed(1)
    torch.manual_seed(2)
    expected_np, expected_torch = np.random.random(), torch.rand(1)
    np.random.seed(1)
    torch.manual_seed(2)
    with pytest.raises(RuntimeError, match="boom"), seeded_global_rngs(9):
        inside = (np.random.random(), torch.rand(1))
        raise RuntimeError("boom")
    assert np.random.random() == expected_np and torch.equal(torch.rand(1), expected_torch)
    with seeded_global_rngs(9):  # every block starts from its seed
        assert np.random.random() == inside[0] and torch.equal(torch.rand(1), inside[1])


def _buffer(n: int = 40, vector: bool = False):
    from tianshou.data import Batch, ReplayBuffer, VectorReplayBuffer

    buffer = VectorReplayBuffer(2 * n, 2) if vector else ReplayBuffer(n)
    ways = 2 if vector else 1
    for i in range(n):
        step = Batch(
            obs=np.full((ways, 1), float(i)),
            act=np.zeros(ways),
            rew=np.zeros(ways),
            obs_next=np.zeros((ways, 1)),
            terminated=np.zeros(ways, dtype=bool),
            truncated=np.zeros(ways, dtype=bool),
            info=Batch(),
        )
        buffer.add(step, buffer_ids=list(range(ways)))
    return buffer


def test_seed_buffer_sampler_fixes_the_sampled_transitions():
    from recgym.agents.seeding import seed_buffer_sampler

    def draws(buffer) -> np.ndarray:
        return np.concatenate([buffer.sample_indices(8) for _ in range(5)])

    for vector in (False, True):
        used = _buffer(vector=vector)
        draws(used)  # a buffer sampled before reseeding draws what a fresh one does after
        a = draws(seed_buffer_sampler(used, 3))
        assert np.array_equal(a, draws(seed_buffer_sampler(_buffer(vector=vector), 3)))
        assert not np.array_equal(a, draws(seed_buffer_sampler(_buffer(vector=vector), 4)))
