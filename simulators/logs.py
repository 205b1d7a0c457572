"""Logged interactions: the world served by a biased production policy, day by day.

`simulate_logs` returns one row per exposure with everything the KuaiRand and KuaiSAR writers
need (`data.writers`), plus the world's true probabilities for that exposure at that moment
(p_click, p_long_view, expected_watch_ms), which fidelity reports compare learned models against.
The behaviour policy mimics a click-optimised production ranker:
it samples a slate from the candidates by Plackett-Luce (Gumbel top-k) over
``temperature * logit(p_click) + 0.3 * log(popularity)``, using the world's true click
probability, so the logs carry the same clickbait bias a real feed has. As in KuaiRand, a share
of recommendation requests (never search requests: 99.3% of KuaiRand's random rows are in the
feed, tab 1) carries one *random exposure* (a uniformly drawn catalogue item at a random slot,
`is_rand = 1`); those rows form log_random_*, the rest log_standard_*.

Users come back `sessions_per_day` times a day on average (Poisson; by activity level),
starting near their preferred hour; a session runs until the world says the user left or
`max_requests` is reached. Whether a request is a search, and its query category, come from
the world's intent-driven scenario switch (`World.next_scenario`); search requests draw
candidates from the query category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import logit

from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.protocol import SEARCH
from recgym.simulators.world import DAY_MS, World, epoch_ms

LOG_COLUMNS = (
    "user_id",
    "item_id",
    "timestamp",
    "session_id",
    "request_id",
    "position",
    "scenario",
    "query_category",
    "is_rand",
    "click",
    "long_view",
    "watch_ms",
    "duration_ms",
    "like",
    "follow",
    "comment",
    "forward",
    "hate",
    "gift",
    "is_profile_enter",
    "profile_stay_time",
    "comment_stay_time",
    "p_click",
    "p_long_view",
    "expected_watch_ms",
)


@dataclass(kw_only=True)
class LogConfig:
    """How logs are collected from a world."""

    days: int = 14
    """Number of days to log."""
    start_date: str = "2022-04-08"
    """First day (Beijing time); KuaiRand's standard logs start on 2022-04-08."""
    slate_size: int = 6
    """Items per request."""
    n_candidates: int = 50
    """Candidates the behaviour policy ranks per request."""
    random_share: float = 0.3
    """Probability that a recommendation request carries one uniformly random exposure
    (is_rand=1); search requests carry none."""
    temperature: float = 1.0
    """Sharpness of the behaviour policy: higher follows the true click probability more closely."""
    max_requests: int = 100
    """Upper bound on requests in one session."""
    seed: int = 0
    """Seed of the logging run (policy and responses); the world has its own."""


def simulate_logs(
    world: World, config: LogConfig | None = None, progress: bool = True
) -> pd.DataFrame:
    """Run the behaviour policy on `world` for `config.days` days; one row per exposure.

    The world's user state advances (interests, bonds, fatigue); call `world.reset_state()` to
    start again from its initial state. Rows are sorted by (user_id, timestamp, position).
    """
    cfg = config or LogConfig()
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 7919]))
    cat = world.catalogue
    gen = CandidateGenerator(catalogue=cat, n_candidates=cfg.n_candidates)
    day0 = epoch_ms(cfg.start_date)
    chunks: list[dict[str, np.ndarray]] = []
    next_session = 0
    next_request = 0
    bar = _progress(cfg.days, progress)
    for day in range(cfg.days):
        n_sessions = rng.poisson(world.truth.user_sessions_per_day)
        day_end = day0 + (day + 1) * DAY_MS
        for round_ in range(int(n_sessions.max(initial=0))):
            users = np.flatnonzero(n_sessions > round_)
            hour = world.truth.user_hour[users] + 2.5 * round_ + rng.normal(0, 0.5, len(users))
            start = day0 + day * DAY_MS + (np.clip(hour, 0, 22.0) * 3_600_000).astype(np.int64)
            start = np.maximum(start, world.state.clock_ms[users] + 60_000)
            # a session that cannot start before 22:00 is dropped, so logs stay inside their day
            fits = start < day0 + day * DAY_MS + 22 * 3_600_000
            users, start = users[fits], start[fits]
            if len(users) == 0:
                continue
            world.begin_session(users, rng, start_ms=start)
            session_ids = next_session + np.arange(len(users))
            next_session += len(users)
            active = np.ones(len(users), dtype=bool)
            for _ in range(cfg.max_requests):
                # the day ends at midnight: a session still running then is cut
                active &= world.state.clock_ms[users] < day_end
                idx = np.flatnonzero(active)
                if len(idx) == 0:
                    break
                chunk = _one_request(world, users[idx], gen, cfg, rng)
                chunk["session_id"] = np.repeat(session_ids[idx], cfg.slate_size)
                chunk["request_id"] = np.repeat(next_request + np.arange(len(idx)), cfg.slate_size)
                next_request += len(idx)
                active[idx[chunk.pop("_left")]] = False
                chunks.append(chunk)
        bar.update(1)
    bar.close()
    if not chunks:
        return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in LOG_COLUMNS})
    df = pd.DataFrame({c: np.concatenate([ch[c] for ch in chunks]) for c in LOG_COLUMNS})
    df = df.sort_values(["user_id", "timestamp", "position"], kind="stable", ignore_index=True)
    return df


