"""Unit tests of the RLIV-UA paper's baselines: DeepFM's FM term and id vocabulary, the linear
ranking adapter of TD3/CQL (layouts, weights -> scores -> slate, the projected logging policy),
and RLUR's reward shaping and observation."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import torch

from recgym.agents.continuous import (
    CandidateRowsView,
    LinearScoreEnv,
    RowLayout,
    behaviour_weights,
    linear_scores,
)
from recgym.agents.deepfm import (
    DeepFMConfig,
    DeepFMNet,
    DeepFMRanker,
    Vocabulary,
    fm_interaction,
    raw_ids,
)
from recgym.agents.rlur import (
    FeedbackView,
    RLURConfig,
    RLURShaping,
    rlur_reward,
    standardise,
)
from recgym.envs import make_env
from recgym.envs.contract import (
    CANDIDATE_FEATURES,
    SESSION_FEATURES,
    UA_CANDIDATE_FEATURES,
    flatten_observation,
    for_env,
    row_layout,
)


def layout_of(env):
    return row_layout(env.observation_space)


WORLD = {"n_users": 50, "n_items": 200, "n_authors": 20, "seed": 7}


# --------------------------------------------------------------------------- DeepFM
def test_fm_term_equals_the_explicit_pairwise_sum():
    e = torch.tensor(
        [
            [[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]],
            [[0.0, 1.0], [2.0, 2.0], [-1.0, 4.0]],
        ]
    )  # (B=2, F=3, k=2)
    explicit = torch.stack(
        [sum(torch.dot(x[f], x[g]) for f, g in combinations(range(3), 2)) for x in e]
    )
    # by hand for the first row: <e1,e2> = 0.5 - 2 = -1.5, <e1,e3> = 3, <e2,e3> = 1.5
    torch.testing.assert_close(explicit[0], torch.tensor(3.0))
    torch.testing.assert_close(fm_interaction(e), explicit)
    big = torch.randn(4, 5, 7, 3, generator=torch.Generator().manual_seed(0))
    pairs = sum((big[..., f, :] * big[..., g, :]).sum(-1) for f, g in combinations(range(7), 2))
    torch.testing.assert_close(fm_interaction(big), pairs, rtol=1e-5, atol=1e-5)


def test_deepfm_output_is_first_order_plus_fm_plus_deep():
    torch.manual_seed(0)
    net = DeepFMNet((3, 4), n_dense=2, n_tasks=2, embedding_dim=3, hidden_sizes=(5,))
    sparse = torch.tensor([[1, 2], [0, 3]])
    dense = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    e = net.field_embeddings(sparse, dense)  # mean 0, std 1 buffers: inputs as given
    assert e.shape == (2, 4, 3)
    torch.testing.assert_close(e[:, 2:], dense.unsqueeze(-1) * net.dense_embedding)
    first = net.first_order(sparse + net.offsets).sum(-2) + net.dense_linear(dense)
    expected = first + net.deep(e.flatten(-2)) + fm_interaction(e).unsqueeze(-1)
    torch.testing.assert_close(net(sparse, dense), expected)


def test_vocabulary_maps_raw_ids_and_shares_an_unknown_code():
    class DS:  # the three tables of a loaded KuaiRand Dataset that DeepFM reads
        users = pd.DataFrame({"user_id": [10, 30]})
        items = pd.DataFrame(
            {"item_id": [7, 5, 9], "author_id": [100, 200, 100], "tag": ["1,14", "2", None]}
        )
        interactions = pd.DataFrame({"user_id": [20, 10], "item_id": [5, 8]})

    vocab = Vocabulary.from_dataset(DS())
    assert list(vocab.users) == [10, 20, 30] and list(vocab.items) == [5, 7, 8, 9]
    assert vocab.sizes == (4, 5, 3, 3)  # +1 unknown each; authors {100, 200}, leaves {2, 14}
    codes = vocab.encode(np.array([20, 99]), np.array([7, 123]))
    # user 20 -> 2; item 7 -> 2, its author 100 -> 1, its leaf category 14 -> 2
    np.testing.assert_array_equal(codes[0], [2, 2, 1, 2])
    np.testing.assert_array_equal(codes[1], [0, 0, 0, 0])  # unseen user and item
    # item 8 is only in the log (no items row): known item, unknown author and category
    np.testing.assert_array_equal(vocab.encode(np.array(10), np.array(8)), [1, 3, 0, 0])


def test_raw_ids_use_a_learned_simulators_id_maps():
    env = make_env(world_config=WORLD)
    model = env.unwrapped.model
    users, items = raw_ids(model, np.array(3), np.array([4, 5]))  # the world: ids are raw ids
    assert users == 3 and list(items) == [4, 5]
    model.user_ids = np.arange(50) + 1000  # what a LearnedSimulator carries
    model.item_ids = np.arange(200) * 10
    users, items = raw_ids(model, np.array(3), np.array([4, 5]))
    assert users == 1003 and list(items) == [40, 50]


def test_deepfm_reads_ids_from_the_observation_mapped_by_its_backend():
    """DeepFM's sparse ids come from obs["user_id"] / obs["item_id"]; `for_env` binds the
    backend's raw-id maps once (the world: identity), and acting never reads the env."""
    env = make_env(world_config=WORLD, n_candidates=6)
    model = DeepFMRanker(DeepFMConfig(embedding_dim=2, hidden_sizes=(4,)))
    raw_users, raw_items = np.arange(50) + 1000, np.arange(200) * 10
    no_table = np.zeros(201, dtype=np.int64)
    model._build(
        Vocabulary(
            users=raw_users,
            items=raw_items,
            item_author=no_table,
            item_category=no_table,
            n_authors=1,
            n_categories=1,
        )
    )
    obs, _ = env.reset(seed=0)
    seen = []
    model.vocab.encode = lambda users, items: (
        seen.append((users, items)) or np.zeros((len(items), 4), dtype=np.int64)
    )
    model.predict(obs)
    np.testing.assert_array_equal(seen[-1][1], obs["item_id"])  # the world's ids are raw
    backend = env.unwrapped.model
    backend.user_ids, backend.item_ids = raw_users, raw_items
    bound = for_env(model, env)
    assert bound is not model and model.item_ids is None
    bound.predict(obs)
    np.testing.assert_array_equal(seen[-1][0], np.full(6, 1000 + obs["user_id"][0]))
    np.testing.assert_array_equal(seen[-1][1], raw_items[obs["item_id"]])


