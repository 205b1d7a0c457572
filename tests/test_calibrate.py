"""World calibration against KuaiRand's random exposures (`recgym world calibrate`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from recgym.cli import main
from recgym.simulators import calibrate as cal

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "kuairand"
needs_real = pytest.mark.skipif(
    not any(REAL.glob("log_random_*.csv")), reason=f"no KuaiRand random log at {REAL}"
)


def hand_frame() -> pd.DataFrame:
    """Three users, eight rows; every statistic worked out by hand below."""
    return pd.DataFrame(
        {
            "user_id": [0, 0, 0, 1, 1, 1, 2, 2],
            "is_click": [1, 1, 0, 1, 0, 0, 1, 0],
            "long_view": [1, 0, 0, 1, 0, 0, 0, 0],
            "is_like": [1, 0, 0, 0, 0, 0, 0, 0],
            "is_follow": [0, 0, 0, 0, 0, 0, 0, 0],
            "is_comment": [0, 0, 0, 1, 0, 0, 0, 0],
            "is_hate": [0, 0, 1, 0, 0, 0, 0, 1],
            "play_time_ms": [10_000, 4_000, 1_000, 30_000, 2_000, 1_000, 6_000, 2_000],
            "duration_ms": [10_000, 40_000, 20_000, 60_000, 0, 50_000, 120_000, 30_000],
        }
    )


def test_statistics_on_a_hand_made_frame():
    s = cal.statistics(hand_frame())
    assert s["click_rate"] == 4 / 8 and s["long_view_rate"] == 2 / 8
    assert s["like_rate"] == 1 / 8 and s["follow_rate"] == 0.0
    assert s["comment_rate"] == 1 / 8 and s["hate_rate"] == 2 / 8
    assert s["mean_play_time_s"] == pytest.approx(56_000 / 8 / 1000)
    # the unknown (0) duration is left out: 10, 20, 30, 40, 50, 60, 120 s -> 40 s
    assert s["median_duration_s"] == 40.0
    # clicked rows: durations 10, 40, 60, 120 s; fractions 1, 0.1, 0.5, 0.05; plays 10, 4, 30, 6 s
    assert s["rho_duration_watched_fraction"] == pytest.approx(-0.8)
    assert s["rho_duration_play_time"] == pytest.approx(0.0, abs=1e-12)
    # user CTRs 2/3, 1/3, 1/2 -> numpy's 90th percentile
    assert s["p90_user_ctr"] == pytest.approx(np.quantile([2 / 3, 1 / 3, 1 / 2], 0.9))


def test_weighted_replicates_equal_statistics_of_the_expanded_sample():
    """A bootstrap replicate (user weights) gives what the duplicated rows give, ties included."""
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 30, n),
            "is_click": (rng.random(n) < 0.4).astype(int),
            "long_view": (rng.random(n) < 0.2).astype(int),
            "is_like": (rng.random(n) < 0.05).astype(int),
            "is_follow": np.zeros(n, dtype=int),
            "is_comment": (rng.random(n) < 0.02).astype(int),
            "is_hate": (rng.random(n) < 0.02).astype(int),
            "play_time_ms": rng.integers(0, 20, n) * 1000.0,  # many ties
            "duration_ms": rng.choice([5_000.0, 20_000.0, 80_000.0, 200_000.0], n),
        }
    )
    prep = cal._Prepared(frame)
    weights = rng.multinomial(prep.n_users, np.full(prep.n_users, 1 / prep.n_users))
    users = np.sort(frame["user_id"].unique())
    expanded = pd.concat(
        [
            frame[frame["user_id"] == u]
            for u, m in zip(users, weights, strict=True)
            for _ in range(m)
        ]
    )
    got = prep.stats(weights.astype(float))
    want = cal.statistics(expanded)
    for stat in cal.STATS:
        if stat == "p90_user_ctr":  # copies of a user are one user in `expanded`
            continue
        assert got[stat] == pytest.approx(want[stat], abs=1e-12), stat
    clicked = expanded[expanded["is_click"] == 1]
    rho = spearmanr(clicked["duration_ms"], clicked["play_time_ms"])[0]
    assert got["rho_duration_play_time"] == pytest.approx(rho, abs=1e-12)


def test_clopper_pearson_exact_values():
    low, high = cal.clopper_pearson(0, 1051)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 1051))
    low, high = cal.clopper_pearson(1051, 1051)
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 1051))
    low, high = cal.clopper_pearson(5, 100)
    assert low == pytest.approx(0.01643, abs=1e-4) and high == pytest.approx(0.11283, abs=1e-4)


def test_intervals_use_clopper_pearson_for_rare_events_and_are_seeded():
    frame = hand_frame()
    a = cal.intervals(frame, n_boot=300, seed=1)
    b = cal.intervals(frame, n_boot=300, seed=1)
    assert a == b
    for stat in cal.RATES:  # every rate of the hand frame has < 10 events
        assert a[stat]["method"] == "Clopper-Pearson"
        low, high = cal.clopper_pearson(a[stat]["events"], len(frame))
        assert (a[stat]["low"], a[stat]["high"]) == (low, high)
    assert a["follow_rate"]["low"] == 0.0 and a["follow_rate"]["high"] > 0.3
    assert a["mean_play_time_s"]["method"] == "user bootstrap"
    lo, hi = a["mean_play_time_s"]["low"], a["mean_play_time_s"]["high"]
    assert lo < cal.statistics(frame)["mean_play_time_s"] < hi
    # a frequent event gets the user bootstrap
    big = pd.concat([frame] * 20, ignore_index=True)
    big["user_id"] = np.repeat(np.arange(20), len(frame)) * 3 + big["user_id"]
    assert cal.intervals(big, n_boot=200)["click_rate"]["method"] == "user bootstrap"


def test_compare_marks_within_and_required():
    frame = hand_frame()
    result = cal.compare(frame, frame, cal.CalibrationConfig(n_boot=200))
    assert list(result) == list(cal.STATS)
    for stat, row in result.items():
        assert set(row) >= {"real", "real_low", "real_high", "world", "within"}
        assert row["required"] == (stat != "p90_user_ctr")
    assert result["click_rate"]["within"] and not cal.failures(result)


# ------------------------------------------------------------------ the command
@needs_real
def test_cli_calibrate_passes_on_the_default_world(tmp_path, capsys):
    """The issue's acceptance check: the default world is within every required interval."""
    out = tmp_path / "cal"
    assert (
        main(["world", "calibrate", "--real", str(REAL), "--out", str(out), "--n-boot", "500"]) == 0
    )
    printed = capsys.readouterr().out
    assert "PASS" in printed and "Clopper-Pearson" in printed
    result = json.loads((out / "calibration.json").read_text())
    assert set(result) == set(cal.STATS)
    assert all(result[s]["within"] for s in cal.REQUIRED)
    # the sample has no comment or hate: exact intervals, not a degenerate [0, 0] bootstrap
    for stat in ("comment_rate", "hate_rate"):
        assert result[stat]["interval"] == "Clopper-Pearson" and result[stat]["real_high"] > 0
    md = (out / "calibration.md").read_text()
    assert "| click rate |" in md and "Clopper-Pearson" in md


@needs_real
def test_cli_calibrate_fails_with_exit_1_and_names_the_statistic(tmp_path, capsys):
    """A tiny world logged for one day cannot match: exit 1 and the failing statistics named."""
    argv = ["world", "calibrate", "--real", str(REAL), "--out", str(tmp_path / "c")]
    argv += ["--users", "40", "--items", "60", "--authors", "10", "--days", "1", "--n-boot", "100"]
    assert main(argv) == 1
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("FAIL")]
    assert len(line) == 1
    failed = json.loads((tmp_path / "c" / "calibration.json").read_text())
    named = [s for s in cal.REQUIRED if not failed[s]["within"]]
    assert named and all(s in line[0] for s in named)


def test_cli_calibrate_bad_real_data_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "log_random_4_22_to_5_08_1k.csv").write_text("user_id,video_id\n1,x\n")
    argv = ["world", "calibrate", "--real", str(bad), "--out", str(tmp_path / "o")]
    assert main(argv + ["--users", "20", "--items", "60", "--authors", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "log_random" in err[0]
    # a directory that is not there
    assert (
        main(["world", "calibrate", "--real", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_calibrate_unwritable_out_exits_2_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = blocker / "sub"
    assert main(["world", "calibrate", "--real", str(REAL), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
