"""The throughput bench's ``step_profile``: where one single-env step's time goes.

Issue 10's single-env target (Session-v0 >= 1.5x SARDINE's ``SlateTopK-Bored-v0``) is not met;
this bench measures why, in the same loop as ``peer_env_step`` (``gym.make`` env, one
``action_space.sample()`` action per step, reset on episode end). Each part's callable is
wrapped on the instance (or, for `envs.session.record_request`, in its module) with a
``perf_counter`` timer; the parts are disjoint, and the bench writes ``us_per_step`` rows
(microseconds per env step, averaged over PROFILE_STEPS steps after a warm-up) for:

- ``sample``: ``env.action_space.sample()`` (the loop's, as in the peer bench);
- ``reset``: episode resets, spread over the steps;
- ``gymnasium wrappers``: ``env.step`` less ``env.unwrapped.step`` (order enforcing, the
  passive checker);
- ``single-env unpacking``: `envs.vector.MDPEnv.step` less the 1-slot core's ``step_slots``
  (the action's batch axis, the observation's and info's slot 0);
- ``slate from scores``: the top-k of the 50 scores (``slates_from_actions``);
- ``user response``: the backend's ``step`` (`simulators.world.World.step`: click,
  engagement, behaviours and the user's state transition);
- ``session bookkeeping``: `envs.session.record_request` (exposure, shown items, last response);
- ``candidate retrieval``: the driver's ``retrieve`` (50 candidates, duplicates redrawn);
- ``observation``: the Dict observation (user, context, 50 candidate rows, ids, mask);
- ``core rest``: the rest of ``step_slots`` (the driver's response bookkeeping, the reward sum,
  the info dict);
- ``total`` (instrumented: the sum of the parts plus the loop) and ``total uninstrumented``
  (the same loop without timers; the timers' own cost is the difference).

With sardine-rec installed it also writes SARDINE's ``sample``, ``env step``, ``reset`` and
``total`` (with the timers) in the same loop (variant ``sardine/...``). Every part is a few to a
few dozen numpy calls on arrays of 1-300 elements, each costing about a microsecond of call
overhead whatever its size: the profile shows where the calls are, not one slow kernel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from recgym.benchmarks.throughput.benches import Workspace
from recgym.benchmarks.throughput.fast_envs import PEER_ID, PEER_SLATE, load_note

PROFILE_STEPS = 20_000  # timed steps (quick: 2,000)
OURS = "recgym/Session-v0"


class _Timer:
    """Accumulated seconds per part name; `wrap` returns a timed version of a callable."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.inside: str | None = None  # an `exclusive` part running: the others do not count

    def wrap(
        self, name: str, fn: Callable[..., Any], exclusive: bool = False
    ) -> Callable[..., Any]:
        """`fn` timed under `name`; an `exclusive` part's inner timed calls count as its own
        (the reset's candidate retrieval and observation belong to ``reset``)."""
        self.seconds.setdefault(name, 0.0)
        clock, seconds = time.perf_counter, self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.inside is not None:
                return fn(*args, **kwargs)
            if exclusive:
                self.inside = name
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - start
                if exclusive:
                    self.inside = None

        return timed


def _loop(env: Any, steps: int, timer: _Timer | None) -> float:
    """Seconds for `steps` sampled steps of `env` (resetting on episode end)."""
    sample, step, reset = env.action_space.sample, env.step, env.reset
    if timer is not None:
        sample, step, reset = (
            timer.wrap("sample", sample),
            timer.wrap("env.step", step),
            timer.wrap("reset", reset, exclusive=True),
        )
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = step(sample())
        if terminated or truncated:
            reset()
    return time.perf_counter() - start


def profile_session_step(steps: int, seed: int = 0) -> dict[str, float]:
    """Microseconds per step of each part of ``gym.make('recgym/Session-v0')``'s step (see the
    module docstring), over `steps` steps after a warm-up of a tenth as many."""
    from recgym.envs import make_env
    from recgym.envs import session as session_module

    def fresh() -> Any:
        env = make_env(OURS)
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return env

    env = fresh()
    _loop(env, max(steps // 10, 100), None)
    plain = _loop(env, steps, None)

    env, timer = fresh(), _Timer()
    outer = env.unwrapped
    mdp = outer.mdp
    unwrapped_step, step_slots = outer.step, mdp.step_slots
    outer.step = timer.wrap("unwrapped.step", unwrapped_step)
    mdp.step_slots = timer.wrap("step_slots", step_slots)
    mdp.slates_from_actions = timer.wrap("slate from scores", mdp.slates_from_actions)
    mdp.driver.retrieve = timer.wrap("candidate retrieval", mdp.driver.retrieve)
    mdp._observe = timer.wrap("observation", mdp._observe)
    model = mdp.driver.model
    model.step = timer.wrap("user response", model.step)
    record = session_module.record_request
    session_module.record_request = timer.wrap("session bookkeeping", record)
    try:
        _loop(env, max(steps // 10, 100), None)
        timer.seconds.update(dict.fromkeys(timer.seconds, 0.0))
        instrumented = _loop(env, steps, timer)
    finally:
        session_module.record_request = record
    s = timer.seconds
    leaves = (
        "slate from scores",
        "user response",
        "session bookkeeping",
        "candidate retrieval",
        "observation",
    )
    parts = {
        "sample": s["sample"],
        "reset": s["reset"],
        "gymnasium wrappers": s["env.step"] - s["unwrapped.step"],
        "single-env unpacking": s["unwrapped.step"] - s["step_slots"],
        **{k: s[k] for k in leaves},
        "core rest": s["step_slots"] - sum(s[k] for k in leaves),
        "loop": instrumented - s["sample"] - s["env.step"] - s["reset"],
    }
    us = {name: 1e6 * value / steps for name, value in parts.items()}
    us["total"] = 1e6 * instrumented / steps
    us["total uninstrumented"] = 1e6 * plain / steps
    return us


def profile_peer_step(steps: int, seed: int = 0) -> dict[str, float] | None:
    """SARDINE's parts (``sample``, ``env step``, ``reset``, ``total``) in the same loop, or
    None without sardine-rec."""
    import gymnasium as gym

    try:
        import sardine  # noqa: F401  (registers the sardine/ ids)
    except ImportError:
        return None
    env = gym.make(PEER_ID, slate_size=PEER_SLATE)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    _loop(env, max(steps // 10, 100), None)
    timer = _Timer()
    total = _loop(env, steps, timer)
    s = timer.seconds
    return {
        "sample": 1e6 * s["sample"] / steps,
        "env step": 1e6 * s["env.step"] / steps,
        "reset": 1e6 * s["reset"] / steps,
        "total": 1e6 * total / steps,
    }


def bench_step_profile(work: Workspace) -> list[dict]:
    steps = 2_000 if work.quick else PROFILE_STEPS
    how = f"{steps} steps of gym.make + action_space.sample(), timers on each part; {load_note()}"
    rows = [
        work.row("step_profile", "us_per_step", value, "us", 1, f"{how}; {part}", f"{OURS}: {part}")
        for part, value in profile_session_step(steps).items()
    ]
    peer = profile_peer_step(steps)
    if peer is not None:
        rows += [
            work.row(
                "step_profile",
                "us_per_step",
                value,
                "us",
                1,
                f"{how}; {part}",
                f"{PEER_ID}: {part}",
            )
            for part, value in peer.items()
        ]
    return rows


__all__ = ["PROFILE_STEPS", "bench_step_profile", "profile_peer_step", "profile_session_step"]
