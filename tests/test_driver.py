"""The episode driver (`envs.driver`): two non-slate MDPs built on it alone, and its own contract.

`NextItemEnv` (the next item over the whole catalogue) and `AllocationEnv` (allocate a user's
consumed items to k interest slots) are examples, not registered envs: they show that an MDP
composes the driver (backend, seeded streams, user draw, history, responses) without
subclassing `SessionEnv`, and they must pass the same API checks as the registered ids.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from recgym.envs import EpisodeDriver
from recgym.envs.contract import FLOAT_HIGH, FLOAT_LOW
from recgym.envs.driver import STREAMS
from recgym.envs.session import SessionEnv
from recgym.simulators.candidates import CandidateGenerator

SMALL_WORLD = {"n_users": 60, "n_items": 300, "n_authors": 30}


# --------------------------------------------------------------------------- example MDPs
class NextItemEnv(gym.Env):
    """Each step the agent picks one item of the whole catalogue; reward = the user's click.

    Observation: the user's static features, their history (item ids, newest last, -1 padded)
    and the step fraction. Ends when the user leaves (terminated) or after `max_steps`.
    """

    metadata = {"render_modes": []}

    def __init__(self, max_steps: int = 20, **driver_kwargs: Any):
        self.driver = EpisodeDriver(**driver_kwargs)
        model, n_items = self.driver.model, self.driver.catalogue.n_items
        self.max_steps = int(max_steps)
        self.action_space = spaces.Discrete(n_items)
        self.observation_space = spaces.Dict(
            {
                "user": spaces.Box(FLOAT_LOW, FLOAT_HIGH, (model.user_feature_dim,), np.float32),
                "history": spaces.Box(-1, n_items - 1, (model.history_len,), np.int64),
                "step": spaces.Box(0.0, 1.0, (1,), np.float32),
            }
        )
        self._steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "user": np.clip(self.driver.user_features()[0], FLOAT_LOW, FLOAT_HIGH).astype(
                np.float32
            ),
            "history": self.driver.history()[0].astype(np.int64),
            "step": np.array([self._steps / self.max_steps], dtype=np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.driver.seed(seed, self.np_random)
        self.driver.begin(options)
        self._steps = 0
        return self._obs(), {"user_id": int(self.driver.user[0])}

    def step(self, action):
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"NextItemEnv: action {action!r} is not an item id")
        res = self.driver.respond(np.array([[int(action)]]))
        self._steps += 1
        terminated = bool(res.left[0])
        truncated = self._steps >= self.max_steps and not terminated
        reward = float(res.responses["click"][0, 0])
        return self._obs(), reward, terminated, truncated, {"user_id": int(self.driver.user[0])}


class AllocationEnv(gym.Env):
    """An episode walks one user's consumed items (oldest first); each step the agent assigns
    the current item to one of `k` interest slots. Reward 0 until the last item, then the
    allocation's category purity: sum over slots of the slot's most common category count,
    divided by the number of items (1 when every slot holds one category).

    On reset the drawn user first browses: `browse` requests of the first `slate_size`
    retrieved candidates (and more, up to `max_browse`, while their history is empty), so a
    fresh world's users have a sequence to allocate.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        k: int = 3,
        browse: int = 4,
        max_browse: int = 200,
        slate_size: int = 6,
        **driver_kwargs: Any,
    ):
        self.driver = EpisodeDriver(**driver_kwargs)
        cat = self.driver.catalogue
        self.k, self.browse, self.max_browse, self.slate_size = k, browse, max_browse, slate_size
        self.generator = CandidateGenerator(catalogue=cat, n_candidates=2 * slate_size)
        h = self.driver.model.history_len
        self.action_space = spaces.Discrete(k)
        self.observation_space = spaces.Dict(
            {
                "item_id": spaces.Box(0, cat.n_items - 1, (1,), np.int64),
                "category_id": spaces.Box(0, cat.n_categories - 1, (1,), np.int64),
                "slot_sizes": spaces.Box(0, h, (k,), np.int64),
                "slot_share": spaces.Box(0.0, 1.0, (k,), np.float32),  # of the item's category
                "position": spaces.Box(0.0, 1.0, (1,), np.float32),
            }
        )
        self._items = np.zeros(0, dtype=np.int64)
        self._slots = np.zeros(0, dtype=np.int64)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        """The item to allocate (the last one again once all are allocated) and the slots."""
        cats = self.driver.catalogue.category
        t = min(self._t, len(self._items) - 1)
        item = self._items[t]
        assigned = self._slots[:t]
        sizes = np.bincount(assigned, minlength=self.k)
        same_cat = cats[self._items[:t]] == cats[item]
        shared = np.bincount(assigned, weights=same_cat, minlength=self.k)
        return {
            "item_id": np.array([item], dtype=np.int64),
            "category_id": np.array([cats[item]], dtype=np.int64),
            "slot_sizes": sizes.astype(np.int64),
            "slot_share": (shared / np.maximum(sizes, 1)).astype(np.float32),
            "position": np.array([t / len(self._items)], dtype=np.float32),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.driver.seed(seed, self.np_random)
        self.driver.begin(options)
        for request in range(self.max_browse):
            history = self.driver.history()[0]
            if request >= self.browse and (history >= 0).any():
                break
            slate = self.driver.retrieve(self.generator)[:, : self.slate_size]
            self.driver.respond(slate)
        else:
            raise RuntimeError(f"user {self.driver.user[0]} consumed nothing in {request} requests")
        self._items = history[history >= 0].astype(np.int64)
        self._slots = np.full(len(self._items), -1, dtype=np.int64)
        self._t = 0
        return self._obs(), {"user_id": int(self.driver.user[0]), "length": len(self._items)}

    def step(self, action):
        if not self.action_space.contains(np.int64(action)):
            raise ValueError(f"AllocationEnv: action {action!r} is not a slot in 0..{self.k - 1}")
        self._slots[self._t] = int(action)
        self._t += 1
        done = self._t == len(self._items)
        reward = self.purity() if done else 0.0
        return self._obs(), reward, done, False, {"slots": self._slots.copy()}

    def purity(self) -> float:
        cats = self.driver.catalogue.category[self._items[: self._t]]
        slots = self._slots[: self._t]
        counts = np.zeros((self.k, self.driver.catalogue.n_categories), dtype=np.int64)
        np.add.at(counts, (slots, cats), 1)
        return float(counts.max(axis=1).sum() / max(len(slots), 1))


EXAMPLES = {"next_item": NextItemEnv, "allocation": AllocationEnv}


def make(name: str, **kwargs: Any) -> gym.Env:
    kwargs.setdefault("world_config", SMALL_WORLD)
    return EXAMPLES[name](**kwargs)


def rollout(env: gym.Env, seed: int, steps: int = 60) -> list:
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)
    out: list = [(obs, info["user_id"])]
    for _ in range(steps):
        obs, reward, term, trunc, _ = env.step(env.action_space.sample())
        out.append((obs, reward, term, trunc))
        if term or trunc:
            obs, info = env.reset()
            out.append((obs, info["user_id"]))
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.array_equal(a, b))


