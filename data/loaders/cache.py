"""Build plans and the parquet cache: a loader describes its inputs and how to build the typed
tables; `_run` builds them or reads them back from the cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import Dataset, LoadReport
from .arrow import _missing_ids, _to_pandas
from .reading import PathLike

# Bump when the typed tables a loader produces change, so old cache entries are not reused.
_CACHE_VERSION = 2  # 2: the KuaiRand loader types an is_gift column


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


def cache_root() -> Path:
    """The directory every parquet cache entry lives under: $RECGYM_CACHE_DIR if set, else
    $XDG_CACHE_HOME/recgym, else ~/.cache/recgym. Never the data directory (see `load`)."""
    explicit = os.environ.get("RECGYM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "recgym"


def _cache_dir_for(source: Path, cache_dir: PathLike | None) -> Path:
    """The folder of one dataset's entries: `<root>/<name>-<hash of its absolute path>`, so two
    datasets that share a folder name never share entries."""
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    root = Path(cache_dir).expanduser() if cache_dir else cache_root()
    return root / f"{source.name}-{tag}"


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
        root = _cache_dir_for(plan.source, cache_dir)
        entry = root / entry_name
        if (entry / "meta.json").is_file():
            try:
                tables, report = _read_cache(entry)
            except (OSError, ValueError, KeyError, pa.ArrowException):
                shutil.rmtree(entry, ignore_errors=True)  # unreadable: rebuild it
    if tables is None:
        report = LoadReport()
        tables = plan.build(report)
        _check_catalogues(tables, report)
        if cache:
            try:
                report.cache = str(entry)
                _write_cache(root, label, entry_name, tables, report)
            except OSError as exc:
                report.cache = None
                report.notes.append(f"parquet cache not written ({root}: {exc.strerror or exc})")
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
