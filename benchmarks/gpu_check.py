"""`recgym bench gpu`: the same work on CUDA (when there is one) and on the CPU, and the ratios.

Three measurements (issue 16), each run once per device on this machine:

- ``sim_fit``: `LearnedSimulator.fit` (both models, default `SimulatorConfig`; ``--quick``:
  one epoch, 100 leave steps) on the throughput bench's log (`throughput.Workspace.
  generate_logs`: 3,200 users x 14 days, about 1.1 M rows; ``--quick``: 200 x 2). The log is
  loaded and its `LogTable` built once, outside the timing, so the seconds are the fit alone
  (the throughput bench's ``sim_train`` row also times loading and the fidelity report).
  On CUDA the fit replays its training steps as CUDA graphs (`simulators.learned.fit.
  _TrainStep`; the note says whether capture worked); row ``sim_fit_eager``: the same fit
  with ``graph=False``. Target on one H100-class GPU: ``speedup`` (CPU seconds / CUDA
  seconds) >= 5.
- ``vector_env``: env steps per second of ``gym.make_vec("recgym/Session-v0", num_envs=N,
  vectorization_mode="vector_entry_point", backend=<the learned simulator on the device>)``
  with random scores (pre-drawn), next-step autoreset, N = 4,096 (``--quick``: 64). A slot
  holds a distinct user, so the checkpoint is fitted here on a 2-day log of a world of
  N * 1.1 + 50 users
  (one epoch; ``--checkpoint`` gives one with at least N users instead). The simulator object
  is passed as the backend because the env ids take no device argument. On CUDA the env is
  the device-resident one (`envs.session_device`: session state, candidates, observations and
  the simulator's step on the GPU, the step replayed as a CUDA graph; row ``vector_env_eager``:
  the same without the graph), on the CPU the host path. Target on CUDA: >= 500,000 env
  steps/s. The rate is the median of ``REPEATS`` blocks of 20 steps (``--quick``: 3) on one
  env after 2 warm-up steps; the note gives the blocks' range. Each step returns fresh arrays
  and the timing loop drops them at the next step, as a collector that copies them into its
  replay buffer does (EnvPool's and Gymnasium's protocol). Row ``vector_env_kept``: the same
  blocks keeping every step's results to the end (13.6 MB a step at N = 4,096), so each step
  also pays the host's page faults for fresh memory; an earlier version of this bench timed
  only that, in one block of 20 steps, which is why its rows moved between calls. On CUDA,
  ``vector_env_parts`` says where a step goes (`gpu_profile.vector_step_parts`: device step,
  download, host), to show the next session with a GPU what to shorten. Beside it,
  ``backend_step``: the same simulator's `step` alone over N users and random slates (one
  upload and one download per call; the median of ``REPEATS`` blocks of 20 calls).
- ``dqn_train``: env steps per second of `agents.dqn.train_dqn` on Session-v0 over the default
  world (DQNConfig defaults with ``env_steps`` 2,000 in 2 epochs, ``--quick`` 200), after a tiny
  warm-up run (imports, kernels).

On CUDA two diagnostics are appended to OUT/gpu_check_profile.md: torch.profiler tables (by
op, CPU and kernel time) of 20 of the fit's training steps, graphed and eager
(`gpu_profile.fit_profile`), and of 5 steps of the device env, graphed and eager
(`gpu_profile.env_profile`).

Rows go to OUT/throughput.jsonl through the throughput bench's row format
(`throughput.rows.make_row`: provenance, threads, mode) and OUT/throughput.md is regenerated:
bench ``gpu_check``, variant ``<measurement>/<device type>`` with the device's name (the GPU's
model) in the note, and variant ``<measurement>`` metric ``speedup`` (CPU time / CUDA time) when
both ran. Without CUDA the CPU rows are written and one row ``gpu_check/cuda`` metric
``available`` = 0 whose note says "no CUDA device". Installs nothing. The CPU runs use the
throughput bench's thread settings (torch 1 intra-op thread, BLAS 2: "2 CPU cores").
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recgym.benchmarks.engine import append_rows
from recgym.benchmarks.gpu_profile import (
    env_profile,
    fit_profile,
    timed,
    vector_step_parts,
    warm_vector_env,
)
from recgym.benchmarks.throughput.benches import QUICK_TRAIN, Workspace, thread_limit
from recgym.benchmarks.throughput.rows import JSONL, MARKDOWN, fmt, markdown, passes, read_rows
from recgym.device import device_name, resolve_device
from recgym.outdir import ensure_writable_dir

BENCH = "gpu_check"
PROFILE = "gpu_check_profile.md"  # the profiler tables of the diagnostics, appended
MEASUREMENTS = ("sim_fit", "vector_env", "dqn_train")  # vector_env also writes backend_step
VECTOR_N, QUICK_VECTOR_N = 4096, 64
DQN_STEPS, QUICK_DQN_STEPS = 2_000, 200
REPEATS = 5  # vector_env: timed blocks per env, the rate is their median
# issue 16's targets on one H100-class GPU: (variant, metric) -> (op, value)
TARGETS = {("sim_fit", "speedup"): (">=", 5.0), ("vector_env/cuda", "steps_per_s"): (">=", 5e5)}

DESCRIPTION = (
    "Simulator fit on the ~1.1M-row bench log, the learned backend's native vector env at "
    "N = 4,096 and one DQN training budget, on CUDA (when available) and on the CPU; appends "
    "rows with the device names and CPU/CUDA ratios to OUT/throughput.jsonl and regenerates "
    "OUT/throughput.md (`recgym.benchmarks.gpu_check` describes each measurement)."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPUCheckConfig:
    """What one `recgym bench gpu` invocation runs and where it writes."""

    out: str = "benchmarks/results"
    """results directory: rows are appended to OUT/throughput.jsonl, OUT/throughput.md is
    rewritten from all of them"""
    quick: bool = False
    """smoke-test sizes (a ~9,000-row log, one-epoch fit, N = 64 slots, 200 DQN steps); rows are
    marked mode=quick"""
    device: str = "auto"
    """the accelerator to compare with the CPU: 'auto' (CUDA when available), 'cuda', 'cuda:N'
    or 'cpu' (CPU rows only, no ratios); 'cuda' without CUDA is an error"""
    only: tuple[str, ...] = MEASUREMENTS
    """run only these measurements"""
    checkpoint: str | None = None
    """learned-simulator checkpoint for vector_env (at least N users); none: fit one here"""
    vector_n: int | None = None
    """slots of the vector env (default 4,096; --quick 64)"""
    dqn_steps: int | None = None
    """DQN env steps (default 2,000; --quick 200)"""
    sim_epochs: int | None = None
    """sim_fit's training epochs on both devices (default: SimulatorConfig's; fewer keep the
    CPU fit inside a short GPU lease, the ratio is then per fewer epochs, said in the note)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "only", tuple(self.only))
        unknown = sorted(set(self.only) - set(MEASUREMENTS))
        if unknown or not self.only:
            raise ValueError(f"only: expected some of {list(MEASUREMENTS)}, got {list(self.only)}")
        resolve_device(self.device)  # 'cuda' without CUDA fails here, before any work

    @property
    def n_slots(self) -> int:
        return self.vector_n or (QUICK_VECTOR_N if self.quick else VECTOR_N)

    @property
    def n_dqn_steps(self) -> int:
        return self.dqn_steps or (QUICK_DQN_STEPS if self.quick else DQN_STEPS)


