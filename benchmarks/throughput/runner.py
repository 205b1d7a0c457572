"""`recgym bench throughput`'s config, runner and command line.

The command line is generated from `ThroughputConfig` by `recgym.benchmarks.engine_cli` (one
option per field, help = the field's docstring). The benches are timings, not cached stages:
every run measures again and appends its rows, so the engine's stage cache is not used here,
only its provenance (in every row, see `rows`).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from recgym.benchmarks.engine import append_rows
from recgym.benchmarks.throughput.benches import BENCHES, TORCH_THREADS, Workspace, thread_limit
from recgym.benchmarks.throughput.rows import JSONL, MARKDOWN, fmt, markdown, passes, read_rows
from recgym.outdir import ensure_writable_dir

DESCRIPTION = (
    "Time world steps, full requests, log generation and loading, learned-simulator inference, "
    "env steps (raw and through a Tianshou Collector) and simulator training; append JSONL rows "
    "to OUT/throughput.jsonl and regenerate OUT/throughput.md. The package docstring of "
    "recgym.benchmarks.throughput describes every bench."
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ThroughputConfig:
    """What one `recgym bench throughput` invocation runs and where it writes."""

    out: str = "benchmarks/results"
    """results directory: rows are appended to OUT/throughput.jsonl, OUT/throughput.md is
    rewritten from all of them"""
    quick: bool = False
    """smoke-test sizes: short timing blocks, a ~9,000-row log, a one-epoch sim_train; rows are
    marked mode=quick and the size-bound targets do not apply (about 30 s)"""
    checkpoint: str | None = None
    """learned-simulator checkpoint (from `recgym simulator train`) for sim_inference and
    env_step's learned variants; none: train a small one (300 users x 3 days, one epoch, a few
    seconds) in a scratch directory"""
    only: tuple[str, ...] = tuple(BENCHES)
    """run only these benches ('logs' is log_generate + log_load); sim_train reuses the log of
    'logs' when both run"""
    torch_threads: int = TORCH_THREADS
    """torch intra-op threads for sim_inference and env_step (1, as recgym trains and runs; 2 is
    faster on an idle machine but stalls when cores are shared); numpy/BLAS always get 2"""

    device: str = "auto"
    """torch device of the learned simulator and DQN in sim_inference, env_step, sim_train,
    vector_env and dqn_train ('auto': CUDA when available, else CPU; the targets are for 2 CPU
    cores, so pass cpu on a GPU machine to check them; `recgym bench gpu` compares devices)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "only", tuple(self.only))
        unknown = sorted(set(self.only) - set(BENCHES))
        if unknown:
            raise ValueError(f"unknown benches {unknown}; expected some of {list(BENCHES)}")
        if not self.only:
            raise ValueError("only: name at least one bench")
        if self.torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {self.torch_threads}")


def run(config: ThroughputConfig | None = None, *, verbose: bool = False) -> list[dict]:
    """Run the benches, append their rows to `config.out`/throughput.jsonl, rewrite
    throughput.md from every row of that file; returns the new rows.

    `verbose` reports each bench as it starts on stderr. Each bench's rows are appended as soon
    as it finishes, so an interrupted run keeps what it measured.
    """
    config = config or ThroughputConfig()
    out = ensure_writable_dir(config.out)  # an unwritable --out fails here, before any bench
    rows: list[dict] = []
    with (
        tempfile.TemporaryDirectory(prefix="recgym-bench-") as tmp,
        thread_limit(config.torch_threads),
    ):
        work = Workspace(
            root=Path(tmp),
            quick=config.quick,
            torch_threads=config.torch_threads,
            device=config.device,
        )
        if config.checkpoint is not None:
            work.checkpoint = Path(config.checkpoint)
            work.checkpoint_note = f"checkpoint {config.checkpoint}"
        for name in config.only:
            if verbose:
                print(f"[{time.strftime('%H:%M:%S')}] {name} ...", file=sys.stderr, flush=True)
            new = BENCHES[name](work)
            append_rows(out / JSONL, new)
            rows += new
    (out / MARKDOWN).write_text(markdown(read_rows(out / JSONL)))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> ThroughputConfig:
    """The config of a command line (``--help`` lists every field with its docstring)."""
    from recgym.benchmarks.engine_cli import config_from_args, config_parser

    parser = config_parser(
        ThroughputConfig,
        prog="recgym bench throughput",
        description=DESCRIPTION,
        choices={"only": list(BENCHES)},
    )
    return config_from_args(ThroughputConfig, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """`recgym bench throughput [options]`: run, then print one line per new row."""
    config = parse_args(argv)
    rows = run(config, verbose=True)
    for row in rows:
        ok = {None: "", True: "  [pass]", False: "  [FAIL]"}[passes(row)]
        variant = "" if row["variant"] is None else f"[{row['variant']}]"
        batch = "" if row["batch"] is None else f" (batch {row['batch']})"
        print(
            f"{row['bench']}{variant}.{row['metric']}{batch}: {fmt(row['value'])} {row['unit']}{ok}"
        )
    print(f"wrote {Path(config.out) / JSONL} and {Path(config.out) / MARKDOWN}")
    return 0


__all__ = ["DESCRIPTION", "ThroughputConfig", "main", "parse_args", "run"]
