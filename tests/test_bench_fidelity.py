"""`recgym bench fidelity`: the ranking statistics against hand-computed answers, a --tiny run
through the CLI (outputs' schema, tau recomputed from the written values), a resumed rerun,
and the fidelity report's defect flag and non-logging-policy session lengths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from recgym.benchmarks import fidelity
from recgym.benchmarks import fidelity_responses as fr
from recgym.benchmarks.engine import stage_log
from recgym.cli import main as cli_main
from recgym.simulators.fidelity import _auc_defects, render_markdown


# --------------------------------------------------------------------------- statistics
def test_ranking_stats_hand_computed() -> None:
    # one discordant pair of six: tau = (5 - 1) / 6; agreement 5/6; both tops are policy 3
    s = fidelity.ranking_stats([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert s["kendall_tau"] == pytest.approx(4 / 6)
    assert s["pairwise_agreement"] == pytest.approx(5 / 6)
    assert s["regret_at_1"] == {
        "world_best": 3,
        "simulator_top": 3,
        "hit": True,
        "regret": 0.0,
        "relative": 0.0,
    }
    # reversed order: tau -1, no pair agrees; the simulator's top is the world's worst
    s = fidelity.ranking_stats([1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0])
    assert s["kendall_tau"] == pytest.approx(-1.0)
    assert s["pairwise_agreement"] == 0.0
    r = s["regret_at_1"]
    assert (r["world_best"], r["simulator_top"], r["hit"]) == (3, 0, False)
    assert r["regret"] == pytest.approx(3.0) and r["relative"] == pytest.approx(0.75)
    # a tie on the world side: tau-b = 2 / sqrt((3 - 1) * 3); the tied pair is a disagreement
    s = fidelity.ranking_stats([1.0, 1.0, 2.0], [1.0, 2.0, 3.0])
    assert s["kendall_tau"] == pytest.approx(2 / math.sqrt(6))
    assert s["pairwise_agreement"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="equal-length"):
        fidelity.ranking_stats([1.0, 2.0], [1.0, 2.0, 3.0])


def _totals(requests: list, clicks: list, shown: list) -> np.ndarray:
    """(S seeds, E sessions, keys) totals with the given requests / clicks / shown."""
    t = np.zeros((*np.shape(requests), len(fidelity.TOTAL_KEYS)))
    t[..., fidelity.TOTAL_KEYS.index("requests")] = requests
    t[..., fidelity.TOTAL_KEYS.index("clicks")] = clicks
    t[..., fidelity.TOTAL_KEYS.index("shown")] = shown
    return t


def test_metric_values_pool_ctr_within_a_seed_and_average_seeds() -> None:
    t = _totals([[2, 4], [6, 8]], [[1, 0], [3, 3]], [[2, 8], [6, 6]])
    assert fidelity.metric_values(t, "session_length") == pytest.approx((3 + 7) / 2)
    # seed 0: 1 click / 10 shown; seed 1: 6 / 12
    assert fidelity.metric_values(t, "ctr") == pytest.approx((0.1 + 0.5) / 2)


def test_bootstrap_of_identical_backends_is_always_tau_one() -> None:
    rng = np.random.default_rng(0)
    one = rng.random((5, 2, 4, len(fidelity.TOTAL_KEYS))) + np.arange(5)[:, None, None, None]
    totals = np.stack([one, one])  # (2 backends, P = 5, S = 2, E = 4, keys)
    taus = fidelity.bootstrap_taus(totals, "watch_time_s", replicates=20)
    assert np.allclose(taus, 1.0)


# --------------------------------------------------------------------------- the bench
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("fidelity_out")
    work = tmp_path_factory.mktemp("fidelity_work")
    argv = ["bench", "fidelity", "--tiny", "--out", str(out), "--work", str(work), "--quiet"]
    assert cli_main(argv) == 0
    return out, work


def test_tiny_run_writes_results_with_tau_per_metric(tiny: tuple[Path, Path]) -> None:
    out, _ = tiny
    cfg = fidelity.PRESETS["tiny"]
    res = json.loads((out / "results.json").read_text())
    assert len(fidelity.PANEL) >= 10 and res["policies"] == list(fidelity.PANEL)
    assert set(res["kendall_tau"]) == set(fidelity.RANKED_METRICS)
    for metric in fidelity.RANKED_METRICS:
        m = res["metrics"][metric]
        world = [m["world"][p] for p in fidelity.PANEL]
        sim = [m["simulator"][p] for p in fidelity.PANEL]
        # the written tau is scipy's tau-b of the written values
        assert res["kendall_tau"][metric] == pytest.approx(kendalltau(world, sim).statistic)
        lo, hi = m["kendall_tau_ci"]
        assert -1.0 <= lo <= hi <= 1.0
        assert 0.0 <= m["pairwise_agreement"] <= 1.0
        r = m["regret_at_1"]
        assert r["world_best"] == fidelity.PANEL[int(np.argmax(world))]
        assert r["simulator_top"] == fidelity.PANEL[int(np.argmax(sim))]
        assert r["regret"] == pytest.approx(max(world) - m["world"][r["simulator_top"]])
        assert m["oracle_world"] >= 0
        assert (out / f"scatter_{metric}.png").stat().st_size > 1000
    assert set(res["target"]) == {"watch_time_s", "session_length"}
    for t in res["target"].values():
        assert t["met"] == (t["tau"] >= 0.7) and (not t["interval_above"] or t["met"])
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    agents = {(r["agent"], r["backend"]) for r in rows}
    assert agents == {(p, b) for p in fidelity.PANEL for b in fidelity.BACKENDS} | {
        (fidelity.ORACLE, "world")
    }
    assert len(rows) == len(agents) * len(cfg.seeds) * 6  # six METRICS per seed
    md = (out / "results.md").read_text()
    assert "Kendall tau" in md and "not in tau" in md
    # the simulator stage measured session length under policies the logs never used
    pol = res["simulator"]["session_length_policies"]["policies"]
    assert set(pol) == {"random", "longest-first"}
    assert all(v["world"] >= 1 and v["simulator"] >= 1 for v in pol.values())
    # every policy's first slate scored by both backends, in the JSON and the markdown
    first = res["first_request_responses"]
    assert first["sessions"] == cfg.response_sessions
    assert list(first["table"]) == list(fidelity.PANEL)
    for row in first["table"].values():
        assert set(row) == {key for key, _ in fr.METRICS}
        assert 0 <= row["click"]["world"] <= 1 and 0 <= row["click"]["simulator"] <= 1
    assert "The first request of a session" in md and "| shortest-first |" in md


def test_rerun_reuses_every_stage(tiny: tuple[Path, Path]) -> None:
    out, work = tiny
    before = len(stage_log(work))
    argv = ["bench", "fidelity", "--tiny", "--out", str(out), "--work", str(work), "--quiet"]
    assert cli_main(argv) == 0
    again = stage_log(work)[before:]
    stages = ["logs", "simulator", "rankers", "dqn", "responses", "evaluate"]
    assert [e["stage"] for e in again] == stages
    assert {e["action"] for e in again} == {"reused"}


# --------------------------------------------------------------------------- fidelity report
def test_below_chance_auc_is_a_defect_and_printed() -> None:
    def behaviour(auc: float | None) -> dict:
        return {"auc": auc, "observed": 0.01, "predicted": 0.01, "ece": 0.0}

    splits = {
        "all": {
            "rows": 10_000,
            "behaviours": {
                "click": behaviour(0.8),
                "hate": behaviour(0.355),
                "follow": behaviour(None),
            },
        }
    }
    below, defects = _auc_defects(splits)
    assert below == {"all": {"hate": {"auc": 0.355, "positives": 100}}}
    assert len(defects) == 1 and "hate AUC 0.355" in defects[0] and "below chance" in defects[0]
    report = {
        "splits": {},
        "session_length": {},
        "targets": {},
        "defects": defects,
    }
    assert "**DEFECT**: hate AUC 0.355" in render_markdown(report)


def _fidelity_run(root: Path, name: str, seed: int, taus: dict, **config: object) -> Path:
    out = root / name
    out.mkdir()
    results = {"config": {"seed": seed, **config}, "kendall_tau": taus}
    (out / "results.json").write_text(json.dumps(results))
    return out


def test_fidelity_compare_pairs_runs_by_world_seed(tmp_path: Path) -> None:
    from recgym.benchmarks.fidelity_compare import compare, main, markdown

    metrics = ("watch_time_s", "session_length", "ctr", "valid_consumption")
    base, variant = [], []
    for seed, (b, v) in enumerate([(0.4, 0.6), (0.5, 0.65), (0.7, 0.8), (0.6, 0.8)]):
        base.append(_fidelity_run(tmp_path, f"b{seed}", seed, dict.fromkeys(metrics, b)))
        taus = {**dict.fromkeys(metrics, v), "session_length": b - 0.1 * (seed % 2)}
        variant.append(_fidelity_run(tmp_path, f"v{seed}", seed, taus, option=True))
    # a variant world without a base run is left out of the pairing
    variant.append(_fidelity_run(tmp_path, "v9", 9, dict.fromkeys(metrics, 0.0), option=True))
    rows, seeds, differ = compare(base, variant)
    assert seeds == [0, 1, 2, 3]
    assert differ == ["option (not recorded by every run)"]  # the base runs predate it
    by = {r["metric"]: r for r in rows}
    assert by["watch_time_s"]["mean"] == pytest.approx(0.1625)
    assert by["watch_time_s"]["verdict"] == "better" and by["watch_time_s"]["low"] > 0
    assert by["session_length"]["verdict"] == "inconclusive"  # -0.05 +- a wide interval
    assert by["watch_time_s"]["base_mean"][0] == pytest.approx(0.55)
    text = markdown(rows, seeds, differ)
    assert "4 worlds: 0, 1, 2, 3" in text and "| better |" in text
    out = tmp_path / "cmp"
    assert (
        main(["--base", *map(str, base), "--variant", *map(str, variant), "--out", str(out)]) == 0
    )
    assert (out / "comparison.md").read_text() == text


def test_fidelity_compare_errors_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from recgym.benchmarks.fidelity_compare import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--base", str(empty), "--variant", str(empty)]) == 2
    assert f"{empty / 'results.json'}: no such file" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text('{"config": {}}')
    assert main(["--base", str(bad), "--variant", str(bad)]) == 2
    assert "not a fidelity results file" in capsys.readouterr().err
    taus = dict.fromkeys(["watch_time_s", "session_length", "ctr", "valid_consumption"], 1.0)
    twice = [_fidelity_run(tmp_path, n, 0, taus) for n in "ab"]
    assert main(["--base", *map(str, twice), "--variant", str(twice[0])]) == 2
    assert "base: two runs of world seed 0" in capsys.readouterr().err


# --------------------------------------------------------------------------- first requests
def test_first_request_summary_hand_computed() -> None:
    expected = {
        "click": np.array([[0.5, 0.25]]),
        "long_view": np.array([[0.25, 0.0]]),
        "mean_ratio": np.array([[0.4, 1.0]]),
        "watch_ms": np.array([[3000.0, 1000.0]]),
    }
    got = fr._summary(expected, np.array([[10_000.0, 2_000.0]]))
    assert got["click"] == pytest.approx(0.375)
    assert got["long_per_click"] == pytest.approx(0.25 / 0.75)
    assert got["ratio_per_click"] == pytest.approx((0.5 * 0.4 + 0.25 * 1.0) / 0.75)
    assert got["watch_per_click_s"] == pytest.approx((0.5 * 4.0 + 0.25 * 2.0) / 0.75)
    assert got["watch_per_request_s"] == pytest.approx(4.0)


def test_first_request_responses_of_the_world_against_itself_agree(tiny_logs: Path) -> None:
    """Scored by the world on both sides, every cell's two values are equal; every policy
    acts on the same observation at each session start; the markdown shows every policy."""
    from recgym.agents.references import PatienceOracle
    from recgym.simulators.world_state import load_world

    world = load_world(tiny_logs)
    env = PatienceOracle(world, slate_size=6, seed=0).make_env(fidelity.ENV_ID)

    class Seen:  # acts like a ranker of scores, and records what it saw
        def __init__(self, sign: float) -> None:
            self.sign, self.seen = sign, []

        def act(self, obs: dict) -> np.ndarray:
            self.seen.append(obs["item_id"].copy())
            return self.sign * np.arange(len(obs["item_id"]), dtype=np.float32)

    class WorldAgain:  # the world's truth without a second begin_session
        expected_responses = staticmethod(world.expected_responses)

        @staticmethod
        def begin_session(users: np.ndarray, rng: np.random.Generator) -> None:
            pass

    panel = {"up": Seen(1.0), "down": Seen(-1.0)}
    table = fr.first_request_responses(panel, env, world, WorldAgain(), sessions=5, seed=3)
    assert list(table) == ["up", "down"]
    for row in table.values():
        for key, _ in fr.METRICS:
            assert row[key]["world"] == row[key]["simulator"]
        assert 0 < row["click"]["world"] < 1 and row["watch_per_request_s"]["world"] > 0
    assert len(panel["up"].seen) == 5
    for a, b in zip(panel["up"].seen, panel["down"].seen, strict=True):
        np.testing.assert_array_equal(a, b)
    assert table["up"]["click"]["world"] != table["down"]["click"]["world"]  # other slates
    md = fr.responses_markdown(table, 5)
    assert "| up |" in md and "| down |" in md and "+0 %" in md
