"""Session metrics with fixed names, multi-seed evaluation of a slate policy, and a results table.

Every benchmark scores agents with these functions, so numbers are comparable across tables.
One *session* is one env episode; each metric is first averaged over a seed's sessions (CTR is
pooled: all clicks over all shown items of the seed), then summarised over seeds by the mean and
a 95% Student-t interval of the per-seed values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
from scipy import stats

from recgym.envs.contract import for_env

METRICS = ("session_length", "watch_time_s", "ctr", "valid_consumption", "diversity", "follows")
"""session_length: requests per session; watch_time_s: seconds watched per session; ctr: clicks
per shown item; valid_consumption: shown items watched longer than VALID_WATCH_MS per session;
diversity: distinct categories shown per session; follows: new follows per session."""

METRIC_RANGES: dict[str, tuple[float, float]] = {
    "session_length": (0.0, math.inf),
    "watch_time_s": (0.0, math.inf),
    "ctr": (0.0, 1.0),
    "valid_consumption": (0.0, math.inf),
    "diversity": (0.0, math.inf),
    "follows": (0.0, math.inf),
}
"""The values each metric can take (counts and seconds >= 0, the CTR rate in [0, 1]); `summarize`
clips its intervals to them."""

VALID_WATCH_MS = 10_000
"""A view counts towards `valid_consumption` when it is watched for strictly more than this."""


@runtime_checkable
class SlatePolicy(Protocol):
    """Anything that picks an action from the current observation alone (`envs.contract`).

    `obs` is one observation dict of a recgym slate env; the policy reads nothing else (its
    action space is fixed when it is made). Oracles that read the world's hidden state are the
    one exception and say so with ``reads_hidden_state = True``. A policy may also define
    ``reset(seed: int)``; `evaluate` calls it before each seed's run, so a seed fixes the
    policy's own randomness as well; and ``for_backend(backend)`` (`envs.contract.for_env`).
    """

    def act(self, obs: Mapping[str, Any]) -> Any: ...


def session_totals(step_infos: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Totals of one session from the info dicts its `step` calls returned, in order.

    Each info needs ``responses`` (behaviour -> (K,) array over the shown items) and
    ``categories`` ((K,) categories of the shown items). Behaviours a backend does not produce
    count as zero. Keys: requests, watch_s, clicks, shown, valid_views, categories, follows.
    """
    requests = shown = 0
    watch_ms = clicks = valid = follows = 0.0
    seen: set[int] = set()
    for info in step_infos:
        r = info["responses"]
        cats = np.asarray(info["categories"]).reshape(-1)
        requests += 1
        shown += len(cats)
        seen.update(cats.tolist())
        if "watch_ms" in r:
            w = np.asarray(r["watch_ms"], dtype=np.float64)
            watch_ms += float(w.sum())
            valid += float((w > VALID_WATCH_MS).sum())
        if "click" in r:
            clicks += float(np.sum(r["click"]))
        if "follow" in r:
            follows += float(np.sum(r["follow"]))
    return {
        "requests": float(requests),
        "watch_s": watch_ms / 1000.0,
        "clicks": clicks,
        "shown": float(shown),
        "valid_views": valid,
        "categories": float(len(seen)),
        "follows": follows,
    }


def seed_metrics(sessions: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """METRICS of one seed from its sessions' `session_totals`: per-session means, pooled CTR."""
    if not sessions:
        raise ValueError("seed_metrics needs at least one session")

    def mean(key: str) -> float:
        return float(np.mean([s[key] for s in sessions]))

    shown = sum(s["shown"] for s in sessions)
    return {
        "session_length": mean("requests"),
        "watch_time_s": mean("watch_s"),
        "ctr": sum(s["clicks"] for s in sessions) / shown if shown else 0.0,
        "valid_consumption": mean("valid_views"),
        "diversity": mean("categories"),
        "follows": mean("follows"),
    }


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t interval for the mean; the bounds are NaN below 2 values."""
    x = np.asarray(values, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


def summarize(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict]:
    """Per-seed METRICS -> {metric: {"mean", "ci_low", "ci_high", "per_seed"}} (95% t interval).

    The t interval is symmetric, so with few seeds a small count's interval can reach below
    zero (the greedy ranker's follows: [-0.014, 0.314]), a value no session can have. Each
    bound is clipped to the metric's `METRIC_RANGES`: the clipped interval keeps every value of
    the t interval that the metric can take, and its coverage is unchanged (the mean cannot lie
    outside the range either). A bootstrap interval would respect the range by construction but
    is unreliable with 3-5 seeds, which is what the benchmarks run.
    """
    out: dict[str, dict] = {}
    for name in METRICS:
        values = [float(s[name]) for s in per_seed]
        m, lo, hi = t_interval(values)
        low, high = METRIC_RANGES[name]
        lo, hi = min(max(lo, low), high), min(max(hi, low), high)  # NaN bounds stay NaN
        out[name] = {"mean": m, "ci_low": lo, "ci_high": hi, "per_seed": values}
    return out


def run_sessions(
    policy: SlatePolicy, env: gym.Env, episodes: int, seed: int
) -> list[dict[str, float]]:
    """Play `episodes` sessions on `env`: the first reset is seeded, the rest continue from it.

    The policy is first set up for the env's backend ids (`envs.contract.for_env`)."""
    policy = for_env(policy, env)
    totals = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        infos = []
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs))
            infos.append(info)
            done = terminated or truncated
        totals.append(session_totals(infos))
    return totals