def devices(spec: str) -> list[torch.device]:
    """The devices to time: the accelerator `spec` names (if any) and then the CPU."""
    dev = resolve_device(spec)
    return [dev, torch.device("cpu")] if dev.type != "cpu" else [torch.device("cpu")]


def _timed_fit(table: Any, device: torch.device, graph: bool | None = None) -> tuple[float, Any]:
    """Seconds of `LearnedSimulator.fit(table)` on `device`, and the fitted simulator."""
    from recgym.simulators.learned import LearnedSimulator

    fitted: list[Any] = []
    seconds = timed(
        device, lambda: fitted.append(LearnedSimulator.fit(table, device=device, graph=graph))
    )
    return seconds, fitted[0]


class Check:
    """One invocation: the workspace (log, scratch directory), the devices and the rows."""

    def __init__(self, config: GPUCheckConfig, work: Workspace) -> None:
        self.config, self.work = config, work
        self.devices = devices(config.device)
        self.rows: list[dict] = []

    def row(self, variant: str, metric: str, value: float, unit: str, note: str,
            batch: int | None = None) -> dict:  # fmt: skip
        row = self.work.row(BENCH, metric, value, unit, batch, note, variant)
        op, target = TARGETS.get((variant, metric), (None, None))
        if target is not None and not self.config.quick:
            row["target"], row["target_op"] = target, op
        self.rows.append(row)
        return row

    def compare(self, name: str, values: dict[str, float], unit: str, note: str,
                batch: int | None = None, higher_is_faster: bool = True) -> None:  # fmt: skip
        """Per-device rows of one measurement, then the CUDA/CPU speedup when both ran."""
        for dev in self.devices:
            self.row(f"{name}/{dev.type}", _metric(unit), values[str(dev)], unit,
                     f"{device_name(dev)}; {note}", batch)  # fmt: skip
        accel = [d for d in self.devices if d.type != "cpu"]
        if accel:
            fast, cpu = values[str(accel[0])], values["cpu"]
            speedup = fast / cpu if higher_is_faster else cpu / fast
            self.row(name, "speedup", speedup, "x",
                     f"{device_name(accel[0])} vs cpu (2 cores); {note}", batch)  # fmt: skip

    # ----------------------------------------------------------------- measurements
    def sim_fit(self) -> None:
        from recgym.data import load
        from recgym.simulators.learned import SimulatorConfig, build_log_table

        work = self.work
        if work.logs is None:
            work.generate_logs()
        config = SimulatorConfig(**QUICK_TRAIN) if work.quick else SimulatorConfig()
        if self.config.sim_epochs is not None:
            config = dataclasses.replace(config, epochs=self.config.sim_epochs)
        table = build_log_table(load(work.logs), config)
        seconds, eager, how = {}, {}, {}
        for dev in self.devices:
            _warm(dev)
            seconds[str(dev)], sim = _timed_fit(table, dev)
            if dev.type == "cuda":
                report = sim.fit_report
                how[str(dev)] = (
                    "training steps replayed as CUDA graphs"
                    if report["graph"]
                    else f"eager: capture failed ({report['graph_error']})"
                )
                eager[str(dev)], _ = _timed_fit(table, dev, graph=False)
                self._diagnose("sim_fit profile", lambda dev=dev: self._write_profile(
                    "sim_fit",
                    {f"{name} fit, {dev}": fit_profile(table, dev, graph=graph)
                     for name, graph in (("graphed", True), ("eager", False))},
                ))  # fmt: skip
        n_users, days = work.log_size
        sizes = "SimulatorConfig(epochs=1, ...)" if work.quick else "default SimulatorConfig"
        if self.config.sim_epochs is not None:
            sizes += f" with epochs={config.epochs}"
        note = (
            f"LearnedSimulator.fit on {n_users} users x {days} days ({work.log_rows:,} rows, "
            f"{len(table.rows('train')):,} training rows), {sizes}; one run per device, the "
            "table built once outside the timing"
        )
        where = "".join(f"; {dev}: {text}" for dev, text in how.items())
        self.compare("sim_fit", seconds, "s", note + where, higher_is_faster=False)
        for dev, value in eager.items():
            self.row(f"sim_fit_eager/{torch.device(dev).type}", "seconds", value, "s",
                     f"{device_name(torch.device(dev))}; the same fit with graph=False (each "
                     f"training step's kernels launched one by one); {note}")  # fmt: skip

    @staticmethod
    def _diagnose(name: str, fn: Callable[[], object]) -> None:
        """Run a diagnostic: its failure is said on stderr and must not cost the measurement's
        rows."""
        try:
            fn()
        except Exception as error:  # noqa: BLE001
            print(f"{name} skipped: {type(error).__name__}: {error}", file=sys.stderr)

    def _write_profile(self, name: str, tables: dict[str, str]) -> None:
        """Append `tables` (profiler tables by title) to OUT/gpu_check_profile.md."""
        out = Path(self.config.out) / PROFILE
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        text = "".join(f"\n### {title}\n\n```\n{table}\n```\n" for title, table in tables.items())
        with out.open("a") as f:
            f.write(f"\n## {name}, {stamp}\n{text}")

    def _checkpoint(self) -> Path:
        """A checkpoint with at least `n_slots` users (given, or fitted here on a 2-day log of
        a world with 10 % more users than slots; one epoch on the CPU, no fidelity report)."""
        if self.config.checkpoint is not None:
            return Path(self.config.checkpoint)
        from recgym.data import load
        from recgym.simulators.generate import generate
        from recgym.simulators.learned import LearnedSimulator, SimulatorConfig, build_log_table
        from recgym.simulators.logs import LogConfig
        from recgym.simulators.world import WorldConfig

        logs, out = self.work.root / "vector_logs", self.work.root / "vector_checkpoint"
        world = WorldConfig(n_users=self.config.n_slots * 11 // 10 + 50, seed=0)
        generate(logs, world, LogConfig(days=2, seed=0), progress=False)
        table = build_log_table(load(logs), SimulatorConfig(**QUICK_TRAIN))
        LearnedSimulator.fit(table, device="cpu").save(out)
        return out

    def vector_env(self) -> None:
        from recgym.envs import register_all
        from recgym.simulators.learned import LearnedSimulator

        register_all()
        n = self.config.n_slots
        path = self._checkpoint()
        calls = 3 if self.work.quick else 20
        blocks: dict[str, dict[str, list[float]]] = {"": {}, "_kept": {}, "_eager": {}}
        backend_blocks, paths, parts = {}, {}, {}
        for dev in self.devices:
            sim = LearnedSimulator.load(path, device=dev)
            if sim.n_users < n:
                raise ValueError(
                    f"vector_env: checkpoint {path} has {sim.n_users} users; {n} slots need as "
                    "many distinct users (give --vector-n or another --checkpoint)"
                )
            blocks[""][str(dev)], paths[str(dev)] = _vector_rates(sim, n, calls, REPEATS)
            blocks["_kept"][str(dev)], _ = _vector_rates(sim, n, calls, REPEATS, keep=True)
            if dev.type == "cuda":
                blocks["_eager"][str(dev)], _ = _vector_rates(sim, n, calls, REPEATS, graph=False)
                self._diagnose("vector_env_parts", lambda dev=dev, sim=sim: parts.update(
                    {str(dev): vector_step_parts(sim, n, calls * REPEATS)}))  # fmt: skip
                self._diagnose("vector_env profile", lambda dev=dev, sim=sim: self._write_profile(
                    "vector_env",
                    {f"device env, {how} step, {dev}": env_profile(sim, n, graph=graph)
                     for how, graph in (("graphed", True), ("eager", False))},
                ))  # fmt: skip
            backend_blocks[str(dev)] = _backend_rates(sim, n, calls, REPEATS)
        where = ", ".join(f"{dev}: {how}" for dev, how in paths.items())
        setup = (
            f"gym.make_vec(Session-v0, vector_entry_point), {n} slots, backend = the learned "
            f"simulator loaded on the device ({path.name}; {where}), random scores, next-step "
            f"autoreset; {REPEATS} timed blocks of {calls} steps after 2 warm-up steps"
        )
        kinds = {
            "": "each step's results dropped at the next step",
            "_kept": "every step's results kept to the end (fresh host memory each step)",
            "_eager": "the same env with graph=False (the device step's kernels launched one "
            "by one), each step's results dropped at the next step",
        }
        for suffix, by_dev in blocks.items():
            spread = ", ".join(f"{dev}: {_blocks(r)}" for dev, r in by_dev.items())
            note = f"{kinds[suffix]}; {setup}; {spread}"
            medians = {dev: float(np.median(r)) for dev, r in by_dev.items()}
            if suffix == "_eager":
                for dev, rate in medians.items():
                    self.row(f"vector_env_eager/{torch.device(dev).type}", "steps_per_s", rate,
                             "1/s", f"{device_name(torch.device(dev))}; {note}", n)  # fmt: skip
            else:
                self.compare(f"vector_env{suffix}", medians, "1/s", note, batch=n)
        for dev, ms in parts.items():
            for part, value in ms.items():
                self.row(f"vector_env_parts/{torch.device(dev).type}", f"{part}_ms", value, "ms",
                         f"{device_name(torch.device(dev))}; where a step of the device env goes "
                         f"(`vector_step_parts`: the device step and the download timed with a "
                         f"synchronize around each, the rest of `venv.step` is host), per step "
                         f"over {calls * REPEATS} steps, each step's results dropped at the "
                         f"next; {n} slots", n)  # fmt: skip
        note = (
            f"LearnedSimulator.step alone (no env: no candidates, observations or rewards), "
            f"{n} distinct users x random 6-item slates (device-resident state on an "
            f"accelerator, host state on the cpu); {REPEATS} timed blocks of {calls} calls "
            "after 2 warm-up calls; one upload and one download per call; "
            + ", ".join(f"{dev}: {_blocks(r)}" for dev, r in backend_blocks.items())
        )
        rates = {dev: float(np.median(r)) for dev, r in backend_blocks.items()}
        self.compare("backend_step", rates, "1/s", note, batch=n)

    def dqn_train(self) -> None:
        from dataclasses import replace

        from recgym.agents.dqn import DQNConfig, train_dqn

        steps = self.config.n_dqn_steps
        rates, stats_of = {}, {}
        for dev in self.devices:
            warm = DQNConfig(env_steps=64, epochs=1, warmup_steps=64, test_episodes=1,
                             eps_decay_steps=64, device=str(dev))  # fmt: skip
            train_dqn({}, warm, progress=False)
            config = replace(DQNConfig(), env_steps=steps, epochs=2, device=str(dev))
            _, stats = train_dqn({}, config, progress=False)
            rates[str(dev)], stats_of[str(dev)] = stats.env_steps / stats.seconds, stats
        stats = stats_of["cpu"]
        note = (
            f"train_dqn on Session-v0, default WorldConfig, DQNConfig defaults with "
            f"env_steps={steps}, epochs=2 ({stats.env_steps} env steps, {stats.gradient_steps} "
            "gradient steps per device)"
        )
        self.compare("dqn_train", rates, "1/s", note)

    def no_cuda_row(self) -> None:
        if any(d.type == "cuda" for d in self.devices):
            return
        why = "no CUDA device" if not torch.cuda.is_available() else "CUDA not requested"
        self.row("cuda", "available", 0.0, "bool",
                 f"{why} (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                 "only the CPU rows were measured")  # fmt: skip


def _vector_rates(
    sim: Any, n: int, calls: int, repeats: int, graph: bool | None = None, keep: bool = False
) -> tuple[list[float], str]:
    """Env steps per second of Session-v0's native vector env over `sim` with `n` slots (random
    scores, pre-drawn) in each of `repeats` blocks of `calls` steps on one env, and how it ran
    (host or device env, CUDA graph or not). A step's results are dropped at the next step, or
    with `keep` all kept until every block has run."""
    venv, actions = warm_vector_env(sim, n, calls, graph=graph)
    kept: list[Any] = []

    def block() -> None:
        for x in actions:
            out = venv.step(x)
            if keep:
                kept.append(out)

    rates = [n * calls / timed(sim.device, block) for _ in range(repeats)]
    kept.clear()
    mdp = venv.mdp
    if type(mdp).__name__ != "DeviceSessionMDP":
        how = "device-resident simulator, host env" if sim.resident else "host state and env"
    elif mdp.graph_wanted:
        how = "device-resident simulator and env, CUDA graph"
    else:
        how = "device-resident simulator and env, eager"
        if mdp.graph_error:
            how += f" (graph capture failed: {mdp.graph_error[:120]})"
    venv.close()
    return rates, how


def _blocks(rates: Sequence[float]) -> str:
    """`rates`' median and range, for a row's note."""
    return (
        f"median of {len(rates)} blocks ({fmt(min(rates))}-{fmt(max(rates))})"
        if len(rates) > 1
        else "one block"
    )


def _backend_rates(sim: Any, n: int, calls: int, repeats: int) -> list[float]:
    """User-responses per second of `sim.step` over `n` users (slates pre-drawn) in each of
    `repeats` blocks of `calls` calls."""
    sim.reset_state()
    users = np.arange(n)
    draw = np.random.default_rng(1)
    slates = draw.integers(0, sim.catalogue.n_items, (calls + 2, n, 6))
    sim.begin_session(users, draw)
    for slate in slates[:2]:
        sim.step(users, slate, draw)
    return [
        n * calls / timed(sim.device, lambda: [sim.step(users, x, draw) for x in slates[2:]])
        for _ in range(repeats)
    ]


def _warm(device: torch.device) -> None:
    """Start the device's context and matrix library outside any timing."""
    x = torch.ones(64, 64, device=device)
    (x @ x).sum().item()


def _metric(unit: str) -> str:
    return "seconds" if unit == "s" else "steps_per_s"


def run(config: GPUCheckConfig | None = None, *, verbose: bool = False) -> list[dict]:
    """Run the measurements, append their rows to OUT/throughput.jsonl as each finishes, rewrite
    OUT/throughput.md; returns the new rows."""
    config = config or GPUCheckConfig()
    out = ensure_writable_dir(config.out)
    with tempfile.TemporaryDirectory(prefix="recgym-gpu-") as tmp, thread_limit(1):
        check = Check(config, Workspace(root=Path(tmp), quick=config.quick))
        check.no_cuda_row()
        append_rows(out / JSONL, check.rows)
        for name in config.only:
            if verbose:
                where = ", ".join(device_name(d) for d in check.devices)
                print(f"[{time.strftime('%H:%M:%S')}] {name} on {where} ...", file=sys.stderr)
            done = len(check.rows)
            getattr(check, name)()
            append_rows(out / JSONL, check.rows[done:])
    (out / MARKDOWN).write_text(markdown(read_rows(out / JSONL)))
    return check.rows


def parse_args(argv: Sequence[str] | None = None) -> GPUCheckConfig:
    from recgym.benchmarks.engine_cli import config_from_args, config_parser

    parser = config_parser(GPUCheckConfig, prog="recgym bench gpu", description=DESCRIPTION,
                           choices={"only": list(MEASUREMENTS)})  # fmt: skip
    try:
        return config_from_args(GPUCheckConfig, parser.parse_args(argv))
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """`recgym bench gpu [options]`: run, then print one line per new row."""
    config = parse_args(argv)
    rows = run(config, verbose=True)
    for row in rows:
        ok = {None: "", True: "  [pass]", False: "  [FAIL]"}[passes(row)]
        print(f"{row['bench']}[{row['variant']}].{row['metric']}: {fmt(row['value'])} "
              f"{row['unit']}{ok}  ({row['note'].split(';')[0]})")  # fmt: skip
    print(f"wrote {Path(config.out) / JSONL} and {Path(config.out) / MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "DESCRIPTION",
    "GPUCheckConfig",
    "MEASUREMENTS",
    "devices",
    "env_profile",
    "fit_profile",
    "main",
    "parse_args",
    "run",
    "vector_step_parts",
]
