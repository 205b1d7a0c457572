"""Each panel policy's first slate of a session, scored by the world and by the simulator.

`recgym bench fidelity` ranks policies by whole sessions on each backend, which mixes three
sources of error: the response model (what a user does with a slate), the leave model (when
the session ends) and how both backends' states drift during the session. This stage isolates
the first: for `sessions` session starts on the world (its post-log state; each reset draws a
user and lets the time since their last session pass), every panel policy picks a slate from
the same observation, and both backends give their *expected* responses to that slate at that
state (`World.expected_responses`, exact up to quadrature; `LearnedSimulator.
expected_responses` after `begin_session` for the same user, so the simulator sees the user's
logged history and a fresh session). Nothing is sampled, so the only noise is which users
start sessions.

Per policy, means over the session starts: the click rate per shown item, long views per
click, the expected watched fraction given a click (``mean_ratio``), the expected seconds
watched given a click (fraction x duration) and the expected seconds watched per request
(clicked or not: the six items' ``watch_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

METRICS = (
    ("click", "click rate"),
    ("long_per_click", "long views / click"),
    ("ratio_per_click", "watched fraction / click"),
    ("watch_per_click_s", "s watched / click"),
    ("watch_per_request_s", "s watched / request"),
)
"""(key, column title) of the per-policy means, each for the world and for the simulator."""


def _summary(expected: Mapping[str, np.ndarray], duration_ms: np.ndarray) -> dict[str, float]:
    """One slate's (1, K) expected responses -> the per-request quantities of `METRICS`."""
    click = np.asarray(expected["click"], dtype=np.float64)
    ratio = np.asarray(expected["mean_ratio"], dtype=np.float64)
    clicks = click.sum()
    return {
        "click": float(click.mean()),
        "long_per_click": float(np.asarray(expected["long_view"]).sum() / max(clicks, 1e-12)),
        "ratio_per_click": float((click * ratio).sum() / max(clicks, 1e-12)),
        "watch_per_click_s": float((click * ratio * duration_ms).sum() / max(clicks, 1e-12)) / 1e3,
        "watch_per_request_s": float(np.asarray(expected["watch_ms"]).sum()) / 1e3,
    }


def first_request_responses(
    panel: Mapping[str, Any], env: Any, world: Any, sim: Any, sessions: int, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """{policy: {metric: {"world": mean, "simulator": mean}}} over `sessions` session starts of
    `env` (a Session-v0 env whose backend is `world`), each policy's slate from the same
    observation (policies set up for the env's ids and reset with `seed`). Per-click values are
    click-weighted over each slate, then averaged over session starts."""
    from recgym.envs.contract import for_env

    policies = {name: for_env(policy, env) for name, policy in panel.items()}
    for policy in policies.values():
        if hasattr(policy, "reset"):
            policy.reset(seed)
    mdp = env.unwrapped.mdp
    rng = np.random.default_rng(seed)
    duration = world.catalogue.duration_ms
    per: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"world": [], "simulator": []} for name in policies
    }
    for i in range(sessions):
        obs, info = env.reset(seed=seed) if i == 0 else env.reset()
        user = np.array([int(info["user_id"])])
        sim.begin_session(user, rng)
        for name, policy in policies.items():
            slate = mdp.slates_from_actions(np.asarray(policy.act(obs))[None], np.array([0]))
            d = duration[slate].astype(np.float64)
            per[name]["world"].append(_summary(world.expected_responses(user, slate), d))
            per[name]["simulator"].append(_summary(sim.expected_responses(user, slate), d))
    return {
        name: {
            key: {b: float(np.mean([s[key] for s in rows])) for b, rows in by_backend.items()}
            for key, _ in METRICS
        }
        for name, by_backend in per.items()
    }


def responses_markdown(
    table: Mapping[str, Mapping[str, Mapping[str, float]]], sessions: int
) -> str:
    """`first_request_responses`' table as a markdown section: world / simulator per cell, and
    the simulator's relative error of the seconds watched per request."""
    head = " | ".join(title for _, title in METRICS)
    lines = [
        "## The first request of a session: the same slate at the same state",
        "",
        f"Each policy's slate at {sessions} session starts on the world, scored by both "
        "backends' expected responses (`benchmarks/fidelity_responses.py`): this isolates the "
        "response model from the leave model and from state drift. Cells: world / simulator.",
        "",
        f"| policy | {head} | simulator error, s / request |",
        "|---|" + "---|" * (len(METRICS) + 1),
    ]
    for name, row in table.items():
        cells = []
        for key, _ in METRICS:
            w, s = row[key]["world"], row[key]["simulator"]
            cells.append(f"{w:.1f} / {s:.1f}" if key.endswith("_s") else f"{w:.3f} / {s:.3f}")
        w, s = row["watch_per_request_s"]["world"], row["watch_per_request_s"]["simulator"]
        error = f"{100 * (s - w) / w:+.0f} %" if w > 0 else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {error} |")
    return "\n".join(lines) + "\n"