# --------------------------------------------------------------------------- the examples
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_mdp_composes_the_driver_and_passes_check_env(name: str) -> None:
    env = make(name)
    assert not isinstance(env, SessionEnv) and isinstance(env.driver, EpisodeDriver)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_mdp_is_deterministic_under_a_seed(name: str) -> None:
    a, b, c = rollout(make(name), 5), rollout(make(name), 5), rollout(make(name), 6)
    assert same(a, b)
    assert not same(a, c)
    env = make(name)
    rollout(env, 9)
    assert same(rollout(env, 5), a)  # a used env reseeded replays the episode


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_mdp_pickles_and_continues_identically(name: str) -> None:
    env = make(name)
    rollout(env, 1, steps=7)
    clone = pickle.loads(pickle.dumps(env))
    env.action_space.seed(2)
    clone.action_space.seed(2)
    assert same(rollout(env, 3), rollout(clone, 3))
    # and mid-episode, without a reseed
    env.reset(seed=4)
    clone = pickle.loads(pickle.dumps(env))
    for _ in range(3):
        x, y = env.step(0), clone.step(0)
        assert same(x[:4], y[:4])
        if x[2] or x[3]:
            break


def test_next_item_reward_is_the_click_on_the_chosen_item() -> None:
    """The reward is the click of the chosen item, drawn from the driver's responses stream:
    a bare driver under the same seed, shown the same items, gives the same clicks."""
    env = make("next_item", max_steps=50)
    twin = EpisodeDriver(world_config=SMALL_WORLD)
    env.reset(seed=0)
    twin.seed(0)
    twin.begin()
    rewards, clicks = [], []
    for item in np.random.default_rng(0).integers(0, 300, 200):
        _, reward, term, trunc, _ = env.step(int(item))
        rewards.append(reward)
        clicks.append(float(twin.respond(np.array([[item]])).responses["click"][0, 0]))
        if term or trunc:
            env.reset()
            twin.begin()
    assert rewards == clicks
    assert 0 < sum(rewards) < len(rewards)


