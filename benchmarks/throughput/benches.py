"""The throughput benches: what each one times and how (the package docstring lists them).

Each bench is a function of the invocation's `Workspace` returning its rows (`Workspace.row`);
`BENCHES` maps the names ``--only`` accepts to them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recgym.benchmarks.throughput.rows import make_row
from recgym.simulators import oracle
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.generate import generate
from recgym.simulators.logs import LogConfig
from recgym.simulators.world import World, WorldConfig

SLATE = 6
THREADS = 2
# Torch intra-op threads of the learned-simulator benches (--torch-threads). One, as recgym trains
# (`SimulatorConfig.torch_threads`) and runs its demo: with two, batch-1024 steps are ~30 % faster
# on an idle 2-core machine, but each step stalls 10x when another process holds a core (torch's
# OpenMP workers wait for each other), and a batch-1 step gains nothing.
TORCH_THREADS = 1
STEP_BATCHES = (1, 64, 1024)
REQUEST_BATCH = 1024
# full mode: ~24.5 logged rows per user-day with the default catalogue -> ~1.1 M rows
LOG_USERS, LOG_DAYS = 3200, 14
QUICK_LOG_USERS, QUICK_LOG_DAYS = 200, 2
# the checkpoint the learned-simulator benches train when no --checkpoint is given
CHECKPOINT_USERS, CHECKPOINT_DAYS = 300, 3
# SimulatorConfig fields of that checkpoint, and of sim_train in --quick mode
CHECKPOINT_TRAIN = {"epochs": 1, "leave_steps": 200, "heldout_days": 1}
QUICK_TRAIN = {"epochs": 1, "leave_steps": 100, "heldout_days": 1}
N_ENVS = 4  # DummyVectorEnv size of the env_step collector variants
COLLECT_STEPS = 64  # env steps per `Collector.collect` call
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # for sim_train


# --------------------------------------------------------------------------- timing helpers
def _median_time(fn: Callable[[], object], repeats: int, min_seconds: float) -> float:
    """Median seconds per call of `fn` over `repeats` timed blocks, after one warm-up block.

    Each block calls `fn` as many times as fit in about `min_seconds` (calibrated on the warm-up),
    so fast calls are not dominated by timer resolution.
    """
    return _median_times(fn, repeats, min_seconds)[0]


def _median_times(
    fn: Callable[[], object], repeats: int, min_seconds: float
) -> tuple[float, float]:
    """(wall, CPU) median seconds per call of `fn`, as `_median_time`; CPU is this process's
    `time.process_time` (all its threads), the wall time's estimate on an idle machine when
    the cores are shared with other jobs."""
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    n = max(1, int(min_seconds / max(per_call, 1e-9)))
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        wall.append((time.perf_counter() - t0) / n)
        cpu.append((time.process_time() - c0) / n)
    return statistics.median(wall), statistics.median(cpu)


@contextmanager
def thread_limit(torch_threads: int) -> Iterator[None]:
    """BLAS/OpenMP pools at THREADS threads and torch's intra-op pool at `torch_threads`.

    Both are restored afterwards. Torch is set last: threadpoolctl may also resize the OpenMP
    pool torch runs on.
    """
    import torch

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        limits = nullcontext()
    else:
        limits = threadpool_limits(limits=THREADS)
    before = torch.get_num_threads()
    with limits:
        torch.set_num_threads(torch_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)


@dataclass(kw_only=True)
class Workspace:
    """What the benches of one invocation share: a scratch directory (deleted afterwards), the
    log the ``log_generate`` bench wrote, and the learned-simulator checkpoint (trained once)."""

    root: Path
    """Scratch directory."""
    quick: bool
    """Smoke-test sizes and timing blocks; rows are marked mode="quick"."""
    torch_threads: int = TORCH_THREADS
    """Torch intra-op threads the benches run with (recorded in every row)."""
    checkpoint: Path | None = None
    """Learned-simulator checkpoint: given (--checkpoint) or trained by `simulator`."""
    checkpoint_note: str = ""
    """Where the checkpoint came from, for the rows' notes."""
    device: str = "auto"
    """Torch device of the learned simulator and DQN in the model benches (`recgym.device`);
    the rows' notes name it."""
    logs: Path | None = None
    """The KuaiRand directory `generate_logs` wrote (None until it ran)."""
    log_rows: int = 0
    """Rows in `logs`."""

    def row(
        self,
        bench: str,
        metric: str,
        value: float,
        unit: str,
        batch: int | None,
        note: str,
        variant: str | None = None,
    ) -> dict:
        """One result row of this invocation (`rows.make_row`)."""
        return make_row(bench, metric, value, unit, batch, note, variant, quick=self.quick,
                        threads=THREADS, torch_threads=self.torch_threads)  # fmt: skip

    @property
    def log_size(self) -> tuple[int, int]:
        """(users, days) of the log the log and training benches use."""
        return (QUICK_LOG_USERS, QUICK_LOG_DAYS) if self.quick else (LOG_USERS, LOG_DAYS)

    def generate_logs(self) -> dict:
        """Write the bench log into the scratch directory; returns `generate`'s summary."""
        n_users, days = self.log_size
        out = self.root / "kuairand"
        shutil.rmtree(out, ignore_errors=True)
        summary = generate(
            out, WorldConfig(n_users=n_users, seed=0), LogConfig(days=days, seed=0), progress=False
        )
        self.logs, self.log_rows = out, int(summary["rows"])
        return summary

    def simulator(self) -> Path:
        """The learned-simulator checkpoint; trains the small one on first use if none given."""
        if self.checkpoint is None:
            from recgym.simulators.learned import SimulatorConfig
            from recgym.simulators.train import train_simulator

            logs, out = self.root / "checkpoint_logs", self.root / "checkpoint"
            world = WorldConfig(n_users=CHECKPOINT_USERS, seed=0)
            summary = generate(logs, world, LogConfig(days=CHECKPOINT_DAYS, seed=0), progress=False)
            train_simulator(logs, out, SimulatorConfig(**CHECKPOINT_TRAIN), progress=False)
            self.checkpoint = out
            self.checkpoint_note = (
                f"checkpoint trained here on {CHECKPOINT_USERS} users x {CHECKPOINT_DAYS} days "
                f"({summary['rows']:,} rows), default model sizes, {_kwargs(CHECKPOINT_TRAIN)}"
            )
        return self.checkpoint

    def backend(self, backend: str) -> tuple[dict[str, object], str]:
        """Env kwargs for `backend` ("world" | "learned": this workspace's checkpoint on its
        device) and the note a row gets about it."""
        if backend == "learned":
            checkpoint = str(self.simulator())
            kwargs = {"backend": backend, "checkpoint": checkpoint, "device": self.device}
            return kwargs, f"{self.checkpoint_note}; device {self.device}"
        return {"backend": backend}, "default WorldConfig"


