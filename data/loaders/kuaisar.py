"""KuaiSAR (recommendation and search logs of the same users) from its CSV files."""

from __future__ import annotations

import pyarrow as pa

from ..schema import (
    KEY_COLUMNS,
    KUAISAR_ITEM_FEATURES,
    KUAISAR_REC,
    KUAISAR_SOCIAL,
    KUAISAR_SRC,
    KUAISAR_USER_FEATURES,
    DataError,
    Dataset,
    LoadReport,
)
from .arrow import _constant_category, _id_table, _keys_first, _mark_nullable, _rename
from .cache import _Plan, _run, _Tables
from .detect import _directory
from .reading import PathLike, _read_csv, _stored_schema

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
