"""Smoke test of `benchmarks/throughput/`: quick mode writes valid JSONL rows and a table."""

from __future__ import annotations

import json
import subprocess

import pytest

from recgym.benchmarks import throughput
from recgym.benchmarks.engine import provenance
from recgym.benchmarks.throughput import ThroughputConfig

FIELDS = {
    "bench",
    "variant",
    "metric",
    "value",
    "unit",
    "batch",
    "target",
    "target_op",
    "mode",
    "threads",
    "note",
    "provenance",
}
PROVENANCE = {"git_commit", "dirty_tree", "machine", "python", "numpy", "torch", "date"}
SESSION_PARTS = (
    "sample",
    "reset",
    "gymnasium wrappers",
    "single-env unpacking",
    "slate from scores",
    "user response",
    "session bookkeeping",
    "candidate retrieval",
    "observation",
    "core rest",
    "loop",
    "total",
    "total uninstrumented",
)
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
    *(
        (bench, variant, metric, 256)
        for bench, variant in (
            ("vector_env", "world"),
            ("vector_env", "learned"),
            ("env_step", "world/collector-native"),
            ("env_step", "world/collector-native-batched"),
            ("env_step", "world/collector-native-flat"),
        )
        for metric in ("steps_per_s", "steps_per_cpu_s")
    ),
    ("sim_train", None, "seconds", None),
    ("sim_train", None, "peak_mb", None),
    ("sim_train", None, "rows", None),
    *(("step_profile", f"recgym/Session-v0: {part}", "us_per_step", 1) for part in SESSION_PARTS),
}


PEER_INSTALLED = {
    *(
        ("peer_env_step", variant, metric, 1)
        for variant in ("sardine/SlateTopK-Bored-v0", "recgym/Session-v0")
        for metric in ("steps_per_s", "steps_per_cpu_s")
    ),
    ("peer_env_step", "recgym/Session-v0", "ratio_to_sardine", 1),
}
PEER_INSTALLED |= {
    ("step_profile", f"sardine/SlateTopK-Bored-v0: {part}", "us_per_step", 1)
    for part in ("sample", "env step", "reset", "total")
}
PEER_MISSING = {("peer_env_step", "sardine/SlateTopK-Bored-v0", "installed", 1)}


def test_quick_run_writes_jsonl_and_markdown(tmp_path):
    only = tuple(name for name in throughput.BENCHES if name != "dqn_train")  # slow: own test
    rows = throughput.run(ThroughputConfig(out=str(tmp_path), quick=True, only=only))
    lines = (tmp_path / throughput.JSONL).read_text().splitlines()
    assert len(lines) == len(rows)
    parsed = [json.loads(line) for line in lines]
    assert parsed == rows
    for row in parsed:
        assert FIELDS <= set(row), row
        installed_row = row["metric"] == "installed"  # the peer is not installed: value 0
        # the loop's own cost (total less the timed parts) can time as 0 or a hair below
        positive = row["value"] > 0 or installed_row or (row["variant"] or "").endswith(": loop")
        assert isinstance(row["value"], float) and positive, row
        assert set(row["provenance"]) == PROVENANCE  # the engine's stamp, not the bench's own
        assert row["provenance"]["git_commit"] == provenance()["git_commit"]
        assert row["threads"] == {"numpy": throughput.THREADS, "torch": throughput.TORCH_THREADS}
        assert row["mode"] == "quick"
    keys = [throughput.row_key(r) for r in parsed]
    assert len(keys) == len(set(keys))  # one row per key and run
    assert set(keys) in (EXPECTED | PEER_INSTALLED, EXPECTED | PEER_MISSING)
    if set(keys) & PEER_MISSING:
        assert "not installed" in next(r for r in parsed if r["metric"] == "installed")["note"]
    targeted = {throughput.row_key(r): (r["target_op"], r["target"]) for r in parsed if r["target"]}
    # quick mode writes a small log and trains on it, so only the speed targets apply
    assert targeted == {
        key: value
        for key, value in throughput.TARGETS.items()
        if key in set(keys) and key[0] not in throughput.SIZED_BENCHES
    }
    assert targeted[("world_step", None, "responses_per_s", 1024)] == (">=", 200_000)
    assert targeted[("vector_env", "world", "steps_per_cpu_s", 256)] == (">=", 100_000)

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


