"""recgym/MTFSession-v0, the MTL, the MTF data logger and Enhanced-State RL-MTF (issue 11)."""

from __future__ import annotations

import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from recgym.agents.enhanced_state_mtf import bound_penalty
from recgym.agents.mtf_data import (
    BASELINE_ACTION,
    Exploration,
    FixedFusion,
    UserBounds,
    collect_transitions,
    load_dataset,
    save_dataset,
)
from recgym.agents.mtf_data import (
    test_scores as mtf_test_scores,
)
from recgym.envs.mtf import (
    ACTION_DIM,
    MTF_CANDIDATE_FEATURES,
    MTFCore,
    MTFSessionEnv,
    action_to_fusion,
    item_rewards,
    mtf_vector_env,
    product_fusion,
)

SMALL_WORLD = {"n_users": 60, "n_items": 300, "n_authors": 30}
ENV_ID = "recgym/MTFSession-v0"


@pytest.fixture(scope="module")
def envs() -> dict[str, MTFSessionEnv]:
    """One env per action mode (each fits its default MTL once)."""
    return {
        mode: MTFSessionEnv(world_config=SMALL_WORLD, action_mode=mode)
        for mode in ("per_item", "per_request")
    }


def rollout(env: gym.Env, seed: int, steps: int = 25) -> list:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out = [obs["candidates"].copy(), int(info["user_id"])]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        out += [obs["candidates"].copy(), r, term, trunc, tuple(info["slate"])]
        if term or trunc:
            obs, info = env.reset()
            out.append(int(info["user_id"]))
    return out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- fusion
def test_fusion_is_the_product_form_and_actions_map_to_the_documented_ranges() -> None:
    rng = np.random.default_rng(0)
    v, p, b = rng.random((4, 5)), rng.random((4, 5)) * 2, rng.random((4, 5))
    np.testing.assert_allclose(np.exp(product_fusion(v, p, b)), np.prod((v + b) ** p, axis=-1))
    power, bias = action_to_fusion(np.r_[-np.ones(5), np.ones(5)])
    assert power.tolist() == [0.0] * 5 and np.allclose(bias, 1.0)
    power, bias = action_to_fusion(np.zeros(ACTION_DIM))
    assert np.allclose(power, 1.0) and np.allclose(bias, 0.505)


# --------------------------------------------------------------------------- env API
@pytest.mark.parametrize("mode", ["per_item", "per_request"])
def test_check_env_determinism_and_pickle(envs: dict, mode: str) -> None:
    env = envs[mode]
    assert env.action_space.shape == ((50, ACTION_DIM) if mode == "per_item" else (ACTION_DIM,))
    check_env(env, skip_render_check=True)
    assert env.observation_space["candidates"].shape == (50, len(MTF_CANDIDATE_FEATURES))
    a, b, c = rollout(env, 5), rollout(env, 5), rollout(env, 6)
    assert same(a, b) and not same(a, c)
    env.reset(seed=1)
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    x, y = env.step(action), clone.step(action)
    assert np.array_equal(x[0]["candidates"], y[0]["candidates"]) and x[1:4] == y[1:4]


def test_reward_is_the_list_sum_of_formula_2_and_the_top_l_are_shown(envs: dict) -> None:
    env = envs["per_item"]
    obs, _ = env.reset(seed=3)
    action = env.action_space.sample()
    rows = obs["candidates"][None].astype(np.float64)
    score = env.unwrapped.core.scores(action[None].astype(np.float64), rows)[0]
    _, reward, *_, info = env.step(action)
    assert list(info["shown_index"]) == list(np.argsort(-score, kind="stable")[:5])
    assert np.array_equal(info["slate"], obs["item_id"][info["shown_index"]])
    weights = env.unwrapped.core.reward_weights
    per_item = item_rewards({k: v[None] for k, v in info["responses"].items()}, weights)[0]
    np.testing.assert_allclose(per_item, info["item_reward"])
    assert reward == pytest.approx(info["item_reward"].sum())
    assert np.array_equal(info["valid"], info["responses"]["watch_ms"] > 10_000)


@pytest.mark.parametrize(
    ("mode", "action", "match"),
    [
        ("per_item", np.zeros((49, ACTION_DIM)), "shape"),
        ("per_item", np.zeros(ACTION_DIM), "shape"),
        ("per_request", np.zeros((50, ACTION_DIM)), "shape"),
        ("per_request", np.full(ACTION_DIM, np.nan), "finite"),
        ("per_request", np.full(ACTION_DIM, 1.5), r"\[-1, 1\]"),
        ("per_item", np.full((50, ACTION_DIM), -2.0), r"\[-1, 1\]"),
        ("per_request", "abc", "numeric"),
    ],
)
def test_invalid_actions_raise_value_errors_naming_the_env(
    envs: dict, mode: str, action, match: str
) -> None:
    env = envs[mode]
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match) as err:
        env.step(action)
    assert ENV_ID in str(err.value)


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match="action_mode"):
        MTFSessionEnv(world_config=SMALL_WORLD, action_mode="scores", mtl=object())
    with pytest.raises(ValueError, match="reward_weights"):
        MTFSessionEnv(world_config=SMALL_WORLD, reward_weights={"gift": 1.0}, mtl=object())


