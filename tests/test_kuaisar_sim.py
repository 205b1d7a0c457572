"""A learned simulator trained on KuaiSAR-schema files alone (`simulators.learned.kuaisar`,
`train_simulator` on a KuaiSAR directory): the column mapping checked row by row against the same
world's KuaiRand-schema logs, nothing dropped, the hot-deck play times, MultiScenario-v0 on the
result, and bad directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recgym.data.schema import DataError
from recgym.data.writers import REC_TAB, SEARCH_TAB

WORLD = {"n_users": 80, "n_items": 300, "n_authors": 30, "seed": 5}
TINY_SIM = {"epochs": 1, "hidden": (32,), "embedding_dim": 8, "author_dim": 4,
            "leave_steps": 100, "heldout_days": 1}  # fmt: skip


@pytest.fixture(scope="module")
def both_schemas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One world's logs written in KuaiSAR's and in KuaiRand's schema (the same seeds give the
    same exposures)."""
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    root = tmp_path_factory.mktemp("kuaisar_sim")
    for fmt in ("kuaisar", "kuairand"):
        generate(root / fmt, WorldConfig(**WORLD), LogConfig(days=3, seed=5), fmt, False)
    return root / "kuaisar", root / "kuairand"


@pytest.fixture(scope="module")
def view(both_schemas):
    from recgym.data.loaders.kuaisar import load_kuaisar
    from recgym.simulators.learned.kuaisar import kuairand_view

    dataset = load_kuaisar(both_schemas[0], cache=False)
    return dataset, kuairand_view(dataset, seed=0)


def test_rec_rows_map_to_the_worlds_kuairand_columns(both_schemas, view):
    from recgym.data import load

    dataset, v = view
    inter = v.interactions
    rand = load(both_schemas[1]).interactions
    rec = inter[inter["scenario"] == 0]
    merged = rec.merge(
        rand, on=["user_id", "item_id", "timestamp"], how="left", suffixes=("", "_r")
    )
    assert len(merged) == len(rec) and merged["is_click_r"].notna().all()
    for col in ("is_click", "is_like", "is_follow", "is_forward", "long_view", "play_time_ms",
                "duration_ms", "tab"):  # fmt: skip
        np.testing.assert_array_equal(merged[col].to_numpy(), merged[f"{col}_r"].to_numpy(), col)
    assert (rec["tab"] == REC_TAB).all() and not rec["watch_imputed"].any()
    # search rows: the same clicks, in the same order per user; play times imputed
    search = inter[inter["scenario"] == 1]
    rand_search = rand[rand["tab"] == SEARCH_TAB].sort_values(
        ["user_id", "timestamp"], kind="stable"
    )
    np.testing.assert_array_equal(search["is_click"].to_numpy(), rand_search["is_click"].to_numpy())
    assert (search["tab"] == SEARCH_TAB).all() and search["watch_imputed"].all()
    assert (search[["is_like", "is_follow", "is_forward"]].to_numpy() == 0).all()
    assert (search["play_time_ms"] <= search["duration_ms"]).all()
    # absent in KuaiSAR: comment, hate, is_rand are 0 everywhere
    assert (inter[["is_comment", "is_hate", "is_rand"]].to_numpy() == 0).all()
    # the imputed clicked-search watch is of the world's order (true mean / imputed mean)
    clicked = search["is_click"] == 1
    true_mean = rand_search.loc[rand_search["is_click"] == 1, "play_time_ms"].mean()
    assert 0.5 < search.loc[clicked.to_numpy(), "play_time_ms"].mean() / true_mean < 2.0


def test_no_row_is_dropped_and_the_catalogue_has_the_worlds_categories(view):
    from recgym.simulators.learned import SimulatorConfig, build_log_table

    dataset, v = view
    n_rec = int((dataset.interactions["scenario"] == "rec").sum())
    assert len(v.interactions) == len(dataset.interactions) > n_rec > 0
    table = build_log_table(v, SimulatorConfig())
    assert table.n_rows == len(dataset.interactions)
    assert set(np.unique(table.tab)) == {REC_TAB, SEARCH_TAB}
    items = dataset.items
    # leaf = second level (the world's leaf + 1), authors shifted back by KuaiSAR's padding
    leaf = items.set_index("item_id")["second_level_category_id"].reindex(table.item_ids)
    assert table.catalogue.n_categories == leaf.nunique()
    codes = pd.factorize(leaf, sort=True)[0]
    np.testing.assert_array_equal(table.catalogue.category, codes)


