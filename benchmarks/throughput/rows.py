"""The throughput bench's rows: targets, the row format, reading them back, the markdown table.

A row is one measurement: ``bench``, ``variant`` (None when the bench has one code path),
``metric``, ``value``, ``unit``, ``batch`` (None when not batched), ``target`` / ``target_op``
(None when the measurement has none, or in quick mode for the size-bound benches), ``mode``
(full / quick), ``threads`` ({"numpy": BLAS/OpenMP threads, "torch": torch intra-op threads}),
``note`` and ``provenance`` (`recgym.benchmarks.engine.provenance`: git commit, the dirty-tree
hash that includes untracked files, machine, Python/numpy/torch versions, UTC date).

Rows written before the bench used the engine's provenance carry ``git_sha``, ``timestamp`` and
``machine`` instead (and older ones no ``variant``); `read_rows`, `latest_rows` and `markdown`
accept both, so the committed history stays one file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recgym.benchmarks.engine import provenance

JSONL = "throughput.jsonl"
MARKDOWN = "throughput.md"
SIZED_BENCHES = ("log_generate", "log_load", "sim_train")  # targets are for ~1 M rows
TARGETS: dict[tuple[str, str | None, str, int | None], tuple[str, float]] = {
    # (bench, variant, metric, batch): (op, target)
    ("world_step", None, "responses_per_s", 1024): (">=", 200_000.0),
    ("sim_inference", "step", "responses_per_s", 1024): (">=", 50_000.0),
    ("log_generate", None, "seconds", None): ("<=", 60.0),
    ("log_load", None, "seconds", None): ("<=", 10.0),
    ("sim_train", None, "seconds", None): ("<=", 300.0),
    ("sim_train", None, "peak_mb", None): ("<=", 4096.0),
    # issue 10 (fast envs; `fast_envs`): 256 slots for the native vector env rows; judged on
    # the bench process's CPU time, the idle-machine wall time's estimate on shared cores
    ("vector_env", "world", "steps_per_cpu_s", 256): (">=", 100_000.0),
    ("vector_env", "learned", "steps_per_cpu_s", 256): (">=", 20_000.0),
    ("env_step", "world/collector-native", "steps_per_cpu_s", 256): (">=", 30_000.0),
    ("env_step", "world/collector-native-batched", "steps_per_cpu_s", 256): (">=", 30_000.0),
    ("env_step", "world/collector-native-flat", "steps_per_cpu_s", 256): (">=", 30_000.0),
    ("dqn_train", None, "steps_per_cpu_s", 4): (">=", 850.0),
    ("peer_env_step", "recgym/Session-v0", "ratio_to_sardine", 1): (">=", 1.5),
}


def make_row(
    bench: str,
    metric: str,
    value: float,
    unit: str,
    batch: int | None,
    note: str,
    variant: str | None = None,
    *,
    quick: bool,
    threads: int,
    torch_threads: int,
) -> dict[str, Any]:
    """One row (see the module docstring), stamped with this process's `provenance()`."""
    op, target = TARGETS.get((bench, variant, metric, batch), (None, None))
    if quick and bench in SIZED_BENCHES:
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
        "mode": "quick" if quick else "full",
        "threads": {"numpy": threads, "torch": torch_threads},
        "note": note,
        "provenance": provenance(),
    }


def passes(row: dict) -> bool | None:
    """Whether a row meets its target; None when it has none."""
    if row.get("target") is None:
        return None
    if row.get("target_op") == "<=":
        return row["value"] <= row["target"]
    return row["value"] >= row["target"]


def read_rows(path: Path) -> list[dict]:
    """The rows of a throughput JSONL file ([] when absent); a bad line raises naming it."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {i} is not JSON ({e.msg})") from None
        missing = [k for k in ("bench", "metric", "value", "unit") if k not in row]
        if missing:
            raise ValueError(f"{path}: line {i} lacks {', '.join(missing)}")
        rows.append(row)
    return rows


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


def fmt(value: float) -> str:
    """A number as the table and the console show it."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def stamp(row: dict) -> tuple[str, str, str]:
    """(git, machine, date) cells of a row, from its provenance or, in old rows, its own stamp.

    git is the commit's first 12 digits, plus ``+dirty <hash>`` (the first 8 digits of the
    dirty-tree hash, untracked files included) when the tree had changes.
    """
    prov = row.get("provenance")
    if prov is None:  # rows written before the engine's provenance
        m = row.get("machine", {})
        where = f"{m.get('nproc')} cpu, py {m.get('python')}, np {m.get('numpy')}"
        if "torch_threads" in m:
            where += f", torch {m['torch_threads']} thr"
        return row.get("git_sha", ""), where, row.get("timestamp", "")[:10]
    git = str(prov.get("git_commit", "unknown"))[:12]
    dirty = prov.get("dirty_tree", "unknown")
    if dirty != "clean":
        git += f"+dirty {str(dirty)[:8]}"
    m = prov.get("machine", {})
    where = f"{m.get('nproc')} cpu, py {prov.get('python')}, np {prov.get('numpy')}"
    if prov.get("torch"):
        where += f", torch {prov['torch']}"
    threads = row.get("threads", {})
    if threads:
        where += f" ({threads.get('torch')} thr)"
    return git, where, str(prov.get("date", ""))[:10]


def markdown(rows: list[dict]) -> str:
    """The table of `latest_rows(rows)`, one line per (bench, variant, metric, batch)."""
    lines = [
        "# recgym throughput",
        "",
        f"Regenerated by `recgym bench throughput` from {JSONL} (latest row per bench, variant, "
        "metric and batch; edit the JSONL, never this file). git: the commit, and `+dirty HASH` "
        "when the work tree differed from it (the hash covers untracked files too); machine: "
        "cores, versions and torch's intra-op threads (numpy/BLAS at 2).",
        "",
        "| bench | variant | metric | batch | value | unit | target | pass | mode | git | machine "
        "| date | note |",
        "|---|---|---|---|---:|---|---|---|---|---|---|---|---|",
    ]
    for row in latest_rows(rows):
        ok = passes(row)
        target = "-" if row.get("target") is None else f"{row['target_op']} {fmt(row['target'])}"
        git, where, date = stamp(row)
        cells = [
            row["bench"],
            row.get("variant") or "-",
            row["metric"],
            "-" if row.get("batch") is None else str(row["batch"]),
            fmt(row["value"]),
            row["unit"],
            target,
            {None: "-", True: "yes", False: "**NO**"}[ok],
            row.get("mode", "full"),
            git,
            where,
            date,
            row.get("note", "").replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "JSONL",
    "MARKDOWN",
    "SIZED_BENCHES",
    "TARGETS",
    "fmt",
    "latest_rows",
    "make_row",
    "markdown",
    "passes",
    "read_rows",
    "row_key",
    "stamp",
]
