"""Diagnostics of `recgym bench gpu` (`benchmarks.gpu_check`): where the time of a simulator fit's
training step and of a device env step goes, to show a session with a GPU what to shorten.

- `fit_profile`: torch.profiler's table (by op; CPU and, on CUDA, kernel time) of some of
  `LearnedSimulator.fit`'s training steps, the fit then stopped;
- `vector_step_parts`: milliseconds per step of the device env's parts (device step, download,
  host), each timed with a device synchronize around it;
- `env_profile`: torch.profiler's table of some device env steps.

`sync`, `timed` and `warm_vector_env` are the timing helpers the bench itself uses too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def sync(device: torch.device) -> None:
    """Wait for `device`'s queued work (CUDA; nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    """Seconds `fn()` takes, `device`'s queued work included."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


class _Enough(Exception):
    """Ends a profiled fit after its profiled batches."""


def fit_profile(
    table: Any, device: torch.device, graph: bool | None = None, skip: int = 8, batches: int = 20
) -> str:
    """torch.profiler's table of `batches` response-model training steps of
    `LearnedSimulator.fit(table)` on `device` after `skip` steps (past the CUDA graph's warm-up
    and capture), the fit then stopped: where a batch's time goes, by op (CPU and, on CUDA,
    kernel time), to show the next session with a GPU what to shorten."""
    from recgym.simulators.learned import LearnedSimulator
    from recgym.simulators.learned import fit as fit_module

    step_class = fit_module._TrainStep
    calls = {"n": 0}
    prof = _profiler(device)

    class Profiled(step_class):  # type: ignore[valid-type, misc]
        def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            calls["n"] += 1
            if calls["n"] == skip + 1:
                sync(device)
                prof.start()
            out = super().__call__(batch)
            if calls["n"] == skip + batches:
                sync(device)
                prof.stop()
                raise _Enough
            return out

    fit_module._TrainStep = Profiled
    try:
        LearnedSimulator.fit(table, device=device, graph=graph)
    except _Enough:
        pass
    finally:
        fit_module._TrainStep = step_class
    return _profile_table(prof, device, f"{batches} training steps after {skip}")


def _profiler(device: torch.device) -> Any:
    """A torch.profiler over the CPU and, on CUDA, the kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    return profile(activities=activities)


def _profile_table(prof: Any, device: torch.device, what: str) -> str:
    """`what`, then the profile's 15 costliest ops (by kernel time on CUDA, else CPU time)."""
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return f"{what}; sorted by {sort}\n" + prof.key_averages().table(sort_by=sort, row_limit=15)


def warm_vector_env(sim: Any, n: int, calls: int, **kwargs: Any) -> tuple[Any, np.ndarray]:
    """Session-v0's native vector env over `sim` with `n` slots (`kwargs` to `gym.make_vec`),
    reset with seed 0 and stepped twice (allocations, kernels, a CUDA graph's capture), and
    `calls` pre-drawn random score actions to time it with."""
    import gymnasium as gym

    venv = gym.make_vec("recgym/Session-v0", num_envs=n, vectorization_mode="vector_entry_point",
                        backend=sim, **kwargs)  # fmt: skip
    venv.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, (calls + 2, n, 50)).astype(np.float32)
    for a in actions[:2]:
        venv.step(a)
    return venv, actions[2:]


def vector_step_parts(sim: Any, n: int, calls: int) -> dict[str, float]:
    """Milliseconds per step of the device env's parts (`envs.session_device`): ``device``
    (the fixed-shape step: a graph replay on CUDA, else its eager kernels), ``download`` (the
    outputs to the host) and ``host`` (everything else of ``venv.step``: checking actions,
    filling inputs, info). Each part is timed with a device synchronize before and after, so
    the parts add up to a little more than an untimed step. Needs a device env (a resident
    simulator, more than one slot)."""
    venv, actions = warm_vector_env(sim, n, calls, env_on_device=True)
    mdp = venv.mdp
    spent = {"device": 0.0, "download": 0.0}

    def part(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            sync(sim.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(sim.device)
            spent[name] += time.perf_counter() - t0
            return out

        return run

    if mdp.graph_wanted:
        mdp._graph_step = part("device", mdp._graph_step)
    else:
        mdp._step = part("device", mdp._step)
    mdp._download = part("download", mdp._download)

    def run_all() -> None:
        for x in actions:
            venv.step(x)

    total = timed(sim.device, run_all)
    venv.close()
    ms = {name: 1e3 * value / calls for name, value in spent.items()}
    ms["host"] = 1e3 * total / calls - ms["device"] - ms["download"]
    return ms


def env_profile(sim: Any, n: int, steps: int = 5, graph: bool = False) -> str:
    """torch.profiler's table of `steps` steps of Session-v0's device env over `sim` with `n`
    slots (`graph`: replayed as a CUDA graph, else eagerly, its kernels one by one); needs a
    resident simulator."""
    venv, actions = warm_vector_env(sim, n, steps, env_on_device=True, graph=graph)
    sync(sim.device)
    with _profiler(sim.device) as prof:
        for a in actions:
            venv.step(a)
        sync(sim.device)
    venv.close()
    return _profile_table(prof, sim.device, f"{steps} steps of {n} slots")


__all__ = ["env_profile", "fit_profile", "sync", "timed", "vector_step_parts", "warm_vector_env"]
