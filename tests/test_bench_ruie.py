"""`recgym bench ruie`: a smoke run on a tiny world, --data on world-written KuaiSAR files, the
protocol's data (merge by timestamp, leave-one-out, full ranking) and bad KuaiSAR directories."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.benchmarks.ruie import PRESETS, run
from recgym.benchmarks.ruie.data import check_directory, load_behaviours
from recgym.data.schema import DataError

TINY = replace(PRESETS["tiny"], models=("nextitnet", "ruie"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    work = tmp_path_factory.mktemp("ruie_work")
    out = tmp_path_factory.mktemp("ruie_out")
    result = run(TINY, out, work, progress=False)
    return out, work, result


def test_tiny_run_writes_tables_claims_online_and_tracking(tiny_run):
    out, work, result = tiny_run
    md = (out / "results.md").read_text()
    for heading in (
        "Table 1",
        "Table 2",
        "paired seeds",
        "tracks the true scenario switch",
        "Online: MultiScenario-v0",
    ):
        assert heading in md
    assert "| RUIE w/o MHA&Gate&SUIM |" in md and "3.8549" in md  # the paper beside ours
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    ndcg = [r for r in rows if r["backend"] == "offline" and r["metric"] == "ndcg@10"]
    # 2 seeds x (NextItNet, RUIE and its 3 ablations)
    assert len(ndcg) == 2 * 5 and all(0.0 <= r["value"] <= 1.0 for r in ndcg)
    online = {(r["agent"], r["seed"]) for r in rows if r["backend"] == "world"}
    assert ("RUIE", 0) in online and ("click oracle (reads hidden state)", 1) in online
    assert any(r["metric"] == "switch_auc" for r in rows)
    assert {v["verdict"] for v in json.loads((out / "results.json").read_text())["claims"]} <= {
        "reproduced",
        "contradicted",
        "inconclusive",
    }
    # a second run reuses every stage
    again = run(TINY, out, work, progress=False)
    assert all(stage.reused for stage in again["stages"].values())


def test_online_rows_dqn_and_the_learned_backend_are_paired(tiny_run):
    """DQN has a row on both backends, every online agent one on the learned backend (the
    oracle on the world only), and on each backend and seed every agent met the same users."""
    from recgym.benchmarks.ruie.online import ORACLE

    out, _, result = tiny_run
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    online = [r for r in rows if r["backend"] in ("world", "learned")]
    cells = {(r["agent"], r["backend"], r["seed"], r["metric"]) for r in online}
    agents = ("random", "popularity", "NextItNet", "RUIE", "DQN")
    for agent in agents:
        for backend in ("world", "learned"):
            for seed in TINY.seeds:
                for metric in ("reward", "session_length", "clicks_feed", "clicks_search"):
                    assert (agent, backend, seed, metric) in cells
    assert (ORACLE, "world", 0, "reward") in cells
    assert not any(a == ORACLE and b == "learned" for a, b, _, _ in cells)
    stages = result["stages"]
    for backend, name in (("world", "online-seed{}"), ("learned", "online-learned-seed{}")):
        for seed in TINY.seeds:
            users = stages[name.format(seed)].result["users"]
            assert set(agents) <= set(users)
            assert len(users["random"]) == TINY.online_episodes
            assert all(u == users["random"] for u in users.values()), (backend, seed, users)
    # the learned backend responds to what is shown: the agents' rows are not all equal
    learned = {
        a: tuple(r["value"] for r in online if r["agent"] == a and r["backend"] == "learned")
        for a in agents
    }
    assert len(set(learned.values())) > 1, learned
    # DQN trained for the preset's budget on the world, and saved
    dqn = stages["dqn-seed0"]
    assert dqn.result["env_steps"] >= TINY.dqn_steps and (dqn.dir / "dqn.pt").is_file()
    assert (stages["simulator"].dir / "scenario.json").is_file()


def test_report_shows_backend_and_where_each_agent_trained(tiny_run):
    out, _, _ = tiny_run
    md = (out / "results.md").read_text()
    assert "| agent | trained in | backend |" in md
    assert "| DQN | MultiScenario-v0 on the world (64 env steps) | world |" in md
    assert "| DQN | MultiScenario-v0 on the world (64 env steps) | learned simulator |" in md
    assert "| RUIE | the world's logs (offline, KuaiSAR schema) | learned simulator |" in md
    assert "- world: DQN - random:" in md and "- learned simulator: RUIE - NextItNet:" in md


def _keys(cfg, root: Path) -> dict[str, str]:
    """Every stage's engine key for `cfg`, computed without running anything."""
    from recgym.benchmarks.engine import Engine
    from recgym.benchmarks.ruie import all_stages

    engine, keys = Engine(root, progress=False), {}
    for stage in all_stages(cfg):
        keys[stage.name] = engine.key(stage, {d: keys[d] for d in stage.deps})
    return keys


