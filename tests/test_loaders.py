"""recgym.data: real-data loads, handmade KuaiSAR/TSMC2014 files, errors, preprocess, cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym import data
from recgym.data import DataError, Dataset, LoadReport, load
from recgym.data.loaders import movielens as movielens_loader
from recgym.data.loaders import reading as csv_reading

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real(name: str) -> Path:
    """Path of a real dataset directory, skipping the test when it is not there."""
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (the shared folder must sit beside the clone)")
    return path


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Keep every cache written by a test out of the data folders and the home directory."""
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def dtypes(df: pd.DataFrame) -> dict[str, str]:
    return {c: str(t) for c, t in df.dtypes.items()}


# ---------------------------------------------------------------------------------------------
# Real datasets

KUAIRAND_FLAGS = ["is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate"]
KUAIRAND_COLUMNS = {
    "user_id": "int64",
    "item_id": "int64",
    "timestamp": "int64",
    "date": "int64",
    "hourmin": "int64",
    **dict.fromkeys(KUAIRAND_FLAGS + ["long_view"], "int8"),
    "play_time_ms": "int64",
    "duration_ms": "int64",
    "profile_stay_time": "int64",
    "comment_stay_time": "int64",
    "is_profile_enter": "int8",
    "is_rand": "int8",
    "tab": "int8",
    "log": "category",
}


def test_kuairand_1k_sample_every_row_typed():
    path = real("kuairand")
    ds = load(path, cache=False)
    assert (ds.format, ds.variant) == ("kuairand", "1k")
    assert dtypes(ds.interactions) == KUAIRAND_COLUMNS
    raw = pd.read_csv(path / "log_random_4_22_to_5_08_1k.csv")
    assert len(ds.interactions) == len(raw) == 1051
    assert ds.interactions["user_id"].nunique() == 26
    got = ds.interactions.rename(columns={"item_id": "video_id", "timestamp": "time_ms"})
    pd.testing.assert_frame_equal(got[raw.columns], raw, check_dtype=False)
    assert set(ds.interactions["log"]) == {"random"}
    # No user_features_1k.csv / video_features_basic_1k.csv: catalogues are the ids seen.
    assert len(ds.users) == 26 and list(ds.users.columns) == ["user_id"]
    assert len(ds.items) == ds.interactions["item_id"].nunique() == 980
    assert any("user_features_1k.csv not found" in n for n in ds.report.notes)
    assert ds.report.rows_read() == 1051
    assert ds.summary()["time_range"] == ("2022-04-22", "2022-05-08")


def test_kuairand_pure_features():
    ds = load(real("kuairand"), variant="pure", cache=False)
    assert len(ds.users) == 27_285 and len(ds.items) == 7_583
    assert ds.interactions.empty and dtypes(ds.interactions) == KUAIRAND_COLUMNS
    users, items = ds.users, ds.items
    assert users["user_id"].dtype == "int64" and users["is_live_streamer"].dtype == "int8"
    assert (users["is_live_streamer"] == -124).sum() == 21_127  # the original's sentinel, kept
    assert str(users["fans_user_num_range"].dtype) == "category"
    assert "[100,1k)" in set(users["fans_user_num_range"])  # quoted range strings
    assert str(users["onehot_feat4"].dtype) == "Int64" and users["onehot_feat4"].isna().sum() == 874
    assert list(items.columns[:3]) == ["item_id", "author_id", "video_type"]
    assert str(items["video_duration"].dtype) == "Int64"
    assert items["video_duration"].isna().sum() == 239  # empty fields -> NA
    assert str(items["tag"].dtype) == "string" and items.loc[0, "tag"] == "39"
    assert items["tag"].isna().sum() == 96


