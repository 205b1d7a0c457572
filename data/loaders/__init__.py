"""Real-dataset loaders: format detection, streamed schema-checked CSV reading, a parquet cache.

Every raw file is read with pyarrow's streaming CSV reader using explicit column types, one block
at a time; each block is checked (ids present and non-negative, dates real, ...) before it is kept,
so the only full-size copies are the typed arrow table and the final pandas frame. Anything that
does not match the schema raises `DataError` naming the file, column and line. The typed tables
are cached as parquet (see `load`).

One module per dataset (`kuairand`, `kuaisar`, `movielens`, `lastfm`, `foursquare`) on shared
machinery: `detect` (format detection), `columns` (column kinds and per-block checks),
`reading` (streamed CSV reading, `read_table`), `arrow` (table helpers, arrow -> pandas) and
`cache` (build plans and the parquet cache). `load` dispatches on the detected format.
"""

from __future__ import annotations

from ..schema import FORMATS, Dataset
from .detect import detect_format
from .foursquare import load_foursquare
from .kuairand import load_kuairand
from .kuaisar import load_kuaisar
from .lastfm import load_lastfm
from .movielens import load_movielens
from .reading import PathLike, read_table

__all__ = [
    "PathLike",
    "detect_format",
    "load",
    "load_foursquare",
    "load_kuairand",
    "load_kuaisar",
    "load_lastfm",
    "load_movielens",
    "read_table",
]


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
    its size and mtime (a changed file rebuilds the entry and drops the stale one). Entries live
    under `cache_dir`, else $RECGYM_CACHE_DIR, else $XDG_CACHE_HOME/recgym (default
    ~/.cache/recgym), in a folder per dataset named after it and a hash of its absolute path,
    so two datasets never collide. Nothing is ever written into the data directory: loading
    (and `recgym data inspect`) must work on read-only mounts and shared copies and must not
    leave files in a folder the user only asked to read; the price is one cache per user rather
    than one per dataset copy (point RECGYM_CACHE_DIR at a shared folder to share it). When the
    cache cannot be written the load still succeeds and the report's notes say why.
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
