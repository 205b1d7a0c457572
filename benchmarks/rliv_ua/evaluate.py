"""RLIV-UA bench evaluation: every agent x backend x seed, one JSONL row each."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.engine import provenance
from recgym.benchmarks.rliv_ua.spec import (
    AGENTS,
    BACKEND_LABELS,
    ENV_ID,
    RLIV_VARIANTS,
    ROWS,
    WORLD_ONLY,
    BenchConfig,
    settings_digest,
)
from recgym.benchmarks.rliv_ua.stages import Job, ckpt_path, env_key


# --------------------------------------------------------------------------- evaluation
def load_policy(job: Job, agent: str, seed: int, backend: str) -> Any:
    """The trained slate policy of `agent` for `seed`, as `envs.evaluation` plays it."""
    if agent == "random":
        from recgym.agents.baselines import RandomPolicy

        return RandomPolicy(seed=seed)
    if agent in ("click_ranker", "myopic_watch_ranker"):
        from recgym.agents.baselines import RankingModel
        from recgym.agents.references import rankers_from_model

        model = RankingModel.load(ckpt_path(job, "click_ranker", seed))
        click, watch = rankers_from_model(model)
        return click if agent == "click_ranker" else watch
    if agent == "longest_first":
        from recgym.agents.references import LongestFirst

        return LongestFirst()
    if agent == "duration_diversity":
        from recgym.agents.references import DurationDiversity

        return DurationDiversity()
    if agent == "ranking_model":
        from recgym.agents.deepfm import DeepFMRanker

        return DeepFMRanker.load(ckpt_path(job, agent, seed))
    if agent in ("cql", "td3"):
        from recgym.agents.continuous import LinearScorePolicy

        return LinearScorePolicy.load(ckpt_path(job, agent, seed))
    if agent == "rlur":
        from recgym.agents.rlur import RLURPolicy

        return RLURPolicy.load(ckpt_path(job, agent, seed))
    if agent == "dqn":
        from recgym.agents.baselines import QSlatePolicy
        from recgym.agents.dqn import load_dqn

        algo, _ = load_dqn(ckpt_path(job, agent, seed))
        return QSlatePolicy(algo)
    if agent in RLIV_VARIANTS:
        from recgym.agents.rliv_ua import LIVSlatePolicy, load_rliv_ua

        return LIVSlatePolicy(load_rliv_ua(ckpt_path(job, agent, seed, backend)))
    raise ValueError(f"unknown agent {agent!r}")


def play_seed(policy: Any, env: Any, episodes: int, seed: int) -> dict[str, float | None]:
    """METRICS of one seed (`envs.evaluation.seed_metrics`) plus ``gifts`` per session.

    The first reset is seeded, the following sessions continue from it (user state persists,
    as in `envs.evaluation.run_sessions`). Gifts are counted from each step's responses; a
    backend that never reports a ``gift`` behaviour gets None (not zero).
    """
    from recgym.envs.contract import for_env
    from recgym.envs.evaluation import seed_metrics, session_totals

    policy = for_env(policy, env)  # a DeepFM (or RLUR over one) maps the backend's ids
    if hasattr(policy, "reset"):
        policy.reset(seed)
    totals, gifts = [], []
    has_gifts = False
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        infos, gift = [], 0.0
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs))
            infos.append(info)
            if "gift" in info["responses"]:
                has_gifts = True
                gift += float(np.sum(info["responses"]["gift"]))
            done = terminated or truncated
        totals.append(session_totals(infos))
        gifts.append(gift)
    metrics: dict[str, float | None] = dict(seed_metrics(totals))
    metrics["gifts"] = float(np.mean(gifts)) if has_gifts else None
    return metrics


def agent_key(job: Job, agent: str, seed: int, backend: str, records: Mapping) -> str:
    """Digest of what an evaluation row depends on: the agent's training key and the eval."""
    if agent in UNTRAINED:
        trained = None
    elif agent in RLIV_VARIANTS:
        trained = records[agent, seed, backend]["key"]
    else:
        trained = records[agent, seed, None]["key"]
    return settings_digest(
        {
            "agent": agent,
            "trained": trained,
            "env": env_key(job.env_kwargs(backend)),
            "sim": job.sim_key if backend == "learned" else None,
            "logs": job.logs_key,  # world_dir is a path; the world it holds is the logs' world
            "episodes": job.cfg.episodes,
            "seed": seed,
            "code": job.code(),  # how it is played and scored
        }
    )


