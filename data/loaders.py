"""Real-dataset loaders: format detection, streamed schema-checked CSV reading, a parquet cache.

Every raw file is read with pyarrow's streaming CSV reader using explicit column types, one block
at a time; each block is checked (ids present and non-negative, dates real, ...) before it is kept,
so the only full-size copies are the typed arrow table and the final pandas frame. Anything that
does not match the schema raises `DataError` naming the file, column and line. The typed tables
are cached as parquet (see `load`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .schema import (
    FORMATS,
    FOURSQUARE_DERIVED,
    FOURSQUARE_TSMC,
    KEY_COLUMNS,
    KUAIRAND_LOG,
    KUAIRAND_USER_FEATURES,
    KUAIRAND_VIDEO_BASIC,
    KUAIRAND_VIDEO_STATISTIC,
    KUAISAR_ITEM_FEATURES,
    KUAISAR_REC,
    KUAISAR_SOCIAL,
    KUAISAR_SRC,
    KUAISAR_USER_FEATURES,
    LASTFM_ARTISTS,
    LASTFM_TAGGED,
    LASTFM_TAGGED_TIMESTAMPS,
    LASTFM_TAGS,
    LASTFM_USER_ARTISTS,
    LASTFM_USER_FRIENDS,
    MOVIELENS_ITEMS,
    MOVIELENS_RATINGS,
    MOVIELENS_USERS,
    Column,
    DataError,
    Dataset,
    FileRead,
    FileSpec,
    LoadReport,
)

PathLike = str | os.PathLike[str]

# Bytes per streamed CSV block (module-level so tests can force many small chunks).
_BLOCK_SIZE = 16 << 20
# Bytes per block when scanning a file for the physical line of a bad row.
_SCAN_BLOCK = 16 << 20

# Bump when the typed tables a loader produces change, so old cache entries are not reused.
_CACHE_VERSION = 1
_CACHE_DIRNAME = ".recgym_cache"
_NULLABLE_KEY = b"recgym.nullable"
# Columns larger than this return their memory to the OS as soon as they are converted.
_RELEASE_ABOVE = 8 << 20

# ---------------------------------------------------------------------------------------------
# Column kinds: the type pyarrow parses a column as, and the type it is stored as.

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


# ---------------------------------------------------------------------------------------------
# Streamed CSV reading


@dataclass
class _Layout:
    """A file's resolved columns: names in file order, their specs, and lines before the data."""

    names: list[str]
    columns: list[Column]
    header_lines: int
    encoding: str
    notes: list[str] = field(default_factory=list)


