"""RLIV-UA: the losses are Eq. 5-10 on hand-made batches, the targets move by tau, the ablation
switches change the model, save/load round-trips, serving scores, and a learning test on a SCRI
world where the myopically better author is the long-term worse one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces
from tianshou.algorithm.algorithm_base import OfflineAlgorithm, Policy
from tianshou.data import Batch, ReplayBuffer
from torch.nn import functional as F

from recgym.agents.rliv_ua import (
    CandidateStates,
    LIVSlatePolicy,
    RLIVUAConfig,
    build_rliv_ua,
    candidate_states,
    check_scri_buffer,
    liv_scores,
    load_rliv_ua,
    save_rliv_ua,
    score_candidates,
    train_rliv_ua,
    update_steps,
    user_author_states,
)
from recgym.envs import make_env
from recgym.envs.contract import with_action_space
from recgym.simulators.scri import TASKS, UA_COUNTERS, asa_next_counters, tasks_for

USER_DIM = 2
NO_GIFT = tasks_for(("click", "watch_ms", "follow"))
TINY = {"hidden_sizes": (8,), "embedding_dim": 4, "item_features": False}
"""Small nets of the author-only variant: the hand-made batches below check its Eq. 5-10."""
TINY_ITEM = {**TINY, "item_features": True}
UA_WORLD = {"n_users": 30, "n_items": 120, "n_authors": 12, "seed": 3}


# --------------------------------------------------------------------------- SCRI buffers
def scri_buffer(
    obs: np.ndarray,
    obs_next: np.ndarray,
    user: np.ndarray,
    author: np.ndarray,
    rewards: np.ndarray,
) -> ReplayBuffer:
    """A ReplayBuffer in the `simulators.scri` layout (rewards: (n, len(TASKS)))."""
    n = len(obs)
    never = np.zeros(n, dtype=bool)
    batch = Batch(
        obs=np.asarray(obs, np.float32),
        act=np.arange(n, dtype=np.int64),
        rew=np.asarray(rewards, np.float32)[:, TASKS.index("watch_time")],
        terminated=never,
        truncated=never,
        done=never,
        obs_next=np.asarray(obs_next, np.float32),
        info=Batch(
            user=np.asarray(user, np.int64),
            author=np.asarray(author, np.int64),
            rewards=np.asarray(rewards, np.float32),
            timestamp=np.arange(n, dtype=np.int64) * 1000,
        ),
    )
    buf = ReplayBuffer(n, random_seed=0)
    buf.set_batch(batch)
    buf._size = n
    return buf


def hand_buffer(gifts: bool = False) -> ReplayBuffer:
    """Four hand-written SCRI samples (user_dim 2): clicks 0/1/1/1, watch 0/10/20/30 s."""
    f_u = np.array([[0.5, -1.0], [0.5, -1.0], [1.5, 0.0], [-0.5, 2.0]])
    f_a = np.array([[0.2, 0.1, 0.0], [0.9, -0.3, 1.0], [0.2, 0.1, 0.0], [0.4, 0.5, 0.0]])
    f_ua = np.array([[0, 0, 0, 0, 0, 0], [3, 1, 0, 0, 0, 40], [1, 0, 0, 0, 0, 5], [0.0] * 6])
    rewards = np.array(
        [[0, 0, 0, 0], [1, 10, 0, 0], [1, 20, 1, 0], [1, 30, 0, 1 if gifts else 0]],
        dtype=np.float32,
    )
    responses = {
        "click": rewards[:, 0],
        "watch_ms": rewards[:, 1] * 1000,
        "long_view": rewards[:, 1] > 15,
        "follow": rewards[:, 2],
        "gift": rewards[:, 3],
    }
    obs = np.concatenate([f_u, f_a, f_ua], axis=1)
    obs_next = np.concatenate([f_u, f_a, asa_next_counters(f_ua, responses)], axis=1)
    return scri_buffer(obs, obs_next, [0, 0, 1, 2], [7, 8, 7, 9], rewards)


def huber(x: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """The Huber function written out (0.5 x^2 inside delta, linear outside)."""
    a = x.abs()
    return torch.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))


# --------------------------------------------------------------------------- losses = equations
def test_losses_are_eq_5_to_10_on_a_hand_made_batch():
    cfg = RLIVUAConfig(tasks=("click", "watch_time"), id_embeddings=False, **TINY)
    buf = hand_buffer()
    algo = build_rliv_ua(buf, cfg)
    net = algo.policy.net
    # reward scales: mean of the positive rewards, click 1, watch (10 + 20 + 30) / 3 = 20
    np.testing.assert_allclose(net.reward_scales.numpy(), [1.0, 20.0])
    # make the second target critic larger, so min(Q1', Q2') must pick Q1'
    target = algo.net_old.module
    with torch.no_grad():
        for k in range(len(net.towers)):
            target.critics.biases[-1][k * len(net.heads) + 2] += 1.0  # V2' of tower k
    batch = buf[np.arange(4)]
    terms = algo.losses(batch)

    obs = torch.as_tensor(batch.obs)
    obs_next = torch.as_tensor(batch.obs_next)
    r = torch.as_tensor(batch.info.rewards)[:, [0, 1]] / torch.tensor([1.0, 20.0])
    with torch.no_grad():
        nxt = algo.net_old(obs_next)
    assert torch.all(nxt.q2 > nxt.q1)
    y = r + 0.9 * nxt.q1  # Eq. 7 with Eq. 5's min, no terminal mask
    torch.testing.assert_close(terms["y"], y)
    torch.testing.assert_close(terms["rewards"], r)

    out = net(obs)
    raw = net.critics(net_input(net, obs)).reshape(4, 2, 3)
    torch.testing.assert_close(out.r_hat, raw[..., 0])  # Eq. 8: Q_k = r_hat + gamma V_k
    torch.testing.assert_close(out.q1, raw[..., 0] + 0.9 * raw[..., 1])
    torch.testing.assert_close(out.q2, raw[..., 0] + 0.9 * raw[..., 2])
    # Eq. 9 per tower (batch mean), summed over towers (Eq. 10); no gift -> no L_A
    q_loss = (huber(out.q1 - y).mean(0) + huber(out.q2 - y).mean(0)).sum()
    reward_loss = huber(out.r_hat - r).mean(0).sum()
    torch.testing.assert_close(terms["q_loss"], q_loss)
    torch.testing.assert_close(terms["reward_loss"], reward_loss)
    torch.testing.assert_close(terms["loss"], q_loss + reward_loss)
    assert "assist_loss" not in terms

    # r_hat learns from its supervised term only: the TD terms give its head no gradient
    net.zero_grad()
    terms["q_loss"].backward()
    r_hat_rows = [k * len(net.heads) for k in range(len(net.towers))]
    assert torch.all(net.critics.weights[-1].grad[r_hat_rows] == 0)
    assert torch.any(net.critics.weights[-1].grad[[1, 2, 4, 5]] != 0)


def net_input(net, obs: torch.Tensor) -> torch.Tensor:
    return torch.cat(net.embedding(obs), dim=1)


def test_without_sl_the_q_heads_are_plain_and_the_huber_terms_remain():
    cfg = RLIVUAConfig(tasks=("click", "watch_time"), supervised=False, id_embeddings=False, **TINY)
    buf = hand_buffer()
    algo = build_rliv_ua(buf, cfg)
    batch = buf[np.arange(4)]
    terms = algo.losses(batch)
    net = algo.policy.net
    raw = net.critics(net_input(net, torch.as_tensor(batch.obs))).reshape(4, 2, 2)
    torch.testing.assert_close(terms["q1"], raw[..., 0])
    torch.testing.assert_close(terms["q2"], raw[..., 1])
    y = terms["y"]
    expected = (huber(raw[..., 0] - y).mean(0) + huber(raw[..., 1] - y).mean(0)).sum()
    torch.testing.assert_close(terms["loss"], expected)
    assert "reward_loss" not in terms


def test_assistance_loss_is_bce_of_gift_from_user_and_author_embeddings():
    buf = hand_buffer(gifts=True)
    algo = build_rliv_ua(buf, RLIVUAConfig(id_embeddings=False, **TINY))
    net = algo.policy.net
    batch = buf[np.arange(4)]
    terms = algo.losses(batch)
    h_u, h_a, _ = net.embedding(torch.as_tensor(batch.obs))
    logit = net.assist(torch.cat([h_u, h_a], 1)).squeeze(-1)
    expected = F.binary_cross_entropy_with_logits(logit, torch.tensor([0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(terms["assist_loss"], expected)
    torch.testing.assert_close(terms["loss"], terms["q_loss"] + terms["reward_loss"] + expected)


def test_target_networks_move_by_tau():
    buf = hand_buffer()
    algo = build_rliv_ua(buf, RLIVUAConfig(tasks=NO_GIFT, **TINY))
    online = algo.policy.net
    target = algo.net_old.module
    old = [p.detach().clone() for p in target.parameters()]
    assert all(torch.equal(o, p) for o, p in zip(old, online.parameters(), strict=True))
    stats = update_steps(algo, buf, 1, batch_size=4)
    assert np.isfinite(stats.loss)
    moved = False
    for t_old, t_new, src in zip(old, target.parameters(), online.parameters(), strict=True):
        torch.testing.assert_close(t_new, 0.005 * src + 0.995 * t_old)
        moved |= not torch.equal(t_new, t_old)
    assert moved


# --------------------------------------------------------------------------- ablations
@pytest.mark.parametrize(
    ("switches", "towers", "heads", "assist"),
    [
        ({}, TASKS, ("r_hat", "v1", "v2"), True),
        ({"multi_task": False}, ("watch_time",), ("r_hat", "v1", "v2"), False),
        ({"supervised": False}, TASKS, ("q1", "q2"), True),
        ({"multi_task": False, "supervised": False}, ("watch_time",), ("q1", "q2"), False),
        ({"assistance": False}, TASKS, ("r_hat", "v1", "v2"), False),
        ({"assistance": False, "supervised": False}, TASKS, ("q1", "q2"), False),
        ({"multi_task": False, "rank_task": "gift"}, ("gift",), ("r_hat", "v1", "v2"), True),
    ],
)
def test_ablation_switches_change_the_model(switches, towers, heads, assist):
    buf = hand_buffer(gifts=True)
    algo = build_rliv_ua(buf, RLIVUAConfig(**TINY, **switches))
    net = algo.policy.net
    assert net.towers == towers
    assert net.heads == heads
    assert net.critics.n_members == len(towers) * len(heads)
    assert (net.assist is not None) is assist
    stats = update_steps(algo, buf, 2, batch_size=4)
    assert (stats.reward_loss is not None) is ("r_hat" in heads)
    assert (stats.assist_loss is not None) is assist
    out = net(torch.as_tensor(buf[np.arange(4)].obs))
    assert out.q1.shape == (4, len(towers))
    assert (out.r_hat is None) is ("r_hat" not in heads)


def test_no_gift_task_means_no_gift_tower_and_no_assistance_net():
    buf = hand_buffer()
    assert NO_GIFT == ("click", "watch_time", "follow")
    algo = build_rliv_ua(buf, RLIVUAConfig(tasks=NO_GIFT, **TINY))
    net = algo.policy.net
    assert net.towers == NO_GIFT
    assert net.assist is None
    assert not any(name.startswith("assist") for name, _ in net.named_parameters())
    assert update_steps(algo, buf, 1, batch_size=4).assist_loss is None
    with pytest.warns(UserWarning, match="without a single gift"):
        build_rliv_ua(buf, RLIVUAConfig(**TINY))  # gift tower on a gift-less buffer


def test_config_and_buffer_are_validated():
    with pytest.raises(ValueError, match="rank_task"):
        RLIVUAConfig(tasks=NO_GIFT, rank_task="gift")
    with pytest.raises(ValueError, match="unknown tasks"):
        RLIVUAConfig(tasks=("click", "likes"), rank_task="click")
    buf = hand_buffer()
    data = buf[np.arange(4)]
    bad = scri_buffer(data.obs, data.obs_next, [0] * 4, [1] * 4, data.info.rewards[:, :3])
    with pytest.raises(ValueError, match="columns"):
        check_scri_buffer(bad)
    with pytest.raises(ValueError, match="features"):
        check_scri_buffer(buf, state_dim=99)


def test_algorithm_and_policy_are_tianshou_types():
    algo = build_rliv_ua(hand_buffer(), RLIVUAConfig(tasks=NO_GIFT, **TINY), n_candidates=3)
    assert isinstance(algo, OfflineAlgorithm)
    assert isinstance(algo.policy, Policy)
    rows = hand_buffer()[np.arange(4)].obs
    states = np.stack([rows[[0, 1, 0]], rows[[3, 3, 3]]])  # 2 requests x 3 candidates
    out = algo.policy(Batch(obs=states, info=Batch(user=[0, 5], author=[[7, 8, 7], [9, 9, 9]])))
    assert out.act.shape == (2, 3)
    assert algo.policy.action_space.contains(out.act[0])
    assert out.act[0, 0] == out.act[0, 2]  # one author, one state: one LIV, one score
    np.testing.assert_array_equal(out.act[1], [1.0, 1.0, 1.0])


# --------------------------------------------------------------------------- serving
def test_serving_scores_candidates_from_raw_feature_arrays():
    buf = hand_buffer()
    algo = build_rliv_ua(buf, RLIVUAConfig(tasks=NO_GIFT, **TINY))
    f_u = np.array([0.5, -1.0])
    f_a = np.array([[0.2, 0.1, 0.0], [0.9, -0.3, 1.0], [0.2, 0.1, 0.0], [0.4, 0.5, 0.0]])
    f_ua = np.array([[0, 0, 0, 0, 0, 0], [3, 1, 0, 0, 0, 40], [0] * 6, [9, 9, 1, 0, 0, 400.0]])
    states = candidate_states(f_u, f_a, f_ua)
    assert states.shape == (4, USER_DIM + 3 + len(UA_COUNTERS))
    np.testing.assert_array_equal(states[:, :USER_DIM], np.tile(f_u, (4, 1)))
    authors = np.array([7, 8, 7, 9])
    scores = score_candidates(algo, f_u, f_a, f_ua, user=0, authors=authors)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert np.all(scores >= -1) and np.all(scores <= 1)
    assert scores.max() == 1.0
    assert scores[0] == scores[2]  # one author, one state: one LIV, one score
    # ids never seen in training use the unseen-id vectors, like passing no ids at all
    policy = algo.policy
    unseen = policy.values(states, users=12345, authors=np.array([-5, 999, 998, 4242]))
    np.testing.assert_allclose(unseen, policy.values(states))
    assert not np.allclose(policy.values(states, 0, authors), unseen)
    with pytest.raises(ValueError, match="features"):
        policy.values(states[:, 1:])


def test_id_dropout_replaces_ids_by_the_unseen_row_in_training_mode_only():
    algo = build_rliv_ua(hand_buffer(), RLIVUAConfig(tasks=NO_GIFT, id_dropout=1.0, **TINY))
    emb = algo.policy.net.embedding
    obs = torch.as_tensor(hand_buffer()[np.arange(4)].obs)
    users, authors = torch.tensor([0, 0, 1, 2]), torch.tensor([7, 8, 7, 9])
    np.testing.assert_array_equal(emb.index(authors, emb.author_vocab), [1, 2, 1, 3])
    emb.train()
    for with_ids, without in zip(emb(obs, users, authors), emb(obs), strict=True):
        torch.testing.assert_close(with_ids, without)
    emb.eval()
    assert not torch.allclose(emb(obs, users, authors)[0], emb(obs)[0])


def test_liv_scores_rank_and_share_ties():
    np.testing.assert_allclose(liv_scores(np.array([3.0, 1.0, 3.0, 2.0])), [1, -1, 1, -1 / 3])
    batch = liv_scores(np.array([[0.0, 1.0], [5.0, 5.0]]))
    np.testing.assert_allclose(batch, [[-1, 1], [1, 1]])


def test_slate_policy_acts_through_a_states_adapter():
    buf = hand_buffer()
    algo = build_rliv_ua(buf, RLIVUAConfig(tasks=NO_GIFT, **TINY))
    rows = buf[np.arange(4)].obs

    def states_fn(obs):
        return CandidateStates(obs["states"], obs["user"], obs["authors"])

    box = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
    slate = LIVSlatePolicy(algo, states_fn, action_space=box)
    obs = {"states": rows, "user": 0, "authors": np.array([7, 8, 7, 9]), "mask": np.ones(4)}
    action = slate.act(obs)
    assert box.contains(action)
    assert int(np.argmax(action)) == int(np.argmax(slate.values(obs)))
    assert with_action_space(slate, spaces.Discrete(4)).act(obs) in range(4)


@pytest.mark.filterwarnings("ignore:the gift tower trains on a buffer without a single gift")
def test_user_author_env_adapter_builds_the_env_states_and_acts_in_its_space():
    """Trained on the env's own SCRI transitions (info["scri"]), the slate policy reads
    UserAuthor-v0 observations into the env's s_ua, and acts in both action modes."""
    kwargs = {"world_config": UA_WORLD, "n_candidates": 12, "slate_size": 3, "max_steps": 10}
    env = make_env("recgym/UserAuthor-v0", **kwargs)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("obs", "obs_next", "user", "author", "rewards")}
    for _ in range(40):
        obs, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 12).astype(np.float32))
        for key, values in rows.items():
            values.append(info["scri"][key])
        if terminated or truncated:
            obs, info = env.reset()
    buf = scri_buffer(*(np.concatenate(rows[k]) for k in rows))
    algo = build_rliv_ua(buf, RLIVUAConfig(tasks=env.unwrapped.tasks, **TINY), n_candidates=12)
    update_steps(algo, buf, 3, batch_size=32)

    base = env.unwrapped
    cands = user_author_states(obs)  # reads the observation only: user_id, author_id, rows
    np.testing.assert_allclose(
        cands.states, base.states(info["user_id"], info["candidates"]), rtol=1e-5, atol=1e-3
    )
    assert int(cands.users) == info["user_id"]
    np.testing.assert_array_equal(cands.authors, base.catalogue.author[info["candidates"]])
    slate = LIVSlatePolicy(algo)  # the UserAuthor-v0 adapter is the default
    action = slate.act(obs)
    assert env.action_space.contains(action)
    liv = slate.values(obs)
    for a in np.unique(cands.authors):  # candidates of one author share the LIV and the score
        same = cands.authors == a
        assert np.ptp(liv[same]) == 0 and np.ptp(action[same]) == 0
    # the Tianshou policy on a batch of env observations, as a Collector would call it
    batch_obs = Batch({k: np.stack([v, v]) for k, v in obs.items()})
    out = algo.policy(Batch(obs=batch_obs, info=Batch()))
    np.testing.assert_array_equal(out.act[0], action)
    discrete = make_env("recgym/UserAuthor-v0", **kwargs, action_mode="discrete")
    obs, info = discrete.reset(seed=0)
    assert discrete.action_space.contains(with_action_space(slate, discrete.action_space).act(obs))


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip_and_mismatch_fails_clearly(tmp_path):
    buf = hand_buffer(gifts=True)
    cfg = RLIVUAConfig(**TINY)
    algo = build_rliv_ua(buf, cfg)
    update_steps(algo, buf, 3, batch_size=4)
    path = save_rliv_ua(algo, tmp_path / "rliv.pt")
    meta = json.loads((tmp_path / "rliv.pt.json").read_text())
    assert meta["kind"] == "RLIV-UA" and meta["config"]["hidden_sizes"] == [8]
    loaded = load_rliv_ua(path)
    assert loaded.config == cfg
    states = buf[np.arange(4)].obs
    for task in TASKS:
        np.testing.assert_array_equal(
            loaded.policy.values(states, [0, 0, 1, 2], [7, 8, 7, 9], task=task),
            algo.policy.values(states, [0, 0, 1, 2], [7, 8, 7, 9], task=task),
        )
    saved, again = algo.state_dict(), loaded.state_dict()
    for key, value in saved.items():
        if key != "_optimizers":
            torch.testing.assert_close(again[key], value)
    update_steps(loaded, buf, 1, batch_size=4)  # optimiser state restored: training continues

    follow = load_rliv_ua(path, RLIVUAConfig(**TINY, rank_task="follow", epochs=9))
    assert follow.policy.rank_task == "follow" and follow.config.epochs == 9
    with pytest.raises(ValueError, match="embedding_dim"):
        load_rliv_ua(path, RLIVUAConfig(hidden_sizes=(8,), embedding_dim=16))
    meta["config"]["hidden_sizes"] = [16]
    (tmp_path / "rliv.pt.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="do not match"):
        load_rliv_ua(path)
    meta["kind"] = "DQN"
    (tmp_path / "rliv.pt.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not an RLIV-UA"):
        load_rliv_ua(path)


# --------------------------------------------------------------------------- learning
N_AUTHORS = 20
"""Even authors are "myopic" (9 s per watch forever), odd ones "growing" (2 s + 4 s per past
click up to 4): a new pair's watch reward is 7.2 vs 1.6 now, its discounted LIV 72 vs ~109."""


def long_term_buffer(n_users: int = 120, pairs: int = 8, max_len: int = 12, seed: int = 0):
    """UA interaction chains of a world where the myopically better author is the long-term
    worse one; counters follow ASA (Eq. 4). Returns the buffer, f_u, f_a and author kinds."""
    rng = np.random.default_rng(seed)
    f_u = rng.normal(size=(n_users, USER_DIM))
    kind = np.arange(N_AUTHORS) % 2
    f_a = np.stack([kind, rng.normal(0, 0.3, N_AUTHORS), np.zeros(N_AUTHORS)], 1)
    user = np.repeat(np.arange(n_users), pairs)
    author = np.concatenate([rng.choice(N_AUTHORS, pairs, replace=False) for _ in range(n_users)])
    length = rng.integers(1, max_len + 1, len(user))
    counters = np.zeros((len(user), len(UA_COUNTERS)), dtype=np.float32)
    parts = []
    for t in range(max_len):
        click = rng.random(len(user)) < 0.8
        past_clicks = counters[:, UA_COUNTERS.index("clicks")]
        watch = np.where(kind[author] == 0, 9.0, 2.0 + 4.0 * np.minimum(past_clicks, 4))
        watch = np.maximum(watch + rng.normal(size=len(user)), 0.5) * click
        follow = click & (rng.random(len(user)) < 0.05)
        responses = {"click": click, "watch_ms": watch * 1000, "long_view": watch > 7}
        responses["follow"] = follow
        nxt = asa_next_counters(counters, responses)
        rewards = np.stack([click, watch, follow, np.zeros(len(user))], axis=1)
        live = length > t
        parts.append(
            (
                np.concatenate([f_u[user], f_a[author], counters], 1)[live],
                np.concatenate([f_u[user], f_a[author], nxt], 1)[live],
                user[live],
                author[live],
                rewards[live],
            )
        )
        counters = nxt
    obs, obs_next, users, authors, rewards = (np.concatenate(x) for x in zip(*parts, strict=True))
    return scri_buffer(obs, obs_next, users, authors, rewards), f_u, f_a, kind


@pytest.mark.learning
def test_rliv_ua_prefers_the_long_term_better_author():
    """The LIV of a new pair ranks the growing authors above the myopic ones for every user;
    the supervised r_hat head (a myopic ranker on the same data) ranks them the other way.
    Table 1's tau = 0.005 needs thousands of steps to propagate the future; the test uses
    tau = 0.05 to stay within seconds."""
    buf, f_u, f_a, kind = long_term_buffer()
    cfg = RLIVUAConfig(
        tasks=NO_GIFT, batch_size=256, tau=0.05, epochs=2, steps_per_epoch=300, item_features=False
    )  # an author-level world: no item features in its samples
    algo, stats = train_rliv_ua(buf, cfg, progress=False)
    assert stats.gradient_steps == 600 and len(stats.loss_curve) == 2
    policy = algo.policy
    new_pair = np.zeros((N_AUTHORS, len(UA_COUNTERS)))
    liv, r_hat = [], []
    for u in range(30):
        states = candidate_states(f_u[u], f_a, new_pair)
        liv.append(policy.values(states, u, np.arange(N_AUTHORS)))
        r_hat.append(policy.values(states, u, np.arange(N_AUTHORS), head="r_hat"))
    liv, r_hat = np.array(liv), np.array(r_hat)
    growing, myopic = kind == 1, kind == 0
    assert np.all(liv[:, growing].mean(1) > liv[:, myopic].mean(1) + 10.0)
    assert np.all(r_hat[:, myopic].mean(1) > r_hat[:, growing].mean(1) + 1.0)
    # r_hat fits the immediate watch reward of a new pair: 0.8 * 9 = 7.2 and 0.8 * 2 = 1.6
    assert abs(r_hat[:, myopic].mean() - 7.2) < 1.5
    assert abs(r_hat[:, growing].mean() - 1.6) < 1.5
    # and serving shows a growing author first
    scores = score_candidates(algo, f_u[0], f_a, new_pair, user=0, authors=np.arange(N_AUTHORS))
    assert kind[int(np.argmax(scores))] == 1


def test_training_is_seeded():
    buf = hand_buffer()
    cfg = RLIVUAConfig(tasks=NO_GIFT, batch_size=4, epochs=1, steps_per_epoch=5, **TINY)
    a, _ = train_rliv_ua(buf, cfg, progress=False)
    b, _ = train_rliv_ua(buf, cfg, progress=False)
    for p, q in zip(a.policy.net.parameters(), b.policy.net.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


# --------------------------------------------------------------------------- items and gifts
def test_world_logs_carry_gifts_through_asa_to_the_gift_tower_and_the_assistance_net(tiny_logs):
    """The world's logs have the optional is_gift column; the loader types it and says so,
    ASA turns it into the gift task, and RLIV-UA trains its gift tower and assistance net."""
    from recgym import data
    from recgym.data.asa import asa_samples

    ds = data.load(tiny_logs)
    assert ds.interactions["is_gift"].dtype == np.int8
    assert any(note.startswith("is_gift: an optional gift column") for note in ds.report.notes)
    samples = asa_samples(ds)
    assert samples.tasks == TASKS  # the gift task exists
    info = samples.buffer[np.arange(len(samples.buffer))].info
    gifts = info.rewards[:, TASKS.index("gift")]
    assert gifts.sum() == ds.interactions["is_gift"].sum() > 0
    cfg = RLIVUAConfig(tasks=samples.tasks, **TINY_ITEM)
    algo = build_rliv_ua(samples.buffer, cfg)
    assert "gift" in algo.policy.net.towers and algo.policy.net.assist is not None
    before = [p.clone() for p in algo.policy.net.assist.parameters()]
    stats = update_steps(algo, samples.buffer, 5, batch_size=512)
    assert stats.assist_loss is not None and np.isfinite(stats.assist_loss)
    after = list(algo.policy.net.assist.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    states = samples.buffer[np.arange(8)]
    gift_liv = algo.policy.values(
        states.obs, states.info.user, states.info.author, task="gift",
        items=states.act, item_x=states.info.item_x,
    )  # fmt: skip
    assert np.isfinite(gift_liv).all()


def test_an_item_aware_model_tells_an_authors_items_apart_and_maximises_over_them(tiny_logs):
    """With item features Q depends on the item (its id and static row): items of one author
    get different LIVs at serving, and Eq. 7's target is the max over the author's item set
    (its most logged items); the author-only variant ties them and bootstraps on Q'(s')."""
    from recgym.data.asa import asa_samples

    env = make_env("recgym/UserAuthor-v0", backend="world", world_dir=str(tiny_logs))
    samples = asa_samples(tiny_logs, backend=env.unwrapped.model)
    buf = samples.buffer
    cfg = RLIVUAConfig(tasks=samples.tasks, max_target_items=4, **TINY_ITEM)
    algo = build_rliv_ua(buf, cfg)
    update_steps(algo, buf, 10, batch_size=256)
    net = algo.policy.net.eval()  # no id dropout
    batch = buf[np.arange(6)]
    authors = torch.as_tensor(batch.info.author)
    # the item sets: each author's most often logged items, at most max_target_items
    data = buf[np.arange(len(buf))]
    a0 = int(batch.info.author[0])
    ids, counts = np.unique(data.act[data.info.author == a0], return_counts=True)
    row = int(torch.searchsorted(net.table_authors, torch.tensor(a0)))
    table = net.table_items[row].numpy()
    assert len(table) == 4 and set(table[table >= 0]) <= set(ids)
    assert counts[np.isin(ids, table)].min() >= np.sort(counts)[::-1][: (table >= 0).sum()].min()
    # Eq. 7: the target's value is the max over that set, item by item
    obs_next = torch.as_tensor(batch.obs_next)
    users = torch.as_tensor(batch.info.user)
    with torch.no_grad():
        target = net.next_values(obs_next, users, authors)
        for b in range(len(batch)):
            r = int(torch.searchsorted(net.table_authors, authors[b]))
            items = net.table_items[r]
            keep = items >= 0
            m = int(keep.sum())
            one = (obs_next[b : b + 1].repeat(m, 1), users[b].repeat(m), authors[b].repeat(m))
            out = net(*one, items[keep], net.table_item_x[r][keep])
            torch.testing.assert_close(target[b], torch.minimum(out.q1, out.q2).max(0).values)
    # serving: the items of one author no longer tie
    obs, _ = env.reset(seed=0)
    liv = LIVSlatePolicy(algo).values(obs)
    cands = user_author_states(obs)
    np.testing.assert_array_equal(cands.items, obs["item_id"])
    shared = [a for a in np.unique(cands.authors) if (cands.authors == a).sum() > 1]
    assert shared and any(np.ptp(liv[cands.authors == a]) > 0 for a in shared)
    # the author-only variant on the same samples: ties, and a target on Q'(s') alone
    flat = build_rliv_ua(buf, RLIVUAConfig(tasks=samples.tasks, **TINY))
    liv = LIVSlatePolicy(flat).values(obs)
    assert all(np.ptp(liv[cands.authors == a]) == 0 for a in shared)
    flat_net = flat.policy.net.eval()
    with torch.no_grad():
        out = flat_net(obs_next, users, authors)
        target = flat_net.next_values(obs_next, users, authors)
        torch.testing.assert_close(target, torch.minimum(out.q1, out.q2))
    with pytest.raises(ValueError, match="item-aware"):
        algo.policy.values(batch.obs, batch.info.user, batch.info.author)