def test_movielens_every_row_typed():
    path = real("ml-100k")
    ds = load(path, cache=False)
    assert ds.format == "ml-100k"
    assert dtypes(ds.interactions) == {
        "user_id": "int64",
        "item_id": "int64",
        "timestamp": "int64",
        "rating": "int8",
    }
    raw = pd.read_csv(path / "u.data", sep="\t", names=["user_id", "item_id", "rating", "ts"])
    assert len(ds.interactions) == len(raw) == 85_558
    np.testing.assert_array_equal(ds.interactions["timestamp"], raw["ts"] * 1000)
    np.testing.assert_array_equal(ds.interactions["rating"], raw["rating"])
    assert len(ds.users) == 801 and str(ds.users["zip_code"].dtype) == "string"
    assert len(ds.items) == 1_682 and ds.items["genre_action"].dtype == "int8"
    assert ds.items.loc[0, "release_date"] == pd.Timestamp("1995-01-01")
    assert ds.items["release_date"].isna().sum() == 1  # item 267 "unknown"


def test_lastfm_every_row_typed():
    path = real("lastfm-hetrec2011-2k")
    ds = load(path, cache=False)
    assert ds.format == "lastfm"
    assert dtypes(ds.interactions) == {
        "user_id": "int64",
        "item_id": "int64",
        "timestamp": "int64",
        "tagID": "int64",
        "day": "int8",
        "month": "int8",
        "year": "int64",
    }
    raw = pd.read_csv(path / "user_taggedartists.dat", sep="\t")
    assert len(ds.interactions) == len(raw) == 157_587
    np.testing.assert_array_equal(ds.interactions["item_id"], raw["artistID"])
    # The readme's -timestamps example: user 2, artist 52, tag 13, 1/4/2009 -> 1238536800000.
    assert ds.interactions.loc[0, ["user_id", "item_id", "tagID", "timestamp"]].tolist() == [
        2,
        52,
        13,
        1238536800000,
    ]
    assert len(ds.extra["user_artists"]) == 78_808
    assert list(ds.extra["user_artists"].columns) == ["user_id", "item_id", "weight"]
    assert len(ds.extra["user_friends"]) == 19_472
    tags = ds.extra["tags"].set_index("tagID")["tagValue"]
    assert len(tags) == 11_946 and tags[2863] == "tropicália"  # tags.dat is latin-1
    assert len(ds.items) == 17_632 and ds.items.loc[ds.items.item_id == 18, "name"].item() == (
        "The Crüxshadows"
    )


def test_foursquare_derived_every_row_typed():
    path = real("foursquare-nyc")
    ds = load(path, cache=False)
    assert (ds.format, ds.variant, ds.timestamp_kind) == ("foursquare", "derived", "ordinal")
    raw = pd.read_csv(path / "foursquare_nyc.csv")
    inter = ds.interactions
    assert len(inter) == len(raw) == 39_237
    np.testing.assert_array_equal(inter["user_id"], raw["label"])
    np.testing.assert_array_equal(inter["item_id"], raw["poi"])
    assert list(inter.columns[:3]) == ["user_id", "item_id", "timestamp"]
    assert (inter.groupby("user_id")["timestamp"].diff().dropna() == 1).all()
    assert (inter.groupby("user_id")["timestamp"].min() == 0).all()
    assert str(inter["category"].dtype) == "category" and inter["hour"].dtype == "int8"
    assert len(ds.items) == raw["poi"].nunique() and ds.summary()["time_range"] is None


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("kuairand", "kuairand"),
        ("ml-100k", "ml-100k"),
        ("lastfm-hetrec2011-2k", "lastfm"),
        ("foursquare-nyc", "foursquare"),
    ],
)
def test_format_detection(name, fmt):
    path = real(name)
    assert data.detect_format(path) == (fmt, path)


def test_detection_of_a_file_and_a_parent_folder(tmp_path):
    assert data.detect_format(real("ml-100k") / "u.data") == ("ml-100k", DATA / "ml-100k")
    nested = tmp_path / "download" / "ml-100k"
    nested.mkdir(parents=True)
    (nested / "u.data").write_text("1\t2\t5\t881250949\n")
    assert data.detect_format(tmp_path / "download") == ("ml-100k", nested)