def _first_line(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.readline(1 << 20)


def _decode(raw: bytes, encoding: str) -> str:
    return raw.decode(encoding, errors="replace").lstrip("\ufeff").rstrip("\r\n")


def _layout(path: Path, spec: FileSpec, encoding: str) -> _Layout:
    """Read and check the header (or take the spec's columns for header-less files)."""
    first = spec.columns[0].name
    expected = ", ".join(c.name for c in spec.columns if c.required)
    if path.stat().st_size == 0:
        what = f"no header line (expected {expected})" if spec.header else "no rows"
        raise DataError(f"empty file: {what}", file=path, column=first, line=1)
    if spec.header and not _first_line(path).strip():
        raise DataError(
            f"line 1 is blank, expected the header ({expected})", file=path, column=first, line=1
        )
    if not spec.header:
        cols = list(spec.columns)
        return _Layout([c.name for c in cols], cols, 0, encoding)

    text = _decode(_first_line(path), encoding)
    if spec.quoting:
        fields = next(csv.reader([text], delimiter=spec.delimiter))
    else:
        fields = text.split(spec.delimiter)
    names = [f.strip() for f in fields]
    notes = []
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DataError(
                "duplicate column name in the header", file=path, column=n, line=1, row=text
            )
        seen.add(n)
    for c in spec.columns:
        if c.name not in seen:
            if c.required:
                raise DataError(
                    f"required column missing from the header (found: {', '.join(names)})",
                    file=path,
                    column=c.name,
                    line=1,
                    row=text,
                )
            notes.append(f"{path.name}: optional column {c.name!r} is absent")
    columns = []
    unknown = []
    for n in names:
        c = spec.column(n)
        if c is None:
            unknown.append(n)
            c = Column(n, spec.other_columns, nullable=True)
        columns.append(c)
    if unknown and spec.other_columns == "str":
        notes.append(f"{path.name}: columns not in the schema kept as text: {unknown}")
    return _Layout(names, columns, 1, encoding, notes)


def _csv_options(
    layout: _Layout,
    spec: FileSpec,
    *,
    skip: int,
    types: dict[str, pa.DataType],
    on_invalid: Callable[[pacsv.InvalidRow], str] | None = None,
) -> dict:
    return {
        "read_options": pacsv.ReadOptions(
            column_names=layout.names,
            skip_rows=skip,
            block_size=_BLOCK_SIZE,
            encoding=layout.encoding,
            use_threads=True,
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=spec.delimiter,
            quote_char='"' if spec.quoting else False,
            ignore_empty_lines=True,
            newlines_in_values=False,
            invalid_row_handler=on_invalid,
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types=types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    }


def _stored_schema(columns: Iterable[Column]) -> pa.Schema:
    fields = []
    for c in columns:
        typ = _STORED_TYPE[c.kind]
        meta = {_NULLABLE_KEY: b"1"} if c.allows_null and pa.types.is_integer(typ) else None
        fields.append(pa.field(c.name, typ, metadata=meta))
    return pa.schema(fields)


BatchHook = Callable[[pa.RecordBatch], pa.RecordBatch]


def _read_csv(
    path: Path,
    spec: FileSpec,
    *,
    role: str,
    report: LoadReport,
    hook: BatchHook | None = None,
    encoding: str | None = None,
) -> pa.Table:
    """Stream one CSV file into a typed arrow table, checking every block.

    `hook` sees each checked block and may add columns or raise `_Bad` for checks that span
    columns. Files declared UTF-8 that are not are re-read as latin-1 (noted in the report).
    """
    layout = _layout(path, spec, encoding or spec.encoding)
    types = {c.name: _READ_TYPE[c.kind] for c in layout.columns}
    invalid: list[tuple[int, int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.expected_columns, row.actual_columns, row.text))
        return "error"

    schema = _stored_schema(layout.columns)
    batches: list[pa.RecordBatch] = []
    rows = 0
    try:
        opts = _csv_options(
            layout, spec, skip=layout.header_lines, types=types, on_invalid=on_invalid
        )
        for batch in pacsv.open_csv(path, **opts):
            try:
                arrays = [_convert(c, batch.column(i)) for i, c in enumerate(layout.columns)]
                checked = pa.RecordBatch.from_arrays(arrays, schema=schema)
                if hook is not None:
                    checked = hook(checked)
            except _Bad as bad:
                raise _error_at(path, layout, rows + bad.index, bad.column, bad.problem) from None
            batches.append(checked)
            rows += batch.num_rows
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) and layout.encoding.replace("-", "").lower() == "utf8":
            report.notes.append(f"{path.name}: not valid UTF-8, decoded as latin-1")
            return _read_csv(path, spec, role=role, report=report, hook=hook, encoding="latin-1")
        raise _diagnose(path, spec, layout, rows, invalid, exc) from None

    if rows == 0 and spec.require_rows:
        line = layout.header_lines + 1
        what = "no data rows after the header" if spec.header else "no rows"
        raise DataError(f"empty file: {what}", file=path, column=layout.names[0], line=line)
    report.files.append(FileRead(file=path.name, role=role, rows=rows))
    report.notes.extend(layout.notes)
    if batches:
        return pa.Table.from_batches(batches)
    empty = pa.RecordBatch.from_arrays([pa.array([], f.type) for f in schema], schema=schema)
    return pa.Table.from_batches([empty if hook is None else hook(empty)])


def read_table(path: PathLike, spec: FileSpec) -> pd.DataFrame:
    """One CSV file read and checked against `spec` (as `load` reads it), as pandas.

    For callers that need a single file of a dataset, such as the world's real marginals
    (`simulators.world.RealMarginals`). Bad rows raise `DataError` naming file, column and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", file=path)
    return _read_csv(path, spec, role="table", report=LoadReport()).to_pandas()


def _locate(
    path: Path, layout: _Layout, row: int, start: tuple[int, int, int] = (0, -1, 0)
) -> tuple[int, str, int]:
    """Where data row `row` (0-based, blank lines skipped as pyarrow does) is in the file:
    its 1-based physical line number, its text and the byte offset the line starts at.

    Vectorised per block: newline positions give every line's extent, blank lines and the
    header are masked out, and a cumulative count finds the row. `start` resumes from a known
    point: (lines before it, index of the last row before it, its byte offset).
    """
    line_no, seen, pos = start  # pos: file offset of the start of `carry`
    carry = b""
    with path.open("rb") as f:
        f.seek(pos)
        while True:
            chunk = f.read(_SCAN_BLOCK)
            buf = carry + chunk
            data = np.frombuffer(buf, dtype=np.uint8)
            ends = np.flatnonzero(data == 10)
            if not chunk and len(buf) and (not len(ends) or ends[-1] != len(buf) - 1):
                ends = np.append(ends, len(buf))  # a last line without a newline
            if not len(ends):
                if not chunk:
                    return line_no + 1, "", pos + len(buf)
                carry = buf
                continue
            starts = np.r_[0, ends[:-1] + 1]
            lengths = ends - starts
            first_byte = data[np.minimum(starts, len(buf) - 1)]
            blank = (lengths == 0) | ((lengths == 1) & (first_byte == 13))
            numbers = line_no + 1 + np.arange(len(ends))
            rows = np.cumsum(~blank & (numbers > layout.header_lines))
            if seen + rows[-1] >= row:
                k = int(np.searchsorted(rows, row - seen))
                text = _decode(buf[starts[k] : ends[k]], layout.encoding)
                return int(numbers[k]), text, pos + int(starts[k])
            seen += int(rows[-1])
            line_no += len(ends)
            consumed = int(ends[-1]) + 1
            carry, pos = buf[consumed:], pos + consumed
            if not chunk:
                return line_no + 1, "", pos


def _error_at(
    path: Path,
    layout: _Layout,
    row: int,
    column: str,
    problem: str,
    start: tuple[int, int, int] = (0, -1, 0),
) -> DataError:
    line, text, _ = _locate(path, layout, row, start)
    return DataError(problem, file=path, column=column, line=line, row=text)


def _first_cast_failure(arr: pa.Array, typ: pa.DataType) -> int | None:
    """Index of the first value that does not parse as `typ` (bisection over vectorised casts)."""
    try:
        pc.cast(arr, typ)
        return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    lo, hi = 0, len(arr)  # arr[:lo] parses; arr[lo:hi] holds a failure
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(arr.slice(lo, mid - lo), typ)
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo


def _diagnose(
    path: Path,
    spec: FileSpec,
    layout: _Layout,
    rows_ok: int,
    invalid: list[tuple[int, int, str]],
    exc: Exception,
) -> DataError:
    """Turn a pyarrow failure inside a block into a DataError at the exact offending line.

    The rest of the file is re-read as text from the first row not yet accepted (seeking to it);
    the bad value is found with vectorised casts and checks and its row mapped back to a line.
    """
    start_line, _, offset = _locate(path, layout, rows_ok)
    if invalid:  # a row with the wrong number of fields: find it by its text
        expected, actual, text = invalid[0]
        line = _find_text(path, (start_line, offset), text, layout.encoding)
        if actual < expected:
            column, problem = layout.names[actual], f"expected {expected} fields, got {actual}"
        else:
            column = layout.names[-1]
            problem = f"expected {expected} fields, got {actual} (extra values after this column)"
        if expected > 1 and actual == 1 and spec.delimiter not in text:
            problem += f"; is the file {spec.delimiter!r}-separated?"
        return DataError(problem, file=path, column=column, line=line, row=text)

    types = {n: pa.string() for n in layout.names}
    opts = _csv_options(layout, spec, skip=0, types=types)
    done = rows_ok
    try:
        with pa.OSFile(str(path)) as stream:
            stream.seek(offset)
            for batch in pacsv.open_csv(stream, **opts):
                found = _first_problem(batch, layout)
                if found is not None:
                    index, column, problem = found
                    values = [batch.column(i)[index].as_py() for i in range(batch.num_columns)]
                    if spec.header and values == layout.names:
                        problem = "the header line is repeated inside the data"
                    resume = (start_line - 1, rows_ok - 1, offset)
                    return _error_at(path, layout, done + index, column, problem, resume)
                done += batch.num_rows
    except pa.ArrowInvalid:
        pass
    return DataError(
        f"cannot parse the file after row {rows_ok}: {exc}", file=path, line=start_line
    )


def _first_problem(batch: pa.RecordBatch, layout: _Layout) -> tuple[int, str, str] | None:
    """Earliest (row, column, problem) in a block read as text."""
    best: tuple[int, str, str] | None = None
    for i, col in enumerate(layout.columns):
        arr = batch.column(i)
        typ = _READ_TYPE[col.kind]
        stop = len(arr)
        if not (pa.types.is_string(typ) or pa.types.is_dictionary(typ)):
            failed = _first_cast_failure(arr, typ)
            if failed is not None:
                stop = failed
                got = _show(arr[failed].as_py())
                candidate = (failed, col.name, f"expected {_EXPECTED[col.kind]}, got {got}")
                if best is None or candidate[0] < best[0]:
                    best = candidate
        prefix = arr.slice(0, stop)
        if not (pa.types.is_string(typ) or pa.types.is_dictionary(typ)):
            prefix = pc.cast(prefix, typ)
        try:
            _convert(col, prefix)
        except _Bad as bad:
            if best is None or bad.index < best[0]:
                best = (bad.index, bad.column, bad.problem)
    return best


def _find_text(path: Path, start: tuple[int, int], text: str, encoding: str) -> int | None:
    """Line number of the first line at or after `start` (line number, byte offset) reading
    `text`."""
    target = text.rstrip("\r")
    first, offset = start
    with path.open("rb") as f:
        f.seek(offset)
        for line_no, raw in enumerate(f, start=first):
            if _decode(raw, encoding) == target:
                return line_no
    return None


# ---------------------------------------------------------------------------------------------
# Arrow helpers


def _rename(table: pa.Table, mapping: dict[str, str]) -> pa.Table:
    return table.rename_columns([mapping.get(n, n) for n in table.column_names])


def _keys_first(
    table: pa.Table, first: Iterable[str] = KEY_COLUMNS, last: Iterable[str] = ()
) -> pa.Table:
    """The same table with `first` columns first and `last` columns last."""
    first, last = list(first), list(last)
    middle = [n for n in table.column_names if n not in first and n not in last]
    return table.select(first + middle + last)


def _constant_category(n: int, categories: tuple[str, ...], value: str) -> pa.DictionaryArray:
    codes = np.full(n, categories.index(value), dtype=np.int8)
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(list(categories)))


def _mark_nullable(table: pa.Table, names: Iterable[str]) -> pa.Table:
    """Flag integer columns whose pandas dtype must be the nullable one (Int8/Int64)."""
    names = set(names)
    fields = [
        f.with_metadata({_NULLABLE_KEY: b"1"})
        if f.name in names and pa.types.is_integer(f.type)
        else f
        for f in table.schema
    ]
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields))


def _id_table(name: str, *columns: pa.ChunkedArray) -> pa.Table:
    """Sorted distinct ids from one or more id columns, as a one-column table."""
    chunks = [chunk for c in columns for chunk in c.chunks]
    ids = pc.unique(pa.chunked_array(chunks, type=pa.int64()))
    return pa.table({name: pc.take(ids, pc.sort_indices(ids))})


def _missing_ids(inter: pa.Table, catalogue: pa.Table, key: str) -> int:
    """How many distinct ids of `inter[key]` have no row in `catalogue`."""
    if inter.num_rows == 0:
        return 0
    seen = pc.unique(inter.column(key).combine_chunks())
    known = pc.is_in(seen, value_set=catalogue.column(key).combine_chunks())
    return len(seen) - int(pc.sum(known).as_py() or 0)


_PANDAS_NULLABLE = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
}


def _to_pandas(tables: dict[str, pa.Table], key: str) -> pd.DataFrame:
    """Arrow -> pandas column by column, freeing each arrow column once converted.

    Takes the table out of `tables`, so that no other reference keeps the converted columns
    alive: peak memory is the table plus one column, not twice the table. Dictionary ->
    category, string -> string[pyarrow], integers flagged nullable -> Int8/Int64, the rest numpy.
    The same function serves fresh loads and cache reads, so their dtypes match.
    """
    table = tables.pop(key)
    out: dict[str, pd.Series] = {}
    for name in list(table.column_names):
        f = table.schema.field(name)
        col = table.column(name)
        table = table.drop_columns([name])
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            out[name] = pd.Series(pd.arrays.ArrowStringArray(col), name=name, copy=False)
        elif pa.types.is_integer(f.type) and (f.metadata or {}).get(_NULLABLE_KEY) == b"1":
            out[name] = col.to_pandas(types_mapper=_PANDAS_NULLABLE.get)
        else:
            out[name] = col.to_pandas()
        big = col.nbytes > _RELEASE_ABOVE
        del col
        if big:  # return the freed buffers to the OS now, not after numpy grew the next column
            pa.default_memory_pool().release_unused()
    return pd.DataFrame(out, copy=False)


# ---------------------------------------------------------------------------------------------
# Build plans and the parquet cache


@dataclass
class _Tables:
    """A load's result while still in arrow form (what the cache stores)."""

    interactions: pa.Table
    users: pa.Table
    items: pa.Table
    extra: dict[str, pa.Table] = field(default_factory=dict)
    timestamp_kind: str = "epoch_ms"

    def release(self) -> dict[str, pa.Table]:
        """Hand every table over (for `_to_pandas`), keeping no reference here."""
        out = {"interactions": self.interactions, "users": self.users, "items": self.items}
        out.update({f"extra.{name}": t for name, t in self.extra.items()})
        self.interactions = self.users = self.items = None  # type: ignore[assignment]
        self.extra = {}
        return out


@dataclass
class _Plan:
    format: str
    source: Path
    inputs: list[Path]
    build: Callable[[LoadReport], _Tables]
    variant: str | None = None


def _cache_label(plan: _Plan) -> str:
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", plan.source.name)
    return "-".join(p for p in (plan.format, plan.variant, name) if p)


def _cache_key(plan: _Plan) -> str:
    inputs = []
    for p in plan.inputs:
        st = p.stat()
        inputs.append([p.name, st.st_size, st.st_mtime_ns])
    blob = json.dumps(
        [_CACHE_VERSION, plan.format, plan.variant, str(plan.source), sorted(inputs)]
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _cache_roots(source: Path, cache_dir: PathLike | None) -> list[tuple[Path, bool]]:
    """Where cache entries may live, best first, each with whether it sits in the data dir."""
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    explicit = cache_dir or os.environ.get("RECGYM_CACHE_DIR")
    if explicit:
        return [(Path(explicit).expanduser() / f"{source.name}-{tag}", False)]
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    data_dir = source if source.is_dir() else source.parent
    return [
        (data_dir / _CACHE_DIRNAME, True),
        (Path(base) / "recgym" / f"{source.name}-{tag}", False),
    ]


def _writable_dir(path: Path) -> bool:
    """Writable, and not marked read-only: a directory without write bits counts as read-only
    even for root, who could write there anyway."""
    try:
        return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def _read_cache(entry: Path) -> tuple[_Tables, LoadReport]:
    meta = json.loads((entry / "meta.json").read_text())
    if meta.get("version") != _CACHE_VERSION:
        raise ValueError("cache version mismatch")
    tables = _Tables(
        interactions=pq.read_table(entry / "interactions.parquet"),
        users=pq.read_table(entry / "users.parquet"),
        items=pq.read_table(entry / "items.parquet"),
        extra={n: pq.read_table(entry / f"extra.{n}.parquet") for n in meta["extra"]},
        timestamp_kind=meta["timestamp_kind"],
    )
    report = LoadReport.from_dict(meta["report"])
    report.cache, report.from_cache = str(entry), True
    return tables, report


def _write_cache(
    root: Path, label: str, entry_name: str, tables: _Tables, report: LoadReport
) -> None:
    """Write one cache entry atomically (temp dir + rename) and drop stale entries beside it."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{entry_name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        pq.write_table(tables.interactions, tmp / "interactions.parquet")
        pq.write_table(tables.users, tmp / "users.parquet")
        pq.write_table(tables.items, tmp / "items.parquet")
        for name, t in tables.extra.items():
            pq.write_table(t, tmp / f"extra.{name}.parquet")
        meta = {
            "version": _CACHE_VERSION,
            "timestamp_kind": tables.timestamp_kind,
            "extra": list(tables.extra),
            "report": report.to_dict(),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(root / entry_name)
        except OSError:  # another process wrote the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    stale = re.compile(rf"^{re.escape(label)}-[0-9a-f]{{16}}$")
    for old in root.iterdir():  # entries for older versions of the same files
        if old.name != entry_name and stale.match(old.name):
            shutil.rmtree(old, ignore_errors=True)


def _run(plan: _Plan, *, cache: bool, cache_dir: PathLike | None) -> Dataset:
    """Build a plan's tables (or read them from the cache) and return the Dataset."""
    tables = None
    if cache:
        label = _cache_label(plan)
        entry_name = f"{label}-{_cache_key(plan)}"
        roots = _cache_roots(plan.source, cache_dir)
        for root, _ in roots:
            entry = root / entry_name
            if (entry / "meta.json").is_file():
                try:
                    tables, report = _read_cache(entry)
                    break
                except (OSError, ValueError, KeyError, pa.ArrowException):
                    shutil.rmtree(entry, ignore_errors=True)  # unreadable: rebuild it
    if tables is None:
        report = LoadReport()
        tables = plan.build(report)
        _check_catalogues(tables, report)
        if cache:
            problems = []
            for root, in_data_dir in roots:
                if in_data_dir and not _writable_dir(root.parent):
                    continue
                try:
                    report.cache = str(root / entry_name)
                    _write_cache(root, label, entry_name, tables, report)
                    break
                except OSError as exc:
                    report.cache = None
                    problems.append(f"{root}: {exc.strerror or exc}")
            if report.cache is None:
                report.notes.append(f"parquet cache not written ({'; '.join(problems)})")
    kind = tables.timestamp_kind
    arrow = tables.release()
    del tables
    extra_names = [k.removeprefix("extra.") for k in arrow if k.startswith("extra.")]
    return Dataset(
        format=plan.format,
        source=plan.source,
        interactions=_to_pandas(arrow, "interactions"),
        users=_to_pandas(arrow, "users"),
        items=_to_pandas(arrow, "items"),
        extra={name: _to_pandas(arrow, f"extra.{name}") for name in extra_names},
        report=report,
        timestamp_kind=kind,
        variant=plan.variant,
    )


def _check_catalogues(tables: _Tables, report: LoadReport) -> None:
    for what, table, key in (
        ("users", tables.users, "user_id"),
        ("items", tables.items, "item_id"),
    ):
        missing = _missing_ids(tables.interactions, table, key)
        if missing:
            report.notes.append(f"{missing:,} {key}s in interactions have no row in {what}")


# ---------------------------------------------------------------------------------------------
# Format detection

_KUAIRAND_LOG = re.compile(
    r"^log_(standard|random)_(\d+)_(\d+)_to_(\d+)_(\d+)_(pure|1k|27k)(?:_part(\d+))?\.csv$"
)
_KUAIRAND_FEATURE = re.compile(
    r"^(user_features|video_features_basic|video_features_statistic)_(pure|1k|27k)"
    r"(?:_part(\d+))?\.csv$"
)
_FOURSQUARE_FILE = re.compile(r"^(dataset_TSMC2014_[A-Za-z]+\.txt|foursquare_[A-Za-z0-9]+\.csv)$")


def _file_format(name: str) -> str | None:
    """The format a file name belongs to, if it is one of a format's key files."""
    if _KUAIRAND_LOG.match(name) or _KUAIRAND_FEATURE.match(name):
        return "kuairand"
    if name in ("rec_inter.csv", "src_inter.csv"):
        return "kuaisar"
    if name == "u.data":
        return "ml-100k"
    if name in ("user_taggedartists.dat", "user_taggedartists-timestamps.dat"):
        return "lastfm"
    if _FOURSQUARE_FILE.match(name):
        return "foursquare"
    return None


def _formats_in(directory: Path) -> set[str]:
    found = set()
    for p in directory.iterdir():
        fmt = _file_format(p.name) if p.is_file() else None
        if fmt:
            found.add(fmt)
    return found


def _resolve(path: PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return p.resolve()


def detect_format(path: PathLike) -> tuple[str, Path]:
    """The format of a dataset directory (or file) and the path to load it from.

    Looks at the file names present; when the directory itself has none, one level of
    sub-directories (as the datasets' archives unpack, e.g. KuaiRand-Pure/data/).
    """
    p = _resolve(path)
    if p.is_file():
        fmt = _file_format(p.name)
        if fmt is None:
            raise DataError(f"not a file of a known dataset format ({', '.join(FORMATS)})", file=p)
        return fmt, (p if fmt == "foursquare" else p.parent)
    found = _formats_in(p)
    if not found:
        subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        hits = [(d, _formats_in(d)) for d in subdirs]
        hits = [(d, f) for d, f in hits if f]
        if len(hits) == 1:
            p, found = hits[0]
    if not found:
        raise DataError(
            "no recognisable dataset files (expected e.g. log_random_*_pure.csv, rec_inter.csv, "
            "u.data, user_taggedartists.dat, dataset_TSMC2014_NYC.txt or foursquare_nyc.csv)",
            file=p,
        )
    if len(found) > 1:
        raise DataError(
            f"files of several formats ({', '.join(sorted(found))}); pass format=", file=p
        )
    return found.pop(), p


def load(
    path: PathLike,
    format: str | None = None,
    *,
    cache: bool = True,
    cache_dir: PathLike | None = None,
    variant: str | None = None,
) -> Dataset:
    """Load a dataset directory (or Foursquare file) into the normalised `Dataset`.

    `format` is detected from the file names when None. `variant` picks the KuaiRand variant
    (pure / 1k / 27k) when a directory holds several. Only loading happens here: filtering is
    a separate step (`recgym.data.preprocess`).

    With `cache`, the typed tables are stored as parquet and reused while every input file keeps
    its size and mtime. The cache lives in `<data dir>/.recgym_cache/`; when that is not
    writable (or the directory has no write permission bits), in
    `$XDG_CACHE_HOME/recgym/` (default ~/.cache/recgym), keyed by the data's absolute path.
    `cache_dir` or the RECGYM_CACHE_DIR environment variable replace both.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    if format is None:
        format, path = detect_format(path)
    if variant is not None and format != "kuairand":
        raise ValueError("variant= only applies to KuaiRand")
    opts = {"cache": cache, "cache_dir": cache_dir}
    if format == "kuairand":
        return load_kuairand(path, variant=variant, **opts)
    loader = {
        "kuaisar": load_kuaisar,
        "ml-100k": load_movielens,
        "lastfm": load_lastfm,
        "foursquare": load_foursquare,
    }[format]
    return loader(path, **opts)


def _directory(path: PathLike) -> Path:
    p = _resolve(path)
    return p.parent if p.is_file() else p


# ---------------------------------------------------------------------------------------------
# KuaiRand

_KUAIRAND_VARIANTS = ("pure", "1k", "27k")
_LOGS = ("standard", "random")


def _kuairand_files(directory: Path) -> dict[str, dict[str, list[Path]]]:
    """Files per variant: {"pure": {"logs": [...], "user_features": [...], ...}}."""
    found: dict[str, dict[str, list[tuple[tuple, Path]]]] = {}
    for p in directory.iterdir():
        if m := _KUAIRAND_LOG.match(p.name):
            kind, m1, d1, _, _, v, part = m.groups()
            key = (int(m1), int(d1), _LOGS.index(kind), int(part or 0))
            found.setdefault(v, {}).setdefault("logs", []).append((key, p))
        elif m := _KUAIRAND_FEATURE.match(p.name):
            role, v, part = m.groups()
            found.setdefault(v, {}).setdefault(role, []).append(((int(part or 0),), p))
    return {
        v: {r: [p for _, p in sorted(ps)] for r, ps in roles.items()} for v, roles in found.items()
    }


def load_kuairand(
    path: PathLike,
    *,
    variant: str | None = None,
    cache: bool = True,
    cache_dir: PathLike | None = None,
) -> Dataset:
    """KuaiRand (Pure / 1K / 27K) from a directory of the original CSV files.

    Interactions are every row of the variant's `log_standard_*` and `log_random_*` files, in
    file order, files ordered by first day, standard before random (for the real data: standard
    4_08..4_21, standard 4_22..5_08, random 4_22..5_08), with `video_id`
    renamed `item_id`, `time_ms` renamed `timestamp` and a categorical `log` column
    ("standard"/"random"). `users` is user_features_<v>.csv, `items` video_features_basic_<v>.csv
    (video_id -> item_id); video_features_statistic_<v>.csv goes to `extra`. A missing feature
    file is replaced by the ids seen in the logs, and the report says so. Feature files of
    another variant are never joined: user ids are re-indexed per variant.

    `variant` defaults to the one whose logs are present (or, with no logs, whose feature
    files are); a directory with several must name it.
    """
    directory = _directory(path)
    found = _kuairand_files(directory)
    if not found:
        raise DataError(
            "no KuaiRand files (log_standard_*_<v>.csv, log_random_*_<v>.csv, "
            "user_features_<v>.csv, video_features_basic_<v>.csv)",
            file=directory,
        )
    if variant is None:
        with_logs = sorted(v for v, roles in found.items() if "logs" in roles)
        candidates = with_logs or sorted(found)
        if len(candidates) > 1:
            raise DataError(
                f"KuaiRand files of several variants ({', '.join(candidates)}); pass variant=",
                file=directory,
            )
        variant = candidates[0]
    if variant not in _KUAIRAND_VARIANTS:
        raise ValueError(f"unknown KuaiRand variant {variant!r}; expected pure, 1k or 27k")
    files = found.get(variant)
    if files is None:
        raise DataError(f"no KuaiRand files of variant {variant!r}", file=directory)
    others = sorted(
        p.name for v, roles in found.items() if v != variant for ps in roles.values() for p in ps
    )
    inputs = [p for ps in files.values() for p in ps]

    def build(report: LoadReport) -> _Tables:
        tables = []
        for p in files.get("logs", []):
            t = _read_csv(p, KUAIRAND_LOG, role="interactions", report=report)
            kind = "standard" if p.name.startswith("log_standard") else "random"
            tables.append(t.append_column("log", _constant_category(len(t), _LOGS, kind)))
        if tables:
            inter = pa.concat_tables(tables, promote_options="default")
        else:
            report.notes.append(f"no log files for variant {variant}: interactions are empty")
            inter = _stored_schema(KUAIRAND_LOG.columns).empty_table()
            inter = inter.append_column("log", _constant_category(0, _LOGS, "standard"))
        del tables
        inter = _keys_first(_rename(inter, {"video_id": "item_id", "time_ms": "timestamp"}))

        if "user_features" in files:
            users = _concat_features(
                files["user_features"], KUAIRAND_USER_FEATURES, "users", report
            )
            sentinel = pc.sum(pc.equal(users.column("is_live_streamer"), -124)).as_py() or 0
            if sentinel:
                report.notes.append(
                    f"user_features_{variant}.csv: is_live_streamer = -124 (a sentinel of the "
                    f"original data, kept as is) for {sentinel:,} users"
                )
        else:
            users = _id_table("user_id", inter.column("user_id"))
            report.notes.append(
                f"user_features_{variant}.csv not found: users are the {users.num_rows:,} ids "
                "seen in the logs"
            )
        if "video_features_basic" in files:
            items = _concat_features(
                files["video_features_basic"], KUAIRAND_VIDEO_BASIC, "items", report
            )
            items = _rename(items, {"video_id": "item_id"})
        else:
            items = _id_table("item_id", inter.column("item_id"))
            report.notes.append(
                f"video_features_basic_{variant}.csv not found: items are the {items.num_rows:,} "
                "ids seen in the logs"
            )
        extra = {}
        if "video_features_statistic" in files:
            stats = _concat_features(
                files["video_features_statistic"],
                KUAIRAND_VIDEO_STATISTIC,
                "video_features_statistic",
                report,
            )
            extra["video_features_statistic"] = _rename(stats, {"video_id": "item_id"})
        if others:
            report.notes.append(
                f"files of other KuaiRand variants not used (ids differ between variants): "
                f"{', '.join(others)}"
            )
        return _Tables(inter, users, items, extra)

    return _run(
        _Plan("kuairand", directory, inputs, build, variant=variant),
        cache=cache,
        cache_dir=cache_dir,
    )


def _concat_features(paths: list[Path], spec: FileSpec, role: str, report: LoadReport) -> pa.Table:
    tables = [_read_csv(p, spec, role=role, report=report) for p in paths]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


# ---------------------------------------------------------------------------------------------
# KuaiSAR

_SCENARIOS = ("rec", "search")


def load_kuaisar(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """KuaiSAR from a directory holding rec_inter.csv and src_inter.csv (+ feature files).

    Interactions are every row of rec_inter.csv followed by every row of src_inter.csv, with a
    categorical `scenario` ("rec"/"search"). `timestamp` is rec's `timestamp` and search's
    `search_session_timestamp` (both float ms in the files). Columns that exist in only one of
    the two files are NA on the other's rows; their integer columns are therefore pandas
    nullable (Int8/Int64). social_network.csv is `extra["social_network"]`.
    """
    directory = _directory(path)
    names = (
        "rec_inter.csv",
        "src_inter.csv",
        "social_network.csv",
        "user_features.csv",
        "item_features.csv",
    )
    present = {n: directory / n for n in names if (directory / n).is_file()}
    if "rec_inter.csv" not in present and "src_inter.csv" not in present:
        raise DataError(
            "no KuaiSAR interaction files (rec_inter.csv, src_inter.csv)", file=directory
        )

    def build(report: LoadReport) -> _Tables:
        parts = []
        for name, spec, scenario, renames in (
            ("rec_inter.csv", KUAISAR_REC, "rec", {}),
            ("src_inter.csv", KUAISAR_SRC, "search", {"search_session_timestamp": "timestamp"}),
        ):
            if name in present:
                t = _read_csv(present[name], spec, role="interactions", report=report)
            else:
                report.notes.append(f"{name} not found: no {scenario} interactions")
                t = _stored_schema(spec.columns).empty_table()
            t = _keys_first(_rename(t, renames))
            parts.append(
                t.append_column("scenario", _constant_category(len(t), _SCENARIOS, scenario))
            )
        inter = pa.concat_tables(parts, promote_options="default")
        del parts
        inter = _keys_first(inter, last=["scenario"])
        inter = _mark_nullable(inter, [n for n in inter.column_names if n not in KEY_COLUMNS])

        if "user_features.csv" in present:
            users = _read_csv(
                present["user_features.csv"], KUAISAR_USER_FEATURES, role="users", report=report
            )
        else:
            users = _id_table("user_id", inter.column("user_id"))
            report.notes.append(
                f"user_features.csv not found: users are the {users.num_rows:,} ids seen"
            )
        if "item_features.csv" in present:
            items = _read_csv(
                present["item_features.csv"], KUAISAR_ITEM_FEATURES, role="items", report=report
            )
        else:
            items = _id_table("item_id", inter.column("item_id"))
            report.notes.append(
                f"item_features.csv not found: items are the {items.num_rows:,} ids seen"
            )
        extra = {}
        if "social_network.csv" in present:
            extra["social_network"] = _read_csv(
                present["social_network.csv"], KUAISAR_SOCIAL, role="social_network", report=report
            )
        return _Tables(inter, users, items, extra)

    return _run(
        _Plan("kuaisar", directory, list(present.values()), build), cache=cache, cache_dir=cache_dir
    )


# ---------------------------------------------------------------------------------------------
# MovieLens-100k


def load_movielens(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """MovieLens-100k from a directory holding u.data (+ u.user, u.item).

    Interactions: user_id, item_id, timestamp (u.data's unix seconds x 1000), rating (int8, 1..5),
    every rating kept (see preprocess.implicit_feedback). `users` is u.user, `items` u.item
    (latin-1; genre flags as genre_<name> int8; release dates as datetime).
    """
    directory = _directory(path)
    ratings = directory / "u.data"
    if not ratings.is_file():
        raise DataError("no MovieLens ratings file (u.data)", file=directory)
    user_file, item_file = directory / "u.user", directory / "u.item"
    inputs = [p for p in (ratings, user_file, item_file) if p.is_file()]

    def build(report: LoadReport) -> _Tables:
        inter = _read_csv(ratings, MOVIELENS_RATINGS, role="interactions", report=report)
        ms = pc.multiply(inter.column("timestamp"), 1000)
        inter = inter.set_column(inter.schema.get_field_index("timestamp"), "timestamp", ms)
        inter = _keys_first(inter)
        if user_file.is_file():
            users = _read_csv(user_file, MOVIELENS_USERS, role="users", report=report)
        else:
            users = _id_table("user_id", inter.column("user_id"))
            report.notes.append(f"u.user not found: users are the {users.num_rows:,} ids seen")
        if item_file.is_file():
            items = _read_csv(item_file, MOVIELENS_ITEMS, role="items", report=report)
        else:
            items = _id_table("item_id", inter.column("item_id"))
            report.notes.append(f"u.item not found: items are the {items.num_rows:,} ids seen")
        return _Tables(inter, users, items)

    return _run(_Plan("ml-100k", directory, inputs, build), cache=cache, cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------------
# Last.fm hetrec2011-2k

_LASTFM_TZ = "Europe/Madrid"


def _lastfm_timestamp(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Add `timestamp`: local midnight in Madrid of day/month/year, in epoch ms.

    This reproduces user_taggedartists-timestamps.dat, whose readme example maps
    1/4/2009 to 1238536800000 (= 2009-04-01 00:00 CEST).
    """
    day, month, year = (
        batch.column(n).to_numpy().astype(np.int64) for n in ("day", "month", "year")
    )
    dates = pd.to_datetime(
        pd.DataFrame({"year": year, "month": month, "day": day}), errors="coerce"
    )
    bad = _first_true(dates.isna().to_numpy())
    if bad is not None:
        column = "month" if not 1 <= month[bad] <= 12 else "year" if year[bad] < 1 else "day"
        raise _Bad(bad, column, f"not a date: day={day[bad]} month={month[bad]} year={year[bad]}")
    local = dates.dt.tz_localize(
        _LASTFM_TZ, ambiguous=np.zeros(len(dates), bool), nonexistent="shift_forward"
    )
    ms = (
        local.dt.tz_convert("UTC")
        .dt.tz_localize(None)
        .to_numpy(dtype="datetime64[ms]")
        .astype(np.int64)
    )
    return batch.append_column("timestamp", pa.array(ms))


def load_lastfm(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """Last.fm hetrec2011-2k from a directory of its .dat files (tab-separated, with header).

    Interactions are the tag assignments: every row of user_taggedartists-timestamps.dat when
    present (its ms timestamps), else of user_taggedartists.dat with `timestamp` = local midnight
    (Europe/Madrid) of day/month/year, which is how the -timestamps file encodes them.
    userID -> user_id, artistID -> item_id; tagID (and day/month/year) kept. `items` is
    artists.dat (id -> item_id); `users` are the ids seen (the format has no user file).
    `extra`: "user_artists" (listening counts, `weight`), "user_friends", "tags".
    """
    directory = _directory(path)
    tagged_ts = directory / "user_taggedartists-timestamps.dat"
    tagged = directory / "user_taggedartists.dat"
    source = tagged_ts if tagged_ts.is_file() else tagged
    if not source.is_file():
        raise DataError(
            "no Last.fm tagging file (user_taggedartists.dat or user_taggedartists-timestamps.dat)",
            file=directory,
        )
    optional = {
        name: directory / name
        for name in ("user_artists.dat", "user_friends.dat", "artists.dat", "tags.dat")
        if (directory / name).is_file()
    }
    ids = {"userID": "user_id", "artistID": "item_id"}

    def build(report: LoadReport) -> _Tables:
        if source is tagged_ts:
            inter = _read_csv(source, LASTFM_TAGGED_TIMESTAMPS, role="interactions", report=report)
            if tagged.is_file():
                report.notes.append(f"{tagged.name} not used: {tagged_ts.name} has the same rows")
        else:
            inter = _read_csv(
                source, LASTFM_TAGGED, role="interactions", report=report, hook=_lastfm_timestamp
            )
        inter = _keys_first(_rename(inter, ids))
        extra = {}
        for name, spec, key in (
            ("user_artists.dat", LASTFM_USER_ARTISTS, "user_artists"),
            ("user_friends.dat", LASTFM_USER_FRIENDS, "user_friends"),
            ("tags.dat", LASTFM_TAGS, "tags"),
        ):
            if name in optional:
                extra[key] = _rename(_read_csv(optional[name], spec, role=key, report=report), ids)
        if "artists.dat" in optional:
            items = _read_csv(optional["artists.dat"], LASTFM_ARTISTS, role="items", report=report)
            items = _rename(items, {"id": "item_id"})
        else:
            items = _id_table("item_id", inter.column("item_id"))
            report.notes.append(f"artists.dat not found: items are the {items.num_rows:,} ids seen")
        user_cols = [inter.column("user_id")]
        if "user_artists" in extra:
            user_cols.append(extra["user_artists"].column("user_id"))
        users = _id_table("user_id", *user_cols)
        report.notes.append(
            f"users are the {users.num_rows:,} ids seen in the tagging and listening files "
            "(Last.fm has no user file)"
        )
        return _Tables(inter, users, items, extra)

    inputs = [source, *optional.values()]
    return _run(_Plan("lastfm", directory, inputs, build), cache=cache, cache_dir=cache_dir)


# ---------------------------------------------------------------------------------------------
# Foursquare


def _per_user_ordinal(users: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each user, in row order (vectorised)."""
    n = len(users)
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    starts = np.r_[True, sorted_users[1:] != sorted_users[:-1]] if n else np.array([], bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else starts
    ordinal = np.empty(n, dtype=np.int64)
    ordinal[order] = np.arange(n) - group_start
    return ordinal


def _first_rows(table: pa.Table, key: str, columns: list[str]) -> pa.Table:
    """One row per distinct `key` (its first occurrence), sorted by key."""
    _, first = np.unique(table.column(key).to_numpy(), return_index=True)
    return table.take(pa.array(first)).select(columns)


def load_foursquare(
    path: PathLike, *, cache: bool = True, cache_dir: PathLike | None = None
) -> Dataset:
    """Foursquare check-ins: the raw TSMC2014 file or the derived foursquare_<city>.csv table.

    Raw `dataset_TSMC2014_<CITY>.txt` (tab-separated, no header): userId -> user_id; venueId
    (a hex string) -> item_id, numbered in order of first appearance; utcTimestamp -> timestamp
    (epoch ms); venueId, venueCategoryId, venueCategory, latitude, longitude and timezoneOffset
    kept. `items`: one row per venue (first occurrence).

    Derived `foursquare_<city>.csv` (tid,label,lat,lon,day,hour,poi,category,price,rating,weather):
    label -> user_id, poi -> item_id. It has no absolute time, so `timestamp` is a per-user
    ordinal (0, 1, ... in file order, which is chronological) and `timestamp_kind` is "ordinal".
    `items`: item_id, category, price, rating (constant per poi; first occurrence kept).
    Both: `users` are the ids seen (no user file). price/rating -999 mean unknown.
    """
    p = _resolve(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and _FOURSQUARE_FILE.match(f.name))
        if len(files) != 1:
            what = (
                "no Foursquare file"
                if not files
                else f"several Foursquare files ({', '.join(f.name for f in files)}); pass one"
            )
            raise DataError(
                f"{what} (dataset_TSMC2014_<CITY>.txt or foursquare_<city>.csv)", file=p
            )
        file = files[0]
    else:
        file = p
    raw = file.suffix == ".txt"

    def build(report: LoadReport) -> _Tables:
        if raw:
            t = _read_csv(file, FOURSQUARE_TSMC, role="interactions", report=report)
            venue = pc.dictionary_encode(t.column("venueId")).combine_chunks()
            item_id = pc.cast(venue.indices, pa.int64())
            t = t.append_column("item_id", item_id)
            inter = _keys_first(_rename(t, {"userId": "user_id", "utcTimestamp": "timestamp"}))
            items = _first_rows(
                inter,
                "item_id",
                ["item_id", "venueId", "venueCategoryId", "venueCategory", "latitude", "longitude"],
            )
            kind = "epoch_ms"
        else:
            t = _read_csv(file, FOURSQUARE_DERIVED, role="interactions", report=report)
            t = _rename(t, {"label": "user_id", "poi": "item_id"})
            ordinal = _per_user_ordinal(t.column("user_id").to_numpy())
            t = t.append_column("timestamp", pa.array(ordinal))
            inter = _keys_first(t)
            items = _first_rows(inter, "item_id", ["item_id", "category", "price", "rating"])
            kind = "ordinal"
            report.notes.append(
                "no absolute time in this file: timestamp is each user's 0-based row position "
                "in file order (chronological)"
            )
        users = _id_table("user_id", inter.column("user_id"))
        report.notes.append(f"users are the {users.num_rows:,} ids seen (no user file)")
        return _Tables(inter, users, items, timestamp_kind=kind)

    plan = _Plan("foursquare", p, [file], build, variant="tsmc2014" if raw else "derived")
    return _run(plan, cache=cache, cache_dir=cache_dir)
