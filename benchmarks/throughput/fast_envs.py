"""The throughput bench's fast-env benches: native vector envs, Collector on them, DQN, the peer.

Each speed is written twice: ``steps_per_s`` (wall clock) and ``steps_per_cpu_s`` (env steps per
second of this process's CPU time, `time.process_time`). On an idle machine the two agree for
this single-threaded code; on the development machine, whose 2 cores are shared by several jobs,
the wall rate falls with the load and the CPU rate estimates the idle-machine wall rate, so the
targets below are judged on the CPU rows (the SARDINE ratio on alternating wall-clock blocks,
which see the same load).

- ``vector_env``: ``steps_per_s`` (env steps: one per slot per call) of
  ``gym.make_vec("recgym/Session-v0", num_envs=VECTOR_N, vectorization_mode=
  "vector_entry_point")`` with random scores as actions (pre-drawn), next-step autoreset;
  variants ``world`` (default WorldConfig; target >= 100,000) and ``learned`` (the bench's
  checkpoint; target >= 20,000).
- ``env_step`` variant ``world/collector-native``: a Tianshou `Collector` with a
  `RandomActionPolicy` over `envs.tianshou_vector.TianshouVectorEnv` of that vector env (Dict
  observations, ``info="none"``), ``collect(n_step=8 * VECTOR_N)`` per call (target >= 30,000).
  Tianshou's `RandomActionPolicy` samples a Box action with one ``action_space.sample()`` per
  env (256 Python calls per step, a fifth of the collect time); variant
  ``world/collector-native-batched`` is the same collection with `BatchedRandomPolicy`, one
  uniform draw for all envs (as a network policy acts: one forward per batch), so the row
  measures the env and the Collector, not the random sampler (the same target); variant
  ``world/collector-native-flat`` collects flat observations (``flatten=True``: one float32
  array per step, what `agents.dqn` and the TD3/CQL trainers collect) with that policy (the
  same target). The Dict rows pay for Tianshou's handling of a Batch of Dict entries at every
  step and for every finished episode.
- ``dqn_train``: ``steps_per_s`` of `agents.dqn.train_dqn` on Session-v0 over the default world
  (DQNConfig defaults but DQN_STEPS env steps in 2 epochs: collection, gradient steps, test
  episodes; after a small warm-up run so imports and compiled kernels are not timed; the median
  of DQN_REPEATS identical runs by CPU time, the same weights each time). Target
  >= 850 (10x the 40-85 steps/s the issue measured before the native envs).
- ``peer_env_step``: one ``gym.make`` env stepped with ``action_space.sample()`` actions, reset
  on episode end: variant ``sardine/SlateTopK-Bored-v0`` (sardine-rec, ``slate_size=6``) and
  ``recgym/Session-v0`` (world, default sizes, slate 6) in alternating timed blocks of the same
  process (PEER_ROUNDS rounds; the median block of each), then metric ``ratio_to_sardine``
  (recgym / SARDINE steps per second; target >= 1.5). Without sardine-rec installed
  (``pip install 'recgym[peers]'``) the bench writes one ``installed`` row, value 0, whose note
  says "not installed".

Every row's note ends with the machine's 1-minute load average when it was measured.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from recgym.benchmarks.throughput.benches import Workspace, _median_times

VECTOR_N = 256  # slots of the native vector env benches
DQN_STEPS = 2_000  # env steps of the timed DQN run (quick: 400)
DQN_REPEATS = 3  # timed DQN runs, the median reported (quick: 1); one run varies by +-10%
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
        kwargs, where = work.backend(backend)
        venv = _make_vec(VECTOR_N, **kwargs)
        venv.reset(seed=0)
        actions = np.random.default_rng(0).uniform(-1, 1, (64, VECTOR_N, 50)).astype(np.float32)
        calls = [0]

        def step(venv=venv, actions=actions, calls=calls) -> None:
            venv.step(actions[calls[0] % len(actions)])
            calls[0] += 1

        wall, cpu = _median_times(step, repeats, block)
        note = (
            f"median of {repeats}; gym.make_vec(vector_entry_point), {VECTOR_N} slots, random "
            f"scores, next-step autoreset; {where}"
        )
        rows += _rate_rows(work, "vector_env", VECTOR_N, wall, cpu, VECTOR_N, note, backend)
        venv.close()
    return rows


def batched_random_policy(action_space: Any, seed: int = 0) -> Any:
    """A Tianshou `RandomActionPolicy` whose Box actions for all envs come from one uniform
    draw (its own ``np.random.Generator`` seeded `seed`) instead of one
    ``action_space.sample()`` per env; Discrete spaces keep Tianshou's behaviour."""
    import torch
    from tianshou.algorithm.algorithm_base import RandomActionPolicy
    from tianshou.data import Batch

    class BatchedRandomPolicy(RandomActionPolicy):
        def __init__(self) -> None:
            super().__init__(action_space)
            self.rng = np.random.default_rng(seed)

        def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Batch:
            space = self.action_space
            if not hasattr(space, "low"):
                return super().forward(batch, state, **kwargs)
            shape = (len(batch.obs), *space.shape)
            act = self.rng.uniform(space.low, space.high, shape).astype(space.dtype)
            return Batch(act=torch.as_tensor(act), state=state)

    return BatchedRandomPolicy()


