"""Column kinds: the type pyarrow parses each schema kind as, the type it is stored as, and the
per-block conversion and checks (ids non-negative, dates real, ...) between the two."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import Column

_DICT = pa.dictionary(pa.int32(), pa.string())

_READ_TYPE: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "int": pa.int64(),
    "int8": pa.int8(),
    "intlike": pa.float64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "str": pa.string(),
    "category": _DICT,
    "yyyymmdd": pa.int64(),
    "datetime": pa.timestamp("ms"),
    "date_dmy": pa.string(),
    "epoch_s": pa.int64(),
    "epoch_ms": pa.int64(),
    "epoch_ms_float": pa.float64(),
    "twitter_time": pa.string(),
}

_STORED_TYPE: dict[str, pa.DataType] = {
    **_READ_TYPE,
    "intlike": pa.int64(),
    "date_dmy": pa.timestamp("ms"),
    "epoch_ms_float": pa.int64(),
    "twitter_time": pa.int64(),
}

# How a value of each kind is described when it cannot be parsed.
_EXPECTED: dict[str, str] = {
    "id": "a non-negative integer",
    "int": "an integer",
    "int8": "a small integer (-128..127)",
    "intlike": "an integer",
    "float32": "a number",
    "float64": "a number",
    "yyyymmdd": "a date YYYYMMDD",
    "datetime": "a date/time YYYY-MM-DD[ HH:MM:SS]",
    "date_dmy": "a date like 01-Jan-1995",
    "epoch_s": "a timestamp in epoch seconds",
    "epoch_ms": "a timestamp in epoch milliseconds",
    "epoch_ms_float": "a timestamp in epoch milliseconds",
    "twitter_time": "a time like 'Tue Apr 03 18:00:09 +0000 2012'",
}

_TWITTER_TIME_FORMAT = "%a %b %d %H:%M:%S %z %Y"

_DMY_FORMAT = "%d-%b-%Y"

_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


class _Bad(Exception):
    """A bad value at a row of the current block (internal; turned into a DataError)."""

    def __init__(self, index: int, column: str, problem: str) -> None:
        super().__init__(problem)
        self.index = index
        self.column = column
        self.problem = problem


def _show(value: object) -> str:
    return "''" if value is None else repr(str(value))


def _first_true(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _null_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.zeros(len(arr), dtype=bool)
    return arr.is_null().to_numpy(zero_copy_only=False)


def _convert(col: Column, arr: pa.Array) -> pa.Array:
    """Check one parsed block of a column and return it in its stored type; raise _Bad if wrong."""
    kind, name = col.kind, col.name
    nulls = _null_mask(arr)
    problems: list[tuple[int, str]] = []

    def flag(mask: np.ndarray, describe: Callable[[int], str]) -> None:
        i = _first_true(mask)
        if i is not None:
            problems.append((i, describe(i)))

    if kind in ("float32", "float64", "intlike", "epoch_ms_float"):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        nulls = np.isnan(values)  # "nan" counts as empty
    if not col.allows_null:
        missing = "missing id (empty value)" if kind == "id" else "missing value (empty)"
        flag(nulls, lambda i: missing)

    out = arr
    if kind in ("id", "epoch_s", "epoch_ms"):
        negative = pc.fill_null(pc.less(arr, 0), False).to_numpy(zero_copy_only=False)
        flag(negative, lambda i: f"expected {_EXPECTED[kind]}, got {_show(arr[i].as_py())}")
    elif kind == "yyyymmdd":
        v = arr.fill_null(20000101).to_numpy()
        y, m, d = v // 10000, v // 100 % 100, v % 100
        leap = (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))
        dim = _DAYS_IN_MONTH[np.clip(m, 0, 12)] + ((m == 2) & leap)
        bad = (y < 1000) | (y > 9999) | (m < 1) | (m > 12) | (d < 1) | (d > dim)
        flag(bad, lambda i: f"expected a date YYYYMMDD, got {_show(arr[i].as_py())}")
    elif kind in ("intlike", "epoch_ms_float"):
        finite = np.where(nulls, 0.0, values)
        rounded = np.rint(finite) if kind == "epoch_ms_float" else finite
        bad = ~nulls & (
            ~np.isfinite(finite)
            | (np.abs(finite) >= 2.0**63)
            | ((rounded != finite) if kind == "intlike" else (finite < 0))
        )
        flag(bad, lambda i: f"expected {_EXPECTED[kind]}, got {_show(arr[i].as_py())}")
        if not problems:
            ints = np.where(np.isfinite(rounded), rounded, 0).astype(np.int64)
            out = pa.array(ints, mask=nulls if nulls.any() else None)
    elif kind in ("date_dmy", "twitter_time"):
        text = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
        fmt = _DMY_FORMAT if kind == "date_dmy" else _TWITTER_TIME_FORMAT
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=kind == "twitter_time")
        flag(
            parsed.isna().to_numpy() & ~nulls,
            lambda i: f"expected {_EXPECTED[kind]}, got {_show(text.iloc[i])}",
        )
        if not problems:
            if kind == "twitter_time":
                parsed = parsed.dt.tz_localize(None)
            stamps = parsed.to_numpy(dtype="datetime64[ms]")
            if kind == "twitter_time":
                out = pa.array(stamps.astype(np.int64), mask=nulls if nulls.any() else None)
            else:
                out = pa.array(stamps, type=pa.timestamp("ms"), mask=nulls)
    if problems:
        index, problem = min(problems)
        raise _Bad(index, name, problem)
    return out