def evaluate(
    policy: SlatePolicy,
    env_fn: Callable[[int], gym.Env],
    episodes: int = 50,
    seeds: Sequence[int] = (0, 1, 2),
) -> dict[str, dict]:
    """Score `policy` on a fresh env per seed (`env_fn(seed)`), `episodes` sessions each.

    Returns {metric: {"mean", "ci_low", "ci_high", "per_seed": [...]}} for every name in
    METRICS; the interval is a 95% Student-t interval over the per-seed values.
    """
    per_seed = []
    for seed in seeds:
        if hasattr(policy, "reset"):
            policy.reset(seed)
        env = env_fn(seed)
        try:
            per_seed.append(seed_metrics(run_sessions(policy, env, episodes, seed)))
        finally:
            env.close()
    return summarize(per_seed)


def format_number(x: float) -> str:
    """One number for a table: 3 decimals below 1, 2 below 100, none above; "nan" if not finite.

    The one number formatter of recgym's tables (`benchmarks.report.fmt` delegates here).
    """
    if not math.isfinite(x):
        return "nan"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def format_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """Markdown table of {agent: evaluate(...)}: one row per agent, "mean [lo, hi]" per metric."""
    lines = [
        "| agent | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for agent, res in results.items():
        cells = []
        for name in METRICS:
            if name not in res:
                cells.append("-")
                continue
            r = res[name]
            cell = format_number(r["mean"])
            if math.isfinite(r["ci_low"]) and math.isfinite(r["ci_high"]):
                cell += f" [{format_number(r['ci_low'])}, {format_number(r['ci_high'])}]"
            cells.append(cell)
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- leave-one-out ranking
# The definitions `benchmarks.metrics` registers as hr@K / ndcg@K (see its docstring); they live
# here, upstream of agents, because trainers (agents.sequence early stopping) use them too.
def leave_one_out_ranks(
    scores: np.ndarray, target: np.ndarray, interacted: np.ndarray | None = None
) -> np.ndarray:
    """0-based rank of each user's held-out item among the items they have not interacted with.

    scores: (U, I) float, higher = recommended first; target: (U,) held-out item ids;
    interacted: (U, I) bool, True for items in the user's history (the target's own entry is
    ignored, so it may be True or False). Ties count against the target (see the module doc).
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (users, items), got shape {scores.shape}")
    n_users, n_items = scores.shape
    if target.shape != (n_users,):
        raise ValueError(f"target must be ({n_users},), got shape {target.shape}")
    if not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target must hold integer item ids, got {target.dtype}")
    if n_users and (target.min() < 0 or target.max() >= n_items):
        raise ValueError(f"target item ids must lie in [0, {n_items}), got {target.min()}..")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    rows = np.arange(n_users)
    candidate = np.ones_like(scores, dtype=bool)
    if interacted is not None:
        interacted = np.asarray(interacted, dtype=bool)
        if interacted.shape != scores.shape:
            raise ValueError(f"interacted must be {scores.shape}, got {interacted.shape}")
        candidate = ~interacted
    candidate[rows, target] = False  # the target itself is not a competitor
    own = scores[rows, target][:, None]
    return ((scores >= own) & candidate).sum(axis=1)


def hit_rate_at(ranks: np.ndarray, k: int) -> float:
    """HR@K: share of users whose held-out item ranks within the top `k`."""
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if ranks.size else math.nan


def ndcg_at(ranks: np.ndarray, k: int) -> float:
    """NDCG@K with one relevant item: mean of 1/log2(rank + 2) for ranks < k, else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not ranks.size:
        return math.nan
    return float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


__all__ = [
    "hit_rate_at",
    "leave_one_out_ranks",
    "ndcg_at",
    "METRICS",
    "METRIC_RANGES",
    "VALID_WATCH_MS",
    "SlatePolicy",
    "evaluate",
    "format_number",
    "format_table",
    "run_sessions",
    "seed_metrics",
    "session_totals",
    "summarize",
    "t_interval",
]
