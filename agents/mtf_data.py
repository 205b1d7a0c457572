"""Multi-task fusion data: the baseline and exploration policies, the logger, online metrics.

The Enhanced-State RL-MTF paper's Section 3.2: a baseline policy mu_bp and the exploration
policy ``mu_ep(s) = mu_bp(s) + eps, eps ~ U(lower_b, upper_b)`` with per-user bounds; an
exploration dataset of (states, per-item actions, rewards, next states) stored as a Tianshou
buffer (HDF5), and a test dataset logged by the baseline policy (weighted GAUC, Tables 1/3).

Every policy here acts on a *batch* of `envs.mtf.MTFCore` observations (a dict of arrays with
a leading axis) and returns per-item fusion actions (B, N, 10); a per-request policy repeats
its vector over the candidates (`per_item = False`).

**Exploration noise** has a request part and an item part: ``eps_tj = eps_t + xi_tj`` with
``eps_t ~ U(lower_b, upper_b)`` once per request and ``xi_tj ~ item_noise * U(lower_b,
upper_b)`` per candidate. The request's action ``clip(mean_j mu_bp(s_tj) + eps_t)`` is what
per-request learners (IntegratedRL-MTF, ES, DDPG, CQL+SAC, BCQ, IQL) read; the per-item
actions are what Enhanced-State RL-MTF reads. One dataset serves both (the paper's Dataset 1
also serves both); the bounds stored with a transition are those of the per-item actions,
``(1 + item_noise) * [lower_b, upper_b]``.

**Compact transitions.** A transition keeps the user-level state (`state_of`: user features,
context with the flush num, history summary), the rows of the l shown items (the enhanced
sub-states) followed by `unshown` candidates drawn uniformly from those not shown (reward 0:
without them a critic on shown items only cannot see what an item's own action does, which
is decide whether it is shown - our one addition to the paper's Formula 7), their per-item
actions, the baseline's actions on them, the request's action and the user's bounds; the
next state keeps the rows of the l items the behaviour policy shows next (its next action on
the next observation, computed before storing; for the last step of an episode too) and
`unshown` others, so the critic's next sub-states are the ones the logged policy ranked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recgym.envs.mtf import (
    ACTION_DIM,
    DEFAULT_REWARD_WEIGHTS,
    FUSED,
    WATCH_REF_S,
    MTFCore,
    fused_values,
)

BASELINE_ACTION = np.array([0.5, 0.0, -0.5, -0.75, -0.75, 0.0, 0.0, 0.0, 0.0, 0.0])
"""mu_bp, the hand-set fixed fusion: power 1.5 on valid consumption, 1 on watch, 0.5 on like,
0.25 on forward and follow; biases at the middle of their range (0.505)."""


def state_of(obs: Any) -> np.ndarray:
    """(B, S) float32 user-level state: ``[user | context | history]`` of a batch of obs (or
    its ``"state"`` entry, for the compact rows of logged transitions)."""
    if "state" in obs:
        return np.asarray(obs["state"], dtype=np.float32)
    return np.concatenate(
        [np.asarray(obs["user"]), np.asarray(obs["context"]), np.asarray(obs["history"])], axis=-1
    ).astype(np.float32)


class FusionPolicy(Protocol):
    """Batched MTF policy: ``actions(obs) -> (B, N, 10)`` per-item fusion actions."""

    per_item: bool

    def actions(self, obs: Any) -> np.ndarray: ...


def _broadcast(vec: np.ndarray, obs: Any) -> np.ndarray:
    b, n = np.asarray(obs["candidates"]).shape[:2]
    vec = np.asarray(vec, dtype=np.float64)
    if vec.ndim == 1:
        vec = np.broadcast_to(vec, (b, ACTION_DIM))
    return np.broadcast_to(vec[:, None, :], (b, n, ACTION_DIM)).copy()


@dataclass
class FixedFusion:
    """The same fusion vector for every request (mu_bp by default: `BASELINE_ACTION`)."""

    action: np.ndarray = field(default_factory=BASELINE_ACTION.copy)
    per_item: bool = False

    def actions(self, obs: Any) -> np.ndarray:
        return _broadcast(self.action, obs)


@dataclass
class RandomFusion:
    """A uniformly random fusion vector per request (a reference row)."""

    seed: int = 0
    per_item: bool = False

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def actions(self, obs: Any) -> np.ndarray:
        b = np.asarray(obs["candidates"]).shape[0]
        return _broadcast(self.rng.uniform(-1, 1, (b, ACTION_DIM)), obs)


def predicted_item_reward(rows: np.ndarray, weights: dict[str, float] | None = None) -> np.ndarray:
    """Formula 2 on the MTL's predictions: (..., N, F) rows -> (..., N) expected item reward."""
    w = DEFAULT_REWARD_WEIGHTS if weights is None else weights
    v = fused_values(rows)
    score = np.clip(v[..., FUSED.index("watch_score")], 0.0, 0.999)
    watch_s = WATCH_REF_S * score / (1.0 - score)
    return (
        w.get("watch_s", 0.0) * watch_s
        + w.get("valid", 0.0) * v[..., FUSED.index("p_valid")]
        + w.get("like", 0.0) * v[..., FUSED.index("p_like")]
        + w.get("forward", 0.0) * v[..., FUSED.index("p_forward")]
        + w.get("follow", 0.0) * v[..., FUSED.index("p_follow")]
    )