def bench_collector_native(work: Workspace) -> list[dict]:
    from tianshou.algorithm.algorithm_base import RandomActionPolicy
    from tianshou.data import Collector, VectorReplayBuffer

    from recgym.envs.tianshou_vector import TianshouVectorEnv

    repeats, block = (3, 0.2) if work.quick else (5, 1.0)
    n_step = 8 * VECTOR_N
    rows = []
    batched = "BatchedRandomPolicy (one uniform draw per step)"
    for variant, policy_name, flatten in (
        ("world/collector-native", "RandomActionPolicy", False),
        ("world/collector-native-batched", batched, False),
        ("world/collector-native-flat", batched, True),
    ):
        venv = TianshouVectorEnv(_make_vec(VECTOR_N), info="none", flatten=flatten)
        venv.seed(0)
        space = venv.action_space[0]
        policy = (
            RandomActionPolicy(space)
            if policy_name == "RandomActionPolicy"
            else batched_random_policy(space)
        )
        collector = Collector(policy, venv, VectorReplayBuffer(4 * n_step, VECTOR_N))
        collector.reset()
        wall, cpu = _median_times(lambda c=collector: c.collect(n_step=n_step), repeats, block)
        note = (
            f"median of {repeats}; Tianshou Collector, {policy_name}, TianshouVectorEnv over "
            f"the native vector env ({VECTOR_N} slots, {'flat' if flatten else 'Dict'} obs, "
            f"info='none'), collect(n_step={n_step}); default WorldConfig"
        )
        rows += _rate_rows(work, "env_step", n_step, wall, cpu, VECTOR_N, note, variant)
    return rows


