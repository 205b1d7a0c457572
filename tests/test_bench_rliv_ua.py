"""`recgym bench rliv-ua` on the bench engine: a --tiny run writes rows, tables, claims and plots;
a re-run reuses every stage; a changed setting reruns exactly the stages it reaches; --data skips
the world; the claims follow the numbers and the paper's verdicts its transcribed tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recgym.benchmarks import rliv_ua
from recgym.benchmarks.engine import ROW_FIELDS, stage_log
from recgym.benchmarks.rliv_ua.stages import eval_stage, stages, train_stage

PRESETS_FULL = rliv_ua.PRESETS["full"]


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines() if line]


def _run(out: Path, work: Path, *extra: str) -> dict[str, str]:
    """Run the tiny preset; returns {stage: "ran" | "reused"} of this run."""
    before = len(stage_log(work))
    argv = ["--tiny", "--out", str(out), "--work", str(work), "--quiet", *extra]
    assert rliv_ua.main(argv) == 0
    return {line["stage"]: line["action"] for line in stage_log(work)[before:]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    out = tmp_path_factory.mktemp("bench_out")
    work = tmp_path_factory.mktemp("bench_work")
    return out, work, _run(out, work)


def test_tiny_run_writes_rows_tables_claims_and_plots(tiny) -> None:
    out, _, actions = tiny
    cfg = rliv_ua.PRESETS["tiny"]
    assert set(actions.values()) == {"ran"}
    rows = _rows(out)
    # every agent on both backends, but the oracle (it reads the world's state) on the world only
    backends = ("learned", "learned_b", "world")  # the second simulator: nobody trained there
    assert cfg.backends == backends
    cells = {
        (a, b, s)
        for a in rliv_ua.AGENTS
        for b in backends
        for s in cfg.seeds
        if not (a == "oracle" and b != "world")
    }
    assert {(r["agent"], r["backend"], r["seed"]) for r in rows} == cells
    for row in rows:
        assert set(ROW_FIELDS) <= set(row) and row["provenance"]["git_commit"]
        assert row["episodes"] == cfg.episodes
    metrics = {(r["agent"], r["backend"], r["seed"]): set() for r in rows}
    for r in rows:
        metrics[r["agent"], r["backend"], r["seed"]].add(r["metric"])
    for (_, backend, _), names in metrics.items():
        assert set(rliv_ua.TABLE_METRICS) - {"gifts"} <= names
        assert ("gifts" in names) == (backend == "world")  # gifts exist on the world only
    assert all(r["value"] >= 1 for r in rows if r["metric"] == "session_length")

    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == set(backends)
    assert "oracle" not in results["results"]["learned"]
    shift = results["facts"]["counter_shift"]  # the train/serve shift is measured
    assert set(shift["training"]) == {"learned", "world"} and set(shift["served"]) == set(backends)
    claims = json.loads((out / "claims.json").read_text())["verdicts"]
    assert len(claims) == 3 * len(rliv_ua.all_claims())
    assert {c["verdict"] for c in claims} <= {"reproduced", "contradicted", "inconclusive"}
    long_term = [c for c in claims if c["claim"]["b"] == "myopic_watch_ranker"]
    assert {(c["backend"], c["claim"]["metric"]) for c in long_term} == {
        (b, m) for b in backends for m in ("watch_time_s", "session_length")
    }
    items = [c for c in claims if c["claim"]["b"] == "rliv_ua_author_only"]
    assert len(items) == 2 * len(backends)
    md = (out / "results.md").read_text()
    for text in ("Table 2", "Table 3", "ground-truth world", "learned simulator", "12.8860"):
        assert text in md
    assert md.count("| patience oracle (reads hidden state) |") == 1  # on the world only
    assert "2 seeds only" in md
    assert md.count("| RLIV-UA |") == 8  # three backends x two tables, plus the paper's two
    assert md.count("| RLIV-UA (author-only state) |") == 6
    assert (out / "watch_time_s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "config.json").read_text())["mode"] == "tiny"


@pytest.mark.slow  # two more tiny runs (about a minute)
def test_a_changed_setting_reruns_exactly_the_stages_it_affects(tiny) -> None:
    """Same settings: every stage reused, identical rows. RLIV-UA's step budget: only the four
    variants' training (per backend and seed) and their evaluations rerun. An evaluation-only
    setting: only the evaluations rerun."""
    out, work, _ = tiny
    cfg = rliv_ua.PRESETS["tiny"]
    before = (out / "rows.jsonl").read_text()
    assert set(_run(out, work).values()) == {"reused"}
    assert (out / "rows.jsonl").read_text() == before

    variants = rliv_ua.RLIV_VARIANTS
    actions = _run(out, work, "--rliv-steps", str(cfg.rliv_steps * 2))
    spaces = ("learned", "world")  # the two simulators share one id space
    expected = {train_stage(v, s, b) for v in variants for b in spaces for s in cfg.seeds}
    expected |= {eval_stage(v, s) for v in variants for s in cfg.seeds}
    assert {n for n, a in actions.items() if a == "ran"} == expected
    assert set(actions) == {s.name for s in stages(cfg)}

    actions = _run(out, work, "--episodes", str(cfg.episodes + 1))
    ran = {n for n, a in actions.items() if a == "ran"}
    assert ran == {n for n in actions if n.startswith("evaluate-")}
    assert {r["episodes"] for r in _rows(out)} == {cfg.episodes + 1}


@pytest.mark.slow  # one more tiny run
def test_real_logs_mean_no_world_backend(tiny, tmp_path: Path) -> None:
    _, work, _ = tiny
    logs = next(p for p in (work / "logs").iterdir() if (p / "stage.json").exists())
    out = tmp_path / "out"
    args = ["--tiny", "--data", str(logs), "--out", str(out), "--work", str(tmp_path / "w")]
    assert rliv_ua.main([*args, "--agents", "random", "rliv_ua", "--quiet"]) == 0
    assert {r["backend"] for r in _rows(out)} == {"learned", "learned_b"}
    assert "No ground-truth evaluation" in (out / "results.md").read_text()


def test_claims_follow_the_numbers_and_the_paper_verdicts_its_tables() -> None:
    from recgym.benchmarks.claims import judge_rows
    from recgym.benchmarks.rliv_ua.report import claim_text

    rows = []
    order = ("ranking_model", "cql", "dqn", "td3", "rlur", "myopic_watch_ranker", "rliv_ua")
    for seed in (0, 1, 2):
        for rank, agent in enumerate((*order, "rliv_ua_wo_mt")):
            for metric in rliv_ua.TABLE_METRICS:
                # RankingModel first on CTR, otherwise every agent above the one before
                value = 1.0 / (rank + 1) if metric == "ctr" else rank + 1 + 0.01 * seed
                rows.append(dict(agent=agent, backend="world", seed=seed, metric=metric,
                                 value=value))  # fmt: skip
    by_text = {claim_text(v.claim): v for v in judge_rows(rliv_ua.all_claims(), rows)}
    chain = by_text["RankingModel (DeepFM) < CQL on Session Length"]
    assert chain.verdict == "reproduced" and len(chain.seeds) == 3
    assert by_text["RLIV-UA < RankingModel (DeepFM) on CTR"].verdict == "reproduced"
    # w/o MT was made better than the full model here: the claim must fail
    assert by_text["RLIV-UA (w/o MT) < RLIV-UA on Watch Time (s)"].verdict == "contradicted"
    myopic = by_text["myopic watch ranker (reference) < RLIV-UA on Watch Time (s)"]
    assert myopic.verdict == "reproduced"
    # the paper's Table 2 itself breaks its chain on watch time (59.48 > 58.08 > 49.55)
    verdicts = {claim_text(c): rliv_ua.paper_verdict(c) for c in rliv_ua.paper_claims()}
    assert verdicts["RankingModel (DeepFM) < CQL on Watch Time (s)"] == "does not hold"
    assert verdicts["RLUR < RLIV-UA on Session Length"] == "holds"
    assert verdicts["RLIV-UA (w/o SL) < RLIV-UA on Session Length"].startswith("not in")


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        rliv_ua.main(["--help"])
    text = capsys.readouterr().out
    for action in rliv_ua.parser()._actions:
        assert action.help, action.option_strings
        for option in action.option_strings:
            assert option in text


def test_several_worlds_each_get_their_own_stages_and_pool_by_world_and_seed() -> None:
    """Two worlds: every stage once per world under its prefix, deps inside the same world,
    seeds of the logs/simulators per world; the report pairs rows only within (world, seed)."""
    from dataclasses import replace

    from recgym.benchmarks.rliv_ua.report import pooled_rows

    one = rliv_ua.PRESETS["tiny"]
    two = replace(one, world_seeds=(3, 7))
    single = stages(one)
    multi = {s.name: s for s in stages(two)}
    assert len(multi) == 2 * len(single)
    for world in (3, 7):
        for stage in single:
            got = multi[f"w{world}-{stage.name}"]
            assert got.deps == tuple(f"w{world}-{d}" for d in stage.deps)
        assert multi[f"w{world}-logs"].config["world"].seed == world
        assert multi[f"w{world}-logs"].config["logs"].seed == world
        assert multi[f"w{world}-simulator"].config["simulator"].seed == world
        assert multi[f"w{world}-{eval_stage('random', 0)}"].config["world"] == world
    assert {s.name for s in single} == {s.name for s in stages(replace(one, world_seeds=(0,)))}
    assert PRESETS_FULL.world_seeds == (0, 1) and len(PRESETS_FULL.seeds) >= 5

    rows = [
        dict(agent=a, backend="world", seed=s, world=w, metric="watch_time_s", value=v)
        for w in (3, 7)
        for s in (0, 1)
        for a, v in (("rliv_ua", 10.0 + w + s), ("random", 1.0))
    ]
    pooled = pooled_rows(two, rows)
    assert sorted({r["seed"] for r in pooled}) == [3000, 3001, 7000, 7001]
    assert pooled_rows(one, rows[:4]) == rows[:4]
    with pytest.raises(ValueError, match="world_seeds"):
        replace(one, world_seeds=(1, 1))
    with pytest.raises(ValueError, match="--data"):
        replace(one, world_seeds=(0, 1), data="/nowhere")


@pytest.mark.slow  # two worlds x two seeds of the tiny preset (about 1.5 minutes)
def test_two_worlds_run_as_one_command_and_merge_into_one_table(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    agents = ("random", "myopic_watch_ranker", "rliv_ua", "oracle")
    actions = _run(out, work, "--world-seeds", "0", "1", "--agents", *agents)
    assert set(actions.values()) == {"ran"}
    assert {n.split("-")[0] for n in actions} == {"w0", "w1"}
    rows = _rows(out)
    assert {(r["world"], r["seed"]) for r in rows} == {(w, s) for w in (0, 1) for s in (0, 1)}
    results = json.loads((out / "results.json").read_text())
    cell = results["results"]["world"]["rliv_ua"]["watch_time_s"]
    assert len(cell["per_seed"]) == 4  # one pooled cell over the 2 x 2 (world, seed) pairs
    claims = json.loads((out / "claims.json").read_text())["verdicts"]
    assert claims and all(len(c["seeds"]) == 4 for c in claims)
    assert set(results["facts"]["worlds"]) == {"0", "1"}
    assert "Pooling over worlds" in (out / "results.md").read_text()
