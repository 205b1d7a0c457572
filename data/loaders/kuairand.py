"""KuaiRand (Pure / 1K / 27K) from a directory of the original CSV files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..schema import (
    KUAIRAND_LOG,
    KUAIRAND_USER_FEATURES,
    KUAIRAND_VIDEO_BASIC,
    KUAIRAND_VIDEO_STATISTIC,
    DataError,
    Dataset,
    FileSpec,
    LoadReport,
)
from ..writers import GIFT_COLUMN
from .arrow import _constant_category, _id_table, _keys_first, _rename
from .cache import _Plan, _run, _Tables
from .detect import _KUAIRAND_FEATURE, _KUAIRAND_LOG, _directory
from .reading import PathLike, _read_csv, _stored_schema

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
        if GIFT_COLUMN in inter.column_names:
            inter = _gift_column(inter, report)

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


def _gift_column(inter: pa.Table, report: LoadReport) -> pa.Table:
    """The optional ``is_gift`` column (recgym's world logs; KuaiRand has none) as int8 0/1,
    0 in log files without it; a value other than 0/1 is a DataError naming the column."""
    i = inter.column_names.index(GIFT_COLUMN)
    raw = pc.fill_null(inter.column(i).cast(pa.string()), "0")
    try:
        gift = pc.cast(raw, pa.int8())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"column {GIFT_COLUMN} holds values that are not 0/1") from None
    if not pc.all(pc.is_in(gift, pa.array([0, 1], pa.int8()))).as_py():
        raise DataError(f"column {GIFT_COLUMN} holds values that are not 0/1")
    kept_as_text = f"columns not in the schema kept as text: ['{GIFT_COLUMN}']"
    report.notes[:] = [n for n in report.notes if not n.endswith(kept_as_text)]
    report.notes.append(
        f"{GIFT_COLUMN}: an optional gift column (not in KuaiRand; recgym's world logs write "
        f"it): {pc.sum(gift).as_py() or 0:,} gifts logged"
    )
    return inter.set_column(i, GIFT_COLUMN, gift)