# --------------------------------------------------------------------------- linear adapter
def test_layouts_of_session_and_user_author_envs():
    env = make_env(world_config=WORLD, n_candidates=10)
    layout = layout_of(env)
    user_dim = env.unwrapped.model.user_feature_dim
    assert layout.context_dim == user_dim + len(SESSION_FEATURES)
    assert layout.row_names == CANDIDATE_FEATURES and layout.action_dim == 7
    assert layout.obs_dim == flatten_observation(env.reset(seed=0)[0]).shape[0]

    ua = make_env("recgym/UserAuthor-v0", world_config=WORLD, n_candidates=10)
    ua_layout = layout_of(ua)
    assert ua_layout.row_names == UA_CANDIDATE_FEATURES and ua_layout.action_dim == 16
    obs, _ = ua.reset(seed=0)
    context, rows = ua_layout.split(flatten_observation(obs))
    np.testing.assert_array_equal(rows, obs["candidates"])
    np.testing.assert_array_equal(context, np.concatenate([obs["user"], obs["context"]]))


def test_weights_map_to_scores_and_the_top_scored_candidates_are_shown():
    layout = RowLayout(user_dim=1, context_dim=2, n_rows=3, row_names=("a", "b", "c"))
    obs = np.array([9.0, 9.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 1.0, 1.0, -1.0])
    w = np.array([1.0, -0.5, 0.25])
    np.testing.assert_allclose(linear_scores(layout, obs, w), [1.5, -0.5, 0.25])
    on_b = RowLayout(
        user_dim=1, context_dim=2, n_rows=3, row_names=("a", "b", "c"), score_cols=(1,)
    )
    np.testing.assert_allclose(linear_scores(on_b, obs, np.array([2.0])), [0.0, 2.0, 2.0])
    batch = torch.tensor(np.stack([obs, obs]), dtype=torch.float32)
    torch.testing.assert_close(
        linear_scores(layout, batch, torch.tensor(np.stack([w, -w]), dtype=torch.float32)),
        torch.tensor([[1.5, -0.5, 0.25], [-1.5, 0.5, -0.25]]),
    )

    for mode in ("scores", "discrete"):
        base = make_env(world_config=WORLD, n_candidates=12, slate_size=3, action_mode=mode)
        env = LinearScoreEnv(base, CandidateRowsView(layout_of(base)), keep_info=True)
        obs, info = env.reset(seed=1)
        assert env.action_space.shape == (7,) and env.observation_space.contains(obs)
        w = np.array([0.5, -1.0, 0.0, 0.8, 0.3, -0.2, -0.9])
        _, rows = layout_of(base).split(obs)  # the LinearScoreEnv's flat observation
        order = np.argsort(-(rows.astype(np.float64) @ w), kind="stable")
        _, _, _, _, step_info = env.step(w)
        k = 1 if mode == "discrete" else 3
        np.testing.assert_array_equal(step_info["slate"], info["candidates"][order[:k]])