@dataclass
class MyopicFusion:
    """The myopic reference: per request, of `n_samples` fusion vectors (mu_bp and uniform
    draws), the one whose top-l has the highest MTL-predicted Formula-2 reward."""

    core: MTFCore
    n_samples: int = 32
    seed: int = 0
    per_item: bool = False

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def actions(self, obs: Any) -> np.ndarray:
        rows = np.asarray(obs["candidates"], dtype=np.float64)
        b, n = rows.shape[:2]
        cand = self.rng.uniform(-1, 1, (b, self.n_samples, ACTION_DIM))
        cand[:, 0] = BASELINE_ACTION
        full = np.broadcast_to(cand[:, :, None, :], (b, self.n_samples, n, ACTION_DIM))
        scores = self.core.scores(
            full.reshape(b * self.n_samples, n, ACTION_DIM),
            np.repeat(rows, self.n_samples, axis=0),
        ).reshape(b, self.n_samples, n)
        top = np.argsort(-scores, axis=-1, kind="stable")[..., : self.core.list_size]
        value = np.take_along_axis(
            np.broadcast_to(predicted_item_reward(rows)[:, None, :], scores.shape), top, axis=-1
        ).sum(-1)
        best = cand[np.arange(b), value.argmax(axis=1)]
        return _broadcast(best, obs)


@dataclass
class UserBounds:
    """Per-user exploration bounds, (n_users, 10) each: eps ~ U(lower[u], upper[u])."""

    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def make(cls, n_users: int, width: float = 0.3, seed: int = 0) -> UserBounds:
        """Symmetric bounds ``+-width * s_u`` with a per-user scale s_u ~ U(0.5, 1.5) (the
        paper personalises the bounds from data analysis it does not give; our stand-in
        explores some users more than others)."""
        scale = np.random.default_rng(seed).uniform(0.5, 1.5, (n_users, 1))
        half = np.broadcast_to(width * scale, (n_users, ACTION_DIM)).copy()
        return cls(lower=-half, upper=half)