def _one_request(
    world: World,
    users: np.ndarray,
    gen: CandidateGenerator,
    cfg: LogConfig,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    b, k = len(users), cfg.slate_size
    cat = world.catalogue
    # the world picks the scenario and query from the user's state (its intent-driven switch)
    scenario, query = world.next_scenario(users, rng)
    cand = gen(world.history(users), rng)
    # search requests: candidates from one query category
    is_search = scenario == SEARCH
    if is_search.any():
        cand[is_search] = gen.for_categories(query[is_search], rng)
    p_click = world.expected_responses(users, cand, scenario)["click"]
    score = cfg.temperature * logit(np.clip(p_click, 1e-6, 1 - 1e-6))
    score = score + 0.3 * np.log(cat.popularity[cand] * cat.n_items)
    gumbel = -np.log(-np.log(rng.random(score.shape)))
    slate = np.take_along_axis(cand, np.argsort(-(score + gumbel), axis=1)[:, :k], axis=1)
    is_rand = np.zeros((b, k), dtype=np.int8)
    # KuaiRand's random exposures are in the recommendation feed (99.3% of them in tab 1)
    inject = np.flatnonzero((rng.random(b) < cfg.random_share) & ~is_search)
    slot = rng.integers(0, k, len(inject))
    random_item = rng.integers(0, cat.n_items, len(inject))
    clash = (slate[inject] == random_item[:, None]).any(axis=1)
    while clash.any():  # a random exposure must not repeat an item of its slate
        random_item[clash] = rng.integers(0, cat.n_items, int(clash.sum()))
        clash = (slate[inject] == random_item[:, None]).any(axis=1)
    slate[inject, slot] = random_item
    is_rand[inject, slot] = 1

    start = world.state.clock_ms[users].copy()
    truth = world.expected_responses(users, slate, scenario)
    res = world.step(users, slate, rng, scenario)
    r = res.responses
    # each item starts after the previous one was watched plus a second of browsing
    spent = r["watch_ms"] + 1000
    offset = np.cumsum(spent, axis=1) - spent
    enter = r["follow"] | (r["click"] & (rng.random((b, k)) < 0.03))
    profile_stay = np.where(enter, rng.exponential(5000.0, (b, k)), 0).astype(np.int64)
    comment_stay = np.where(r["comment"], rng.exponential(8000.0, (b, k)), 0).astype(np.int64)
    flat = {
        "user_id": np.repeat(users, k),
        "item_id": slate.ravel(),
        "timestamp": (start[:, None] + offset).ravel(),
        "position": np.tile(np.arange(k), b),
        "scenario": np.repeat(scenario, k).astype(np.int8),
        "query_category": np.repeat(query, k),
        "is_rand": is_rand.ravel(),
        "duration_ms": cat.duration_ms[slate].ravel(),
        "is_profile_enter": enter.ravel().astype(np.int8),
        "profile_stay_time": profile_stay.ravel(),
        "comment_stay_time": comment_stay.ravel(),
        "_left": res.left,
        "p_click": truth["click"].ravel().astype(np.float32),
        "p_long_view": truth["long_view"].ravel().astype(np.float32),
        "expected_watch_ms": truth["watch_ms"].ravel().astype(np.float32),
    }
    for name in ("click", "long_view", "like", "follow", "comment", "forward", "hate", "gift"):
        flat[name] = r[name].ravel().astype(np.int8)
    flat["watch_ms"] = r["watch_ms"].ravel()
    return flat


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="logging days", unit="day")


__all__ = ["LOG_COLUMNS", "LogConfig", "simulate_logs"]
