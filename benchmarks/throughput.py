"""`recgym bench throughput`: speed of the world, learned simulator and env; cost of logs, training.

Each measurement is the median of several timed repeats after a warm-up, appended as one JSON row
to `<out_dir>/throughput.jsonl`; `<out_dir>/throughput.md` is then regenerated from every row of
that file (the latest full-mode row per (bench, variant, metric, batch); a quick-mode row only
where no full-mode row exists). Numerical libraries are held to two threads and torch to one (see
TORCH_THREADS; ``--torch-threads``) so numbers compare across machines with more cores.

Benches (metric names are fixed; ``variant`` says which code path when a bench has several):
- ``world_step``: `World.step` on pre-chosen slates of 6 items, batches of 1, 64 and 1024 users:
  ``responses_per_s`` (item responses per second; target >= 200,000 at batch 1024) and
  ``step_ms`` (time per step).
- ``full_request``: candidate generation + `oracle.greedy_click` ranking + `World.step` for 1024
  users: ``requests_per_s`` (user requests per second) and ``request_ms``.
- ``log_generate``: `simulators.generate.generate` writing about 1 M KuaiRand log rows:
  ``seconds`` (target <= 60), ``rows_per_s`` and ``rows``. One timed run (it takes tens of
  seconds).
- ``log_load``: loading those files back with `recgym.data.load` (cache off; falls back to
  `pandas.read_csv` of the log files when that is not importable, and says so in the note):
  ``seconds`` (target <= 10) and ``rows_per_s``.
- ``sim_inference``: the learned simulator on pre-chosen slates of 6 items, batches of 1, 64 and
  1024 distinct users. Variant ``step`` (`LearnedSimulator.step`: model forward, sampling, leave
  hazard, state update): ``responses_per_s`` (target >= 50,000 at batch 1024) and ``step_ms``;
  variant ``forward`` (`expected_responses`: the response model's forward only, no sampling or
  state change): ``responses_per_s`` and ``forward_ms``. A checkpoint with fewer users than the
  batch is tiled with `LearnedSimulator.for_sessions` (slot i is a copy of user i mod n_users).
- ``env_step``: ``steps_per_s`` of `recgym/Session-v0` (default sizes: 50 candidates, slate of
  6), random scores as actions. Variants ``<backend>/raw`` (one `gym.make` env, `env.step`,
  `reset` when an episode ends; batch 1) and ``<backend>/collector`` (a Tianshou `Collector` with
  a `RandomActionPolicy` over a `DummyVectorEnv` of 4 envs, `collect(n_step=64)` per call,
  transitions stored in a `VectorReplayBuffer`; batch 4), for backend ``world`` (the default
  `WorldConfig`) and ``learned``.
- ``sim_train``: `simulators.train.train_simulator` with the default `SimulatorConfig` on the
  ``log_generate`` bench's logs (generated again when that bench did not run), in a subprocess:
  ``seconds`` (wall time of the whole job, interpreter start included; target <= 300),
  ``peak_mb`` (the job's peak resident memory, its own ``ru_maxrss`` from `os.wait4`; target
  <= 4096) and ``rows``. One run.

The learned-simulator benches use ``--checkpoint PATH`` when given, else a checkpoint trained
once per invocation in a scratch directory (a world of 300 users logged for 3 days, the default
model sizes, one epoch): inference speed depends on the model's sizes, not on how well it fits.
``--quick`` shortens every timing block and uses a small log (200 users x 2 days, about 9,000
rows) for ``log_generate``, ``log_load`` and ``sim_train`` (whose targets then do not apply; it
also trains for one epoch only); its rows are marked mode="quick".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recgym.outdir import ensure_writable_dir
from recgym.simulators import oracle
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.generate import generate
from recgym.simulators.logs import LogConfig
from recgym.simulators.world import World, WorldConfig

JSONL = "throughput.jsonl"
MARKDOWN = "throughput.md"
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
SIZED_BENCHES = ("log_generate", "log_load", "sim_train")  # targets are for ~1 M rows
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")  # for sim_train
TARGETS: dict[tuple[str, str | None, str, int | None], tuple[str, float]] = {
    # (bench, variant, metric, batch): (op, target)
    ("world_step", None, "responses_per_s", 1024): (">=", 200_000.0),
    ("sim_inference", "step", "responses_per_s", 1024): (">=", 50_000.0),
    ("log_generate", None, "seconds", None): ("<=", 60.0),
    ("log_load", None, "seconds", None): ("<=", 10.0),
    ("sim_train", None, "seconds", None): ("<=", 300.0),
    ("sim_train", None, "peak_mb", None): ("<=", 4096.0),
}


# --------------------------------------------------------------------------- timing helpers
def _median_time(fn: Callable[[], object], repeats: int, min_seconds: float) -> float:
    """Median seconds per call of `fn` over `repeats` timed blocks, after one warm-up block.

    Each block calls `fn` as many times as fit in about `min_seconds` (calibrated on the warm-up),
    so fast calls are not dominated by timer resolution.
    """
    start = time.perf_counter()
    calls = 0
    while calls < 3 or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    n = max(1, int(min_seconds / max(per_call, 1e-9)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


@contextmanager
def _thread_limit(torch_threads: int) -> Iterator[None]:
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
    """Smoke-test sizes and timing blocks."""
    checkpoint: Path | None = None
    """Learned-simulator checkpoint: given (--checkpoint) or trained by `simulator`."""
    checkpoint_note: str = ""
    """Where the checkpoint came from, for the rows' notes."""
    logs: Path | None = None
    """The KuaiRand directory `generate_logs` wrote (None until it ran)."""
    log_rows: int = 0
    """Rows in `logs`."""

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
            _row("world_step", "responses_per_s", batch * SLATE / seconds, "1/s", batch, note)
        )
        rows.append(_row("world_step", "step_ms", seconds * 1e3, "ms", batch, note))
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
        _row("full_request", "requests_per_s", REQUEST_BATCH / seconds, "1/s", REQUEST_BATCH, note),
        _row("full_request", "request_ms", seconds * 1e3, "ms", REQUEST_BATCH, note),
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
    rows.append(_row("log_generate", "seconds", seconds, "s", None, note))
    rows.append(_row("log_generate", "rows_per_s", n_rows / seconds, "1/s", None, note))
    rows.append(_row("log_generate", "rows", float(n_rows), "rows", None, note))

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
    rows.append(_row("log_load", "seconds", seconds, "s", None, note))
    rows.append(_row("log_load", "rows_per_s", loaded / seconds, "1/s", None, note))
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

    sim = LearnedSimulator.load(work.simulator())
    n_users = sim.n_users
    if n_users < max(STEP_BATCHES):
        sim = sim.for_sessions(np.arange(max(STEP_BATCHES)) % n_users)
    rng = np.random.default_rng(2)
    slates = {
        batch: np.argsort(rng.random((batch, sim.catalogue.n_items)), axis=1)[:, :SLATE]
        for batch in STEP_BATCHES
    }
    repeats, block = (3, 0.05) if work.quick else (7, 0.3)
    where = f"{work.checkpoint_note}; {n_users} users, {sim.catalogue.n_items} items"
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
            rows.append(_row("sim_inference", "responses_per_s", rate, "1/s", batch, note, variant))
            rows.append(_row("sim_inference", metric, seconds * 1e3, "ms", batch, note, variant))
    return rows