def bench_dqn_train(work: Workspace) -> list[dict]:
    from dataclasses import replace

    from recgym.agents.dqn import DQNConfig, train_dqn

    steps = 400 if work.quick else DQN_STEPS
    warm = DQNConfig(env_steps=64, epochs=1, warmup_steps=64, test_episodes=1, eps_decay_steps=64)
    warm = replace(warm, device=work.device)
    train_dqn({}, warm, progress=False)  # imports, compiled kernels
    config = replace(DQNConfig(), env_steps=steps, epochs=2, device=work.device)
    runs = []  # (cpu seconds, stats) of each timed run; the median run by CPU time is reported
    for _ in range(1 if work.quick else DQN_REPEATS):
        cpu_start = time.process_time()
        _, stats = train_dqn({}, config, progress=False)
        runs.append((time.process_time() - cpu_start, stats))
    runs.sort(key=lambda run: run[0])
    cpu, stats = runs[len(runs) // 2]
    note = (
        f"median of {len(runs)} runs by CPU time; "
        f"train_dqn on Session-v0, default WorldConfig, DQNConfig defaults with env_steps={steps}, "
        f"epochs=2 ({config.n_envs} native slots, {config.updates_per_step} gradient steps per "
        f"env step, {config.test_episodes} test episodes per epoch); {stats.env_steps} env "
        f"steps, {stats.gradient_steps} gradient steps in {stats.seconds:.1f} s, of which "
        f"updates {stats.update_seconds:.1f} s; device {work.device}"
    )
    return _rate_rows(
        work, "dqn_train", stats.env_steps, stats.seconds, cpu, config.n_envs, note, None
    )


def _stepper(env) -> Callable[[], None]:
    def step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    return step


def _block_rate(step: Callable[[], None], seconds: float) -> tuple[float, float]:
    """(wall, CPU) steps per second of `step` over a block of about `seconds` of wall time."""
    start, cpu_start = time.perf_counter(), time.process_time()
    calls = 0
    while calls < 10 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    cpu = max(time.process_time() - cpu_start, 1e-9)
    return calls / (time.perf_counter() - start), calls / cpu


def _rate_rows(
    work: Workspace,
    bench: str,
    steps: int,
    wall: float,
    cpu: float,
    batch: int | None,
    note: str,
    variant: str | None,
) -> list[dict]:
    """``steps_per_s`` (wall) and ``steps_per_cpu_s`` (this process's CPU time) of `steps` env
    steps taking `wall` / `cpu` seconds; the note gets the load average at the end."""
    note = f"{note}; {load_note()}"
    return [
        work.row(bench, "steps_per_s", steps / wall, "1/s", batch, note, variant),
        work.row(bench, "steps_per_cpu_s", steps / cpu, "1/s", batch, note, variant),
    ]


def load_note() -> str:
    """The machine's 1-minute load average (other jobs on the shared cores), for a row's note:
    the CPU rates fall as the load rises (cores and caches shared), so a rate is read with it."""
    try:
        return f"load average {os.getloadavg()[0]:.1f}"
    except OSError:
        return "load average unknown"


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
    rates: dict[str, list[tuple[float, float]]] = {"peer": [], "ours": []}
    for _ in range(rounds):  # alternate, so both see the same machine load
        for name, step in steps.items():
            rates[name].append(_block_rate(step, block))
    peer_wall, peer_cpu = (statistics.median(r[i] for r in rates["peer"]) for i in (0, 1))
    our_wall, our_cpu = (statistics.median(r[i] for r in rates["ours"]) for i in (0, 1))
    how = (
        f"median of {rounds} alternating blocks of {block:g} s, action_space.sample() actions, "
        f"{load_note()}"
    )
    peer_note = (
        f"{how}; gym.make({PEER_ID!r}, slate_size={PEER_SLATE}), sardine-rec "
        f"{_version('sardine-rec')}"
    )
    our_note = f"{how}; gym.make('recgym/Session-v0'), default WorldConfig, slate 6 of 50"
    ours = "recgym/Session-v0"
    return [
        work.row("peer_env_step", "steps_per_s", peer_wall, "1/s", 1, peer_note, PEER_ID),
        work.row("peer_env_step", "steps_per_cpu_s", peer_cpu, "1/s", 1, peer_note, PEER_ID),
        work.row("peer_env_step", "steps_per_s", our_wall, "1/s", 1, our_note, ours),
        work.row("peer_env_step", "steps_per_cpu_s", our_cpu, "1/s", 1, our_note, ours),
        work.row(
            "peer_env_step",
            "ratio_to_sardine",
            our_wall / peer_wall,
            "x",
            1,
            "recgym/Session-v0 over sardine/SlateTopK-Bored-v0 wall steps/s, alternating blocks "
            f"of one run (ratio of CPU steps/s: {our_cpu / peer_cpu:.3f})",
            ours,
        ),
    ]


def bench_step_profile(work: Workspace) -> list[dict]:
    """`step_profile.bench_step_profile` (where a single Session-v0 step's time goes)."""
    from recgym.benchmarks.throughput.step_profile import bench_step_profile as bench

    return bench(work)


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
    "step_profile": bench_step_profile,
}
"""The fast-env benches (names for --only), added to `benches.BENCHES`."""

__all__ = ["FAST_BENCHES", "VECTOR_N"]