def _changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {n for n in a.keys() | b.keys() if a.get(n) != b.get(n)}


def test_online_stage_keys_follow_the_settings_they_read(tmp_path):
    base = _keys(TINY, tmp_path)
    online = {n for n in base if n.startswith("online-")}
    dqn = {n for n in base if n.startswith("dqn-")}
    learned = {n for n in online if n.startswith("online-learned-")}
    assert dqn == {"dqn-seed0", "dqn-seed1"} and len(learned) == 2 and "simulator" in base
    # the DQN budget re-keys DQN and, through it, the online evaluations, never a fit
    assert _changed(base, _keys(replace(TINY, dqn_steps=32), tmp_path)) == dqn | online
    # the simulator's epochs re-key the simulator and the learned-backend evaluations only
    assert _changed(base, _keys(replace(TINY, sim_epochs=2), tmp_path)) == {"simulator"} | learned
    # DQN trained on the learned backend: DQN and every online evaluation
    assert _changed(base, _keys(replace(TINY, dqn_backend="learned"), tmp_path)) == dqn | online
    # more sessions: the evaluations only
    assert _changed(base, _keys(replace(TINY, online_episodes=3), tmp_path)) == online
    # without the learned backend its stages go; the world's keep their keys
    without = _keys(replace(TINY, learned_backend=False), tmp_path)
    assert _changed(base, without) == {"simulator"} | learned
    assert "simulator" not in without and not any(n in without for n in learned)
    # without DQN its stages go, and the evaluations lose a dependency
    assert _changed(base, _keys(replace(TINY, dqn_steps=0), tmp_path)) == dqn | online


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"dqn_backend": "sim"}, "dqn_backend"),
        ({"dqn_backend": "learned", "learned_backend": False}, "learned_backend"),
        ({"dqn_steps": -1}, "dqn_steps"),
    ],
)
def test_bad_online_settings_are_value_errors_naming_them(change, match):
    with pytest.raises(ValueError, match=match):
        replace(TINY, **change)


def test_data_dir_runs_the_online_section_on_its_learned_backend_only(tiny_run, tmp_path):
    """--data DIR: Tables 1 and 2 on DIR, and the online rows on a simulator trained on DIR's
    KuaiSAR files alone (no world rows, no oracle, no tracking), paired per seed."""
    from recgym.benchmarks.ruie.online import ORACLE

    _, work, _ = tiny_run
    logs = next(p for p in (work / "logs").iterdir() if (p / "rec_inter.csv").exists())
    cfg = replace(TINY, data=str(logs), models=("nextitnet",), ablations=False, seeds=(0,))
    result = run(cfg, tmp_path / "out", tmp_path / "work", progress=False)
    md = result["markdown"]
    assert "Table 1" in md and str(logs) in md
    assert "## Online: MultiScenario-v0 on a learned simulator of the KuaiSAR files" in md
    assert "| DQN | MultiScenario-v0 on the learned simulator (64 env steps) | learned" in md
    assert "| RUIE | the KuaiSAR files (offline) | learned simulator |" in md
    assert "Online, RUIE in MultiScenario-v0 on the world" not in md
    rows = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    assert {r["backend"] for r in rows} == {"offline", "learned"}
    online = {(r["agent"], r["metric"]) for r in rows if r["backend"] == "learned"}
    for agent in ("random", "popularity", "NextItNet", "RUIE", "DQN"):
        assert (agent, "reward") in online and (agent, "clicks_search") in online
    assert not any(a == ORACLE or m.startswith("switch_") for a, m in online)
    stages = result["stages"]
    assert "logs" not in stages and "online-seed0" not in stages
    sim = stages["simulator"]
    assert (sim.dir / "scenario.json").is_file() and sim.result["watch_imputed_rows"] > 0
    users = stages["online-learned-seed0"].result["users"]
    assert all(u == users["random"] for u in users.values()) and len(users["random"]) == 2
    # without the learned backend there is nothing to run online
    off = replace(cfg, learned_backend=False)
    md = run(off, tmp_path / "out2", tmp_path / "work", progress=False)["markdown"]
    assert "Table 1" in md and "Online: MultiScenario-v0" not in md