# --------------------------------------------------------------------------- benches
def bench_world_step(work: Workspace) -> list[dict]:
    world = World(WorldConfig(n_users=max(STEP_BATCHES), seed=0))
    rng = np.random.default_rng(0)
    repeats, block = (3, 0.05) if work.quick else (7, 0.3)
    rows = []
    for batch in STEP_BATCHES:
        users = np.arange(batch)
        keys = rng.random((batch, world.catalogue.n_items))
        slate = np.argsort(keys, axis=1)[:, :SLATE]
        world.begin_session(users, rng)
        seconds = _median_time(lambda u=users, s=slate: world.step(u, s, rng), repeats, block)
        note = f"median of {repeats}; World.step on fixed slates; default catalogue"
        rows.append(
            work.row("world_step", "responses_per_s", batch * SLATE / seconds, "1/s", batch, note)
        )
        rows.append(work.row("world_step", "step_ms", seconds * 1e3, "ms", batch, note))
    return rows


def bench_full_request(work: Workspace) -> list[dict]:
    world = World(WorldConfig(n_users=REQUEST_BATCH, seed=0))
    rng = np.random.default_rng(1)
    gen = CandidateGenerator(catalogue=world.catalogue, n_candidates=50)
    users = np.arange(REQUEST_BATCH)
    world.begin_session(users, rng)

    def request() -> None:
        cand = gen(world.history(users), rng)
        slate = oracle.greedy_click(world, users, cand, SLATE, rng)
        world.step(users, slate, rng)

    repeats, block = (3, 0.1) if work.quick else (7, 0.5)
    seconds = _median_time(request, repeats, block)
    note = f"median of {repeats}; 50 candidates -> greedy_click top-{SLATE} -> World.step"
    return [
        work.row(
            "full_request", "requests_per_s", REQUEST_BATCH / seconds, "1/s", REQUEST_BATCH, note
        ),
        work.row("full_request", "request_ms", seconds * 1e3, "ms", REQUEST_BATCH, note),
    ]