def test_native_vector_env_steps_slots_in_one_call(envs: dict) -> None:
    mtl = envs["per_request"].unwrapped.core.mtl
    venv = mtf_vector_env(num_envs=3, world_config=SMALL_WORLD, action_mode="per_request", mtl=mtl)
    obs, _ = venv.reset(seed=2)
    assert obs["candidates"].shape == (3, 50, len(MTF_CANDIDATE_FEATURES))
    for _ in range(5):
        obs, rew, term, trunc, _ = venv.step(venv.action_space.sample())
        assert rew.shape == (3,) and np.isfinite(rew).all()


# --------------------------------------------------------------------------- MTL
def test_mtl_fits_logs_predicts_and_round_trips(tiny_logs: Path, tmp_path: Path) -> None:
    from recgym.agents.mtl import PREDICTIONS, MTLConfig, MTLModel
    from recgym.data.loaders import load

    model = MTLModel(MTLConfig(epochs=2, min_steps=150))
    stats = model.fit(load(tiny_logs, cache=False))
    assert stats.task_auc["click"] > 0.6 and stats.task_auc["valid"] > 0.6
    path = model.save(tmp_path / "mtl.pt")
    env = MTFSessionEnv(world_dir=str(tiny_logs), mtl=str(path))
    obs, _ = env.reset(seed=0)
    cols = obs["candidates"][:, len(MTF_CANDIDATE_FEATURES) - len(PREDICTIONS) :]
    assert ((cols >= 0) & (cols <= 1)).all() and cols[:, 0].std() > 0
    loaded = MTLModel.load(path)
    users, items = np.array([0, 1]), np.array([[0, 1, 2], [3, 4, 5]])
    n_user = loaded.net.mean.numel() - 4
    ux, cx = np.ones((2, n_user), np.float32), np.zeros((2, 3, 4), np.float32)
    np.testing.assert_allclose(
        model.predict(users, items, ux, cx), loaded.predict(users, items, ux, cx)
    )


# --------------------------------------------------------------------------- data
def test_exploration_stays_in_the_user_bounds_and_the_dataset_round_trips(
    envs: dict, tmp_path: Path
) -> None:
    mtl = envs["per_item"].unwrapped.core.mtl
    core = MTFCore(world_config=SMALL_WORLD, n_slots=8, mtl=mtl)
    bounds = UserBounds.make(core.model.n_users, width=0.2, seed=1)
    explorer = Exploration(FixedFusion(), bounds, seed=3, item_noise=0.5)
    tr = collect_transitions(core, explorer, episodes_per_slot=2, seed=4)
    t = len(tr["rew"])
    assert t > 16 and tr["rows"].shape == (t, 10, len(MTF_CANDIDATE_FEATURES))
    dev = tr["act"] - BASELINE_ACTION
    assert (dev >= tr["lower"][:, None, :] - 1e-5).all() and (
        dev <= tr["upper"][:, None, :] + 1e-5
    ).all()
    assert np.abs(dev).max() > 0.05  # it does explore
    np.testing.assert_allclose(tr["rew"], tr["item_reward"].sum(1), rtol=1e-5)
    back = load_dataset(save_dataset(tr, tmp_path / "explore.h5"))
    for key, value in tr.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    zero = UserBounds(np.zeros_like(bounds.lower), np.zeros_like(bounds.upper))
    test = collect_transitions(core, Exploration(FixedFusion(), zero, seed=0), 1, seed=5)
    assert np.allclose(test["act"], BASELINE_ACTION)
    scored = mtf_test_scores(FixedFusion(), test, core)
    assert scored["score"].min() == 0.0 and scored["score"].max() == 1.0
    assert len(scored["label"]) == 5 * len(test["rew"]) and (scored["weight"] >= 1).all()