# ---------------------------------------------------------------------------------------------
# Handmade files in the documented schemas


def write_kuaisar(root: Path) -> Path:
    rec = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "item_id": [100, 101, 100],
            "playing_time": [60792.0, 1200.0, 0.0],
            "duration_ms": [45400.0, 30000.0, 45400.0],
            "time": ["2023-05-22 15:53:20", "2023-05-22 15:54:00", "2023-05-23 08:00:00"],
            "timestamp": [1684742000000.0, 1684742040000.0, 1684800000000.0],
            "click": [1, 0, 1],
            "forward": [0, 0, 1],
            "like": [1, 0, 0],
            "follow": [0, 0, 0],
            "search": [0, 1, 0],
            "search_item_related": [0, 1, 0],
        }
    )
    src = pd.DataFrame(
        {
            "user_id": [1, 2],
            "search_session_id": [7, 8],
            "search_session_time": ["2023-05-22 21:58:52", "2023-05-24 10:00:00"],
            "search_session_timestamp": [1684763932919.0, 1684893600000.0],
            "keyword": ["[20, 34, 3]", "[5]"],
            "search_source": ["USER_INPUT", "USER_INPUT"],
            "item_id": [103656000000, 100],
            "click_cnt": [1, 0],
            "item_type": ["VIDEO", "LIVE"],
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    rec.to_csv(root / "rec_inter.csv", index=False)
    src.to_csv(root / "src_inter.csv", index=False)
    pd.DataFrame({"user_id": [1], "user_follow_id": [2]}).to_csv(
        root / "social_network.csv", index=False
    )
    pd.DataFrame(
        {
            "user_id": [1, 2],
            "search_active_level": [1, 3],
            "rec_active_level": [2, 2],
            "onehot_feat1": [0, 1],
            "onehot_feat2": [3, 7],
        }
    ).to_csv(root / "user_features.csv", index=False)
    pd.DataFrame(
        {
            "item_id": [100, 101],
            "caption": ["[1, 213, 24]", "[9]"],
            "author_id": [10, 0],
            "item_type": ["NORMAL", "NORMAL"],
            "upload_time": ["2023-04-22", "1970-1-1"],
            "upload_type": ["LongImport", "Web"],
            "first_level_category_id": [9, 0],
            "first_level_category_name": ["搞笑", "空"],
            "first_level_category_name_en": ["Funny", "empty"],
        }
    ).to_csv(root / "item_features.csv", index=False)
    return root


def test_kuaisar_both_scenarios(tmp_path):
    ds = load(write_kuaisar(tmp_path / "kuaisar"), cache=False)
    inter = ds.interactions
    assert ds.format == "kuaisar" and len(inter) == 5
    assert inter["scenario"].tolist() == ["rec", "rec", "rec", "search", "search"]
    assert inter["timestamp"].tolist() == [
        1684742000000,
        1684742040000,
        1684800000000,
        1684763932919,
        1684893600000,
    ]
    assert inter.loc[3, "item_id"] == 103656000000
    assert list(inter.columns[:3]) == ["user_id", "item_id", "timestamp"]
    assert inter.columns[-1] == "scenario"
    assert "search_session_timestamp" not in inter.columns
    # Fields of the other scenario are NA; their integer columns are pandas nullable.
    assert str(inter["click"].dtype) == "Int8" and inter["click"].isna().tolist() == [0, 0, 0, 1, 1]
    assert str(inter["click_cnt"].dtype) == "Int64" and inter["click_cnt"].isna().sum() == 3
    assert inter["playing_time"].dtype == "float32" and inter["playing_time"].isna().sum() == 2
    assert inter.loc[3, "keyword"] == "[20, 34, 3]" and pd.isna(inter.loc[0, "keyword"])
    assert inter.loc[0, "time"] == pd.Timestamp("2023-05-22 15:53:20")
    assert str(inter["item_type"].dtype) == "category"
    assert len(ds.users) == 2 and len(ds.items) == 2
    assert ds.items.loc[1, "first_level_category_name"] == "空"
    assert ds.extra["social_network"].to_dict("list") == {"user_id": [1], "user_follow_id": [2]}
    (tmp_path / "kuaisar" / "social_network.csv").write_text("user_id,user_follow_id\n")
    empty = load(tmp_path / "kuaisar", cache=False).extra["social_network"]  # no follows: fine
    assert empty.empty and dtypes(empty) == {"user_id": "int64", "user_follow_id": "int64"}


def test_tsmc2014_raw_file(tmp_path):
    rows = [
        "470\t49bbd6c0f964a520f4531fe3\t4bf58dd8d48988d127951735\tArts & Crafts Store\t"
        "40.719810375488535\t-74.00258103213994\t-240\tTue Apr 03 18:00:09 +0000 2012",
        "979\t4a43c0aef964a520c6a61fe3\t4bf58dd8d48988d1df941735\tBridge\t"
        "40.60679958140643\t-74.04416981025437\t-240\tTue Apr 03 18:00:25 +0000 2012",
        "470\t4a43c0aef964a520c6a61fe3\t4bf58dd8d48988d1df941735\tBridge\t"
        "40.60679958140643\t-74.04416981025437\t-240\tWed Apr 04 09:15:00 +0000 2012",
        "69\t4c5cc7b485a1e21e00d35711\t4bf58dd8d48988d1e0931735\tCafé\t"
        "40.7160\t-73.9880\t-240\tThu Apr 05 12:00:00 +0000 2012",
    ]
    file = tmp_path / "dataset_TSMC2014_NYC.txt"
    file.write_bytes("\r\n".join(rows).encode("latin-1") + b"\r\n")  # as distributed: latin-1
    ds = load(tmp_path, cache=False)
    assert (ds.format, ds.variant, ds.timestamp_kind) == ("foursquare", "tsmc2014", "epoch_ms")
    inter = ds.interactions
    assert inter["user_id"].tolist() == [470, 979, 470, 69]
    assert inter["item_id"].tolist() == [0, 1, 1, 2]  # venues numbered by first appearance
    assert inter.loc[0, "timestamp"] == pd.Timestamp("2012-04-03 18:00:09Z").value // 10**6
    assert inter.loc[3, "venueCategory"] == "Café"
    assert inter["latitude"].dtype == "float64" and inter["timezoneOffset"].dtype == "int64"
    assert ds.items["venueId"].tolist() == [
        "49bbd6c0f964a520f4531fe3",
        "4a43c0aef964a520c6a61fe3",
        "4c5cc7b485a1e21e00d35711",
    ]
    assert any("latin-1" in n for n in ds.report.notes)
    assert ds.summary()["time_range"] == ("2012-04-03", "2012-04-05")


@pytest.mark.parametrize("fmt", ["kuairand", "kuaisar"])
def test_synthetic_world_files_load(tmp_path, fmt):
    """Contract with data.writers: what the ground-truth world writes loads row for row."""
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    start = "2023-05-22" if fmt == "kuaisar" else "2022-04-08"
    summary = generate(
        tmp_path / fmt,
        WorldConfig(n_users=30, n_items=120, n_authors=12, seed=1),
        LogConfig(days=2, seed=1, start_date=start),
        fmt,
        progress=False,
    )
    ds = load(tmp_path / fmt, cache=False)
    assert ds.format == fmt and len(ds.interactions) == summary["rows"] > 0
    assert len(ds.users) == 30 and len(ds.items) == 120
    assert not [n for n in ds.report.notes if "not found" in n or "no row in" in n]
    truth = pd.read_parquet(tmp_path / fmt / "world_truth.parquet")["timestamp"]
    if fmt == "kuairand":
        assert sorted(ds.interactions["timestamp"]) == sorted(truth)
    else:  # search rows carry their session's start time, as in KuaiSAR
        assert ds.interactions["timestamp"].between(truth.min(), truth.max()).all()


# ---------------------------------------------------------------------------------------------
# Bad input: every case is a DataError naming the file, the column and the line

LOG = "log_standard_4_08_to_4_21_pure.csv"
LOG_HEADER = list(KUAIRAND_COLUMNS)[:-1]
RAW_NAMES = {"item_id": "video_id", "timestamp": "time_ms"}


def kuairand_rows(n: int) -> list[list[str]]:
    """n valid KuaiRand log rows as text fields (raw column names and order)."""
    rows = []
    for i in range(n):
        values = {c: "0" for c in LOG_HEADER}
        values.update(
            user_id=str(i // 10),
            item_id=str(1000 + i),
            timestamp=str(1649376000000 + 60_000 * i),
            date="20220408",
            hourmin="1200",
            play_time_ms="5000",
            duration_ms="12000",
            is_rand="0",
            tab="1",
        )
        rows.append([values[c] for c in LOG_HEADER])
    return rows


def write_log(directory: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    header = header or [RAW_NAMES.get(c, c) for c in LOG_HEADER]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOG
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def set_field(rows: list[list[str]], line: int, column: str, value: str) -> list[list[str]]:
    """Set `column` of the row at physical `line` (line 1 is the header)."""
    rows[line - 2][LOG_HEADER.index(column)] = value
    return rows


def raises_at(path: Path, column: str | None, line: int | None, *fragments: str) -> DataError:
    with pytest.raises(DataError) as info:
        load(path, cache=False)
    err = info.value
    message = str(err)
    assert message.startswith(f"{err.file}:")
    if column is not None:
        assert f"column {column!r}" in message
    if line is not None:
        assert f"line {line}:" in message and err.line == line
    for fragment in fragments:
        assert fragment in message
    return err


def test_wrong_type_names_file_column_line(tmp_path):
    rows = set_field(kuairand_rows(30), 17, "user_id", "abc")
    write_log(tmp_path, rows)
    err = raises_at(tmp_path, "user_id", 17)
    assert str(err).startswith(
        f"{LOG}: column 'user_id', line 17: expected a non-negative integer, got 'abc'"
    )
    assert err.row == ",".join(rows[15])  # the raw row is shown


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("play_time_ms", "1.5e", "expected an integer, got '1.5e'"),  # fails pyarrow's parse
        ("user_id", "-7", "expected a non-negative integer, got '-7'"),  # fails a block check
    ],
)
def test_bad_value_found_across_many_chunks_and_blank_lines(
    tmp_path, monkeypatch, column, value, problem
):
    monkeypatch.setattr(csv_reading, "_BLOCK_SIZE", 1024)
    monkeypatch.setattr(csv_reading, "_SCAN_BLOCK", 333)
    path = write_log(tmp_path, set_field(kuairand_rows(400), 350, column, value))
    lines = path.read_text().split("\n")
    lines[100:100] = ["", "\r"]  # two blank lines push the bad row down to line 352
    path.write_text("\n".join(lines))
    err = raises_at(tmp_path, column, 352, problem)
    assert err.row == lines[351]


def test_missing_required_column(tmp_path):
    header = [c for c in KUAIRAND_COLUMNS if c not in ("is_click", "log")]
    header = [RAW_NAMES.get(c, c) for c in header]
    rows = [r[:5] + r[6:] for r in kuairand_rows(3)]
    write_log(tmp_path, rows, header)
    raises_at(tmp_path, "is_click", 1, "required column missing")


def test_missing_id(tmp_path):
    write_log(tmp_path, set_field(kuairand_rows(10), 5, "item_id", ""))
    raises_at(tmp_path, "video_id", 5, "missing id")


def test_negative_id(tmp_path):
    write_log(tmp_path, set_field(kuairand_rows(10), 9, "user_id", "-3"))
    raises_at(tmp_path, "user_id", 9, "expected a non-negative integer, got '-3'")


@pytest.mark.parametrize("bad", ["20221345", "2022-04-08"])
def test_unparsable_date(tmp_path, bad):
    write_log(tmp_path, set_field(kuairand_rows(10), 4, "date", bad))
    raises_at(tmp_path, "date", 4, f"expected a date YYYYMMDD, got '{bad}'")


def test_unparsable_foursquare_time(tmp_path):
    good = "1\tv1\tc1\tBar\t40.7\t-74.0\t-240\tTue Apr 03 18:00:09 +0000 2012"
    (tmp_path / "dataset_TSMC2014_TKY.txt").write_text(f"{good}\n{good[:-31]}\tyesterday\n")
    raises_at(tmp_path, "utcTimestamp", 2, "got 'yesterday'")


def test_unparsable_lastfm_date(tmp_path):
    (tmp_path / "user_taggedartists.dat").write_text(
        "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t52\t13\t1\t4\t2009\n2\t52\t15\t1\t13\t2009\n"
    )
    raises_at(tmp_path, "month", 3, "not a date")


def test_empty_file(tmp_path):
    (tmp_path / LOG).write_text("")
    raises_at(tmp_path, "user_id", 1, "empty file")


def test_header_only(tmp_path):
    write_log(tmp_path, [])
    raises_at(tmp_path, "user_id", 2, "no data rows")


def test_header_repeated_inside_data(tmp_path):
    rows = kuairand_rows(10)
    path = write_log(tmp_path, rows)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:6] + [lines[0]] + lines[6:]) + "\n")  # header again at line 7
    raises_at(tmp_path, "user_id", 7, "header line is repeated")


