"""Smoke test of `benchmarks/throughput.py`: quick mode writes valid JSONL rows and a table."""

from __future__ import annotations

import json

from recgym.benchmarks import throughput

FIELDS = {
    "bench",
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
EXPECTED = {
    ("world_step", "responses_per_s", 1),
    ("world_step", "responses_per_s", 64),
    ("world_step", "responses_per_s", 1024),
    ("world_step", "step_ms", 1024),
    ("full_request", "requests_per_s", 1024),
    ("log_generate", "seconds", None),
    ("log_generate", "rows_per_s", None),
    ("log_load", "seconds", None),
    ("log_load", "rows_per_s", None),
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
        assert row["mode"] == "quick"
    assert EXPECTED <= {(r["bench"], r["metric"], r["batch"]) for r in parsed}
    targeted = [r for r in parsed if r["target"] is not None]
    # quick mode writes a small log, so only the step target applies
    assert [(r["bench"], r["metric"], r["batch"]) for r in targeted] == [
        ("world_step", "responses_per_s", 1024)
    ]
    assert targeted[0]["target"] == 200_000 and targeted[0]["target_op"] == ">="

    table = (tmp_path / throughput.MARKDOWN).read_text().splitlines()
    body = [line for line in table if line.startswith("| ") and not line.startswith("| bench")]
    assert len(body) == len(rows)  # one line per (bench, metric, batch)
    width = table[table.index(body[0]) - 1].count("|")
    assert all(line.count("|") == width for line in body)
    assert any("world_step | responses_per_s | 1024" in line for line in body)


def test_table_keeps_the_latest_full_row_per_key(tmp_path):
    throughput.run(tmp_path, quick=True)
    first = throughput.read_rows(tmp_path / throughput.JSONL)
    full = dict(first[0], mode="full", value=123.0, timestamp="2000-01-01T00:00:00+00:00")
    newer_quick = dict(first[0], mode="quick", value=7.0)
    with open(tmp_path / throughput.JSONL, "a") as f:
        f.write(json.dumps(full) + "\n" + json.dumps(newer_quick) + "\n")
    latest = throughput.latest_rows(throughput.read_rows(tmp_path / throughput.JSONL))
    key = (first[0]["bench"], first[0]["metric"], first[0]["batch"])
    picked = [r for r in latest if (r["bench"], r["metric"], r["batch"]) == key]
    assert len(picked) == 1 and picked[0]["value"] == 123.0
    assert throughput.passes({"value": 5.0, "target": 10.0, "target_op": "<="}) is True
    assert throughput.passes({"value": 5.0, "target": 10.0, "target_op": ">="}) is False
    assert throughput.passes({"value": 5.0, "target": None}) is None
