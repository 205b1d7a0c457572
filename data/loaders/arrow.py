"""Arrow table helpers the loaders share, and the arrow -> pandas conversion (fresh loads and cache
reads alike, so their dtypes match)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..schema import KEY_COLUMNS

_NULLABLE_KEY = b"recgym.nullable"
# Columns larger than this return their memory to the OS as soon as they are converted.
_RELEASE_ABOVE = 8 << 20


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
