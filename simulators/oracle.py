"""Reference policies that read the world's truth, and a direct session runner on the world.

They bound what a learned policy can reach and make the world's long-term trade-off testable:
`greedy_click` ranks by the true click probability (what a click-trained ranker converges to);
`greedy_watch` by the true expected immediate watch time (the myopic watch-time ranker a
long-term claim must beat); `longest_first` and `shortest_first` by duration alone (read no
truth); `patience_keeper` trades expected watch against the expected patience each item costs
or restores (satisfying views restore with the seconds watched, disappointed clicks and
minutes spent drain, repeated categories drain), read from the truth. On the default world
(300 users, 3 sessions each; the acceptance test in tests/test_world.py) the keeper gets ~2.4x
the myopic watch ranker's watch time and ~3.4x its session length, the myopic ranker ~2.2x
random, longest-first ~0.96x random, shortest-first ~0.82x random; on the same world after 14
days of logs (the state the benches evaluate) keeper ~4.8x / ~11x the myopic ranker, which gets
~1.3x random, longest-first ~0.9x, shortest-first ~1.16x (below the myopic ranker).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.world import LONG_VIEW_MS, World

PATIENCE_WEIGHT = 10.0
"""How much `patience_keeper` values patience against immediate watch (log seconds)."""
CLICKBAIT_PENALTY = 0.5
"""`patience_keeper`'s penalty per unit of clickbait (clickbait risks hate)."""

# policy(world, users (B,), candidates (B, N), k, rng) -> (B, k) chosen item ids
SlatePolicy = Callable[[World, np.ndarray, np.ndarray, int, np.random.Generator], np.ndarray]


def random_slate(world: World, users, candidates, k, rng) -> np.ndarray:
    """k distinct candidates uniformly at random."""
    keys = rng.random(candidates.shape)
    return np.take_along_axis(candidates, np.argsort(keys, axis=1)[:, :k], axis=1)


def greedy_click(world: World, users, candidates, k, rng) -> np.ndarray:
    """Top-k candidates by the true click probability."""
    p = world.expected_responses(users, candidates)["click"]
    return np.take_along_axis(candidates, np.argsort(-p, axis=1)[:, :k], axis=1)


def greedy_watch(world: World, users, candidates, k, rng) -> np.ndarray:
    """Top-k candidates by the true expected immediate watch time (the myopic watch ranker)."""
    w = world.expected_responses(users, candidates)["watch_ms"]
    return np.take_along_axis(candidates, np.argsort(-w, axis=1)[:, :k], axis=1)


def longest_first(world: World, users, candidates, k, rng) -> np.ndarray:
    """The k longest candidates: a single-feature rule that reads no truth."""
    d = world.catalogue.duration_ms[candidates]
    return np.take_along_axis(candidates, np.argsort(-d, axis=1, kind="stable")[:, :k], axis=1)


def shortest_first(world: World, users, candidates, k, rng) -> np.ndarray:
    """The k shortest candidates: a single-feature rule that reads no truth."""
    d = world.catalogue.duration_ms[candidates]
    return np.take_along_axis(candidates, np.argsort(d, axis=1, kind="stable")[:, :k], axis=1)


def patience_keeper(world: World, users, candidates, k, rng) -> np.ndarray:
    """Watch time per patience spent, read from the truth; k greedy picks.

    Each item's score is its expected watch (log seconds) plus `PATIENCE_WEIGHT` times its
    expected effect on patience (`Dynamics.patience_*`): satisfying views restore, disappointed
    clicks, likely hates (clickbait) and time spent drain, and a category already in the slate
    or recently shown (fatigue) costs what the world's repetition term charges for it.
    """
    exp = world.expected_responses(users, candidates)
    dyn = world.dynamics
    cats = world.catalogue.category[candidates]
    fatigue = world.state.fatigue[users[:, None], cats]
    # a satisfying view restores with its seconds watched (`Dynamics.patience_restore_tau_s`);
    # its watch is at least the long-view threshold, and about the expected watch of a click
    duration = world.catalogue.duration_ms[candidates].astype(np.float64)
    view_ms = np.maximum(exp["mean_ratio"] * duration, np.minimum(duration, LONG_VIEW_MS))
    value = -np.expm1(-view_ms / (1000.0 * dyn.patience_restore_tau_s))
    patience = (
        dyn.patience_restore * exp["long_view"] * value
        - dyn.patience_disappoint * (exp["click"] - exp["long_view"])
        - dyn.patience_per_minute * k * (exp["watch_ms"] + 1000.0) / 60_000.0
        - dyn.patience_repeat * np.minimum(fatigue, 3.0) / 3.0
    ) / k
    score = (
        np.log1p(exp["watch_ms"] / 1000.0) / k
        + PATIENCE_WEIGHT * patience
        - CLICKBAIT_PENALTY * exp["clickbait"]
    )
    repeat_cost = PATIENCE_WEIGHT * dyn.patience_repeat * 0.5 / k
    chosen = np.empty((len(users), k), dtype=np.int64)
    rows = np.arange(len(users))
    for slot in range(k):  # k greedy picks, each vectorised over the batch
        j = np.argmax(score, axis=1)
        chosen[:, slot] = candidates[rows, j]
        same = cats == cats[rows, j][:, None]
        score = np.where(same, score - repeat_cost, score)
        score[rows, j] = -np.inf
    return chosen


def run_sessions(
    world: World,
    policy: SlatePolicy,
    users: np.ndarray,
    rng: np.random.Generator,
    *,
    k: int = 6,
    n_candidates: int = 50,
    max_steps: int = 200,
) -> dict[str, np.ndarray]:
    """One session per user in `users`, run in lockstep; returns per-user totals.

    Keys: length (requests), watch_s, clicks, shown, follows, gifts, categories (distinct
    categories shown).
    """
    users = np.asarray(users, dtype=np.int64)
    gen = CandidateGenerator(catalogue=world.catalogue, n_candidates=n_candidates)
    world.begin_session(users, rng)
    n = len(users)
    out = {key: np.zeros(n) for key in ("length", "watch_s", "clicks", "shown", "follows", "gifts")}
    seen = np.zeros((n, world.catalogue.n_categories), dtype=bool)
    active = np.ones(n, dtype=bool)
    for _ in range(max_steps):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        u = users[idx]
        cand = gen(world.history(u), rng)
        slate = policy(world, u, cand, k, rng)
        res = world.step(u, slate, rng)
        r = res.responses
        out["length"][idx] += 1
        out["watch_s"][idx] += r["watch_ms"].sum(axis=1) / 1000.0
        out["clicks"][idx] += r["click"].sum(axis=1)
        out["shown"][idx] += k
        out["follows"][idx] += r["follow"].sum(axis=1)
        out["gifts"][idx] += r["gift"].sum(axis=1)
        seen[idx[:, None], world.catalogue.category[slate]] = True
        active[idx[res.left]] = False
    out["categories"] = seen.sum(axis=1).astype(float)
    return out