def test_hot_deck_draws_the_same_users_rows_of_the_same_click_state():
    from recgym.simulators.learned.kuaisar import hot_deck

    user = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    click = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    values = np.array([5000, 100, np.nan, np.nan, 7000, 300, np.nan, np.nan])
    unknown = np.isnan(values)
    out = hot_deck(user, click, values, unknown, np.random.default_rng(0))
    assert out[2] == 5000 and out[3] == 100  # user 0's own clicked / unclicked rows
    assert set(out[6:]) <= {5000.0, 7000.0}  # user 2 has none: any user's clicked rows
    np.testing.assert_array_equal(out[~unknown], values[~unknown])
    again = hot_deck(user, click, values, unknown, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)


def test_items_take_the_deepest_category_and_unpad_authors():
    from recgym.simulators.learned.kuaisar import kuairand_items

    items = pd.DataFrame(
        {
            "item_id": [1, 2, 3],
            "author_id": [0, 7, 8],
            "first_level_category_id": [3, 4, 0],
            "second_level_category_id": [11, 0, 0],
            "third_level_category_id": [21, 0, 0],
            "fourth_level_category_id": [0, 0, 0],
        }
    )
    out = kuairand_items(items, np.array([1, 2, 3, 9]), np.full(4, 1000.0))
    assert out["tag"].tolist()[:2] == ["3,21", "4,4"]
    assert out["tag"].isna().tolist() == [False, False, True, True]  # no level / not listed
    assert out["author_id"].isna().tolist() == [True, False, False, True]


def test_a_simulator_trained_on_kuaisar_files_steps_multiscenario(both_schemas, tmp_path):
    import gymnasium as gym

    import recgym  # noqa: F401
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.learned.scenario import ScenarioModel
    from recgym.simulators.train import train_simulator

    out = tmp_path / "ckpt"
    res = train_simulator(both_schemas[0], out, SimulatorConfig(**TINY_SIM), progress=False)
    assert res["format"] == "kuaisar" and "scenario.json" in res["files"]
    assert res["watch_imputed_rows"] > 0 and res["rows"] > res["watch_imputed_rows"]
    model = ScenarioModel.load(out)
    assert 0.0 < np.asarray(model.p_search).mean() < 1.0
    env = gym.make("recgym/MultiScenario-v0", backend="learned", checkpoint=str(out))
    obs, _ = env.reset(seed=0)
    shown, clicks = [], {0: 0, 1: 0}
    for _ in range(60):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        scenario = int(info["scenario_shown"])
        shown.append(scenario)
        clicks[scenario] += int(np.asarray(info["responses"]["click"]).sum())
        if term or trunc:
            obs, _ = env.reset()
    assert set(shown) == {0, 1} and clicks[0] > 0 and clicks[1] > 0


@pytest.mark.parametrize(
    ("drop", "column"),
    [
        ("src_inter.csv", None),
        ("item_features.csv", None),
        ("rec_inter.csv", "playing_time"),
        ("src_inter.csv", "click_cnt"),
    ],
)
def test_a_missing_file_or_column_is_one_error_naming_both(both_schemas, tmp_path, drop, column):
    from recgym.simulators.train import train_simulator

    d = tmp_path / "d"
    shutil.copytree(both_schemas[0], d)
    if column is None:
        (d / drop).unlink()
    else:
        pd.read_csv(d / drop).drop(columns=[column]).to_csv(d / drop, index=False)
    with pytest.raises(DataError, match=column or "missing KuaiSAR file") as err:
        train_simulator(d, tmp_path / "out", progress=False)
    assert drop in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before anything was written