def test_duplicate_column_name(tmp_path):
    header = [RAW_NAMES.get(c, c) for c in LOG_HEADER]
    header[5] = "is_like"
    write_log(tmp_path, kuairand_rows(3), header)
    raises_at(tmp_path, "is_like", 1, "duplicate column name")


def test_wrong_field_count(tmp_path):
    rows = kuairand_rows(10)
    rows[6] = rows[6][:-2]  # line 8 is two fields short
    write_log(tmp_path, rows)
    raises_at(tmp_path, "is_rand", 8, "expected 19 fields, got 17")


def test_directory_without_dataset_files(tmp_path):
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no recognisable dataset files") as info:
        load(tmp_path, cache=False)
    assert info.value.file == tmp_path.name and str(info.value).startswith(f"{tmp_path}: ")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing", cache=False)


def test_headerless_ratings_errors(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t5\t881250949\n1\t3\t4\n")
    raises_at(tmp_path, "timestamp", 2, "expected 4 fields, got 3")
    (tmp_path / "u.data").write_text("")
    raises_at(tmp_path, "user_id", 1, "empty file")


# ---------------------------------------------------------------------------------------------
# Preprocessing


def handmade(format: str = "ml-100k") -> Dataset:
    inter = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2, 2, 3, 3, 1, 4],
            "item_id": [10, 11, 12, 10, 11, 12, 10, 13, 10, 14],
            "timestamp": [5, 4, 3, 2, 1, 0, 9, 8, 5, 7],
            "rating": np.array([5, 4, 3, 5, 5, 1, 4, 2, 5, 5], dtype=np.int8),
        }
    )
    return Dataset(
        format=format,
        source=Path("handmade"),
        interactions=inter,
        users=pd.DataFrame({"user_id": [1, 2, 3, 4]}),
        items=pd.DataFrame({"item_id": [10, 11, 12, 13, 14]}),
        report=LoadReport(),
    )


