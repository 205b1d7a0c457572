"""Real-dataset loading: schema-checked loaders, the normalised Dataset, preprocessing, `inspect`.

`data` imports nothing else from recgym.
"""

from __future__ import annotations

import sys

from .loaders import (
    detect_format,
    load,
    load_foursquare,
    load_kuairand,
    load_kuaisar,
    load_lastfm,
    load_movielens,
    read_table,
)
from .preprocess import dedup, implicit_feedback, k_core, sort_by_time
from .schema import DataError, Dataset, FileRead, FilterStep, LoadReport

__all__ = [
    "DataError",
    "Dataset",
    "FileRead",
    "FilterStep",
    "LoadReport",
    "dedup",
    "detect_format",
    "format_summary",
    "implicit_feedback",
    "inspect",
    "k_core",
    "load",
    "load_foursquare",
    "load_kuairand",
    "load_kuaisar",
    "load_lastfm",
    "load_movielens",
    "read_table",
    "sort_by_time",
]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def format_summary(summary: dict) -> str:
    """`Dataset.summary()` as the block of text `inspect` prints."""
    fmt = summary["format"] + (f" (variant {summary['variant']})" if summary["variant"] else "")
    if summary["time_range"] is not None:
        when = "{} .. {} (UTC)".format(*summary["time_range"])
    elif summary["timestamp_kind"] == "ordinal":
        when = "none in the data (timestamp is a per-user ordinal)"
    else:
        when = "-"
    with_users = f"{summary['users_with_interactions']:,} with interactions"
    with_items = f"{summary['items_with_interactions']:,} with interactions"
    lines = [
        ("format", fmt),
        ("source", summary["source"]),
        ("rows", _count(summary["rows"], "interaction")),
        ("users", f"{summary['users']:,} ({with_users})"),
        ("items", f"{summary['items']:,} ({with_items})"),
        ("time range", when),
    ]
    for i, (name, rows) in enumerate(summary["files"].items()):
        lines.append(("files" if i == 0 else "", f"{name}: {_count(rows, 'row')}"))
    if not summary["filtered"]:
        lines.append(("filtered", "none"))
    for i, step in enumerate(summary["filtered"]):
        removed = _count(step["removed"], "row")
        text = f"{step['step']}: {removed} removed, {step['rows_after']:,} left ({step['reason']})"
        lines.append(("filtered" if i == 0 else "", text))
    for i, note in enumerate(summary["notes"]):
        lines.append(("notes" if i == 0 else "", note))
    return "\n".join(f"{key:<11} {value}".rstrip() for key, value in lines)


def inspect(path: str, format: str | None = None) -> int:
    """Load a dataset and print what was found; 0 on success, 2 (and one error line) on bad data.

    Writes nothing into `path`: the parquet cache goes to the user cache dir (see `load`).
    """
    try:
        ds = load(path, format)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(ds.summary()))
    return 0