def bench_logs(work: Workspace) -> list[dict]:
    n_users, days = work.log_size
    rows = []
    t0 = time.perf_counter()
    work.generate_logs()
    seconds = time.perf_counter() - t0
    out, n_rows = work.logs, work.log_rows
    size_mb = sum(p.stat().st_size for p in out.glob("log_*.csv")) / 1e6
    note = (
        f"one run; {n_users} users x {days} days, {n_rows:,} rows, {size_mb:.0f} MB of "
        "log CSV (+ features, world_truth.parquet)"
    )
    rows.append(work.row("log_generate", "seconds", seconds, "s", None, note))
    rows.append(work.row("log_generate", "rows_per_s", n_rows / seconds, "1/s", None, note))
    rows.append(work.row("log_generate", "rows", float(n_rows), "rows", None, note))

    load, how = _recgym_loader()
    try:
        load(out)  # warm-up: imports, page cache; also proves the loader accepts the files
    except Exception as exc:  # any loader failure falls back, and is noted
        load = _pandas_rows
        how = f"pandas.read_csv of the log files (recgym.data.load failed: {exc!r:.120})"
        load(out)
    repeats = 1 if work.quick else 3
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loaded = load(out)
        samples.append(time.perf_counter() - t0)
    seconds = statistics.median(samples)
    note = f"median of {repeats}; {how}; {loaded:,} interaction rows"
    if loaded != n_rows:
        note += f" (expected {n_rows:,})"
    rows.append(work.row("log_load", "seconds", seconds, "s", None, note))
    rows.append(work.row("log_load", "rows_per_s", loaded / seconds, "1/s", None, note))
    return rows


def _pandas_rows(path: Path) -> int:
    import pandas as pd

    return sum(len(pd.read_csv(p)) for p in sorted(path.glob("log_*.csv")))


def _recgym_loader() -> tuple[Callable[[Path], int], str]:
    """A function loading a KuaiRand directory and returning its row count, and what it does."""
    try:
        from recgym.data import load
    except ImportError as exc:
        return _pandas_rows, f"pandas.read_csv of the log files (recgym.data.load: {exc!r:.120})"

    def with_recgym(path: Path) -> int:
        return len(load(path, "kuairand", cache=False).interactions)

    return with_recgym, "recgym.data.load(format='kuairand', cache=False)"


def bench_sim_inference(work: Workspace) -> list[dict]:
    from recgym.simulators.learned import LearnedSimulator

    sim = LearnedSimulator.load(work.simulator(), device=work.device)
    n_users = sim.n_users
    if n_users < max(STEP_BATCHES):
        sim = sim.for_sessions(np.arange(max(STEP_BATCHES)) % n_users)
    rng = np.random.default_rng(2)
    slates = {
        batch: np.argsort(rng.random((batch, sim.catalogue.n_items)), axis=1)[:, :SLATE]
        for batch in STEP_BATCHES
    }
    repeats, block = (3, 0.05) if work.quick else (7, 0.3)
    where = f"{work.checkpoint_note}; {n_users} users, {sim.catalogue.n_items} items; {sim.device}"
    variants = {  # variant: (metric, what is timed, call)
        "step": ("step_ms", "LearnedSimulator.step on fixed slates", sim.step),
        "forward": (
            "forward_ms",
            "LearnedSimulator.expected_responses (model forward, no sampling)",
            lambda users, slate, rng: sim.expected_responses(users, slate),
        ),
    }
    rows = []
    for variant, (metric, what, call) in variants.items():
        for batch, slate in slates.items():
            users = np.arange(batch)
            sim.begin_session(users, rng)
            seconds = _median_time(lambda f=call, u=users, s=slate: f(u, s, rng), repeats, block)
            note = f"median of {repeats}; {what}; {where}"
            rate = batch * SLATE / seconds
            rows.append(
                work.row("sim_inference", "responses_per_s", rate, "1/s", batch, note, variant)
            )
            rows.append(
                work.row("sim_inference", metric, seconds * 1e3, "ms", batch, note, variant)
            )
    return rows


def bench_env_step(work: Workspace) -> list[dict]:
    from recgym.envs import make_env

    repeats, block = (3, 0.1) if work.quick else (5, 1.0)
    rows = []
    for backend in ("world", "learned"):
        kwargs, where = work.backend(backend)
        env = make_env("recgym/Session-v0", **kwargs)
        env.reset(seed=0)
        env.action_space.seed(0)

        def step(env=env) -> None:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

        seconds = _median_time(step, repeats, block)
        note = f"median of {repeats}; gym.make env, random scores, reset on episode end; {where}"
        rows.append(
            work.row(
                "env_step", "steps_per_s", 1 / seconds, "1/s", 1, note, variant=f"{backend}/raw"
            )
        )
        env.close()

        collector, venv = _random_collector(kwargs)
        seconds = _median_time(lambda c=collector: c.collect(n_step=COLLECT_STEPS), repeats, block)
        note = (
            f"median of {repeats}; Tianshou Collector, RandomActionPolicy, DummyVectorEnv x "
            f"{N_ENVS}, collect(n_step={COLLECT_STEPS}); {where}"
        )
        rows.append(
            work.row(
                "env_step",
                "steps_per_s",
                COLLECT_STEPS / seconds,
                "1/s",
                N_ENVS,
                note,
                variant=f"{backend}/collector",
            )
        )
        venv.close()
    return rows


