"""Streamed, schema-checked CSV reading: one typed block at a time, errors naming file, column
and line."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..schema import Column, DataError, FileRead, FileSpec, LoadReport
from .arrow import _NULLABLE_KEY
from .columns import _EXPECTED, _READ_TYPE, _STORED_TYPE, _Bad, _convert, _show

PathLike = str | os.PathLike[str]

# Bytes per streamed CSV block (module-level so tests can force many small chunks).
_BLOCK_SIZE = 16 << 20
# Bytes per block when scanning a file for the physical line of a bad row.
_SCAN_BLOCK = 16 << 20


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
