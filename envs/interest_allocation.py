"""`recgym/InterestAllocation-v0`: allocate a click sequence to a dynamic number of interests.

The RDRSR paper's Dynamic Interest Allocator as an MDP (`rdrsr-dynamic-interest-allocation.md`,
section 3.4), over the ground-truth world's users (composing `envs.driver.EpisodeDriver`) or over
the click sequences of a dataset (`data.sequences.SequenceSet`). This module also builds the
world's click sequences with each click's *true interest* (`world_sequences`), which only the
world can know, and the reward's item vectors.

**True interest of a click.** The world's interests are per leaf category, with a strength in
[0, 1] that satisfying views reinforce (and kindle), that fades between sessions and dies below
``Dynamics.interest_death`` (`simulators/world.py`, point 5). A click on an item of leaf category
c is labelled c when the user's interest in c is alive (strength > interest_death) *just before*
the request that produced the click (the state the click logit read), and -1 otherwise (a click
driven by taste, popularity or clickbait rather than an interest). Labels are category ids, so
two clicks share a true interest exactly when they fall in the same live category. Allocation
quality is measured on the labelled clicks (`benchmarks.metrics.allocation_nmi` / `_ari`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from recgym.data.sequences import SequenceSet, cooccurrence_vectors
from recgym.envs.contract import FLOAT_HIGH, FLOAT_LOW
from recgym.envs.driver import EpisodeDriver
from recgym.envs.vector import BatchedMDP, MDPEnv, MDPVectorEnv
from recgym.simulators.candidates import CandidateGenerator

ENV_ID = "recgym/InterestAllocation-v0"
CONTEXT_FEATURES: tuple[str, ...] = ("position_fraction", "open_fraction", "is_target", "fill")
"""The ``"context"`` entries: position / sequence length, open interests / k, 1 on the target
step, allocated share of the sequence."""


# --------------------------------------------------------------------------- world sequences
def true_interest(model: Any, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(B, K) true interest of `users` (B,) in `items` (B, K) now (module doc): the item's leaf
    category where the user's interest in it is alive, else -1; all -1 for a backend without
    interests (a learned simulator)."""
    state = getattr(model, "state", None)
    if state is None or not hasattr(state, "interest"):
        return np.full(np.shape(items), -1, dtype=np.int64)
    cats = model.catalogue.category[items]
    alive = state.interest[np.asarray(users)[:, None], cats] > model.dynamics.interest_death
    return np.where(alive, cats, -1).astype(np.int64)


def collect_clicks(
    driver: EpisodeDriver,
    n_clicks: int,
    *,
    slots: np.ndarray | None = None,
    slate_size: int = 6,
    n_candidates: int = 12,
    max_requests: int = 400,
) -> tuple[np.ndarray, np.ndarray]:
    """The next `n_clicks` clicks of the slots' users: (B, n_clicks) items and true interests.

    Each request shows the first `slate_size` of `n_candidates` retrieved candidates (history
    categories, popularity, uniform; `simulators.candidates`), so what users click follows
    their own interests rather than a ranker's. Clicks of one request are taken in slate order.
    A user who leaves starts a new session (time passes: interests fade, are born). Raises
    RuntimeError when a user has not clicked `n_clicks` times in `max_requests` requests.
    """
    idx = np.arange(driver.n_slots) if slots is None else np.asarray(slots, dtype=np.int64)
    generator = CandidateGenerator(catalogue=driver.catalogue, n_candidates=n_candidates)
    items = np.full((len(idx), n_clicks), -1, dtype=np.int64)
    labels = np.full((len(idx), n_clicks), -1, dtype=np.int64)
    count = np.zeros(len(idx), dtype=np.int64)
    for _ in range(max_requests):
        todo = np.flatnonzero(count < n_clicks)
        if not len(todo):
            return items, labels
        sl = idx[todo]
        slate = driver.retrieve(generator, sl)[:, :slate_size]
        truth = true_interest(driver.model, driver.user[sl], slate)
        res = driver.respond(slate, sl)
        click = np.asarray(res.responses["click"], dtype=bool)
        dest = count[todo, None] + np.cumsum(click, axis=1) - 1
        put = click & (dest < n_clicks)
        rows = np.broadcast_to(todo[:, None], click.shape)[put]
        items[rows, dest[put]] = slate[put]
        labels[rows, dest[put]] = truth[put]
        count[todo] += put.sum(axis=1)
        left = sl[np.asarray(res.left, dtype=bool)]
        if len(left):
            driver.begin({"user": driver.user[left]}, left)
    raise RuntimeError(
        f"{ENV_ID}: users {driver.user[idx[count < n_clicks]][:5].tolist()} clicked fewer than "
        f"{n_clicks} times in {max_requests} requests"
    )