@pytest.mark.slow
def test_dqn_train_bench_quick(tmp_path):
    rows = throughput.run(ThroughputConfig(out=str(tmp_path), quick=True, only=("dqn_train",)))
    assert [throughput.row_key(r) for r in rows] == [
        ("dqn_train", None, "steps_per_s", 4),
        ("dqn_train", None, "steps_per_cpu_s", 4),
    ]
    assert rows[0]["value"] > 0 and rows[1]["target"] == 850.0
    assert "gradient steps" in rows[0]["note"]


def test_a_given_checkpoint_is_used_and_tiled_to_the_batch(tmp_path, tiny_checkpoint):
    config = ThroughputConfig(
        out=str(tmp_path), quick=True, checkpoint=str(tiny_checkpoint), only=("sim_inference",)
    )
    rows = throughput.run(config)
    assert {r["bench"] for r in rows} == {"sim_inference"}
    assert {r["batch"] for r in rows} == {1, 64, 1024}  # more than the checkpoint's 120 users
    assert all(str(tiny_checkpoint) in r["note"] and r["value"] > 0 for r in rows)
    with pytest.raises(ValueError, match="unknown benches"):
        ThroughputConfig(out=str(tmp_path), quick=True, only=("nope",))


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        throughput.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--quick", "--checkpoint", "--only", "--torch-threads"):
        assert option in text
    assert all(name in text for name in throughput.BENCHES)
    assert "smoke-test sizes" in text  # help comes from the config fields' docstrings


def test_command_line_sets_every_config_field():
    config = throughput.parse_args(
        ["--out", "/tmp/x", "--quick", "--checkpoint", "ck", "--only", "logs", "sim_train",
         "--torch-threads", "2"]
    )  # fmt: skip
    assert config == ThroughputConfig(
        out="/tmp/x", quick=True, checkpoint="ck", only=("logs", "sim_train"), torch_threads=2
    )
    assert throughput.parse_args([]) == ThroughputConfig()
    with pytest.raises(SystemExit):
        throughput.parse_args(["--only", "nope"])


def test_provenance_hash_sees_untracked_files(tmp_path):
    """The rows' dirty-tree hash changes with an untracked file (the old stamp ignored them)."""
    from recgym.benchmarks.engine import tree_provenance

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("a")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    clean = tree_provenance.__wrapped__(tmp_path)["dirty_tree"]
    (tmp_path / "new.txt").write_text("untracked")
    dirty = tree_provenance.__wrapped__(tmp_path)["dirty_tree"]
    assert clean == "clean" and dirty not in ("clean", "unknown")


def test_table_shows_provenance_and_reads_old_rows():
    new = throughput.make_row("world_step", "step_ms", 1.5, "ms", 1, "n", quick=False, threads=2,
                              torch_threads=1)  # fmt: skip
    old = {  # a row written before the engine's provenance
        "bench": "log_load", "metric": "seconds", "value": 0.5, "unit": "s", "batch": None,
        "target": 10.0, "target_op": "<=", "mode": "full", "git_sha": "aed379ef31c6-dirty",
        "timestamp": "2026-11-23T10:28:36+00:00", "note": "old",
        "machine": {"nproc": 2, "python": "3.11.7", "numpy": "2.4.6"},
    }  # fmt: skip
    lines = throughput.markdown([old, new]).splitlines()
    assert any("aed379ef31c6-dirty" in line and "2026-11-23" in line for line in lines)
    prov = new["provenance"]
    git = prov["git_commit"][:12]
    line = next(line for line in lines if line.startswith("| world_step"))
    assert git in line and prov["date"][:10] in line
    if prov["dirty_tree"] != "clean":
        assert f"+dirty {prov['dirty_tree'][:8]}" in line


def test_table_keeps_the_latest_full_row_per_key(tmp_path):
    throughput.run(ThroughputConfig(out=str(tmp_path), quick=True, only=("world_step",)))
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


def test_step_profile_parts_add_up_to_the_step():
    from recgym.benchmarks.throughput.step_profile import profile_session_step

    us = profile_session_step(300)
    parts = {k: v for k, v in us.items() if not k.startswith("total")}
    assert set(parts) == set(SESSION_PARTS) - {"total", "total uninstrumented"}
    inner = {k: v for k, v in parts.items() if k != "loop"}
    # every wrapper was reached, and no part is counted twice (a remainder would go negative)
    assert all(v > 0 for v in inner.values()), inner
    assert us["loop"] < 0.1 * us["total"]  # the timers saw almost all of the loop's time
    assert us["user response"] > us["sample"]  # the world's step, not the action sampler