def test_allocation_rewards_only_at_the_end_and_one_category_per_slot_scores_one() -> None:
    env = make("allocation", k=20)
    obs, info = env.reset(seed=3)
    assert info["length"] >= 1
    cats = env.driver.catalogue.category[env._items]
    slot_of = {c: i for i, c in enumerate(dict.fromkeys(cats.tolist()))}
    rewards = []
    for t in range(info["length"]):
        assert obs["category_id"][0] == cats[t]
        # k=20 >= distinct categories of a 20-item history: a slot per category is possible
        obs, reward, term, _, _ = env.step(slot_of[int(cats[t])] % env.k)
        rewards.append(reward)
    assert term and rewards[:-1] == [0.0] * (len(rewards) - 1)
    assert rewards[-1] == pytest.approx(1.0)
    env.reset(seed=3)
    for _ in range(info["length"]):
        *_, reward, term, _, _ = env.step(0)  # everything in one slot
    assert reward == pytest.approx(np.bincount(cats).max() / len(cats))


def test_next_item_on_a_learned_backend(tiny_checkpoint) -> None:
    env = NextItemEnv(backend="learned", checkpoint=str(tiny_checkpoint))
    check_env(env, skip_render_check=True)
    a = rollout(NextItemEnv(backend="learned", checkpoint=str(tiny_checkpoint)), 2, 30)
    b = rollout(NextItemEnv(backend="learned", checkpoint=str(tiny_checkpoint)), 2, 30)
    assert same(a, b)


# --------------------------------------------------------------------------- the driver itself
def _users_met(env: gym.Env, seed: int, episodes: int, policy) -> list[int]:
    _, info = env.reset(seed=seed)
    users = [info["user_id"]]
    while len(users) < episodes:
        _, _, term, trunc, info = env.step(policy(env))
        if term or trunc:
            users.append(env.reset()[1]["user_id"])
    return users


def test_every_mdp_on_the_driver_meets_the_same_users_in_the_same_order() -> None:
    """Paired across policies *and* MDPs: the users stream is drawn once per episode only."""
    session = SessionEnv(world_config=SMALL_WORLD, max_steps=5)
    n = session.n_candidates
    a = _users_met(session, 7, 8, lambda env: np.linspace(1, -1, n).astype(np.float32))
    b = _users_met(
        SessionEnv(world_config=SMALL_WORLD, max_steps=12), 7, 8, lambda env: np.zeros(n)
    )
    c = _users_met(make("next_item", max_steps=3), 7, 8, lambda env: 0)
    d = _users_met(make("allocation"), 7, 8, lambda env: 1)
    assert a == b == c == d
    assert a != _users_met(make("next_item"), 8, 8, lambda env: 0)


def test_seeding_spawns_the_documented_streams() -> None:
    driver = EpisodeDriver(world_config=SMALL_WORLD, extra_streams=("queries",))
    driver.seed(11)
    children = np.random.SeedSequence(11).spawn(len(STREAMS) + 1)
    expected = [np.random.default_rng(s).random(3) for s in children]
    s = driver.streams
    got = [s.users[0].random(3), s.time.random(3), s.candidates.random(3), s.responses.random(3)]
    got.append(s.extra["queries"].random(3))
    assert all(np.array_equal(x, y) for x, y in zip(got, expected, strict=True))
    # an unseeded reset keeps the streams running; a seeded one restarts them
    driver.seed(None)
    assert not np.array_equal(driver.streams.time.random(3), expected[1])
    driver.seed(11)
    assert np.array_equal(driver.streams.time.random(3), expected[1])