def test_linear_score_env_passes_the_gymnasium_checker():
    from gymnasium.utils.env_checker import check_env

    for env_id in ("recgym/Session-v0", "recgym/UserAuthor-v0"):
        base = make_env(env_id, world_config=WORLD, n_candidates=10, slate_size=3)
        check_env(LinearScoreEnv(base, CandidateRowsView(layout_of(base))), skip_render_check=True)


def test_projected_logging_policy_reproduces_a_linear_ranker():
    env = make_env(world_config=WORLD, n_candidates=30)
    layout = layout_of(env)
    obs = flatten_observation(env.reset(seed=2)[0])
    w_true = np.array([0.4, -0.2, 0.0, 0.7, -0.5, 0.1, -1.0])
    values = linear_scores(layout, obs, w_true)
    w = behaviour_weights(layout, obs, values)
    assert np.abs(w).max() == pytest.approx(1.0)
    np.testing.assert_array_equal(
        np.argsort(-linear_scores(layout, obs, w), kind="stable"),
        np.argsort(-values, kind="stable"),
    )
    assert not behaviour_weights(layout, obs, np.ones(30)).any()  # no preference: all tied
    assert not behaviour_weights(layout, obs, None).any()


# --------------------------------------------------------------------------- RLUR
def test_rlur_reward_on_a_hand_made_episode():
    weights = {"watch_ms": 1 / 60_000, "click": 0.1, "follow": 0.5, "hate": -0.3}
    episode = [  # three requests of two shown items; the user leaves after the third
        ({"watch_ms": np.array([30_000, 0]), "click": np.array([1, 0])}, False),
        (
            {
                "watch_ms": np.array([60_000, 90_000]),
                "click": np.array([1, 1]),
                "follow": np.array([0, 1]),
            },
            False,
        ),
        (
            {"watch_ms": np.array([0, 6_000]), "click": np.array([0, 1]), "hate": np.array([1, 0])},
            True,
        ),
    ]
    parts = [rlur_reward(r, left, 1.0, weights) for r, left in episode]
    assert [p.retention for p in parts] == [1.0, 1.0, 0.0]  # continuation: stays, stays, leaves
    expected_immediate = [0.5 + 0.1, 2.5 + 0.2 + 0.5, 0.1 + 0.1 - 0.3]
    np.testing.assert_allclose([p.immediate for p in parts], expected_immediate)
    np.testing.assert_allclose([p.total for p in parts], [1.6, 4.2, -0.1])
    # truncation by the time limit is not leaving; the env wrapper's shaping is the same sum
    assert rlur_reward(episode[2][0], False, 2.0, weights).retention == 2.0
    shaping = RLURShaping(1.0, weights)
    assert shaping(123.0, {"responses": episode[1][0]}, False, False) == pytest.approx(4.2)
    assert RLURConfig().immediate_weights["watch_ms"] == pytest.approx(1 / 60_000)