UNTRAINED = frozenset({"random", "longest_first", "duration_diversity", "oracle"})


def eval_cells(cfg: BenchConfig) -> list[tuple[str, str, int]]:
    """(agent, backend, seed) of every evaluation row; the oracle only on the world."""
    return [
        (a, b, s)
        for a in cfg.agents
        for b in cfg.backends
        if not (a in WORLD_ONLY and b != "world")
        for s in cfg.seeds
    ]


def open_env(job: Job, agent: str, seed: int, backend: str) -> tuple[Any, Any]:
    """(policy, env) of one evaluation row: the oracle steps the very world it reads."""
    from recgym.envs import make_env

    if agent == "oracle":
        from recgym.agents.references import PatienceOracle
        from recgym.simulators.world_state import load_world

        oracle = PatienceOracle(load_world(job.logs_dir), None, job.cfg.slate_size, seed)
        return oracle, oracle.make_env(ENV_ID, **job.env_common())
    return load_policy(job, agent, seed, backend), make_env(ENV_ID, **job.env_kwargs(backend))


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


def stage_evaluate(job: Job, records: Mapping) -> list[dict[str, Any]]:
    """Evaluate every (agent, backend, seed) without a row for its current key; return the
    current rows (old rows of other settings stay in the JSONL but are not returned)."""
    rows_path = job.out / ROWS
    existing = {row["key"]: row for row in read_rows(rows_path)}
    if job.fresh:
        wanted = {agent_key(job, a, s, b, records) for a, b, s in eval_cells(job.cfg)}
        kept = [row for row in existing.values() if row["key"] not in wanted]
        rows_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        existing = {row["key"]: row for row in kept}
    sha = git_sha()
    current = []
    for agent, backend, seed in eval_cells(job.cfg):
        key = agent_key(job, agent, seed, backend, records)
        if key in existing:
            current.append(existing[key])
            continue
        t = time.perf_counter()
        policy, env = open_env(job, agent, seed, backend)
        try:
            metrics = play_seed(policy, env, job.cfg.episodes, seed)
        finally:
            env.close()
        seconds = round(time.perf_counter() - t, 2)
        row = {
            "bench": "rliv_ua",
            "env": ENV_ID,
            "agent": agent,
            "label": AGENTS[agent].label,
            "backend": backend,
            "seed": seed,
            "episodes": job.cfg.episodes,
            "metrics": metrics,
            "train_seconds": _train_seconds(agent, seed, backend, records),
            "eval_seconds": seconds,
            "mode": job.cfg.mode,
            "key": key,
            "config_hash": settings_digest(asdict(job.cfg)),
            "git_sha": sha,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "provenance": provenance(),  # commit + dirty-tree hash incl. untracked
        }
        with open(rows_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        job.say(
            f"evaluate {AGENTS[agent].label} on the {BACKEND_LABELS[backend]} seed {seed}: "
            f"{metrics['session_length']:.2f} requests, {metrics['watch_time_s']:.0f} s "
            f"({seconds} s)"
        )
        current.append(row)
    return current


def _train_seconds(agent: str, seed: int, backend: str, records: Mapping) -> float | None:
    if agent in UNTRAINED:
        return None
    rec = records[(agent, seed, backend if agent in RLIV_VARIANTS else None)]
    return rec.get("seconds")


def git_sha() -> str:
    """The commit, with the engine's dirty-tree hash (untracked files included) when dirty."""
    from recgym.benchmarks.engine import provenance

    p = provenance()
    commit, dirty = p["git_commit"][:12], p["dirty_tree"]
    return commit if dirty == "clean" else f"{commit}-dirty-{dirty}"


def machine() -> dict[str, Any]:
    import os

    return {"nproc": os.cpu_count(), "python": platform.python_version()}