def test_bound_penalty_is_zero_inside_and_grows_outside() -> None:
    mu_bp, lower, upper = (
        torch.zeros(1, ACTION_DIM),
        torch.full((1, ACTION_DIM), -0.2),
        torch.full((1, ACTION_DIM), 0.2),
    )
    inside = torch.linspace(-0.2, 0.2, 7)[:, None].expand(-1, ACTION_DIM)
    assert (bound_penalty(inside, mu_bp, lower, upper, beta=0.5) == 0).all()
    above = [bound_penalty(torch.full((1, ACTION_DIM), x), mu_bp, lower, upper, 0.5).item()
             for x in (0.21, 0.3, 0.5, 0.8)]  # fmt: skip
    below = [bound_penalty(torch.full((1, ACTION_DIM), -x), mu_bp, lower, upper, 0.5).item()
             for x in (0.21, 0.3, 0.5, 0.8)]  # fmt: skip
    assert all(a > 0 for a in above) and np.all(np.diff(above) > 0)
    np.testing.assert_allclose(above, below, rtol=1e-5)  # the mirror form below the bound
    # exp((mu - (mu_bp + upper)) / (beta (upper - lower))) per dimension, summed
    assert above[1] == pytest.approx(ACTION_DIM * np.exp(0.1 / (0.5 * 0.4)), rel=1e-5)


def test_exploration_dataset_round_trips_through_minari(envs: dict, tmp_path: Path) -> None:
    """Issue 15: the MTF exploration data (a Tianshou HDF5 buffer) exports to Minari with
    `recgym data export --buffer` and loads back into a Tianshou buffer unchanged."""
    pytest.importorskip("minari")
    from recgym.cli import main
    from recgym.data.minari import minari_to_buffer

    mtl = envs["per_item"].unwrapped.core.mtl
    core = MTFCore(world_config=SMALL_WORLD, n_slots=4, mtl=mtl)
    bounds = UserBounds.make(core.model.n_users, width=0.2, seed=1)
    tr = collect_transitions(core, Exploration(FixedFusion(), bounds, seed=3), 1, seed=4)
    path = save_dataset(tr, tmp_path / "explore.h5")
    argv = ["data", "export", "--format", "minari", "--root", str(tmp_path / "minari")]
    assert main([*argv, "--buffer", str(path), "--dataset-id", "recgym/mtf_explore-v0"]) == 0
    back = minari_to_buffer("recgym/mtf_explore-v0", tmp_path / "minari")
    rows = back[np.arange(len(back))]
    assert len(back) == len(tr["rew"])
    np.testing.assert_array_equal(rows.obs.state, tr["state"])
    np.testing.assert_array_equal(rows.obs.rows, tr["rows"])
    np.testing.assert_array_equal(rows.act, tr["act"])
    np.testing.assert_array_equal(rows.rew, tr["rew"])
    np.testing.assert_array_equal(rows.obs_next.mu_bp, tr["mu_bp_next"])
    np.testing.assert_array_equal(rows.terminated, tr["terminated"])
    np.testing.assert_array_equal(rows.truncated, tr["truncated"])
    np.testing.assert_array_equal(rows.info.item_reward, tr["item_reward"])


@pytest.mark.parametrize("item_critic", ["ranked", "pair"])
def test_enhanced_state_trains_with_either_item_critic(envs: dict, item_critic: str) -> None:
    from recgym.agents import enhanced_state_mtf as esm

    mtl = envs["per_item"].unwrapped.core.mtl
    core = MTFCore(world_config=SMALL_WORLD, n_slots=4, mtl=mtl)
    bounds = UserBounds.make(core.model.n_users, width=0.2, seed=1)
    tr = collect_transitions(core, Exploration(FixedFusion(), bounds, seed=3), 1, seed=4)
    cfg = esm.MTFRLConfig(item_critic=item_critic, gradient_steps=3, batch_size=8, n_critics=3)
    algo, stats = esm.train(tr, cfg)
    assert np.isfinite([stats[k] for k in ("critic_loss", "actor_loss", "q_mean")]).all()
    obs = core.begin()
    act = algo.policy.actions(obs)
    assert act.shape == (4, core.n_candidates, ACTION_DIM) and np.abs(act).max() <= 1.0
    # the ranked critic reads no action; the literal one reads the pair's 10 numbers
    n_in = algo.critics.weights[0].shape[1]
    assert n_in == int(algo.policy.mean.numel()) + (0 if item_critic == "ranked" else ACTION_DIM)


def test_ranked_critic_weights_are_a_soft_top_l_that_ignores_shifts() -> None:
    from recgym.agents import enhanced_state_mtf as esm

    rng = np.random.default_rng(0)
    tr = {"state": rng.normal(size=(8, 5)), "rows": rng.normal(size=(8, 10, 4))}
    algo = esm.build(tr, esm.MTFRLConfig(n_critics=2))
    score = torch.as_tensor(rng.normal(size=(3, 10)), dtype=torch.float32)
    w = algo._soft_top(score, 5)
    torch.testing.assert_close(w.sum(-1), torch.full((3,), 5.0))
    torch.testing.assert_close(algo._soft_top(score + 7.0, 5), w)  # only the order matters
    assert (w.argsort(-1) == score.argsort(-1)).all()  # higher score, higher weight
    with pytest.raises(ValueError, match="item_critic"):
        esm.build(tr, esm.MTFRLConfig(item_critic="listwise"))
