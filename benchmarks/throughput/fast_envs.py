"""The throughput bench's fast-env benches: native vector envs, Collector on them, DQN, the peer.

- ``vector_env``: ``steps_per_s`` (env steps: one per slot per call) of
  ``gym.make_vec("recgym/Session-v0", num_envs=VECTOR_N, vectorization_mode=
  "vector_entry_point")`` with random scores as actions (pre-drawn), next-step autoreset;
  variants ``world`` (default WorldConfig; target >= 100,000) and ``learned`` (the bench's
  checkpoint; target >= 20,000).
- ``env_step`` variant ``world/collector-native``: a Tianshou `Collector` with a
  `RandomActionPolicy` over `envs.tianshou_vector.TianshouVectorEnv` of that vector env (Dict
  observations, ``info="none"``), ``collect(n_step=8 * VECTOR_N)`` per call (target >= 30,000).
- ``dqn_train``: ``steps_per_s`` of `agents.dqn.train_dqn` on Session-v0 over the default world
  (DQNConfig defaults but DQN_STEPS env steps in 2 epochs: collection, gradient steps, test
  episodes; after a small warm-up run so imports and compiled kernels are not timed). Target
  >= 850 (10x the 40-85 steps/s the issue measured before the native envs).
- ``peer_env_step``: one ``gym.make`` env stepped with ``action_space.sample()`` actions, reset
  on episode end: variant ``sardine/SlateTopK-Bored-v0`` (sardine-rec, ``slate_size=6``) and
  ``recgym/Session-v0`` (world, default sizes, slate 6) in alternating timed blocks of the same
  process (PEER_ROUNDS rounds; the median block of each), then metric ``ratio_to_sardine``
  (recgym / SARDINE steps per second; target >= 1.5). Without sardine-rec installed
  (``pip install 'recgym[peers]'``) the bench writes one ``installed`` row, value 0, whose note
  says "not installed".
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from recgym.benchmarks.throughput.benches import Workspace, _median_time

VECTOR_N = 256  # slots of the native vector env benches
DQN_STEPS = 2_000  # env steps of the timed DQN run (quick: 400)
PEER_ID = "sardine/SlateTopK-Bored-v0"
PEER_SLATE = 6
PEER_ROUNDS = 5  # alternating timed blocks per env (quick: 3)


def _make_vec(n: int, **kwargs: object):
    import gymnasium as gym

    from recgym.envs import register_all

    register_all()
    return gym.make_vec(
        "recgym/Session-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs
    )


def bench_vector_env(work: Workspace) -> list[dict]:
    repeats, block = (3, 0.2) if work.quick else (5, 1.0)
    rows = []
    for backend in ("world", "learned"):
        kwargs: dict[str, object] = {"backend": backend}
        where = "default WorldConfig"
        if backend == "learned":
            kwargs["checkpoint"] = str(work.simulator())
            where = work.checkpoint_note
        venv = _make_vec(VECTOR_N, **kwargs)
        venv.reset(seed=0)
        actions = np.random.default_rng(0).uniform(-1, 1, (64, VECTOR_N, 50)).astype(np.float32)
        calls = [0]

        def step(venv=venv, actions=actions, calls=calls) -> None:
            venv.step(actions[calls[0] % len(actions)])
            calls[0] += 1

        seconds = _median_time(step, repeats, block)
        note = (
            f"median of {repeats}; gym.make_vec(vector_entry_point), {VECTOR_N} slots, random "
            f"scores, next-step autoreset; {where}"
        )
        rows.append(
            work.row(
                "vector_env", "steps_per_s", VECTOR_N / seconds, "1/s", VECTOR_N, note, backend
            )
        )
        venv.close()
    return rows


def bench_collector_native(work: Workspace) -> list[dict]:
    from tianshou.algorithm.algorithm_base import RandomActionPolicy
    from tianshou.data import Collector, VectorReplayBuffer

    from recgym.envs.tianshou_vector import TianshouVectorEnv

    repeats, block = (3, 0.2) if work.quick else (5, 1.0)
    venv = TianshouVectorEnv(_make_vec(VECTOR_N), info="none")
    venv.seed(0)
    n_step = 8 * VECTOR_N
    collector = Collector(
        RandomActionPolicy(venv.action_space[0]), venv, VectorReplayBuffer(4 * n_step, VECTOR_N)
    )
    collector.reset()
    seconds = _median_time(lambda: collector.collect(n_step=n_step), repeats, block)
    note = (
        f"median of {repeats}; Tianshou Collector, RandomActionPolicy, TianshouVectorEnv over "
        f"the native vector env ({VECTOR_N} slots, Dict obs, info='none'), "
        f"collect(n_step={n_step}); default WorldConfig"
    )
    row = work.row(
        "env_step", "steps_per_s", n_step / seconds, "1/s", VECTOR_N, note, "world/collector-native"
    )
    return [row]


def bench_dqn_train(work: Workspace) -> list[dict]:
    from dataclasses import replace

    from recgym.agents.dqn import DQNConfig, train_dqn

    steps = 400 if work.quick else DQN_STEPS
    warm = DQNConfig(env_steps=64, epochs=1, warmup_steps=64, test_episodes=1, eps_decay_steps=64)
    train_dqn({}, warm, progress=False)  # imports, compiled kernels
    config = replace(DQNConfig(), env_steps=steps, epochs=2)
    _, stats = train_dqn({}, config, progress=False)
    note = (
        f"train_dqn on Session-v0, default WorldConfig, DQNConfig defaults with env_steps={steps}, "
        f"epochs=2 ({config.n_envs} native slots, {config.updates_per_step} gradient steps per "
        f"env step, {config.test_episodes} test episodes per epoch); {stats.env_steps} env "
        f"steps, {stats.gradient_steps} gradient steps in {stats.seconds:.1f} s, of which "
        f"updates {stats.update_seconds:.1f} s"
    )
    row = work.row(
        "dqn_train", "steps_per_s", stats.env_steps / stats.seconds, "1/s", config.n_envs, note
    )
    return [row]


def _stepper(env) -> Callable[[], None]:
    def step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    return step


def _block_rate(step: Callable[[], None], seconds: float) -> float:
    """Steps per second of `step` over a block of about `seconds`."""
    start = time.perf_counter()
    calls = 0
    while calls < 10 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls / (time.perf_counter() - start)


def bench_peer(work: Workspace) -> list[dict]:
    import gymnasium as gym

    from recgym.envs import make_env

    try:
        import sardine  # noqa: F401  (registers the sardine/ ids)
    except ImportError:
        note = (
            f"{PEER_ID}: not installed (pip install 'recgym[peers]', i.e. sardine-rec==1.0.8); "
            "no ratio measured"
        )
        return [work.row("peer_env_step", "installed", 0.0, "-", 1, note, PEER_ID)]
    rounds, block = (3, 0.2) if work.quick else (PEER_ROUNDS, 1.0)
    peer = gym.make(PEER_ID, slate_size=PEER_SLATE)
    ours = make_env("recgym/Session-v0")
    for env in (peer, ours):
        env.reset(seed=0)
        env.action_space.seed(0)
    steps = {"peer": _stepper(peer), "ours": _stepper(ours)}
    for step in steps.values():  # warm-up
        _block_rate(step, block / 4)
    rates: dict[str, list[float]] = {"peer": [], "ours": []}
    for _ in range(rounds):  # alternate, so both see the same machine load
        for name, step in steps.items():
            rates[name].append(_block_rate(step, block))
    peer_rate = statistics.median(rates["peer"])
    our_rate = statistics.median(rates["ours"])
    how = f"median of {rounds} alternating blocks of {block:g} s, action_space.sample() actions"
    return [
        work.row(
            "peer_env_step",
            "steps_per_s",
            peer_rate,
            "1/s",
            1,
            f"{how}; gym.make({PEER_ID!r}, slate_size={PEER_SLATE}), sardine-rec "
            f"{_version('sardine-rec')}",
            PEER_ID,
        ),
        work.row(
            "peer_env_step",
            "steps_per_s",
            our_rate,
            "1/s",
            1,
            f"{how}; gym.make('recgym/Session-v0'), default WorldConfig, slate 6 of 50",
            "recgym/Session-v0",
        ),
        work.row(
            "peer_env_step",
            "ratio_to_sardine",
            our_rate / peer_rate,
            "x",
            1,
            "recgym/Session-v0 steps/s over sardine/SlateTopK-Bored-v0 steps/s, same run",
            "recgym/Session-v0",
        ),
    ]


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


FAST_BENCHES: dict[str, Callable[[Workspace], list[dict]]] = {
    "vector_env": bench_vector_env,
    "collector_native": bench_collector_native,
    "dqn_train": bench_dqn_train,
    "peer": bench_peer,
}
"""The fast-env benches (names for --only), added to `benches.BENCHES`."""

__all__ = ["FAST_BENCHES", "VECTOR_N"]
