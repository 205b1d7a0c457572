"""`recgym bench throughput`: how fast the world steps, serves requests, and writes and loads logs.

Each measurement is the median of several timed repeats after a warm-up, appended as one JSON row
to `<out_dir>/throughput.jsonl`; `<out_dir>/throughput.md` is then regenerated from every row of
that file (the latest full-mode row per (bench, metric, batch); a quick-mode row only where no
full-mode row exists). Numerical libraries are held to two threads so numbers compare across
machines with more cores.

Benches (metric names are fixed):
- ``world_step``: `World.step` on pre-chosen slates of 6 items, batches of 1, 64 and 1024 users:
  ``responses_per_s`` (item responses per second; target >= 200,000 at batch 1024) and
  ``step_ms`` (time per step).
- ``full_request``: candidate generation + `oracle.greedy_click` ranking + `World.step` for 1024
  users: ``requests_per_s`` (user requests per second) and ``request_ms``.
- ``log_generate``: `simulators.generate.generate` writing about 1.1 M KuaiRand log rows:
  ``seconds`` (target <= 60) and ``rows_per_s``. One timed run (it takes tens of seconds).
- ``log_load``: loading those files back with `recgym.data.load` (cache off; falls back to
  `pandas.read_csv` of the log files when that is not importable, and says so in the note):
  ``seconds`` (target <= 10) and ``rows_per_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recgym.simulators import oracle
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.generate import generate
from recgym.simulators.logs import LogConfig
from recgym.simulators.world import World, WorldConfig

JSONL = "throughput.jsonl"
MARKDOWN = "throughput.md"
SLATE = 6
THREADS = 2
STEP_BATCHES = (1, 64, 1024)
REQUEST_BATCH = 1024
# full mode: ~37.6 logged rows per user-day with the default catalogue -> ~1.16 M rows
LOG_USERS, LOG_DAYS = 2200, 14
QUICK_LOG_USERS, QUICK_LOG_DAYS = 200, 2
TARGETS: dict[tuple[str, str, int | None], tuple[str, float]] = {
    ("world_step", "responses_per_s", 1024): (">=", 200_000.0),
    ("log_generate", "seconds", None): ("<=", 60.0),
    ("log_load", "seconds", None): ("<=", 10.0),
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


def _thread_limit():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return nullcontext()
    return threadpool_limits(limits=THREADS)


# --------------------------------------------------------------------------- benches
def bench_world_step(quick: bool) -> list[dict]:
    world = World(WorldConfig(n_users=max(STEP_BATCHES), seed=0))
    rng = np.random.default_rng(0)
    repeats, block = (3, 0.05) if quick else (7, 0.3)
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


def bench_full_request(quick: bool) -> list[dict]:
    world = World(WorldConfig(n_users=REQUEST_BATCH, seed=0))
    rng = np.random.default_rng(1)
    gen = CandidateGenerator(catalogue=world.catalogue, n_candidates=50)
    users = np.arange(REQUEST_BATCH)
    world.begin_session(users, rng)

    def request() -> None:
        cand = gen(world.history(users), rng)
        slate = oracle.greedy_click(world, users, cand, SLATE, rng)
        world.step(users, slate, rng)

    repeats, block = (3, 0.1) if quick else (7, 0.5)
    seconds = _median_time(request, repeats, block)
    note = f"median of {repeats}; 50 candidates -> greedy_click top-{SLATE} -> World.step"
    return [
        _row("full_request", "requests_per_s", REQUEST_BATCH / seconds, "1/s", REQUEST_BATCH, note),
        _row("full_request", "request_ms", seconds * 1e3, "ms", REQUEST_BATCH, note),
    ]


def bench_logs(quick: bool) -> list[dict]:
    n_users, days = (QUICK_LOG_USERS, QUICK_LOG_DAYS) if quick else (LOG_USERS, LOG_DAYS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="recgym-bench-") as tmp:
        out = Path(tmp) / "kuairand"
        t0 = time.perf_counter()
        summary = generate(
            out, WorldConfig(n_users=n_users, seed=0), LogConfig(days=days, seed=0), progress=False
        )
        seconds = time.perf_counter() - t0
        n_rows = int(summary["rows"])
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
        repeats = 1 if quick else 3
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


# --------------------------------------------------------------------------- rows and tables
_CONTEXT: dict[str, object] = {}


def _row(
    bench: str, metric: str, value: float, unit: str, batch: int | None, note: str
) -> dict[str, object]:
    op, target = TARGETS.get((bench, metric, batch), (None, None))
    if _CONTEXT.get("mode") == "quick" and bench.startswith("log_"):
        op, target = None, None  # the log targets are for ~1 M rows, not the quick log
    return {
        "bench": bench,
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


def latest_rows(rows: list[dict]) -> list[dict]:
    """The latest row per (bench, metric, batch), full-mode rows taking precedence over quick."""
    best: dict[tuple, dict] = {}
    for row in rows:  # file order is time order
        key = (row["bench"], row["metric"], row.get("batch"))
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
        f"Regenerated by `recgym bench throughput` from {JSONL} (latest row per bench, metric "
        "and batch; edit the JSONL, never this file).",
        "",
        "| bench | metric | batch | value | unit | target | pass | mode | git | machine | date "
        "| note |",
        "|---|---|---|---:|---|---|---|---|---|---|---|---|",
    ]
    for row in latest_rows(rows):
        ok = passes(row)
        target = "-" if row.get("target") is None else f"{row['target_op']} {_fmt(row['target'])}"
        m = row.get("machine", {})
        where = f"{m.get('nproc')} cpu, py {m.get('python')}, np {m.get('numpy')}"
        cells = [
            row["bench"],
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
def run(out_dir: str | Path = "benchmarks/results", quick: bool = False) -> list[dict]:
    """Run every bench, append its rows to `out_dir`/throughput.jsonl, rewrite throughput.md.

    `quick` uses short timing blocks and a small log (seconds instead of a minute); its rows are
    marked mode="quick" and never hide a full-mode row in the table. Returns the new rows.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _CONTEXT.update(mode="quick" if quick else "full", git_sha=git_sha(), machine=machine())
    rows: list[dict] = []
    with _thread_limit():
        for bench in (bench_world_step, bench_full_request, bench_logs):
            new = bench(quick)
            with open(out / JSONL, "a", encoding="utf-8") as f:
                for row in new:
                    f.write(json.dumps(row) + "\n")
            rows += new
    (out / MARKDOWN).write_text(markdown(read_rows(out / JSONL)))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="recgym bench throughput",
        description="Time world steps, full requests, log generation and loading; append JSONL "
        "rows and regenerate a markdown table.",
    )
    parser.add_argument("--out", default="benchmarks/results", help="results directory")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (< 20 s)")
    args = parser.parse_args(argv)
    rows = run(args.out, quick=args.quick)
    for row in rows:
        ok = {None: "", True: "  [pass]", False: "  [FAIL]"}[passes(row)]
        batch = "" if row["batch"] is None else f" (batch {row['batch']})"
        print(f"{row['bench']}.{row['metric']}{batch}: {_fmt(row['value'])} {row['unit']}{ok}")
    print(f"wrote {Path(args.out) / JSONL} and {Path(args.out) / MARKDOWN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