@dataclass
class Exploration:
    """mu_ep(s) = clip(mu_bp(s) + eps_t + xi_tj, -1, 1) with the user's bounds (module doc)."""

    base: Any
    bounds: UserBounds
    seed: int = 0
    item_noise: float = 0.5
    per_item: bool = True

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def actions_and_base(self, obs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-item actions (B, N, 10), mu_bp (B, N, 10), request actions (B, 10))."""
        mu = self.base.actions(obs)
        users = np.asarray(obs["user_id"]).reshape(-1)
        lo, hi = self.bounds.lower[users][:, None, :], self.bounds.upper[users][:, None, :]
        b, n = mu.shape[:2]
        eps = lo + self.rng.random((b, 1, ACTION_DIM)) * (hi - lo)
        xi = self.item_noise * (lo + self.rng.random((b, n, ACTION_DIM)) * (hi - lo))
        request = np.clip(mu.mean(axis=1) + eps[:, 0], -1.0, 1.0)
        return np.clip(mu + eps + xi, -1.0, 1.0), mu, request

    def actions(self, obs: Any) -> np.ndarray:
        return self.actions_and_base(obs)[0]


def _index(obs: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in obs.items()}


def run_episodes(
    core: MTFCore,
    act: Callable[[dict[str, np.ndarray]], Any],
    episodes_per_slot: int,
    seed: int,
    on_step: Callable[..., None] | None = None,
) -> None:
    """Run `episodes_per_slot` episodes in every slot of `core` under `seed` (all slots in one
    batched step). ``act(obs)`` returns whatever `on_step` needs, its first element (or
    itself) being the (B, N, 10) actions; ``on_step(idx, obs, out, obs_next, out_next, rew,
    term, trunc, info)`` sees each step's slots (`out_next`: `act` on the next observation)."""
    core.seed(seed)
    obs = core.begin()
    out = act(obs)
    count = np.zeros(core.n_slots, dtype=np.int64)
    active = np.ones(core.n_slots, dtype=bool)
    state = {"obs": obs, "out": out}
    while active.any():
        idx = np.flatnonzero(active)
        cur_obs = _index(state["obs"], idx)
        cur_out = _take(state["out"], idx)
        actions = cur_out[0] if isinstance(cur_out, tuple) else cur_out
        nxt, rew, term, trunc, info = core.step(actions, idx)
        nxt_out = act(nxt)
        if on_step is not None:
            on_step(idx, cur_obs, cur_out, nxt, nxt_out, rew, term, trunc, info)
        _put(state, idx, nxt, nxt_out)
        done = term | trunc
        if done.any():
            ended = idx[done]
            count[ended] += 1
            again = ended[count[ended] < episodes_per_slot]
            active[ended[count[ended] >= episodes_per_slot]] = False
            if len(again):
                fresh = core.begin(again)
                _put(state, again, fresh, act(fresh))


def _take(out: Any, idx: np.ndarray) -> Any:
    if isinstance(out, tuple):
        return tuple(o[idx] for o in out)
    return out[idx]


def _put(state: dict, idx: np.ndarray, obs: dict, out: Any) -> None:
    for k, v in obs.items():
        state["obs"][k][idx] = v
    if isinstance(out, tuple):
        for whole, part in zip(state["out"], out, strict=True):
            whole[idx] = part
    else:
        state["out"][idx] = out


def evaluate_online(
    core: MTFCore, policy: Any, episodes_per_slot: int, seed: int
) -> dict[str, float]:
    """UVC, UDT, reward and requests per session of `policy` (one session = the user's day)."""
    totals = {"uvc": 0.0, "udt": 0.0, "reward": 0.0, "requests": 0.0}

    def on_step(idx, obs, out, nxt, nxt_out, rew, term, trunc, info) -> None:
        totals["uvc"] += float(info["valid"].sum())
        totals["udt"] += float(info["watch_s"].sum())
        totals["reward"] += float(rew.sum())
        totals["requests"] += len(idx)

    run_episodes(core, policy.actions, episodes_per_slot, seed, on_step)
    sessions = core.n_slots * episodes_per_slot
    return {k: v / sessions for k, v in totals.items()}


FIELDS = (
    "state",
    "rows",
    "act",
    "mu_bp",
    "req_act",
    "lower",
    "upper",
    "rew",
    "item_reward",
    "valid",
    "user",
    "terminated",
    "truncated",
    "state_next",
    "rows_next",
    "mu_bp_next",
)
"""Arrays of a transitions dict (T leading); rows / act / mu_bp hold l shown then `unshown`."""