def world_sequences(
    length: int,
    *,
    world_config: dict | None = None,
    world_dir: str | None = None,
    users: np.ndarray | None = None,
    seed: int = 0,
    **collect: Any,
) -> SequenceSet:
    """`length` clicks of each world user (default all), labelled with their true interests.

    One driver slot per user, all stepped together; `collect` goes to `collect_clicks`."""
    probe = EpisodeDriver("world", world_config=world_config, world_dir=world_dir, users=users)
    ids = probe.users
    driver = EpisodeDriver(
        "world", world_config=world_config, world_dir=world_dir, users=ids, n_slots=len(ids)
    )
    driver.seed(seed)
    driver.begin({"user": ids})
    items, labels = collect_clicks(driver, length, **collect)
    return SequenceSet(
        name="world",
        items=items.ravel(),
        offsets=np.arange(len(ids) + 1) * length,
        user_ids=ids,
        item_ids=np.arange(driver.catalogue.n_items),
        interest=labels.ravel(),
    )


# --------------------------------------------------------------------------- reward item vectors
def world_item_vectors(model: Any) -> np.ndarray:
    """The reward's item vectors on a world: its latent item vectors (what users' tastes match);
    on another backend: 2 x one-hot leaf category, then the catalogue's item features."""
    truth = getattr(model, "truth", None)
    if truth is not None and hasattr(truth, "item_latent"):
        return np.asarray(truth.item_latent, dtype=np.float32)
    cat = model.catalogue
    onehot = 2.0 * np.eye(cat.n_categories, dtype=np.float32)[cat.category]
    return np.concatenate([onehot, cat.item_features(np.arange(cat.n_items))], axis=1)


