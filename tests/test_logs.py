"""Logged interactions (`simulate_logs`), the KuaiRand/KuaiSAR writers and `recgym world generate`.

Headers are compared with the real KuaiRand files in the shared data folder beside the clone
(read by path, never copied); those tests skip when the folder is absent.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.cli import main
from recgym.data.writers import write_kuairand, write_kuaisar
from recgym.simulators.generate import CONFIG_FILE, TRUTH_FILE, generate, load_world
from recgym.simulators.logs import LOG_COLUMNS, LogConfig, simulate_logs
from recgym.simulators.protocol import REC, SEARCH
from recgym.simulators.world import DAY_MS, LONG_VIEW_MS, World, WorldConfig, epoch_ms

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORLD = WorldConfig(n_users=150, n_items=600, n_authors=60, seed=5)
LOGS = LogConfig(days=3, seed=5)
SMALL_WORLD = WorldConfig(n_users=100, n_items=400, n_authors=40, seed=1)
SMALL_LOGS = LogConfig(days=2, seed=1)

KUAISAR_COLUMNS = {
    "rec_inter.csv": [
        "user_id",
        "item_id",
        "playing_time",
        "duration_ms",
        "time",
        "timestamp",
        "click",
        "forward",
        "like",
        "follow",
        "search",
        "search_item_related",
    ],
    "src_inter.csv": [
        "user_id",
        "search_session_id",
        "search_session_time",
        "search_session_timestamp",
        "keyword",
        "search_source",
        "item_id",
        "click_cnt",
        "item_type",
    ],
    "user_features.csv": [
        "user_id",
        "search_active_level",
        "rec_active_level",
        "onehot_feat1",
        "onehot_feat2",
    ],
    "item_features.csv": [
        "item_id",
        "caption",
        "author_id",
        "item_type",
        "upload_time",
        "upload_type",
        *[
            f"{level}_level_category_{what}"
            for level in ("first", "second", "third", "fourth")
            for what in ("id", "name", "name_en")
        ],
    ],
    "social_network.csv": ["user_id", "user_follow_id"],
}


def real_kuairand(name: str) -> Path:
    path = DATA / "kuairand" / name
    if not path.is_file():
        pytest.skip(f"real KuaiRand file not found at {path}")
    return path


def header(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


@pytest.fixture(scope="module")
def logged() -> tuple[World, pd.DataFrame]:
    """A small world after logging it for three days, and its logs."""
    world = World(WORLD)
    return world, simulate_logs(world, LOGS, progress=False)


@pytest.fixture(scope="module")
def kuairand_dir(tmp_path_factory, logged) -> Path:
    world, logs = logged
    out = tmp_path_factory.mktemp("kuairand")
    write_kuairand(logs, world.user_table(), world.item_table(), out)
    return out


@pytest.fixture(scope="module")
def kuaisar_dir(tmp_path_factory, logged) -> Path:
    world, logs = logged
    out = tmp_path_factory.mktemp("kuaisar")
    write_kuaisar(
        logs,
        world.user_table(),
        world.item_table(),
        out,
        n_top_categories=WORLD.n_top_categories,
        seed=LOGS.seed,
    )
    return out


# --------------------------------------------------------------------------- simulate_logs
def test_log_columns_and_sort_order(logged):
    _, logs = logged
    assert tuple(logs.columns) == LOG_COLUMNS
    assert len(logs) > 5000
    key = logs[["user_id", "timestamp", "position"]].to_numpy()
    order = np.lexsort(key.T[::-1])
    np.testing.assert_array_equal(order, np.arange(len(logs)))
    assert logs.index.equals(pd.RangeIndex(len(logs)))


def test_requests_are_whole_slates(logged):
    _, logs = logged
    k = LOGS.slate_size
    per_request = logs.groupby("request_id")
    assert (per_request.size() == k).all()
    positions = per_request["position"].agg(lambda p: tuple(sorted(p)))
    assert (positions == tuple(range(k))).all()
    for col in ("user_id", "session_id", "scenario", "query_category"):
        assert (per_request[col].nunique() == 1).all(), col
    assert (logs.groupby("session_id")["user_id"].nunique() == 1).all()
    assert (per_request["is_rand"].sum() <= 1).all()  # at most one random exposure a request


def test_no_item_twice_in_a_request(logged):
    _, logs = logged
    dup = logs.duplicated(["request_id", "item_id"], keep=False)
    requests = logs.loc[dup, ["request_id", "is_rand"]].groupby("request_id")["is_rand"].max()
    assert requests.empty, (
        f"{len(requests)} of {logs['request_id'].nunique()} requests show an item twice "
        f"({int(requests.sum())} of them through the random exposure)"
    )


def test_random_exposure_share(logged):
    _, logs = logged
    rec = logs[logs["scenario"] == REC]
    share = rec["is_rand"].mean()
    expected = LOGS.random_share / LOGS.slate_size
    # one Bernoulli(random_share) injection per recommendation request, k rows per request
    n_requests = rec["request_id"].nunique()
    r = LOGS.random_share
    se = np.sqrt(r * (1 - r) / n_requests) / LOGS.slate_size
    assert abs(share - expected) < 4 * se, (share, expected, se)
    # as in KuaiRand (random exposures are in the feed), search requests carry none
    assert logs.loc[logs["scenario"] == SEARCH, "is_rand"].sum() == 0


def test_search_rows_carry_a_query_category(logged):
    world, logs = logged
    search = logs["scenario"] == SEARCH
    assert set(logs["scenario"].unique()) == {REC, SEARCH}
    assert 0.05 < search.mean() < 0.6
    q = logs.loc[search, "query_category"]
    assert q.between(0, world.catalogue.n_categories - 1).all()
    assert (logs.loc[~search, "query_category"] == -1).all()
    # search results come largely from the query's category (1 in 30 by chance)
    item_cat = world.catalogue.category[logs.loc[search, "item_id"].to_numpy()]
    not_rand = logs.loc[search, "is_rand"].to_numpy() == 0
    assert (item_cat == q.to_numpy())[not_rand].mean() > 0.4


def test_timestamps_increase_within_a_session(logged):
    _, logs = logged
    by_session = logs.sort_values(["session_id", "request_id", "position"], kind="stable")
    same = by_session["session_id"].to_numpy()[1:] == by_session["session_id"].to_numpy()[:-1]
    step = np.diff(by_session["timestamp"].to_numpy())
    assert (step[same] > 0).all()
    # sessions of one user do not overlap
    bounds = logs.groupby("session_id").agg(
        user=("user_id", "first"), lo=("timestamp", "min"), hi=("timestamp", "max")
    )
    bounds = bounds.sort_values(["user", "lo"])
    same_user = bounds["user"].to_numpy()[1:] == bounds["user"].to_numpy()[:-1]
    assert (bounds["lo"].to_numpy()[1:] > bounds["hi"].to_numpy()[:-1])[same_user].all()


def test_logs_stay_inside_the_logged_days(logged):
    """`LogConfig.days` days from `start_date` (Beijing): no exposure after the last day."""
    _, logs = logged
    day0 = epoch_ms(LOGS.start_date)
    assert logs["timestamp"].min() >= day0
    late = logs["timestamp"] >= day0 + LOGS.days * DAY_MS
    assert not late.any(), f"{late.sum()} of {len(logs)} rows fall after day {LOGS.days}"


def test_behaviours_follow_the_world_rules(logged):
    world, logs = logged
    dur = logs["duration_ms"].to_numpy()
    np.testing.assert_array_equal(dur, world.catalogue.duration_ms[logs["item_id"].to_numpy()])
    watch = logs["watch_ms"].to_numpy()
    assert (watch >= 0).all() and (watch <= dur).all()
    np.testing.assert_array_equal(
        logs["long_view"].to_numpy().astype(bool), watch >= np.minimum(dur, LONG_VIEW_MS)
    )
    click = logs["click"].to_numpy().astype(bool)
    for name in ("like", "follow", "comment", "forward", "gift"):
        assert not (logs[name].to_numpy().astype(bool) & ~click).any(), name
    assert (logs["is_profile_enter"] >= logs["follow"]).all()
    assert ((logs["comment_stay_time"] > 0) <= (logs["comment"] > 0)).all()
    for name in ("p_click", "p_long_view"):
        assert logs[name].between(0, 1).all()
    assert (logs["p_long_view"] <= logs["p_click"] + 1e-6).all()
    # the logged true probabilities are calibrated against the logged outcomes
    assert abs(logs["click"].mean() - logs["p_click"].mean()) < 0.01
    assert abs(logs["long_view"].mean() - logs["p_long_view"].mean()) < 0.01


def test_behaviour_policy_is_click_biased(logged):
    """Logged (non-random) items have a higher true click probability than random exposures."""
    _, logs = logged
    rand = logs["is_rand"] == 1
    assert logs.loc[~rand, "p_click"].mean() > logs.loc[rand, "p_click"].mean() + 0.1


def test_simulate_logs_is_deterministic_and_advances_the_world():
    world = World(SMALL_WORLD)
    first = simulate_logs(world, SMALL_LOGS, progress=False)
    assert (world.state.clock_ms > World(SMALL_WORLD).state.clock_ms).any()
    world.reset_state()
    again = simulate_logs(world, SMALL_LOGS, progress=False)
    pd.testing.assert_frame_equal(first, again)
    world.reset_state()
    other = simulate_logs(world, LogConfig(days=SMALL_LOGS.days, seed=2), progress=False)
    assert not first.equals(other)
    empty = simulate_logs(World(SMALL_WORLD), LogConfig(days=0), progress=False)
    assert tuple(empty.columns) == LOG_COLUMNS and len(empty) == 0


# --------------------------------------------------------------------------- generate
def generated(root: Path, name: str, seed: int, fmt: str) -> Path:
    out = root / name
    world = dataclasses.replace(SMALL_WORLD, seed=seed)
    logs = dataclasses.replace(SMALL_LOGS, seed=seed)
    generate(out, world, logs, fmt, progress=False)
    return out


@pytest.mark.parametrize("fmt", ["kuairand", "kuaisar"])
def test_generate_is_byte_identical_for_the_same_seed(tmp_path, fmt):
    a = generated(tmp_path, "a", 1, fmt)
    b = generated(tmp_path, "b", 1, fmt)
    c = generated(tmp_path, "c", 2, fmt)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert TRUTH_FILE in names and CONFIG_FILE in names
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    log_file = next(n for n in names if n.startswith(("log_standard_", "rec_inter")))
    assert (a / log_file).read_bytes() != (c / log_file).read_bytes()
    assert (a / TRUTH_FILE).read_bytes() != (c / TRUTH_FILE).read_bytes()
    # world.json rebuilds the world that wrote the logs
    rebuilt = load_world(a)
    assert rebuilt.config == World(SMALL_WORLD).config
    np.testing.assert_array_equal(rebuilt.catalogue.author, World(SMALL_WORLD).catalogue.author)


def test_world_truth_file_matches_the_logs(tmp_path):
    out = generated(tmp_path, "t", 1, "kuairand")
    truth = pd.read_parquet(out / TRUTH_FILE)
    assert list(truth.columns) == [
        "user_id",
        "item_id",
        "timestamp",
        "p_click",
        "p_long_view",
        "expected_watch_ms",
    ]
    logs = pd.concat([pd.read_csv(p) for p in sorted(out.glob("log_*_pure.csv"))])
    assert len(truth) == len(logs)
    key = ["user_id", "item_id", "timestamp"]
    left = truth[key].sort_values(key).to_numpy()
    right = (
        logs.rename(columns={"video_id": "item_id", "time_ms": "timestamp"})[key]
        .sort_values(key)
        .to_numpy()
    )
    np.testing.assert_array_equal(left, right)


# --------------------------------------------------------------------------- KuaiRand writer
def test_kuairand_file_names(kuairand_dir, logged):
    _, logs = logged
    names = sorted(p.name for p in kuairand_dir.iterdir())
    pattern = re.compile(r"log_(standard|random)_\d{1,2}_\d{2}_to_\d{1,2}_\d{2}_pure\.csv")
    logs_files = [n for n in names if n.startswith("log_")]
    assert all(pattern.fullmatch(n) for n in logs_files), logs_files
    assert any(n.startswith("log_standard_") for n in logs_files)
    assert sum(n.startswith("log_random_") for n in logs_files) == 1
    assert set(names) - set(logs_files) == {
        "user_features_pure.csv",
        "video_features_basic_pure.csv",
    }
    # the three logged days 4-08..4-10 name the standard file
    assert "log_standard_4_08_to_4_10_pure.csv" in names


def test_kuairand_headers_equal_the_real_ones(kuairand_dir):
    log_header = header(real_kuairand("log_random_4_22_to_5_08_1k.csv"))
    for path in kuairand_dir.glob("log_*_pure.csv"):
        assert header(path) == log_header, path.name
    for name in ("user_features_pure.csv", "video_features_basic_pure.csv"):
        assert header(kuairand_dir / name) == header(real_kuairand(name)), name


def test_kuairand_feature_values_use_the_real_vocabularies(kuairand_dir):
    """Categorical feature values the world writes are ones the real files contain."""
    users = pd.read_csv(kuairand_dir / "user_features_pure.csv", dtype=str)
    real_users = pd.read_csv(real_kuairand("user_features_pure.csv"), dtype=str)
    items = pd.read_csv(kuairand_dir / "video_features_basic_pure.csv", dtype=str)
    real_items = pd.read_csv(real_kuairand("video_features_basic_pure.csv"), dtype=str)
    unknown = {}
    for frame, real, columns in (
        (
            users,
            real_users,
            [
                "user_active_degree",
                "is_lowactive_period",
                "is_live_streamer",
                "follow_user_num_range",
                "fans_user_num_range",
                "friend_user_num_range",
                "register_days_range",
            ],
        ),
        (items, real_items, ["video_type", "upload_type"]),
    ):
        for col in columns:
            extra = set(frame[col].dropna()) - set(real[col].dropna())
            if extra:
                unknown[col] = sorted(extra)
    assert not unknown, f"values absent from the real KuaiRand files: {unknown}"


def test_kuairand_rows_and_columns(kuairand_dir, logged):
    _, logs = logged
    standard = pd.concat([pd.read_csv(p) for p in sorted(kuairand_dir.glob("log_standard_*"))])
    random_ = pd.read_csv(next(kuairand_dir.glob("log_random_*")))
    assert len(standard) + len(random_) == len(logs)
    assert (standard["is_rand"] == 0).all() and (random_["is_rand"] == 1).all()
    assert len(random_) == int(logs["is_rand"].sum())
    both = pd.concat([standard, random_], ignore_index=True)
    # date and hourmin are Beijing time of time_ms, hourmin rounded down to the hour
    local = pd.to_datetime(both["time_ms"], unit="ms") + pd.Timedelta(hours=8)
    np.testing.assert_array_equal(both["date"], local.dt.strftime("%Y%m%d").astype(np.int64))
    np.testing.assert_array_equal(both["hourmin"], local.dt.hour * 100)
    assert set(both["tab"]) <= {1, 4}
    merged = both.merge(
        logs.rename(columns={"item_id": "video_id", "timestamp": "time_ms"}),
        on=["user_id", "video_id", "time_ms"],
        validate="one_to_one",
    )
    assert len(merged) == len(logs)
    np.testing.assert_array_equal(merged["tab"] == 4, merged["scenario"] == SEARCH)
    for written, source in (
        ("is_click", "click"),
        ("is_hate", "hate"),
        ("play_time_ms", "watch_ms"),
        ("long_view_x", "long_view_y"),
    ):
        np.testing.assert_array_equal(merged[written], merged[source], err_msg=written)


def test_kuairand_long_view_rule_row_by_row(kuairand_dir):
    for path in kuairand_dir.glob("log_*_pure.csv"):
        df = pd.read_csv(path)
        rule = df["play_time_ms"] >= np.minimum(df["duration_ms"], LONG_VIEW_MS)
        bad = df[rule.astype(int) != df["long_view"]]
        assert bad.empty, f"{path.name}: {len(bad)} rows break the rule, e.g.\n{bad.head()}"
        assert (df["play_time_ms"] <= df["duration_ms"]).all()


def test_real_kuairand_rows_obey_the_long_view_rule_we_assume():
    """The rule the world implements, checked on real rows with a known duration."""
    df = pd.read_csv(real_kuairand("log_random_4_22_to_5_08_1k.csv"))
    df = df[df["duration_ms"] > 0]
    rule = df["play_time_ms"] >= np.minimum(df["duration_ms"], LONG_VIEW_MS)
    agree = (rule.astype(int) == df["long_view"]).mean()
    assert agree > 0.98, agree


# --------------------------------------------------------------------------- KuaiSAR writer
def test_kuaisar_files_and_columns(kuaisar_dir):
    assert sorted(p.name for p in kuaisar_dir.iterdir()) == sorted(KUAISAR_COLUMNS)
    for name, columns in KUAISAR_COLUMNS.items():
        assert header(kuaisar_dir / name) == ",".join(columns), name


def test_kuaisar_rows_match_the_logs(kuaisar_dir, logged):
    world, logs = logged
    rec = pd.read_csv(kuaisar_dir / "rec_inter.csv")
    src = pd.read_csv(kuaisar_dir / "src_inter.csv")
    assert len(rec) == int((logs["scenario"] == REC).sum())
    assert len(src) == int((logs["scenario"] == SEARCH).sum())
    assert set(rec["search"]) <= {0, 1} and set(rec["search_item_related"]) <= {0, 1}
    assert (rec["search_item_related"] <= rec["search"]).all()
    assert (rec["playing_time"] <= rec["duration_ms"]).all()
    # one search session per search request, dense ids from 1
    n_search_requests = logs.loc[logs["scenario"] == SEARCH, "request_id"].nunique()
    assert sorted(src["search_session_id"].unique()) == list(range(1, n_search_requests + 1))
    assert set(src["click_cnt"]) <= {0, 1}
    assert src["click_cnt"].sum() == logs.loc[logs["scenario"] == SEARCH, "click"].sum()
    # keyword = [1000 + query category, noise token]
    search_logs = logs[logs["scenario"] == SEARCH]
    first_token = src["keyword"].str.extract(r"^\[(\d+), \d+\]$")[0].astype(int) - 1000
    np.testing.assert_array_equal(
        np.sort(first_token.to_numpy()), np.sort(search_logs["query_category"].to_numpy())
    )
    users = pd.read_csv(kuaisar_dir / "user_features.csv")
    assert len(users) == world.n_users
    assert users["search_active_level"].between(0, 4).all()
    assert users["rec_active_level"].between(0, 4).all()


def test_kuaisar_item_categories_match_the_world(kuaisar_dir, logged):
    world, _ = logged
    items = pd.read_csv(kuaisar_dir / "item_features.csv").sort_values("item_id")
    cat = world.catalogue
    assert len(items) == cat.n_items
    np.testing.assert_array_equal(items["author_id"] - 1, cat.author)
    np.testing.assert_array_equal(items["first_level_category_id"] - 1, cat.top_category)
    n_top = WORLD.n_top_categories
    np.testing.assert_array_equal(items["second_level_category_id"] - 1 - n_top, cat.category)
    assert (items["third_level_category_id"] == 0).all()


def test_kuaisar_search_flags_point_at_the_next_search(kuaisar_dir, logged):
    """`search`: the user's next request in the session is a search; `search_item_related`: and
    that search's query category is the item's category."""
    world, logs = logged
    req = (
        logs.groupby("request_id")
        .agg(
            session=("session_id", "first"),
            ts=("timestamp", "first"),
            scenario=("scenario", "first"),
            query=("query_category", "first"),
        )
        .sort_values(["session", "ts"])
    )
    nxt = req.shift(-1)
    req["next_search"] = (nxt["session"] == req["session"]) & (nxt["scenario"] == SEARCH)
    req["next_query"] = np.where(req["next_search"], nxt["query"], -1)
    rec_logs = logs[logs["scenario"] == REC]
    next_search = req["next_search"].reindex(rec_logs["request_id"]).to_numpy()
    next_query = req["next_query"].reindex(rec_logs["request_id"]).to_numpy()
    item_cat = world.catalogue.category[rec_logs["item_id"].to_numpy()]
    rec = pd.read_csv(kuaisar_dir / "rec_inter.csv")
    np.testing.assert_array_equal(rec["search"], next_search.astype(int))
    related = next_search & (next_query == item_cat)
    assert related.sum() > 20
    np.testing.assert_array_equal(rec["search_item_related"], related.astype(int))


def test_kuaisar_social_network_holds_the_world_follows(tmp_path):
    out = generated(tmp_path, "sar", 1, "kuaisar")
    social = pd.read_csv(out / "social_network.csv")
    world = load_world(out, state="initial")  # the pre-log world, to replay the logs
    simulate_logs(world, SMALL_LOGS, progress=False)  # replays the run that wrote `out`
    follows = np.argwhere(world.state.follows)
    assert len(social) > 0
    assert not social.duplicated().any()
    # author a is user a % n_users; a user following their own channel is no social edge
    pairs = {(u, a % world.n_users) for u, a in follows if u != a % world.n_users}
    assert set(map(tuple, social.to_numpy())) == pairs


# --------------------------------------------------------------------------- CLI
def test_cli_world_generate(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["world", "generate", "--out", str(out), "--users", "100", "--items", "400"]
    argv += ["--authors", "40", "--days", "2", "--seed", "1", "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "kuairand" and summary["rows"] > 0
    assert sorted(summary["files"]) == sorted(p.name for p in out.iterdir())
    assert {"user_features_pure.csv", "video_features_basic_pure.csv"} <= set(summary["files"])
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["world"]["n_users"] == 100 and config["logs"]["days"] == 2
    # the CLI with these arguments equals `generate` with the same configs, byte for byte
    same = generated(tmp_path, "api", 1, "kuairand")
    for name in summary["files"]:
        assert (out / name).read_bytes() == (same / name).read_bytes(), name


def test_cli_world_generate_kuaisar(tmp_path, capsys):
    out = tmp_path / "sar"
    argv = ["world", "generate", "--out", str(out), "--users", "60", "--items", "300"]
    argv += ["--authors", "30", "--days", "1", "--format", "kuaisar", "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "kuaisar"
    assert set(KUAISAR_COLUMNS) <= set(summary["files"])
    rec = pd.read_csv(out / "rec_inter.csv")
    assert rec["time"].str.startswith("2023-05-2").all()  # KuaiSAR's own dates