def collect_transitions(
    core: MTFCore,
    policy: Exploration,
    episodes_per_slot: int,
    seed: int,
    unshown: int = 5,
) -> dict[str, np.ndarray]:
    """Log `policy` (an `Exploration`; zero-width bounds log its base policy) in `core`:
    compact transitions (module doc), one row per request."""
    rec: dict[str, list[np.ndarray]] = {f: [] for f in FIELDS}
    widen = 1.0 + policy.item_noise
    list_size, n = core.list_size, core.n_candidates
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))

    def picked(shown: np.ndarray) -> np.ndarray:
        """(B, l) shown candidate indices -> (B, l + unshown): shown, then unshown ones."""
        noise = rng.random((len(shown), n))
        np.put_along_axis(noise, shown, 2.0, axis=1)
        rest = np.argsort(noise, axis=1)[:, :unshown]
        return np.concatenate([shown, rest], axis=1)[..., None]

    def on_step(idx, obs, out, nxt, nxt_out, rew, term, trunc, info) -> None:
        act, mu, req = out
        users = info["user_id"]
        cols = picked(info["shown_index"])
        nxt_score = core.scores(nxt_out[0], np.asarray(nxt["candidates"], dtype=np.float64))
        nxt_cols = picked(np.argsort(-nxt_score, axis=1, kind="stable")[:, :list_size])
        rec["state"].append(state_of(obs))
        rec["rows"].append(np.take_along_axis(obs["candidates"], cols, axis=1))
        rec["act"].append(np.take_along_axis(act, cols, axis=1).astype(np.float32))
        rec["mu_bp"].append(np.take_along_axis(mu, cols, axis=1).astype(np.float32))
        rec["req_act"].append(req.astype(np.float32))
        rec["lower"].append((widen * policy.bounds.lower[users]).astype(np.float32))
        rec["upper"].append((widen * policy.bounds.upper[users]).astype(np.float32))
        rec["rew"].append(rew.astype(np.float32))
        rec["item_reward"].append(info["item_reward"].astype(np.float32))
        rec["valid"].append(info["valid"])
        rec["user"].append(users)
        rec["terminated"].append(term)
        rec["truncated"].append(trunc)
        rec["state_next"].append(state_of(nxt))
        rec["rows_next"].append(np.take_along_axis(nxt["candidates"], nxt_cols, axis=1))
        rec["mu_bp_next"].append(
            np.take_along_axis(nxt_out[1], nxt_cols, axis=1).astype(np.float32)
        )

    run_episodes(core, policy.actions_and_base, episodes_per_slot, seed, on_step)
    return {k: np.concatenate(v) for k, v in rec.items()}


def to_buffer(tr: dict[str, np.ndarray], seed: int = 0):
    """The transitions as a Tianshou `ReplayBuffer`: ``obs`` / ``obs_next`` are Batches of
    state, rows, mu_bp, lower, upper; ``info`` holds item rewards, valid labels and users."""
    from tianshou.data import Batch, ReplayBuffer

    n = len(tr["rew"])
    buf = ReplayBuffer(n, random_seed=seed)
    if n == 0:
        return buf
    bounds = {"lower": tr["lower"], "upper": tr["upper"]}
    batch = Batch(
        obs=Batch(
            state=tr["state"], rows=tr["rows"], mu_bp=tr["mu_bp"], req_act=tr["req_act"], **bounds
        ),
        act=tr["act"],
        rew=tr["rew"],
        terminated=tr["terminated"],
        truncated=tr["truncated"],
        done=tr["terminated"] | tr["truncated"],
        obs_next=Batch(
            state=tr["state_next"],
            rows=tr["rows_next"],
            mu_bp=tr["mu_bp_next"],
            req_act=tr["req_act"],  # unused: the next action comes from the actor
            **bounds,
        ),
        info=Batch(item_reward=tr["item_reward"], valid=tr["valid"], user=tr["user"]),
    )
    buf.set_batch(batch)
    buf._size = n
    buf._insertion_idx = 0
    return buf