def test_a_seeded_reset_restores_the_backend_state() -> None:
    driver = EpisodeDriver(world_config=SMALL_WORLD, users=[4])
    generator = CandidateGenerator(catalogue=driver.catalogue, n_candidates=10)
    driver.seed(0)
    driver.begin()
    assert (driver.history() < 0).all()  # a fresh world's user has consumed nothing
    for _ in range(10):
        driver.respond(driver.retrieve(generator))
    assert (driver.history() >= 0).any()
    driver.seed(None)
    driver.begin()
    assert (driver.history() >= 0).any()  # a returning user keeps their history
    driver.seed(0)
    driver.begin()
    assert (driver.history() < 0).all()


def test_vector_slots_draw_users_independently_and_step_in_one_call() -> None:
    a = EpisodeDriver(world_config=SMALL_WORLD, n_slots=4)
    b = EpisodeDriver(world_config=SMALL_WORLD, n_slots=4)
    a.seed(3)
    b.seed(3)
    first = a.begin()
    assert np.array_equal(first, b.begin()) and first.shape == (4,)
    # slot 2 restarts three times in `a`, once in `b`: slot 0's next user is the same
    for _ in range(3):
        a.begin(slots=[2])
    b.begin(slots=[2])
    assert np.array_equal(a.begin(slots=[0]), b.begin(slots=[0]))
    assert a.user[1] == first[1] and a.user[3] == first[3]
    generator = CandidateGenerator(catalogue=a.catalogue, n_candidates=10)
    candidates = a.retrieve(generator)
    assert candidates.shape == (4, 10)
    result = a.respond(candidates[:, :3])
    assert result.responses["click"].shape == (4, 3) and result.left.shape == (4,)
    part = a.respond(candidates[[1, 3], :2], slots=[1, 3])
    assert part.responses["click"].shape == (2, 2)


def test_vector_slots_hold_distinct_users() -> None:
    """Slots' users are distinct at any time (one backend call steps them): with as many users
    as slots every begin is a permutation, and a restarting slot gets the one free user."""
    driver = EpisodeDriver(world_config=SMALL_WORLD, users=[3, 7, 9], n_slots=3)
    driver.seed(0)
    for _ in range(5):
        assert sorted(driver.begin().tolist()) == [3, 7, 9]
        held = driver.user.copy()
        assert driver.begin(slots=[1])[0] == held[1]
    with pytest.raises(ValueError, match="distinct"):
        driver.begin({"user": int(driver.user[1])}, slots=[0])  # slot 1 holds that user
    with pytest.raises(ValueError, match="exceeds the 3 users"):
        EpisodeDriver(world_config=SMALL_WORLD, users=[3, 7, 9], n_slots=4)


def test_bad_driver_input_fails_clearly() -> None:
    with pytest.raises(ValueError, match="outside the backend's 60 users"):
        EpisodeDriver(world_config=SMALL_WORLD, users=[0, 60])
    with pytest.raises(ValueError, match="users is empty"):
        EpisodeDriver(world_config=SMALL_WORLD, users=[])
    with pytest.raises(ValueError, match="n_slots"):
        EpisodeDriver(world_config=SMALL_WORLD, n_slots=0)
    with pytest.raises(ValueError, match="clash"):
        EpisodeDriver(world_config=SMALL_WORLD, extra_streams=("time",))
    driver = EpisodeDriver(world_config=SMALL_WORLD)
    with pytest.raises(RuntimeError, match="seed"):
        driver.begin()
    driver.seed(0)
    with pytest.raises(ValueError, match=r"options\['user'\]"):
        driver.begin({"user": 99})
    driver.begin({"user": 5})
    assert driver.user[0] == 5
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        driver.respond(np.arange(6))
    with pytest.raises(ValueError, match="item ids"):
        driver.respond(np.array([[0, 300]]))
    with pytest.raises(ValueError, match="slots"):
        driver.history(slots=[1])