def test_rlur_observation_appends_standardised_feedbacks_and_scores_on_them():
    z = standardise(np.array([[1.0, 5.0, 0.2], [3.0, 5.0, 0.4], [5.0, 5.0, 0.9]]))
    np.testing.assert_allclose(z[:, 0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert not z[:, 1].any()  # a feedback equal for every candidate carries no preference

    class TwoFeedbacks:
        feedback_names = ("p_click", "watch_s")

        def feedbacks(self, obs):
            n = len(obs["item_id"])
            return np.stack([np.linspace(0, 1, n), np.linspace(10, 0, n)], axis=1)

    env = make_env(world_config=WORLD, n_candidates=5, slate_size=2)
    obs, info = env.reset(seed=0)
    view = FeedbackView(TwoFeedbacks(), layout_of(env))
    assert view.layout.row_names[-2:] == ("z_p_click", "z_watch_s")
    assert view.layout.cols == (7, 8) and view.layout.action_dim == 2
    agent_obs = view.observe(obs)
    context, rows = view.layout.split(agent_obs)
    env_context, env_rows = layout_of(env).split(flatten_observation(obs))
    np.testing.assert_array_equal(context, env_context)
    np.testing.assert_array_equal(rows[:, :7], env_rows)
    np.testing.assert_allclose(rows[:, 7:], standardise(TwoFeedbacks().feedbacks(obs)), rtol=1e-6)
    # w = (1, 0) ranks by predicted click, (0, 1) by predicted watch time: opposite orders here
    np.testing.assert_array_equal(
        np.argsort(-linear_scores(view.layout, agent_obs, np.array([1.0, 0.0]))), [4, 3, 2, 1, 0]
    )
    np.testing.assert_array_equal(
        np.argsort(-linear_scores(view.layout, agent_obs, np.array([0.0, 1.0]))), [0, 1, 2, 3, 4]
    )


@pytest.mark.learning
def test_deepfm_learns_from_logs_and_beats_random_on_watch_time(tmp_path):
    """DeepFM fitted on 3 days of a small world's logs predicts clicks on held-out days and,
    ranking by predicted watch time, gets more watch time than random slates over the seeds.

    The calibrated world (issue 8) no longer pays for duration (longest-first ~ random), and
    DeepFM's watch head regresses the watch ratio, which times a long video's duration is a noisy
    ranker: it got 1.2x random on average here (1.4x, 1.3x, 0.95x per seed), not the 1.8x per
    seed the duration-driven world gave. Since a satisfying view restores patience with the
    seconds watched (issue 8 point 1), a myopic watch ranker's sessions are shorter than
    random's (measured here: 5.1 vs 6.4 requests) and its total watch is ~1.0x random (250 vs
    253 s), within the seeds' noise; what the ranker learned shows per request: 1.25x random's
    watch per request (49 vs 39 s; 1.42x under the fixed restore). The test asserts that."""
    from recgym import data
    from recgym.agents.baselines import RandomPolicy
    from recgym.agents.deepfm import DeepFMConfig, DeepFMRanker
    from recgym.envs.evaluation import evaluate
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    world = {"n_users": 150, "n_items": 500, "n_authors": 50, "seed": 1}
    generate(tmp_path, WorldConfig(**world), LogConfig(days=3, seed=1), progress=False)
    model = DeepFMRanker(DeepFMConfig(epochs=4))
    stats = model.fit(data.load(tmp_path))
    assert stats.click_auc > 0.62, stats
    assert stats.watch_rmse < stats.watch_rmse_constant, stats

    def env_fn(seed: int):
        return make_env(world_config=world)

    fm, rnd = evaluate(model, env_fn, episodes=20), evaluate(RandomPolicy(), env_fn, episodes=20)

    def per_request(res: dict) -> float:
        return np.mean(res["watch_time_s"]["per_seed"]) / np.mean(res["session_length"]["per_seed"])

    assert per_request(fm) > 1.15 * per_request(rnd), (fm, rnd)
