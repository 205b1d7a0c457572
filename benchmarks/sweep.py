"""Fan a bench's jobs out: a local process pool (``--workers N``) or Ray (``--ray [ADDRESS]``).

A *job* is a stage of the engine (`benchmarks.engine.Stage`): a bench that makes one stage per
agent x backend x seed x config (as ``recgym demo`` does with ``dqn-seed<i>``) gets those run in
parallel, with nothing else to change. A stage runs as soon as the stages it depends on are done;
every job writes its outputs into its own ``<out>/<stage>/<key>/`` exactly as in a serial run
(temporary directory, renamed into place only when finished), so results flow into the same
resumable store: an interrupted sweep, re-run, reuses every finished job and runs the rest.

Failures. A job that raises, or whose worker process dies (killed, out of memory), is retried up
to `SweepConfig.retries` times; when it still fails the sweep goes on with every job that does
not depend on it and then raises `SweepError` naming each failed job (and the jobs skipped
because of it). Nothing another job finished is lost, and the next run redoes only what failed.
When a pool worker dies, the process pool cannot say which job it was running, so every job in
flight at that moment is charged one attempt (a job that did nothing wrong then uses a retry).

Executors.
- Serial (``workers=1``, no Ray): the engine's original loop (a failure raises at once).
- Process pool: ``concurrent.futures.ProcessPoolExecutor`` with the ``forkserver`` start
  method: workers fork from a clean server process that imported torch, numpy, the engine and
  every recgym module the stages' code imports (`engine.code_files`) once (a ``fork`` of a
  process that has run torch can deadlock; ``spawn`` pays every import again per worker, ~3 s
  of CPU for torch + recgym). One job per worker.
- Ray: each job is a Ray task with ``num_cpus=1``. ``--ray`` alone starts a local Ray with
  `workers` CPUs (all of the machine's when `workers` is 1); ``--ray ADDRESS`` connects to a
  running cluster (``ray start --head`` prints the address; ``auto`` finds a local one). On a
  cluster the output directory must be a path every node sees (a shared file system): the jobs
  write there directly. Ray is the optional extra ``recgym[ray]``.
Each worker runs torch and BLAS with one thread (`SweepConfig.threads`): N jobs on N cores.
A job reaches its worker pickled: its stage function is found by module and name, so it must be
importable there (any ``recgym`` module, or the script's ``__main__``; not a function defined
inside another function or in a pytest module collected with ``--import-mode=importlib``).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recgym.benchmarks.engine import Engine, Stage, StageResult


@dataclass(kw_only=True, frozen=True)
class SweepConfig:
    """How the engine runs the jobs (stages) of a bench; not part of any stage key."""

    workers: int = field(default=1, metadata={"metavar": "N"})
    """Jobs run at once: 1 runs them one after another in this process; N > 1 in a pool of N
    processes (or N CPUs of a local Ray)."""
    ray: str | None = field(default=None, metadata={"const": "local", "metavar": "ADDRESS"})
    """Run the jobs as Ray tasks: 'local' starts a local Ray, an address (host:port, or 'auto')
    joins a running cluster; none runs without Ray."""
    retries: int = field(default=1, metadata={"metavar": "N"})
    """Times a failed job (an exception, or its worker killed) is run again before the sweep
    reports it; the other jobs go on either way."""
    threads: int = 1
    """torch threads per job in a worker process."""
    tensorboard: bool = True
    """Write the trainers' curves to TensorBoard under <out>/tensorboard/<stage>/<agent>/seed<s>
    (`agents.tb`)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise ValueError(f"--retries must be >= 0, got {self.retries}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    @property
    def parallel(self) -> bool:
        """Whether jobs leave this process (a pool or Ray)."""
        return self.workers > 1 or self.ray is not None


SERIAL = SweepConfig()
_default: list[SweepConfig] = [SERIAL]


def default_sweep() -> SweepConfig:
    """The sweep an `Engine` built without ``sweep=`` uses (serial unless `use_sweep` set one)."""
    return _default[-1]


@contextmanager
def use_sweep(config: SweepConfig) -> Iterator[SweepConfig]:
    """Inside the block, every `Engine` built without ``sweep=`` runs its jobs with `config`
    (how ``recgym bench SUITE --workers N`` reaches a bench that never heard of sweeps)."""
    _default.append(config)
    try:
        yield config
    finally:
        _default.pop()


class SweepError(RuntimeError):
    """Jobs that failed after their retries; every other job finished (or was reused)."""

    def __init__(self, failed: dict[str, str], skipped: dict[str, str]) -> None:
        self.failed, self.skipped = failed, skipped
        lines = [f"{len(failed)} job(s) failed (the others finished; re-run to retry them):"]
        lines += [f"  {name}: {error.strip().splitlines()[-1]}" for name, error in failed.items()]
        lines += [f"  {name}: skipped, needs {dep}" for name, dep in skipped.items()]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- in a worker
def _worker_init(threads: int) -> None:
    """`threads` torch and BLAS/OpenMP threads in this worker: N workers on N cores must not
    each start a BLAS pool of all the cores (Ray already sets OMP_NUM_THREADS for its tasks; a
    pool worker inherits the parent's settings, and numpy's OpenBLAS takes every core)."""
    import torch
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # stays in force for the worker's life


def run_job(
    stage: Stage,
    key: str,
    deps: dict[str, StageResult],
    out: str,
    code: str,
    threads: int,
    tensorboard: bool = True,
) -> tuple[dict[str, Any], float]:
    """One job in a worker: `engine.execute_stage` with `threads` torch threads."""
    from recgym.benchmarks.engine import execute_stage

    _worker_init(threads)
    return execute_stage(
        stage, key, deps, Path(out), code, say=print, progress=False, tensorboard=tensorboard
    )


# --------------------------------------------------------------------------- executors
class _Pool:
    """A forkserver process pool that is rebuilt when a worker dies."""

    def __init__(self, workers: int, threads: int, preload: Sequence[str] = ()) -> None:
        self.workers, self.threads = workers, threads
        self._context = multiprocessing.get_context("forkserver")
        # only takes effect if this process has not started its fork server yet
        self._context.set_forkserver_preload(["torch", "numpy", __name__, *preload])
        self._pool = self._new()

    def _new(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            self.workers,
            mp_context=self._context,
            initializer=_worker_init,
            initargs=(self.threads,),
        )

    @property
    def capacity(self) -> int:
        return self.workers

    def submit(self, *args: Any) -> Any:
        try:
            return self._pool.submit(run_job, *args)
        except cf.process.BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new()
            return self._pool.submit(run_job, *args)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> tuple[dict[str, Any], float]:
        return handle.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Ray:
    """Jobs as Ray tasks (``num_cpus=1``, no Ray-side retries: the sweep retries)."""

    def __init__(self, address: str, workers: int, threads: int) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ImportError("--ray needs the optional extra: pip install 'recgym[ray]'") from exc
        self.ray, self.threads = ray, threads
        self.started = not ray.is_initialized()
        if self.started:
            if address == "local":
                cpus = workers if workers > 1 else os.cpu_count() or 1
                ray.init(
                    num_cpus=cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        self.capacity = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(num_cpus=1, max_retries=0)(run_job)

    def submit(self, *args: Any) -> Any:
        return self._task.remote(*args)

    def wait(self, handles: Sequence[Any]) -> list[Any]:
        done, _ = self.ray.wait(list(handles), num_returns=1)
        return done

    def result(self, handle: Any) -> tuple[dict[str, Any], float]:
        return self.ray.get(handle)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _executor(config: SweepConfig, stages: Sequence[Stage]) -> _Pool | _Ray:
    if config.ray is not None:
        return _Ray(config.ray, config.workers, config.threads)
    from recgym.benchmarks.engine import code_files

    # every recgym module the stages' code imports, lazily inside functions too (the engine's
    # code closure): imported once in the fork server, so a worker starts warm
    modules = {m for s in stages for m in code_files(s.modules())}
    modules |= {s.fn.__module__ for s in stages} - {"__main__"}
    return _Pool(config.workers, config.threads, ["recgym.benchmarks.engine", *sorted(modules)])


# --------------------------------------------------------------------------- the scheduler
def run_parallel(
    engine: Engine, stages: Sequence[Stage], config: SweepConfig
) -> dict[str, StageResult]:
    """Run (or reuse) `stages` with `config`'s executor, each as soon as its deps are done."""
    from recgym.benchmarks.engine import STAGE_FILE, StageResult

    done: dict[str, StageResult] = {}
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    pending = list(stages)
    running: dict[Any, tuple[Stage, str, dict[str, StageResult], int]] = {}
    attempts: dict[str, int] = {}
    executor = _executor(config, stages)
    try:
        while pending or running:
            for stage in list(pending):
                bad = next((d for d in stage.deps if d in failed or d in skipped), None)
                if bad is not None:
                    skipped[stage.name] = bad
                    pending.remove(stage)
                    continue
                if any(d not in done for d in stage.deps):
                    continue
                deps = {d: done[d] for d in stage.deps}
                key = engine.key(stage, {d: r.key for d, r in deps.items()})
                reused = engine.reuse(stage, key)
                if reused is not None:
                    done[stage.name] = reused
                    pending.remove(stage)
                    continue
                if len(running) >= executor.capacity:
                    break
                pending.remove(stage)
                engine.say(f"[{stage.name}] ... (job)")
                args = (*engine.job_args(stage, key, deps), config.threads, config.tensorboard)
                handle = executor.submit(*args)
                running[handle] = (stage, key, deps, time.perf_counter())
            if not running:
                if pending and all(any(d not in done for d in s.deps) for s in pending):
                    raise RuntimeError(f"no job can start: {[s.name for s in pending]}")
                continue
            for handle in executor.wait(list(running)):
                stage, key, deps, _ = running.pop(handle)
                try:
                    result, seconds = executor.result(handle)
                except Exception as exc:  # a job's failure (worker death included) is data
                    error = "".join(traceback.format_exception(exc))
                    attempts[stage.name] = attempts.get(stage.name, 0) + 1
                    engine.log(stage.name, key, "failed", 0.0, error=error.strip().splitlines()[-1])
                    if attempts[stage.name] <= config.retries:
                        engine.say(f"[{stage.name}] failed, retrying: {_last_line(error)}")
                        pending.insert(0, stage)
                    else:
                        engine.say(f"[{stage.name}] FAILED: {_last_line(error)}")
                        failed[stage.name] = error
                    continue
                final = engine.out / stage.name / key
                engine.say(f"[{stage.name}] done in {seconds} s")
                engine.log(stage.name, key, "ran", seconds)
                result = _read_result(final / STAGE_FILE, result)
                done[stage.name] = StageResult(stage.name, key, final, result, False, seconds)
    finally:
        executor.close()
    if failed or skipped:
        raise SweepError(failed, skipped)
    return {s.name: done[s.name] for s in stages}


def _last_line(error: str) -> str:
    return error.strip().splitlines()[-1] if error.strip() else "unknown error"


def _read_result(path: Path, fallback: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text())["result"]
    except (OSError, ValueError, KeyError):
        return fallback


def timed_sweep(
    make_stages: Callable[[], Sequence[Stage]], out: Path, config: SweepConfig
) -> float:
    """Wall seconds of one full sweep of `make_stages()` into the empty directory `out`."""
    from recgym.benchmarks.engine import Engine

    t = time.perf_counter()
    Engine(out, progress=False, sweep=config).run(make_stages())
    return time.perf_counter() - t


__all__ = [
    "SERIAL",
    "SweepConfig",
    "SweepError",
    "default_sweep",
    "run_job",
    "run_parallel",
    "timed_sweep",
    "use_sweep",
]
