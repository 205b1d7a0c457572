"""Smoke test of `benchmarks/throughput.py`: quick mode writes valid JSONL rows and a table."""

from __future__ import annotations

import json

import pytest

from recgym.benchmarks import throughput

FIELDS = {
    "bench",
    "variant",
    "metric",
    "value",
    "unit",
    "batch",
    "target",
    "git_sha",
    "timestamp",
    "machine",
    "note",
}
EXPECTED = {  # (bench, variant, metric, batch)
    *(
        ("world_step", None, metric, batch)
        for metric in ("responses_per_s", "step_ms")
        for batch in (1, 64, 1024)
    ),
    ("full_request", None, "requests_per_s", 1024),
    ("full_request", None, "request_ms", 1024),
    ("log_generate", None, "seconds", None),
    ("log_generate", None, "rows_per_s", None),
    ("log_generate", None, "rows", None),
    ("log_load", None, "seconds", None),
    ("log_load", None, "rows_per_s", None),
    *(
        ("sim_inference", variant, metric, batch)
        for variant, ms in (("step", "step_ms"), ("forward", "forward_ms"))
        for metric in ("responses_per_s", ms)
        for batch in (1, 64, 1024)
    ),
    ("env_step", "world/raw", "steps_per_s", 1),
    ("env_step", "world/collector", "steps_per_s", 4),
    ("env_step", "learned/raw", "steps_per_s", 1),
    ("env_step", "learned/collector", "steps_per_s", 4),
    ("sim_train", None, "seconds", None),
    ("sim_train", None, "peak_mb", None),
    ("sim_train", None, "rows", None),
}


def test_quick_run_writes_jsonl_and_markdown(tmp_path):
    rows = throughput.run(tmp_path, quick=True)
    lines = (tmp_path / throughput.JSONL).read_text().splitlines()
    assert len(lines) == len(rows)
    parsed = [json.loads(line) for line in lines]
    assert parsed == rows
    for row in parsed:
        assert FIELDS <= set(row), row
        assert isinstance(row["value"], float) and row["value"] > 0, row
        assert {"nproc", "python", "numpy"} <= set(row["machine"])
        assert row["machine"]["torch_threads"] == throughput.TORCH_THREADS
        assert row["mode"] == "quick"
    keys = [throughput.row_key(r) for r in parsed]
    assert len(keys) == len(set(keys))  # one row per key and run
    assert set(keys) == EXPECTED
    targeted = [r for r in parsed if r["target"] is not None]
    # quick mode writes a small log and trains on it, so only the speed targets apply
    assert [throughput.row_key(r) for r in targeted] == [
        ("world_step", None, "responses_per_s", 1024),
        ("sim_inference", "step", "responses_per_s", 1024),
    ]
    assert [(r["target_op"], r["target"]) for r in targeted] == [(">=", 200_000), (">=", 50_000)]

    value = {throughput.row_key(r): r["value"] for r in parsed}
    log_rows = value[("log_generate", None, "rows", None)]
    assert value[("sim_train", None, "rows", None)] == log_rows  # trained on that same log
    sim_train = next(r for r in parsed if r["bench"] == "sim_train")
    assert "log_generate bench's log" in sim_train["note"]
    assert 50 < value[("sim_train", None, "peak_mb", None)] < 16_000  # MB, not KiB or bytes
    for batch in (1, 64, 1024):  # the rate and the time per call are the same measurement
        step_ms = value[("sim_inference", "step", "step_ms", batch)]
        rate = value[("sim_inference", "step", "responses_per_s", batch)]
        assert rate == pytest.approx(batch * throughput.SLATE / (step_ms / 1e3))

    table = (tmp_path / throughput.MARKDOWN).read_text().splitlines()
    body = [line for line in table if line.startswith("| ") and not line.startswith("| bench")]
    assert len(body) == len(rows)  # one line per (bench, variant, metric, batch)
    width = table[table.index(body[0]) - 1].count("|")
    assert all(line.count("|") == width for line in body)
    assert any("world_step | - | responses_per_s | 1024" in line for line in body)
    assert any("sim_inference | step | responses_per_s | 1024" in line for line in body)
    assert any("env_step | learned/collector | steps_per_s | 4" in line for line in body)


def test_a_given_checkpoint_is_used_and_tiled_to_the_batch(tmp_path, tiny_checkpoint):
    rows = throughput.run(tmp_path, quick=True, checkpoint=tiny_checkpoint, only=["sim_inference"])
    assert {r["bench"] for r in rows} == {"sim_inference"}
    assert {r["batch"] for r in rows} == {1, 64, 1024}  # more than the checkpoint's 120 users
    assert all(str(tiny_checkpoint) in r["note"] and r["value"] > 0 for r in rows)
    with pytest.raises(ValueError, match="unknown benches"):
        throughput.run(tmp_path, quick=True, only=["nope"])


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        throughput.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--quick", "--checkpoint", "--only", "--torch-threads"):
        assert option in text
    assert all(name in text for name in throughput.BENCHES)


def test_table_keeps_the_latest_full_row_per_key(tmp_path):
    throughput.run(tmp_path, quick=True, only=["world_step"])
    first = throughput.read_rows(tmp_path / throughput.JSONL)
    full = dict(first[0], mode="full", value=123.0, timestamp="2000-01-01T00:00:00+00:00")
    newer_quick = dict(first[0], mode="quick", value=7.0)
    old_style = {k: v for k, v in first[0].items() if k != "variant"}  # rows before variants
    with open(tmp_path / throughput.JSONL, "a") as f:
        for row in (full, newer_quick, old_style):
            f.write(json.dumps(row) + "\n")
    latest = throughput.latest_rows(throughput.read_rows(tmp_path / throughput.JSONL))
    key = throughput.row_key(first[0])
    picked = [r for r in latest if throughput.row_key(r) == key]
    assert len(picked) == 1 and picked[0]["value"] == 123.0
    assert throughput.passes({"value": 5.0, "target": 10.0, "target_op": "<="}) is True
    assert throughput.passes({"value": 5.0, "target": 10.0, "target_op": ">="}) is False
    assert throughput.passes({"value": 5.0, "target": None}) is None