def test_preprocess_reports_exact_counts():
    ds = handmade()
    implicit = data.implicit_feedback(ds, min_rating=4)
    assert len(implicit.interactions) == 7
    deduped = data.dedup(ds)
    assert len(deduped.interactions) == 9  # row 8 repeats row 0
    core = data.k_core(deduped, k=2)
    # Round 1 drops user 4 (1 row), item 13 and item 14; round 2 drops user 3 (now 1 row).
    assert sorted(core.interactions["user_id"].unique()) == [1, 2]
    assert len(core.interactions) == 6
    assert core.users["user_id"].tolist() == [1, 2]
    assert core.items["item_id"].tolist() == [10, 11, 12]
    ordered = data.sort_by_time(core)
    assert ordered.interactions["timestamp"].tolist() == [3, 4, 5, 0, 1, 2]
    steps = [(s.step, s.rows_before, s.rows_after, s.removed) for s in ordered.report.filters]
    assert steps == [("dedup", 10, 9, 1), ("k_core", 9, 6, 3), ("sort_by_time", 6, 6, 0)]
    assert ordered.report.filters[1].details["users_after"] == 2
    assert implicit.report.filters[0].removed == 3
    assert ds.report.filters == [] and len(ds.interactions) == 10  # the input is untouched
    summary = ordered.summary()
    assert [f["removed"] for f in summary["filtered"]] == [1, 3, 0]
    assert data.sort_by_time(ds, per_user=False).interactions["timestamp"].is_monotonic_increasing