# --------------------------------------------------------------------------- reward
def interest_vectors(
    vectors: np.ndarray, items: np.ndarray, assignment: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B, k, d) mean item vector of each interest (0 when empty) and (B, k) sizes, from (B, L)
    items and their (B, L) interests (-1: not allocated or padding)."""
    valid = (assignment >= 0) & (items >= 0)
    onehot = (assignment[..., None] == np.arange(k)) & valid[..., None]  # (B, L, k)
    e = vectors[np.maximum(items, 0)] * valid[..., None]
    sums = np.einsum("blk,bld->bkd", onehot.astype(np.float32), e)
    sizes = onehot.sum(axis=1)
    return sums / np.maximum(sizes, 1)[..., None], sizes


def allocation_reward(
    vectors: np.ndarray,
    interests: np.ndarray,
    sizes: np.ndarray,
    target: np.ndarray,
    choice: np.ndarray,
    negatives: np.ndarray,
    lambda_o: float,
) -> dict[str, np.ndarray]:
    """The paper's reward, eq. (13)-(17), per row; returns its parts and ``"reward"``.

    R_c = sampled softmax of the target against `negatives` (B, o) under the chosen interest's
    vector; R_baseline = the same averaged over the open (non-empty) interests (R_c itself when
    none is open, so the advantage is 0); R_orthogonal = -mean |p_i . p_j| over pairs of open
    interests (0 with fewer than two); reward = R_c - R_baseline + lambda_o * R_orthogonal. An
    empty chosen interest has vector 0, so R_c = 1 / (o + 1).
    """
    rows = np.arange(len(target))
    cand = np.concatenate([target[:, None], negatives], axis=1)  # (B, 1 + o)
    logits = np.einsum("bkd,bcd->bkc", interests, vectors[cand]).astype(np.float64)
    logits -= logits.max(axis=2, keepdims=True)
    soft = np.exp(logits)
    score = soft[..., 0] / soft.sum(axis=2)  # (B, k)
    r_c = score[rows, choice]
    open_ = sizes > 0
    n_open = open_.sum(axis=1)
    base = np.where(n_open > 0, (score * open_).sum(axis=1) / np.maximum(n_open, 1), r_c)
    gram = np.abs(np.einsum("bid,bjd->bij", interests, interests))
    pair = open_[:, :, None] & open_[:, None, :] & ~np.eye(open_.shape[1], dtype=bool)
    n_pairs = pair.sum(axis=(1, 2))
    orth = -np.where(n_pairs > 0, (gram * pair).sum(axis=(1, 2)) / np.maximum(n_pairs, 1), 0.0)
    advantage = r_c - base
    return {
        "r_c": r_c,
        "r_baseline": base,
        "r_advantage": advantage,
        "r_orthogonal": orth,
        "reward": advantage + lambda_o * orth,
    }


def sample_other_items(target: np.ndarray, n: int, n_items: int, rng: np.random.Generator):
    """(B, n) items drawn uniformly from the catalogue without each row's target."""
    if n_items < 2:
        raise ValueError(f"{ENV_ID}: need at least 2 items to sample negatives")
    shift = rng.integers(1, n_items, size=(len(target), n))
    return (np.asarray(target)[:, None] + shift) % n_items