def save_dataset(tr: dict[str, np.ndarray], path: str | Path) -> Path:
    """The transitions as a Tianshou buffer in HDF5 (`ReplayBuffer.save_hdf5`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_buffer(tr).save_hdf5(str(path), compression="gzip")
    return path


def load_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """The transitions of `save_dataset` back as arrays."""
    from tianshou.data import ReplayBuffer

    buf = ReplayBuffer.load_hdf5(str(path))
    b = buf[np.arange(len(buf))]
    return {
        "state": b.obs.state,
        "rows": b.obs.rows,
        "mu_bp": b.obs.mu_bp,
        "req_act": b.obs.req_act,
        "lower": b.obs.lower,
        "upper": b.obs.upper,
        "act": b.act,
        "rew": b.rew,
        "item_reward": b.info.item_reward,
        "valid": b.info.valid,
        "user": b.info.user,
        "terminated": b.terminated,
        "truncated": b.truncated,
        "state_next": b.obs_next.state,
        "rows_next": b.obs_next.rows,
        "mu_bp_next": b.obs_next.mu_bp,
    }


def request_actions(tr: dict[str, np.ndarray]) -> np.ndarray:
    """(T, 10) the request-level action of each transition (what per-request learners read)."""
    return tr["req_act"]


__all__ = [
    "BASELINE_ACTION",
    "Exploration",
    "FixedFusion",
    "FusionPolicy",
    "MyopicFusion",
    "RandomFusion",
    "UserBounds",
    "collect_transitions",
    "StateFusion",
    "evaluate_online",
    "flat_buffer",
    "load_dataset",
    "predicted_item_reward",
    "request_actions",
    "run_episodes",
    "save_dataset",
    "state_of",
    "test_scores",
    "to_buffer",
]


def flat_buffer(tr: dict[str, np.ndarray], seed: int = 0):
    """Per-request transitions as a flat Tianshou `ReplayBuffer`: obs = user-level state,
    act = the request's action (`request_actions`), for Tianshou's DDPG / CQL / BCQ and IQL."""
    from tianshou.data import Batch, ReplayBuffer

    n = len(tr["rew"])
    buf = ReplayBuffer(max(n, 1), random_seed=seed)
    if n == 0:
        return buf
    batch = Batch(
        obs=tr["state"],
        act=request_actions(tr).astype(np.float32),
        rew=tr["rew"].astype(np.float32),
        terminated=tr["terminated"],
        truncated=tr["truncated"],
        done=tr["terminated"] | tr["truncated"],
        obs_next=tr["state_next"],
    )
    buf.set_batch(batch)
    buf._size = n
    buf._insertion_idx = 0
    return buf


@dataclass
class StateFusion:
    """A per-request policy from a function of the user-level state: ``fn((B, S)) -> (B, 10)``
    (clipped to [-1, 1]); how Tianshou-trained baselines act in MTFSession."""

    fn: Callable[[np.ndarray], np.ndarray]
    per_item: bool = False

    def actions(self, obs: Any) -> np.ndarray:
        return _broadcast(np.clip(np.asarray(self.fn(state_of(obs)), np.float64), -1, 1), obs)


def test_scores(policy: Any, tr: dict[str, np.ndarray], core: MTFCore) -> dict[str, np.ndarray]:
    """The paper's offline protocol (Section 4.1.2) on logged transitions `tr`: the policy's
    action for each logged user-item pair, its fused final score, min-max normalised over
    the whole set; with the label (valid consumption), the weight (item reward + 1) and the
    user of each pair, flattened - the inputs of `benchmarks.metrics.weighted_gauc`."""
    obs = {"state": tr["state"], "candidates": tr["rows"], "user_id": tr["user"][:, None]}
    list_size = tr["valid"].shape[1]  # the shown rows come first
    actions = np.asarray(policy.actions(obs), dtype=np.float64)[:, :list_size]
    rows = np.asarray(tr["rows"], dtype=np.float64)[:, :list_size]
    score = core.scores(actions, rows).ravel()
    span = score.max() - score.min()
    score = (score - score.min()) / span if span > 0 else np.zeros_like(score)
    return {
        "user": np.repeat(tr["user"], list_size),
        "label": np.asarray(tr["valid"]).ravel().astype(np.int64),
        "score": score,
        "weight": np.asarray(tr["item_reward"], dtype=np.float64).ravel() + 1.0,
    }