def bench_env_step(work: Workspace) -> list[dict]:
    from recgym.envs import make_env

    repeats, block = (3, 0.1) if work.quick else (5, 1.0)
    rows = []
    for backend in ("world", "learned"):
        kwargs: dict[str, object] = {"backend": backend}
        where = "default WorldConfig"
        if backend == "learned":
            kwargs["checkpoint"] = str(work.simulator())
            where = work.checkpoint_note
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
            _row("env_step", "steps_per_s", 1 / seconds, "1/s", 1, note, variant=f"{backend}/raw")
        )
        env.close()

        collector, venv = _random_collector(kwargs)
        seconds = _median_time(lambda c=collector: c.collect(n_step=COLLECT_STEPS), repeats, block)
        note = (
            f"median of {repeats}; Tianshou Collector, RandomActionPolicy, DummyVectorEnv x "
            f"{N_ENVS}, collect(n_step={COLLECT_STEPS}); {where}"
        )
        rows.append(
            _row(
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
result = train_simulator(sys.argv[1], sys.argv[2], config, progress=False)
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
    command.append(json.dumps(config.to_dict()))
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
        _row("sim_train", "seconds", seconds, "s", None, note),
        _row("sim_train", "peak_mb", peak_mb, "MB", None, note),
        _row("sim_train", "rows", float(result["rows"]), "rows", None, note),
    ]


def _kwargs(values: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


BENCHES: dict[str, Callable[[Workspace], list[dict]]] = {
    "world_step": bench_world_step,
    "full_request": bench_full_request,
    "logs": bench_logs,
    "sim_inference": bench_sim_inference,
    "env_step": bench_env_step,
    "sim_train": bench_sim_train,
}
"""Bench name (for --only) -> function; `logs` writes the log_generate and log_load rows."""


# --------------------------------------------------------------------------- rows and tables
_CONTEXT: dict[str, object] = {}


def _row(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    batch: int | None,
    note: str,
    variant: str | None = None,
) -> dict[str, object]:
    op, target = TARGETS.get((bench, variant, metric, batch), (None, None))
    if _CONTEXT.get("mode") == "quick" and bench in SIZED_BENCHES:
        op, target = None, None  # these targets are for ~1 M rows, not the quick log
    return {
        "bench": bench,
        "variant": variant,
        "metric": metric,
        "value": float(value),
        "unit": unit,
        "batch": batch,
        "target": target,
        "target_op": op,
        "mode": _CONTEXT.get("mode", "full"),
        "git_sha": _CONTEXT.get("git_sha", "unknown"),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _CONTEXT.get("machine", machine()),
        "note": note,
    }


def machine() -> dict[str, object]:
    return {
        "nproc": os.cpu_count(),
        "threads": THREADS,
        "torch_threads": _CONTEXT.get("torch_threads", TORCH_THREADS),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(terse=True),
    }


def git_sha() -> str:
    """HEAD of the repository holding this file, with "-dirty" if tracked files changed."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def passes(row: dict) -> bool | None:
    """Whether a row meets its target; None when it has none."""
    if row.get("target") is None:
        return None
    if row.get("target_op") == "<=":
        return row["value"] <= row["target"]
    return row["value"] >= row["target"]


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def row_key(row: dict) -> tuple:
    """What a table line stands for: (bench, variant, metric, batch)."""
    return (row["bench"], row.get("variant"), row["metric"], row.get("batch"))


def latest_rows(rows: list[dict]) -> list[dict]:
    """The latest row per `row_key`, full-mode rows taking precedence over quick ones."""
    best: dict[tuple, dict] = {}
    for row in rows:  # file order is time order
        key = row_key(row)
        old = best.get(key)
        if old is None or row.get("mode") != "quick" or old.get("mode") == "quick":
            best[key] = row
    return list(best.values())


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "# recgym throughput",
        "",
        f"Regenerated by `recgym bench throughput` from {JSONL} (latest row per bench, variant, "
        "metric and batch; edit the JSONL, never this file).",
        "",
        "| bench | variant | metric | batch | value | unit | target | pass | mode | git | machine "
        "| date | note |",
        "|---|---|---|---|---:|---|---|---|---|---|---|---|---|",
    ]
    for row in latest_rows(rows):
        ok = passes(row)
        target = "-" if row.get("target") is None else f"{row['target_op']} {_fmt(row['target'])}"
        m = row.get("machine", {})
        where = f"{m.get('nproc')} cpu, py {m.get('python')}, np {m.get('numpy')}"
        if "torch_threads" in m:
            where += f", torch {m['torch_threads']} thr"
        cells = [
            row["bench"],
            row.get("variant") or "-",
            row["metric"],
            "-" if row.get("batch") is None else str(row["batch"]),
            _fmt(row["value"]),
            row["unit"],
            target,
            {None: "-", True: "yes", False: "**NO**"}[ok],
            row.get("mode", "full"),
            row.get("git_sha", ""),
            where,
            row["timestamp"][:10],
            row.get("note", "").replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- entry points
def run(
    out_dir: str | Path = "benchmarks/results",
    quick: bool = False,
    checkpoint: str | Path | None = None,
    only: Sequence[str] | None = None,
    verbose: bool = False,
    torch_threads: int = TORCH_THREADS,
) -> list[dict]:
    """Run the benches, append their rows to `out_dir`/throughput.jsonl, rewrite throughput.md.

    `quick` uses short timing blocks and a small log (seconds instead of minutes); its rows are
    marked mode="quick" and never hide a full-mode row in the table. `checkpoint` is the
    learned simulator the sim_inference and env_step benches use (default: one trained here).
    `only` names the `BENCHES` to run (default: all). `verbose` reports each bench as it starts
    on stderr. `torch_threads` sizes torch's intra-op pool (sim_train's job uses its config's).
    Returns the new rows.
    """
    names = list(BENCHES) if only is None else list(only)
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        raise ValueError(f"unknown benches {unknown}; expected some of {list(BENCHES)}")
    out = ensure_writable_dir(out_dir)  # an unwritable --out fails here, before any bench
    _CONTEXT.update(mode="quick" if quick else "full", torch_threads=torch_threads)
    _CONTEXT.update(git_sha=git_sha(), machine=machine())
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="recgym-bench-") as tmp, _thread_limit(torch_threads):
        work = Workspace(root=Path(tmp), quick=quick)
        if checkpoint is not None:
            work.checkpoint = Path(checkpoint)
            work.checkpoint_note = f"checkpoint {checkpoint}"
        for name in names:
            if verbose:
                print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            new = BENCHES[name](work)
            with open(out / JSONL, "a", encoding="utf-8") as f:
                for row in new:
                    f.write(json.dumps(row) + "\n")
            rows += new
    (out / MARKDOWN).write_text(markdown(read_rows(out / JSONL)))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recgym bench throughput",
        description="Time world steps, full requests, log generation and loading, learned-"
        "simulator inference, env steps (raw and through a Tianshou Collector) and simulator "
        "training; append JSONL rows to OUT/throughput.jsonl and regenerate OUT/throughput.md. "
        "The module docstring of recgym.benchmarks.throughput describes every bench.",
    )
    parser.add_argument(
        "--out", default="benchmarks/results", help="results directory (default: %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test sizes: short timing blocks, a ~9,000-row log, a one-epoch sim_train; "
        "rows are marked mode=quick and the size-bound targets do not apply (about 30 s)",
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="learned-simulator checkpoint (from `recgym simulator train`) for sim_inference "
        "and env_step's learned variants; default: train a small one (300 users x 3 days, "
        "one epoch, a few seconds) in a scratch directory",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHES),
        metavar="BENCH",
        help=f"run only these benches ({', '.join(BENCHES)}; 'logs' is log_generate + "
        "log_load); default: all. sim_train reuses the log of 'logs' when both run",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=TORCH_THREADS,
        metavar="N",
        help="torch intra-op threads for sim_inference and env_step (default: %(default)s, as "
        "recgym trains and runs; 2 is faster on an idle machine but stalls when cores are "
        "shared); numpy/BLAS always get 2",
    )
    args = parser.parse_args(argv)
    rows = run(
        args.out,
        quick=args.quick,
        checkpoint=args.checkpoint,
        only=args.only,
        verbose=True,
        torch_threads=args.torch_threads,
    )
    for row in rows:
        ok = {None: "", True: "  [pass]", False: "  [FAIL]"}[passes(row)]
        variant = "" if row["variant"] is None else f"[{row['variant']}]"
        batch = "" if row["batch"] is None else f" (batch {row['batch']})"
        print(
            f"{row['bench']}{variant}.{row['metric']}{batch}: {_fmt(row['value'])} "
            f"{row['unit']}{ok}"
        )
    print(f"wrote {Path(args.out) / JSONL} and {Path(args.out) / MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
