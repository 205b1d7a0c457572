"""`envs.contract`: the Dict observation's space and accessors, the flat wrapper, actions from
values, and the Tianshou adapter that lets any `act(obs)` policy collect."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gymnasium import spaces

from recgym.envs import make_env
from recgym.envs.contract import (
    CANDIDATE_FEATURES,
    UA_AUTHOR_COLUMNS,
    UA_CANDIDATE_FEATURES,
    FlattenCandidates,
    UniformBox,
    action_from_values,
    candidate_columns,
    column_index,
    flatten_observation,
    for_env,
    n_candidates,
    rank_scores,
    row_features,
    row_layout,
    slate_observation_space,
    user_id,
    with_action_space,
)
from recgym.simulators import scri

WORLD = {"n_users": 40, "n_items": 150, "n_authors": 15, "seed": 2}
KWARGS = {"world_config": WORLD, "n_candidates": 8, "slate_size": 3, "max_steps": 6}


def test_space_has_the_contract_keys_bounds_and_dtypes():
    space = slate_observation_space(
        user_dim=5,
        n_candidates=4,
        row_width=7,
        n_users=10,
        n_items=20,
        n_authors=3,
        n_categories=6,
    )
    assert set(space.spaces) == {
        "user",
        "context",
        "candidates",
        "item_id",
        "author_id",
        "category_id",
        "mask",
        "user_id",
    }
    assert space["candidates"].shape == (4, 7) and space["candidates"].dtype == np.float32
    assert space["item_id"].dtype == np.int64 and space["item_id"].high.max() == 19
    assert space["author_id"].high.max() == 2 and space["category_id"].high.max() == 5
    assert space["mask"].dtype == np.int8 and space["user_id"].shape == (1,)
    sample = space.sample()
    assert space.contains(sample)
    layout = row_layout(space)
    assert layout.user_dim == 5 and layout.context_dim == 9 and layout.n_rows == 4
    assert layout.row_names == CANDIDATE_FEATURES and layout.obs_dim == 9 + 28
    assert flatten_observation(sample).shape == (layout.obs_dim,)


def test_row_names_are_unique_and_ua_rows_extend_session_rows():
    assert row_features(7) == CANDIDATE_FEATURES and row_features(16) == UA_CANDIDATE_FEATURES
    assert UA_CANDIDATE_FEATURES[:7] == CANDIDATE_FEATURES
    assert len(set(UA_CANDIDATE_FEATURES)) == 16
    with pytest.raises(ValueError, match="no recgym env has candidate rows of 9"):
        row_features(9)
    # the item's log_popularity and the author's are different columns
    assert column_index("log_popularity", 16) == [1]
    assert column_index(UA_AUTHOR_COLUMNS, 16) == [7, 8, 9]
    with pytest.raises(ValueError, match="have no"):
        column_index(["log1p_clicks"], 7)


@pytest.mark.parametrize("env_id", ["recgym/Session-v0", "recgym/UserAuthor-v0"])
def test_accessors_on_single_and_batched_observations(env_id):
    env = make_env(env_id, **KWARGS)
    obs, info = env.reset(seed=1)
    assert n_candidates(obs) == 8 and int(user_id(obs)) == info["user_id"]
    cols = candidate_columns(obs, ["log_duration", "shown_this_session"])
    assert cols.shape == (8, 2) and not cols[:, 1].any()  # nothing shown yet this session
    batch = {k: np.stack([v, v, v]) for k, v in obs.items()}
    assert candidate_columns(batch, "log_duration").shape == (3, 8)
    np.testing.assert_array_equal(user_id(batch), [info["user_id"]] * 3)
    flat = flatten_observation(batch)
    np.testing.assert_array_equal(flat[1], flatten_observation(obs))
    with pytest.raises(KeyError, match="no 'candidates' entry"):
        candidate_columns({"user": obs["user"]}, "log_duration")
    if env_id == "recgym/UserAuthor-v0":
        f_a = scri.author_features(env.unwrapped.catalogue)[obs["author_id"]]
        np.testing.assert_array_equal(candidate_columns(obs, UA_AUTHOR_COLUMNS), f_a)


def test_flatten_wrapper_keeps_spaces_and_pickles():
    env = FlattenCandidates(make_env("recgym/UserAuthor-v0", **KWARGS))
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert env.layout.row_names == UA_CANDIDATE_FEATURES
    clone = pickle.loads(pickle.dumps(env))
    a = np.linspace(1, -1, 8).astype(np.float32)
    np.testing.assert_array_equal(env.step(a)[0], clone.step(a)[0])


def test_actions_from_values_respect_the_space_and_the_mask():
    values = np.array([0.1, 3.0, -2.0, 3.0])
    np.testing.assert_array_equal(action_from_values(values), rank_scores(values))
    assert action_from_values(values, spaces.Discrete(4)) == 1
    masked = action_from_values(values, spaces.Discrete(4), mask=np.array([1, 0, 1, 0]))
    assert masked == 0
    scores = action_from_values(values, spaces.Box(-1, 1, (4,)), mask=np.array([1, 0, 1, 1]))
    assert np.argmax(scores) == 3 and scores[1] == scores.min()
    with pytest.raises(TypeError, match="Box or Discrete"):
        action_from_values(values, spaces.MultiBinary(4))


def test_with_action_space_copies_and_for_env_binds_backend_ids():
    class Ranker:
        action_space = None

        def __init__(self):
            self.weights = object()

        def act(self, obs):
            return action_from_values(candidate_columns(obs, "log_duration"), self.action_space)

    ranker = Ranker()
    discrete = with_action_space(ranker, spaces.Discrete(8))
    assert ranker.action_space is None and discrete.weights is ranker.weights
    env = make_env("recgym/Session-v0", **KWARGS, action_mode="discrete")
    obs, _ = env.reset(seed=0)
    assert discrete.act(obs) == int(np.argmax(candidate_columns(obs, "log_duration")))
    assert for_env(ranker, env) is ranker  # nothing to bind

    class Bindable(Ranker):
        def for_backend(self, backend):
            bound = with_action_space(self, self.action_space)
            bound.backend = backend
            return bound

    bound = for_env(Bindable(), env)
    assert bound.backend is env.unwrapped.model


@pytest.mark.parametrize("mode", ["scores", "discrete"])
def test_tianshou_adapter_collects_any_act_policy(mode):
    from tianshou.data import Collector, CollectStats, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv

    from recgym.agents.baselines import RandomPolicy
    from recgym.envs.contract import TianshouSlatePolicy

    fns = [lambda: make_env("recgym/UserAuthor-v0", **KWARGS, action_mode=mode)] * 3
    venv = DummyVectorEnv(fns)
    venv.seed(0)
    space = venv.action_space[0]
    seen = []

    class Spy(RandomPolicy):
        def act(self, obs):
            seen.append(obs)
            return super().act(obs)

    policy = TianshouSlatePolicy(Spy(seed=0, action_space=space), space)
    buffer = VectorReplayBuffer(60, 3)
    stats = Collector[CollectStats](policy, venv, buffer).collect(
        n_step=12, reset_before_collect=True
    )
    venv.close()
    assert stats.n_collected_steps == 12
    # each env's observation reached the policy as a plain dict, as a single env returns it
    assert all(isinstance(o, dict) and o["candidates"].shape == (8, 16) for o in seen)
    assert len(seen) == 12
    assert buffer.obs.item_id.dtype == np.int64 and buffer.obs.candidates.shape[1:] == (8, 16)
    if mode == "discrete":
        assert set(np.unique(buffer.act)) <= set(range(8))
    else:
        assert buffer.act.shape[1:] == (8,)


@pytest.mark.parametrize("shape", [(50,), (12, 10), (10,)])
def test_uniform_box_samples_what_box_samples_and_stays_a_box(shape):
    ours, theirs = UniformBox(-1.0, 1.0, shape), spaces.Box(-1.0, 1.0, shape, np.float32)
    ours.seed(7)
    theirs.seed(7)
    for _ in range(5):  # same values from the same generator state, draw after draw
        a, b = ours.sample(), theirs.sample()
        assert a.dtype == b.dtype == np.float32 and a.shape == shape
        np.testing.assert_array_equal(a, b)
    assert ours == theirs and ours.contains(ours.sample())
    clone = pickle.loads(pickle.dumps(ours))
    np.testing.assert_array_equal(clone.sample(), ours.sample())
    with pytest.raises(ValueError, match="finite bounds"):
        UniformBox(-np.inf, 1.0, shape)
    with pytest.raises(ValueError, match="float dtype"):
        UniformBox(0, 5, shape, dtype=np.int64)


@pytest.mark.parametrize("env_id", ["recgym/Session-v0", "recgym/MTFSession-v0"])
def test_score_action_spaces_are_uniform_boxes(env_id):
    env = make_env(env_id)
    assert isinstance(env.action_space, UniformBox)
    env.close()