# --------------------------------------------------------------------------- the batched core
class InterestAllocationMDP(BatchedMDP):
    """InterestAllocation-v0's dynamics over ``n_slots`` concurrent episodes (`envs.vector`).

    Arguments as `InterestAllocationEnv` plus ``n_slots`` and ``name``. Per-slot state in arrays
    with a leading slot axis: ``seq``/``labels``/``assign`` (S, L), ``target``/``t``/``user`` (S,).
    World slots share one driver (one backend call collects every resetting slot's clicks);
    dataset slots draw users from their own child of the seed's users stream.
    """

    def __init__(
        self,
        source: str | SequenceSet = "world",
        k: int = 4,
        length: int = 10,
        n_negatives: int = 99,
        lambda_o: float = 0.001,
        intermediate_reward: str = "zero",
        item_vectors: np.ndarray | None = None,
        holdout: int = 2,
        slate_size: int = 6,
        n_candidates: int = 12,
        max_requests: int = 400,
        n_slots: int = 1,
        name: str = ENV_ID,
        **driver_kwargs: Any,
    ):
        self.name, self.n_slots = name, int(n_slots)
        if int(k) < 1 or int(length) < 1 or int(n_negatives) < 1 or self.n_slots < 1:
            raise ValueError(f"{name}: k, length, n_negatives and n_slots must be >= 1")
        if intermediate_reward not in ("zero", "next_item"):
            raise ValueError(
                f"{name}: intermediate_reward must be 'zero' or 'next_item', "
                f"got {intermediate_reward!r}"
            )
        self.k, self.length, self.n_negatives = int(k), int(length), int(n_negatives)
        self.lambda_o, self.intermediate_reward = float(lambda_o), intermediate_reward
        self.collect = {
            "slate_size": slate_size,
            "n_candidates": n_candidates,
            "max_requests": max_requests,
        }
        if isinstance(source, SequenceSet):
            if driver_kwargs:
                raise ValueError(
                    f"{name}: driver arguments {sorted(driver_kwargs)} need source='world'"
                )
            self.seqs, self.driver, self.holdout = source, None, int(holdout)
            self._draw = np.flatnonzero(source.lengths - self.holdout >= 2)
            if not len(self._draw):
                raise ValueError(
                    f"{name}: no user of {source.name!r} has 2 clicks before the last "
                    f"{self.holdout}"
                )
            n_items, n_users, n_authors, n_categories = source.n_items, source.n_users, 1, 1
            vectors = cooccurrence_vectors(source, holdout=self.holdout)
            self._item_rows = (np.log1p(source.popularity()) / 5.0)[:, None].astype(np.float32)
            user_dim = 1
        elif source == "world":
            self.seqs = None
            self.driver = EpisodeDriver(
                n_slots=self.n_slots, extra_streams=("negatives",), **driver_kwargs
            )
            cat = self.driver.catalogue
            n_items, n_users = cat.n_items, int(self.driver.model.n_users)
            n_authors, n_categories = cat.n_authors, cat.n_categories
            vectors = world_item_vectors(self.driver.model)
            self._item_rows = cat.item_features(np.arange(n_items))
            user_dim = int(self.driver.model.user_feature_dim)
        else:
            raise ValueError(f"{name}: source must be 'world' or a SequenceSet, got {source!r}")
        if item_vectors is not None:
            vectors = np.asarray(item_vectors, dtype=np.float32)
            if vectors.ndim != 2 or len(vectors) != n_items:
                raise ValueError(
                    f"{name}: item_vectors must be ({n_items}, d), got {vectors.shape}"
                )
        self.vectors, self.n_items = np.asarray(vectors, dtype=np.float32), n_items
        d, L, S = self.vectors.shape[1], self.length, self.n_slots
        self.single_action_space = spaces.Discrete(self.k)
        self.single_observation_space = _observation_space(
            user_dim, self._item_rows.shape[1], n_items, n_authors, n_categories, n_users,
            L, self.k, d,
        )  # fmt: skip
        self.seq = np.full((S, L), -1, dtype=np.int64)
        self.labels = np.full((S, L), -1, dtype=np.int64)
        self.assign = np.full((S, L), -1, dtype=np.int64)
        self.target = np.zeros(S, dtype=np.int64)
        self.target_label = np.full(S, -1, dtype=np.int64)
        self.t = np.zeros(S, dtype=np.int64)
        self.user = np.zeros(S, dtype=np.int64)
        self.user_x = np.zeros((S, user_dim), dtype=np.float32)
        self.running = np.zeros(S, dtype=bool)
        self._user_rngs: list[np.random.Generator] | None = None
        self._neg_rng: np.random.Generator | None = None

    # ------------------------------------------------------------------ seeding and reset
    def seed(self, seed: int | None, np_random: np.random.Generator) -> None:
        if self.driver is not None:
            self.driver.seed(seed, np_random)
            self._neg_rng = self.driver.streams.extra["negatives"]
            return
        if seed is None and self._user_rngs is not None:
            return
        if seed is None:
            seed = int(np_random.integers(2**63))
        users, negatives = np.random.SeedSequence(seed).spawn(2)
        per_slot = [users] if self.n_slots == 1 else users.spawn(self.n_slots)
        self._user_rngs = [np.random.default_rng(s) for s in per_slot]
        self._neg_rng = np.random.default_rng(negatives)

    def reset_slots(self, slots: np.ndarray, options: Mapping[str, Any] | None = None):
        slots = np.asarray(slots, dtype=np.int64)
        L = self.length
        if self.driver is not None:
            self.driver.begin(options, slots)
            items, labels = collect_clicks(self.driver, L + 1, slots=slots, **self.collect)
            self.user[slots] = self.driver.user[slots]
            self.user_x[slots] = self.driver.user_features(slots)
        else:
            users = np.array(
                [self._draw[self._user_rngs[s].integers(len(self._draw))] for s in slots]
            )
            named = (options or {}).get("user")
            if named is not None:
                users = np.broadcast_to(np.asarray(named), users.shape).astype(np.int64)
                if ((users < 0) | (users >= self.seqs.n_users)).any():
                    raise ValueError(
                        f"{self.name}: options['user'] must be 0..{self.seqs.n_users - 1}"
                    )
            end = self.seqs.lengths[users] - self.holdout
            items, labels = self.seqs.window(end, L + 1, users)
            self.user[slots] = users
            self.user_x[slots, 0] = np.log1p(end) / 5.0
        self.seq[slots], self.labels[slots] = items[:, :L], labels[:, :L]
        self.target[slots], self.target_label[slots] = items[:, L], labels[:, L]
        self.assign[slots] = -1
        has = self.seq[slots] >= 0
        self.t[slots] = np.where(has.any(1), has.argmax(1), L)
        self.running[slots] = True
        return self._obs(slots), {
            "user_id": self.user[slots].copy(),
            "candidates": self._shown(slots)[:, None],
        }

    # ------------------------------------------------------------------ observation
    def _shown(self, slots: np.ndarray) -> np.ndarray:
        t = self.t[slots]
        inside = self.seq[slots, np.minimum(t, self.length - 1)]
        return np.where(t >= self.length, self.target[slots], inside)

    def _obs(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        item, m = self._shown(slots), len(slots)
        p, sizes = interest_vectors(self.vectors, self.seq[slots], self.assign[slots], self.k)
        open_ = (sizes > 0).astype(np.int8)
        t = np.minimum(self.t[slots], self.length)
        n_valid = np.maximum((self.seq[slots] >= 0).sum(1), 1)
        context = np.stack(
            [
                t / self.length,
                open_.sum(1) / self.k,
                (self.t[slots] >= self.length).astype(np.float64),
                (self.assign[slots] >= 0).sum(1) / n_valid,
            ],
            1,
        )
        if self.driver is not None:
            author, category = (
                self.driver.catalogue.author[item],
                self.driver.catalogue.category[item],
            )
        else:
            author = category = np.zeros(m, dtype=np.int64)

        def clip(x: np.ndarray) -> np.ndarray:
            return np.clip(x, FLOAT_LOW, FLOAT_HIGH).astype(np.float32)

        def col(x: np.ndarray) -> np.ndarray:
            return np.asarray(x, dtype=np.int64).reshape(m, 1).copy()

        return {
            "user": clip(self.user_x[slots]),
            "context": clip(context),
            "candidates": clip(self._item_rows[item][:, None]),
            "item_id": col(item),
            "author_id": col(author),
            "category_id": col(category),
            "mask": np.ones((m, 1), dtype=np.int8),
            "user_id": col(self.user[slots]),
            "sequence": self.seq[slots].copy(),
            "assignment": self.assign[slots].copy(),
            "position": col(t),
            "interests": clip(p),
            "interest_size": sizes.astype(np.int64),
            "interest_open": open_,
            "n_open": col(open_.sum(1)),
            "max_k": np.full((m, 1), self.k, dtype=np.int64),
        }

    # ------------------------------------------------------------------ step
    def _actions(self, actions: Any, m: int) -> np.ndarray:
        try:
            a = np.asarray(actions)
            ok = a.shape in ((m,), (m, 1)) and (
                np.issubdtype(a.dtype, np.integer)
                or (
                    np.issubdtype(a.dtype, np.floating)
                    and np.isfinite(a).all()
                    and (a == np.round(a)).all()
                )
            )
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(
                f"{self.name}: action {actions!r} is not an interest index 0..{self.k - 1}"
            )
        a = a.reshape(m).astype(np.int64)
        if ((a < 0) | (a >= self.k)).any():
            raise ValueError(
                f"{self.name}: action {a.tolist()} is not an interest index 0..{self.k - 1}"
            )
        return a

    def _reward(
        self, slots: np.ndarray, target: np.ndarray, choice: np.ndarray
    ) -> dict[str, np.ndarray]:
        p, sizes = interest_vectors(self.vectors, self.seq[slots], self.assign[slots], self.k)
        negs = sample_other_items(target, self.n_negatives, self.n_items, self._neg_rng)
        return allocation_reward(self.vectors, p, sizes, target, choice, negs, self.lambda_o)

    def step_slots(self, actions: Any, slots: np.ndarray):
        slots = np.asarray(slots, dtype=np.int64)
        if not self.running[slots].all():
            raise RuntimeError(f"{self.name}: call reset() before step()")
        m = len(slots)
        choice = self._actions(actions, m)
        shown = self._shown(slots)
        final = self.t[slots] >= self.length
        reward = np.zeros(m, dtype=np.float64)
        parts = {name: np.zeros(m) for name in REWARD_PARTS}
        if final.any():
            out = self._reward(slots[final], shown[final], choice[final])
            reward[final] = out["reward"]
            for name in REWARD_PARTS:
                parts[name][final] = out[name]
        dense = ~final & (self.assign[slots] >= 0).any(1)
        if self.intermediate_reward == "next_item" and dense.any():
            reward[dense] = self._reward(slots[dense], shown[dense], choice[dense])["reward"]
        go = slots[~final]
        self.assign[go, self.t[go]] = choice[~final]
        self.t[go] += 1
        self.running[slots[final]] = False
        info = {
            "user_id": self.user[slots].copy(),
            "slate": shown[:, None].copy(),
            "interest": choice,
            **parts,
            "assignment": self.assign[slots].copy(),
            "true_interest": self.labels[slots].copy(),
            "target_true_interest": self.target_label[slots].copy(),
        }
        return self._obs(slots), reward, final.copy(), np.zeros(m, dtype=bool), info


REWARD_PARTS = ("r_c", "r_baseline", "r_advantage", "r_orthogonal", "reward")


def _observation_space(
    user_dim: int, row_width: int, n_items: int, n_authors: int, n_categories: int,
    n_users: int, L: int, k: int, d: int,
) -> spaces.Dict:  # fmt: skip
    """One slot's Dict observation (see `InterestAllocationEnv`)."""

    def floats(*shape: int) -> spaces.Box:
        return spaces.Box(FLOAT_LOW, FLOAT_HIGH, shape=shape, dtype=np.float32)

    def ints(low: int, high: int, *shape: int) -> spaces.Box:
        return spaces.Box(low, max(high, low + 1), shape=shape, dtype=np.int64)

    return spaces.Dict(
        {
            "user": floats(user_dim),
            "context": floats(len(CONTEXT_FEATURES)),
            "candidates": floats(1, row_width),
            "item_id": ints(0, n_items - 1, 1),
            "author_id": ints(0, n_authors - 1, 1),
            "category_id": ints(0, n_categories - 1, 1),
            "mask": spaces.Box(0, 1, shape=(1,), dtype=np.int8),
            "user_id": ints(0, n_users - 1, 1),
            "sequence": ints(-1, n_items - 1, L),
            "assignment": ints(-1, k - 1, L),
            "position": ints(0, L, 1),
            "interests": floats(k, d),
            "interest_size": ints(0, L, k),
            "interest_open": spaces.Box(0, 1, shape=(k,), dtype=np.int8),
            "n_open": ints(0, k, 1),
            "max_k": ints(1, k, 1),
        }
    )


# --------------------------------------------------------------------------- the env
class InterestAllocationEnv(MDPEnv):
    """## Description
    An episode is one user's click sequence x_1..x_L followed by the next click x_{L+1} (the
    *target*). Step T shows x_T; the agent chooses which of `k` interests (sub-sequences) it
    joins. The last step shows the target; the agent chooses which interest predicts it (the
    paper puts the target through the same policy, eq. 13), and the episode ends. Interest j's
    vector is the mean of its items' vectors (`item_vectors`; the paper's average pooling).
    Users: the world's (`source="world"`, default; a user's next L + 1 clicks are collected on
    reset through the driver, with their true interests) or a dataset's (`source=` a
    `SequenceSet`: the user's last L + 1 clicks before the `holdout` last ones, left-padded when
    shorter; users with fewer than 2 usable clicks are never drawn).

    ## Action Space
    `Discrete(k)`: the interest the shown item joins. Any of the k may be chosen; choosing an
    empty one opens it, so the number of open interests is the agent's to decide (RDRSR's DID
    caps it per user). Anything else (out of range, non-integer, NaN) raises ValueError naming
    the env.

    ## Observation Space
    Dict (`envs.contract` keys where they apply): "user" float32 (U,) user features (world) or
    (1,) log sequence length / 5 (dataset); "context" float32 (4,) `CONTEXT_FEATURES`;
    "candidates" float32 (1, F) the shown item's features (world: catalogue item features;
    dataset: log popularity / 5); "item_id", "author_id", "category_id" int64 (1,) the shown
    item (author and category 0 on a dataset); "mask" int8 (1,) = 1; "user_id" int64 (1,);
    "sequence" int64 (L,) the sequence being allocated (-1 padded left; never the target);
    "assignment" int64 (L,) the interests chosen so far (-1 not yet); "position" int64 (1,)
    index of the shown item in "sequence" (L on the target step); "interests" float32 (k, d)
    the interests' vectors; "interest_size" int64 (k,); "interest_open" int8 (k,); "n_open"
    int64 (1,); "max_k" int64 (1,) = k.

    ## Rewards
    The paper's (eq. 13-17, `allocation_reward`) on the target step: the sampled-softmax
    probability of the target against `n_negatives` uniformly drawn other items under the
    chosen interest, minus its mean over the open interests, plus `lambda_o` (paper 0.001)
    times the orthogonality reward. Intermediate steps: 0 with `intermediate_reward="zero"`
    (the paper: R_s is one episode reward that REINFORCE puts on every action, eq. 21), or
    "next_item": the same reward for the shown item against the interests built before it.
    `info`: the reward's parts (0 before the target step), "assignment", "true_interest" and
    "target_true_interest" (-1 unknown: evaluation only, never in the observation).

    ## Starting State
    A drawn user (driver's users stream; dataset: the core's own users stream) and their
    sequence; every interest empty.

    ## Episode End
    Terminated after the target step (L + 1 steps, fewer for a short dataset sequence). No
    truncation.

    ## Arguments
    source ("world" | SequenceSet), k (max interests, 3-5 in the paper), length (L, the
    paper's t = 10), n_negatives (o, 99), lambda_o, intermediate_reward, item_vectors ((I, d);
    default `world_item_vectors` / `cooccurrence_vectors`), holdout (dataset), slate_size,
    n_candidates, max_requests (world click collection), and the driver's backend,
    checkpoint, world_config, world_dir, users.

    ## Version History
    v0: initial version.
    """

    def __init__(self, source: str | SequenceSet = "world", **kwargs: Any):
        self.attach(InterestAllocationMDP(source, n_slots=1, **kwargs))

    @property
    def k(self) -> int:
        return self.mdp.k

    @property
    def vectors(self) -> np.ndarray:
        """The reward's item vectors (n_items, d)."""
        return self.mdp.vectors


def interest_allocation_vector_env(num_envs: int = 1, **kwargs: Any) -> MDPVectorEnv:
    """`recgym/InterestAllocation-v0`'s native vector env: `num_envs` concurrent episodes."""
    return MDPVectorEnv(InterestAllocationMDP(n_slots=num_envs, **kwargs))


__all__ = [
    "CONTEXT_FEATURES",
    "ENV_ID",
    "InterestAllocationEnv",
    "InterestAllocationMDP",
    "allocation_reward",
    "collect_clicks",
    "cooccurrence_vectors",
    "interest_allocation_vector_env",
    "interest_vectors",
    "sample_other_items",
    "true_interest",
    "world_item_vectors",
    "world_sequences",
]