def test_data_dir_stage_keys_have_no_world(tmp_path):
    from recgym.benchmarks.ruie import all_stages

    cfg = replace(TINY, data=str(tmp_path / "kuaisar"))
    stages = {s.name: s for s in all_stages(cfg)}
    assert "logs" not in stages and not any(n.startswith("online-seed") for n in stages)
    assert stages["simulator"].deps == () and stages["dqn-seed0"].deps == ("simulator",)
    assert stages["dqn-seed0"].config["backend"] == "learned"
    assert {"online-learned-seed0", "online-learned-seed1"} <= set(stages)
    assert "logs" not in stages["online-learned-seed0"].deps
    # a world run's stage list is unchanged by the data branch
    world = {s.name for s in all_stages(TINY)}
    assert {"logs", "simulator", "online-seed0", "online-learned-seed0"} <= world


def _tiny_kuaisar(tmp: Path) -> Path:
    rec = pd.DataFrame(
        {
            "user_id": [0, 0, 0, 1, 1, 1],
            "item_id": [10, 11, 12, 10, 13, 14],
            "playing_time": 1000.0,
            "duration_ms": 5000.0,
            "time": "2023-05-22 10:00:00",
            "timestamp": [1.0, 3.0, 5.0, 1.0, 2.0, 9.0],
            "click": [1, 0, 1, 1, 1, 1],
            "forward": 0,
            "like": [0, 0, 1, 0, 0, 0],
            "follow": 0,
            "search": 0,
            "search_item_related": 0,
        }
    )
    src = pd.DataFrame(
        {
            "user_id": [0, 1],
            "search_session_id": [1, 2],
            "search_session_time": "2023-05-22 10:00:00",
            "search_session_timestamp": [4.0, 5.0],
            "keyword": "[1, 2]",
            "search_source": "USER_INPUT",
            "item_id": [15, 16],
            "click_cnt": [1, 0],
            "item_type": "VIDEO",
        }
    )
    tmp.mkdir(parents=True, exist_ok=True)
    rec.to_csv(tmp / "rec_inter.csv", index=False)
    src.to_csv(tmp / "src_inter.csv", index=False)
    return tmp


def test_behaviours_merge_both_scenarios_by_timestamp_with_rewards(tmp_path):
    b = load_behaviours(_tiny_kuaisar(tmp_path / "d"))
    # item ids are renumbered densely over the sorted original ids 10..16
    np.testing.assert_array_equal(b.item_ids, [10, 11, 12, 13, 14, 15, 16])
    # user 0: clicks at t=1 (item 10, feed), t=4 (item 15, search), t=5 (item 12, feed, liked)
    np.testing.assert_array_equal(b.items[0], [0, 5, 2])
    np.testing.assert_array_equal(b.scenario[0], [0, 1, 0])
    np.testing.assert_array_equal(b.reward[0], [1, 1, 4])  # click 1 (+ like 3)
    # user 1's search shows item 16 unclicked: not a behaviour
    np.testing.assert_array_equal(b.items[1], [0, 3, 4])
    assert b.summary()["users"] == 2


def test_full_ranking_never_ranks_padding_and_optionally_excludes_seen(tmp_path):
    from recgym.agents.sequence import Popularity, leave_one_out, rank_targets

    b = load_behaviours(_tiny_kuaisar(tmp_path / "d"))
    split = leave_one_out(b.items, 4, min_len=1, validation=False, aligned={"scenario": b.scenario})
    assert (split.test.seq == -1).any()  # the test prefixes are left-padded
    pop = Popularity(b.n_items, max_len=4)
    pop.fit_counts(split.train)
    with_seen = rank_targets(pop, split.test, exclude_seen=False)
    without = rank_targets(pop, split.test, exclude_seen=True)
    assert (with_seen < b.n_items).all() and (without <= with_seen).all()
    assert (without < with_seen).any()  # seen items that outscored the target are dropped


@pytest.mark.parametrize(
    ("drop", "column", "match"),
    [
        ("src_inter.csv", None, "src_inter.csv"),
        ("rec_inter.csv", None, "rec_inter.csv"),
        ("rec_inter.csv", "like", "like"),
        ("src_inter.csv", "click_cnt", "click_cnt"),
    ],
)
def test_a_missing_file_or_column_is_one_error_naming_both(tmp_path, drop, column, match):
    d = _tiny_kuaisar(tmp_path / "d")
    if column is None:
        (d / drop).unlink()
    else:
        pd.read_csv(d / drop).drop(columns=[column]).to_csv(d / drop, index=False)
    with pytest.raises(DataError, match=match) as err:
        check_directory(d)
    assert drop in str(err.value)
    with pytest.raises(DataError):
        load_behaviours(d)


def test_cli_parses_presets_and_options():
    from recgym.benchmarks.ruie import config_from_args, parser

    cfg = config_from_args(parser().parse_args(["--quick", "--epochs", "2", "--data", "/x"]))
    assert cfg.mode == "quick" and cfg.epochs == 2 and cfg.data == "/x"
    assert cfg.dim == PRESETS["quick"].dim and not math.isnan(cfg.lr)