def _random_collector(env_kwargs: dict) -> tuple[object, object]:
    """A reset Tianshou Collector with a random policy over N_ENVS Session-v0 envs, and the envs."""
    from tianshou.algorithm.algorithm_base import RandomActionPolicy
    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import DummyVectorEnv

    from recgym.envs import make_env

    venv = DummyVectorEnv(
        [functools.partial(make_env, "recgym/Session-v0", **env_kwargs) for _ in range(N_ENVS)]
    )
    venv.seed(0)
    policy = RandomActionPolicy(venv.action_space[0])
    collector = Collector(policy, venv, VectorReplayBuffer(20 * COLLECT_STEPS * N_ENVS, N_ENVS))
    collector.reset()
    return collector, venv


# run in a fresh interpreter by bench_sim_train: argv = data dir, output dir, config JSON
_TRAIN_JOB = """
import json, sys
from recgym.simulators.learned import SimulatorConfig
from recgym.simulators.train import train_simulator
config = SimulatorConfig.from_dict(json.loads(sys.argv[3]))
result = train_simulator(sys.argv[1], sys.argv[2], config, progress=False, device=sys.argv[4])
print(json.dumps({k: result[k] for k in ("rows", "train_rows", "seconds")}))
"""


def bench_sim_train(work: Workspace) -> list[dict]:
    from recgym.simulators.learned import SimulatorConfig

    reused = work.logs is not None
    if not reused:
        work.generate_logs()
    if work.quick:
        config, sizes = SimulatorConfig(**QUICK_TRAIN), f"SimulatorConfig({_kwargs(QUICK_TRAIN)})"
    else:
        config, sizes = SimulatorConfig(), "default SimulatorConfig"
    out = work.root / "sim_train"
    env = dict(os.environ, **{v: str(THREADS) for v in _THREAD_VARS})
    command = [sys.executable, "-c", _TRAIN_JOB, str(work.logs), str(out)]
    command += [json.dumps(config.to_dict()), work.device]
    stdout, stderr = work.root / "sim_train.out", work.root / "sim_train.err"
    with open(stdout, "w") as so, open(stderr, "w") as se:
        t0 = time.perf_counter()
        job = subprocess.Popen(command, stdout=so, stderr=se, env=env)
        _, status, usage = os.wait4(job.pid, 0)  # this job's own rusage, not all children's
        seconds = time.perf_counter() - t0
    job.returncode = os.waitstatus_to_exitcode(status)
    if job.returncode != 0:
        tail = stderr.read_text().strip().splitlines()[-5:]
        raise RuntimeError(f"sim_train job failed ({job.returncode}): " + " / ".join(tail))
    result = json.loads(stdout.read_text().strip().splitlines()[-1])
    peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items() if k != "total")
    n_users, days = work.log_size
    origin = "the log_generate bench's log" if reused else "a log generated for it"
    note = (
        f"one run in a subprocess; train_simulator, {sizes}, on {origin} ({n_users} users x "
        f"{days} days, {result['rows']:,} rows, {result['train_rows']:,} for training); "
        f"{stages}; peak = the job's ru_maxrss"
    )
    return [
        work.row("sim_train", "seconds", seconds, "s", None, note),
        work.row("sim_train", "peak_mb", peak_mb, "MB", None, note),
        work.row("sim_train", "rows", float(result["rows"]), "rows", None, note),
    ]


def _kwargs(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _fast(name: str) -> Callable[[Workspace], list[dict]]:
    """A bench of `fast_envs` (imported when it runs: that module imports this one)."""

    def bench(work: Workspace) -> list[dict]:
        from recgym.benchmarks.throughput.fast_envs import FAST_BENCHES

        return FAST_BENCHES[name](work)

    bench.__name__ = f"bench_{name}"
    return bench


BENCHES: dict[str, Callable[[Workspace], list[dict]]] = {
    "world_step": bench_world_step,
    "full_request": bench_full_request,
    "logs": bench_logs,
    "sim_inference": bench_sim_inference,
    "env_step": bench_env_step,
    "vector_env": _fast("vector_env"),
    "collector_native": _fast("collector_native"),
    "peer": _fast("peer"),
    "step_profile": _fast("step_profile"),
    "dqn_train": _fast("dqn_train"),
    "sim_train": bench_sim_train,
}
"""Bench name (for --only) -> function; `logs` writes the log_generate and log_load rows."""
