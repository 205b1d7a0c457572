"""`recgym bench rliv-ua`: a --tiny run writes valid tables, rows, claims and a plot, a re-run
resumes without redoing anything, --data skips the world, and the claims are computed from the
numbers (the paper's own verdicts come from the transcribed tables)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from recgym.benchmarks import rliv_ua


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("bench_out")
    work = tmp_path_factory.mktemp("bench_work")
    assert rliv_ua.main(["--tiny", "--out", str(out), "--work", str(work), "--quiet"]) == 0
    return out, work


def test_tiny_run_writes_rows_tables_claims_and_plot(tiny: tuple[Path, Path]) -> None:
    out, _ = tiny
    cfg = rliv_ua.PRESETS["tiny"]
    rows = _rows(out)
    # every agent on both backends, but the oracle (it reads the world's state) on the world only
    cells = {
        (a, b, s)
        for a in rliv_ua.AGENTS
        for b in ("learned", "world")
        for s in cfg.seeds
        if not (a == "oracle" and b == "learned")
    }
    assert len(rows) == len(cells)
    assert {(r["agent"], r["backend"], r["seed"]) for r in rows} == cells
    for row in rows:
        assert set(rliv_ua.TABLE_METRICS) <= set(row["metrics"])
        assert row["mode"] == "tiny" and row["episodes"] == cfg.episodes and row["git_sha"]
        gifts = row["metrics"]["gifts"]
        # gifts exist only on the world backend
        assert (gifts is None) == (row["backend"] == "learned")
        assert row["metrics"]["session_length"] >= 1

    columns = ["table", "backend", "agent", "label", "n_seeds"] + [
        f"{m}_{s}" for m in rliv_ua.TABLE_METRICS for s in ("mean", "ci_low", "ci_high")
    ]
    for name, agents in (("table2.csv", rliv_ua.TABLE2), ("table3.csv", rliv_ua.TABLE3)):
        table = _csv(out / name)
        assert list(table[0]) == columns
        assert [(r["backend"], r["agent"]) for r in table] == [
            (b, a)
            for b in ("learned", "world")
            for a in agents
            if not (a == "oracle" and b == "learned")
        ]
        for r in table:
            assert int(r["n_seeds"]) == len(cfg.seeds)
            assert float(r["watch_time_s_mean"]) >= 0
            assert (r["gifts_mean"] == "") == (r["backend"] == "learned")

    claims = _csv(out / "claims.csv")
    assert len(claims) == 2 * len(rliv_ua.all_claims())
    assert all(c["here"].startswith(rliv_ua.VERDICT_WORDS) for c in claims)
    long_term = [c for c in claims if c["lower"] == "myopic_watch_ranker"]
    assert {(c["backend"], c["metric"]) for c in long_term} == {
        (b, m) for b in ("learned", "world") for m in ("watch_time_s", "session_length")
    }

    md = (out / "results.md").read_text()
    for text in ("Table 2", "Table 3", "ground-truth world", "learned simulator", "12.8860"):
        assert text in md
    assert md.count("| patience oracle (reads hidden state) |") == 1  # on the world only
    assert "2 seeds only" in md
    assert md.count("| RLIV-UA |") == 6  # two backends x two tables, plus the paper's two
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["mode"] == "tiny"


def test_a_rerun_resumes_and_report_only_regenerates(tiny: tuple[Path, Path]) -> None:
    out, work = tiny
    before = (out / "rows.jsonl").read_text()
    (out / "results.md").unlink()
    assert rliv_ua.main(["--tiny", "--out", str(out), "--work", str(work), "--quiet"]) == 0
    assert (out / "rows.jsonl").read_text() == before  # nothing re-evaluated
    assert json.loads((out / "run.json").read_text())["ran"] == {}  # nothing retrained
    (out / "table2.csv").unlink()
    args = ["--tiny", "--out", str(out), "--work", str(work), "--quiet", "--report-only"]
    assert rliv_ua.main(args) == 0
    assert (out / "table2.csv").exists() and (out / "results.md").exists()


def test_real_logs_mean_no_world_backend(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    _, work = tiny
    out = tmp_path / "out"
    args = ["--tiny", "--data", str(work / "logs"), "--out", str(out), "--work", str(tmp_path)]
    assert rliv_ua.main([*args, "--agents", "random", "rliv_ua", "--quiet"]) == 0
    assert {r["backend"] for r in _rows(out)} == {"learned"}
    assert "No ground-truth evaluation" in (out / "results.md").read_text()


def test_claims_follow_the_numbers_and_the_paper_verdicts_its_tables() -> None:
    rows = []
    for seed in (0, 1, 2):
        order = ("ranking_model", "cql", "dqn", "td3", "rlur", "myopic_watch_ranker", "rliv_ua")
        for rank, agent in enumerate((*order, "rliv_ua_wo_mt")):
            metrics = {m: float(rank + 1 + 0.01 * seed) for m in rliv_ua.TABLE_METRICS}
            metrics["ctr"] = 1.0 / (rank + 1)  # RankingModel first: the highest CTR
            rows.append({"agent": agent, "backend": "world", "seed": seed, "metrics": metrics})
    results = rliv_ua.aggregate(rows)["world"]
    by_text = {}
    for claim in rliv_ua.all_claims():
        verdict = rliv_ua.judge(claim, "world", results)
        if verdict is not None:
            by_text[claim.text] = verdict
    chain = by_text["RankingModel (DeepFM) < CQL on Session Length"]
    assert chain.here == "reproduced" and chain.n == 3
    assert by_text["RLIV-UA < RankingModel (DeepFM) on CTR"].here == "reproduced"
    # w/o MT was made better than the full model here: the claim must fail
    assert by_text["RLIV-UA (w/o MT) < RLIV-UA on Watch Time (s)"].here == "contradicted"
    # the long-term claim: RLIV-UA above the myopic watch ranker on every seed
    myopic = by_text["myopic watch ranker (reference) < RLIV-UA on Watch Time (s)"]
    assert myopic.here == "reproduced"
    # the paper's Table 2 itself breaks its chain on watch time (59.48 > 58.08 > 49.55)
    verdicts = {c.text: rliv_ua.paper_verdict(c) for c in rliv_ua.paper_claims()}
    assert verdicts["RankingModel (DeepFM) < CQL on Watch Time (s)"] == "does not hold"
    assert verdicts["RLUR < RLIV-UA on Session Length"] == "holds"
    assert verdicts["RLIV-UA (w/o SL) < RLIV-UA on Session Length"].startswith("not in")


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        rliv_ua.main(["--help"])
    text = capsys.readouterr().out
    parser = rliv_ua._parser()
    for action in parser._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in text


def test_a_changed_setting_reruns_exactly_the_stages_it_affects(tiny: tuple[Path, Path]) -> None:
    """RLIV-UA's step budget retrains only the four RLIV-UA variants (per backend and seed) and
    re-evaluates only their rows; an evaluation-only setting retrains nothing and re-evaluates
    every row. Runs last: it appends rows of other settings to the shared output."""
    out, work = tiny
    cfg = rliv_ua.PRESETS["tiny"]
    base = ["--tiny", "--out", str(out), "--work", str(work), "--quiet"]
    n_before = len(_rows(out))

    steps = ["--rliv-steps", str(cfg.rliv_steps * 2)]  # 2 epochs of 4 -> of 8 steps
    assert rliv_ua.main([*base, *steps]) == 0
    ran = json.loads((out / "run.json").read_text())["ran"]
    assert set(ran) == {
        f"train {rliv_ua.AGENTS[v].label} [{b} ids] seed {s}"
        for v in rliv_ua.RLIV_VARIANTS
        for b in ("learned", "world")
        for s in cfg.seeds
    }
    new = _rows(out)[n_before:]
    assert {(r["agent"], r["backend"], r["seed"]) for r in new} == {
        (v, b, s) for v in rliv_ua.RLIV_VARIANTS for b in ("learned", "world") for s in cfg.seeds
    }
    assert len(new) == len(rliv_ua.RLIV_VARIANTS) * 2 * len(cfg.seeds)

    n_before = len(_rows(out))
    # (keeps the new step budget: a stage's work directory holds one version, the last run's)
    assert rliv_ua.main([*base, *steps, "--episodes", str(cfg.episodes + 1)]) == 0
    assert json.loads((out / "run.json").read_text())["ran"] == {}
    new = _rows(out)[n_before:]
    assert len(new) == len(rliv_ua.eval_cells(cfg))
    assert {r["episodes"] for r in new} == {cfg.episodes + 1}