def test_implicit_feedback_rules_per_format(tmp_path):
    kuaisar = load(write_kuaisar(tmp_path / "kuaisar"), cache=False)
    kept = data.implicit_feedback(kuaisar).interactions
    assert kept["scenario"].tolist() == ["rec", "rec", "search"]
    lastfm = data.implicit_feedback(handmade("lastfm"))
    assert lastfm.report.filters[0].removed == 0
    kuairand = handmade("kuairand")
    kuairand.interactions["is_click"] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    kuairand.interactions["long_view"] = [0, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert len(data.implicit_feedback(kuairand).interactions) == 3


# ---------------------------------------------------------------------------------------------
# Parquet cache


def write_ratings(directory: Path, n: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "u.data"
    rows = (f"{1 + i % 3}\t{10 + i}\t{1 + i % 5}\t88125{i:04d}\n" for i in range(n))
    path.write_text("".join(rows))
    return path


def files_under(directory: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder below `directory` with its size and mtime (ns)."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


def test_cache_reused_then_invalidated(tmp_path, monkeypatch):
    monkeypatch.delenv("RECGYM_CACHE_DIR")
    path = write_ratings(tmp_path / "ml", 20)
    first = load(tmp_path / "ml")
    assert not first.report.from_cache
    entry = Path(first.report.cache)
    assert entry.is_dir() and entry.parent.parent == tmp_path / "xdg" / "recgym"

    def no_csv(*args, **kwargs):
        raise AssertionError("the CSV was read despite a valid cache")

    with monkeypatch.context() as m:
        m.setattr(movielens_loader, "_read_csv", no_csv)
        second = load(tmp_path / "ml")
    assert second.report.from_cache and second.report.files == first.report.files
    pd.testing.assert_frame_equal(second.interactions, first.interactions)

    write_ratings(tmp_path / "ml", 21)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    third = load(tmp_path / "ml")
    assert not third.report.from_cache and len(third.interactions) == 21
    assert [p.name for p in entry.parent.iterdir()] == [Path(third.report.cache).name]


def test_same_size_edit_with_new_mtime_invalidates_the_cache(tmp_path):
    path = write_ratings(tmp_path / "ml", 20)
    assert load(tmp_path / "ml").interactions["rating"].iloc[0] == 1
    text = path.read_text()
    path.write_text("1\t10\t5" + text[len("1\t10\t1") :])  # first rating 1 -> 5, same size
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    again = load(tmp_path / "ml")
    assert not again.report.from_cache and again.interactions["rating"].iloc[0] == 5


def test_recgym_cache_dir_is_honoured_and_cache_dir_wins(tmp_path, monkeypatch):
    write_ratings(tmp_path / "ml", 5)
    first = load(tmp_path / "ml")
    assert Path(first.report.cache).is_relative_to(tmp_path / "cache")
    assert load(tmp_path / "ml").report.from_cache
    assert not (tmp_path / "xdg").exists()
    explicit = load(tmp_path / "ml", cache_dir=tmp_path / "mine")
    assert not explicit.report.from_cache
    assert Path(explicit.report.cache).is_relative_to(tmp_path / "mine")
    monkeypatch.delenv("RECGYM_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = load(tmp_path / "ml")
    assert Path(default.report.cache).is_relative_to(tmp_path / "home" / ".cache" / "recgym")


def test_two_datasets_with_the_same_folder_name_never_share_an_entry(tmp_path):
    write_ratings(tmp_path / "a" / "ml", 7)
    write_ratings(tmp_path / "b" / "ml", 9)
    for _ in range(2):
        a, b = load(tmp_path / "a" / "ml"), load(tmp_path / "b" / "ml")
        assert (len(a.interactions), len(b.interactions)) == (7, 9)
    assert a.report.from_cache and b.report.from_cache
    assert Path(a.report.cache).parent != Path(b.report.cache).parent


def test_cache_keeps_dtypes(tmp_path):
    path = write_kuaisar(tmp_path / "kuaisar")
    fresh, cached = load(path), load(path)
    assert not fresh.report.from_cache and cached.report.from_cache
    for name in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(getattr(cached, name), getattr(fresh, name))
    pd.testing.assert_frame_equal(cached.extra["social_network"], fresh.extra["social_network"])


def test_inspect_never_writes_into_the_data_directory(tmp_path, monkeypatch, capsys):
    """`recgym data inspect` on a copy of a small dataset: the folder is byte-for-byte as before,
    on the first (cache written) and the second (cache read) run; the cache is in the user's."""
    monkeypatch.delenv("RECGYM_CACHE_DIR")
    directory = write_kuaisar(tmp_path / "kuaisar")
    before = files_under(directory)
    assert len(before) >= 3
    for _ in range(2):
        assert data.inspect(str(directory)) == 0
        assert files_under(directory) == before
    assert "kuaisar" in capsys.readouterr().out
    entries = list((tmp_path / "xdg" / "recgym").glob("kuaisar-*/*"))
    assert len(entries) == 1 and (entries[0] / "meta.json").is_file()


def test_read_only_data_directory_loads_and_caches_elsewhere(tmp_path):
    write_ratings(tmp_path / "readonly", 5)
    (tmp_path / "readonly").chmod(0o555)
    try:
        ds = load(tmp_path / "readonly")
        assert Path(ds.report.cache).is_relative_to(tmp_path / "cache")
        assert load(tmp_path / "readonly").report.from_cache
        assert [p.name for p in (tmp_path / "readonly").iterdir()] == ["u.data"]
    finally:
        (tmp_path / "readonly").chmod(0o755)


def test_unwritable_cache_dir_still_loads_and_says_why(tmp_path, monkeypatch):
    (tmp_path / "blocked").write_text("a file where the cache folder would go")
    monkeypatch.setenv("RECGYM_CACHE_DIR", str(tmp_path / "blocked"))
    write_ratings(tmp_path / "ml", 5)
    ds = load(tmp_path / "ml")
    assert len(ds.interactions) == 5 and ds.report.cache is None
    assert any(n.startswith("parquet cache not written") for n in ds.report.notes)


# ---------------------------------------------------------------------------------------------
# inspect


def test_inspect_prints_summary(capsys):
    path = real("ml-100k")
    assert data.inspect(str(path)) == 0
    out = capsys.readouterr().out
    assert "ml-100k" in out and "85,558 interactions" in out
    assert "801" in out and "1997-09-20 .. 1998-04-22" in out and "filtered    none" in out


def test_inspect_bad_data_one_line_error(tmp_path, capsys):
    write_log(tmp_path, set_field(kuairand_rows(5), 3, "user_id", "x"))
    assert data.inspect(str(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {LOG}: column 'user_id', line 3:")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert data.inspect(str(tmp_path / "nowhere")) == 2
    assert capsys.readouterr().err.startswith("error: ")
