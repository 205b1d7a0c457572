"""Tests of the learned user simulator (response + leave models), fidelity report, checkpoints.

One small ground-truth world (200 users, 800 items, 5 days, about 23k logged exposures) is
logged once per module and a small simulator is fitted on it; every test reuses both.
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from recgym.data import load
from recgym.simulators.fidelity import (
    fidelity_report,
    policy_session_lengths,
    read_truth,
    read_world,
    render_markdown,
)
from recgym.simulators.generate import generate
from recgym.simulators.learned import (
    CONTEXT_DIM,
    SIGNALS,
    CheckpointError,
    LearnedSimulator,
    LogTable,
    SimulatorConfig,
    build_log_table,
    logged_leave_features,
)
from recgym.simulators.learned.response import (
    RATIO_FLOOR,
    RATIO_KNEE,
    ratio_class,
    ratio_edges,
    sample_watch,
)
from recgym.simulators.learned.table import context_features
from recgym.simulators.logs import LogConfig
from recgym.simulators.protocol import UserModel
from recgym.simulators.train import train_simulator
from recgym.simulators.world import WorldConfig

SMALL = dict(
    # the watched fraction depends on duration: 3 epochs (~100 steps) underfit it, and so do 10:
    # measured on this world at 10 epochs, the expected watch of held-out exposures was 33.1 s
    # against 22.1 s logged (99.6 s vs 28.5 s for 330-600 s videos); sampled watch minutes ran
    # 20 % high, and the leave model, which reads them (users tire with time), ended replayed
    # sessions 16 % early (world seeds 3/4/5: -0.156/-0.089/-0.248). At 20 epochs: 23.3 s vs
    # 22.1 s, and session length +0.104/+0.046/-0.027.
    epochs=20,
    hidden=(64,),
    embedding_dim=16,
    author_dim=8,
    batch_size=512,
    heldout_days=1,
    heldout_user_share=0.2,
    # the random-exposure input is off by default (it ranks policies worse, see SimulatorConfig);
    # these tests fit with it on so that its path (and the figures above) stay covered
    random_exposure_input=True,
)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(
        out,
        WorldConfig(n_users=200, n_items=800, n_authors=80, seed=3),
        LogConfig(days=5, seed=3),
        progress=False,
    )
    return out


@pytest.fixture(scope="module")
def table(world_dir: Path) -> LogTable:
    return build_log_table(load(world_dir), SimulatorConfig(**SMALL))


@pytest.fixture(scope="module")
def fitted(table: LogTable) -> LearnedSimulator:
    return LearnedSimulator.fit(table)


@pytest.fixture(scope="module")
def report(fitted: LearnedSimulator, table: LogTable, world_dir: Path) -> dict:
    return fidelity_report(fitted, table, truth=read_truth(world_dir))


@pytest.fixture
def sim(fitted: LearnedSimulator) -> LearnedSimulator:
    """A private copy, so that stepping in one test does not move another test's users."""
    return copy.deepcopy(fitted)


def _slate(sim: LearnedSimulator, b: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = rng.choice(sim.n_users, size=b, replace=False)
    return users, rng.integers(0, sim.catalogue.n_items, (b, k))


# --------------------------------------------------------------------- the log table
def test_table_split_is_by_session_and_history_is_causal(table: LogTable) -> None:
    split = table.row_split()
    assert set(np.unique(split)) <= {0, 1, 2, 3}
    assert (split == 0).any() and (split == 1).any() and (split == 2).any()
    # a session belongs to one split; held-out users never appear in training
    assert (np.diff(split)[np.diff(table.session) == 0] == 0).all()
    held_users = np.unique(table.user[np.isin(split, [1, 3])])
    assert not np.isin(table.user[split == 0], held_users).any()
    # clicked history = the user's clicks before the row's request, newest last (brute force)
    k, h = table.config.request_size, table.config.history_len
    click = table.labels["click"].astype(bool)
    for r in np.random.default_rng(0).choice(table.n_rows, 200, replace=False):
        start = r - table.position[r] % k
        before = np.flatnonzero((table.user == table.user[r]) & click)
        expect = table.item[before[before < start]][-h:]
        got = table.clicked[r][table.clicked[r] >= 0]
        assert got.tolist() == expect.tolist()


def test_catalogue_from_items_table(table: LogTable, world_dir: Path) -> None:
    cat = table.catalogue
    items = load(world_dir).items.set_index("item_id").loc[table.item_ids]
    assert cat.author.min() == 0 and cat.author.max() == cat.n_authors - 1
    assert np.isclose(cat.popularity.sum(), 1.0)
    assert not cat.author_is_live.any()
    assert (cat.duration_ms == items["video_duration"].to_numpy(np.int64)).all()
    # world tags are "top,leaf" with leaf ids offset by the 6 top categories: leaf = LAST tag
    leaf = items["tag"].str.split(",").str[-1].astype(int).to_numpy()
    assert (np.unique(leaf - 6, return_inverse=True)[1] == cat.category).all()


# --------------------------------------------------------------------- fidelity
def test_click_auc_on_heldout_is_clearly_above_chance(report: dict) -> None:
    for split in ("users", "days", "all"):
        assert report["splits"][split]["behaviours"]["click"]["auc"] > 0.6
    assert report["splits"]["all"]["behaviours"]["long_view"]["auc"] > 0.65
    assert report["rows"]["train"] > 0 and report["rows"]["heldout"] > 0
    assert report["has_truth"]
    assert report["splits"]["all"]["truth"]["p_click"]["corr"] > 0.3
    text = render_markdown(report)
    assert "click AUC" in text and "session length" in text
    json.dumps(report)  # serialisable as is


def test_leave_model_reproduces_world_session_length(
    report: dict, fitted: LearnedSimulator, table: LogTable
) -> None:
    # ~300 held-out sessions with sd ~12 exposures: each mean has se ~0.7 (2.5 %), their
    # difference ~3.5 %; but the fit and the world's draw add more: over world seeds 3/4/5 the
    # error was +0.104/+0.046/-0.027 (sd ~0.065), so 15 % is a loose bound, yet a mis-wired or
    # uncalibrated hazard (e.g. per-request instead of per-exposure, or off by 25 %), or an
    # under-fitted watch time (SMALL's note: -0.16 on average at 10 epochs), moves it further.
    lengths = report["session_length"]["all"]
    assert lengths["logged"]["mean"] > 12  # the world's sessions are several requests long
    assert abs(lengths["relative_error_mean"]) < 0.15
    # teacher-forced: on held-out logged exposures, the hazards sum to about the number of
    # sessions that ended (a Poisson count of ~330 has sd ~18, i.e. 5.5 %)
    rows = table.rows("users", "days", "both")
    hazard = fitted._hazard(logged_leave_features(table, rows))
    n_sessions = len(table.sessions("users", "days", "both"))
    assert abs(hazard.sum() / n_sessions - 1) < 0.2


def test_observe_replays_logged_session_through_the_step_path(
    sim: LearnedSimulator, table: LogTable
) -> None:
    """Inputs built by the simulator's state == inputs built from the log, row for row."""
    k = table.config.request_size
    long_sessions = table.sessions("train")[table.session_length[table.sessions("train")] >= 3 * k]
    s = long_sessions[0]
    start, length = table.session_start[s], table.session_length[s]
    user = table.user[start]
    twin = sim.for_sessions(np.array([user]), table.state_before(np.array([start])))
    twin.begin_session(np.array([0]), np.random.default_rng(0))
    for j in range(length // k):
        rows = start + j * k + np.arange(k)
        responses = {
            "click": table.labels["click"][rows][None],
            "long_view": table.labels["long_view"][rows][None],
            "watch_ms": table.play_ms[rows][None],
            "like": table.labels["like"][rows][None],
            "follow": table.labels["follow"][rows][None],
            "hate": table.labels["hate"][rows][None],
        }
        scenario = (table.tab[rows[:1]] == 4).astype(np.int64)  # the writer's search tab
        got = twin.observe(
            np.array([0]),
            table.item[rows][None],
            responses,
            scenario,
            is_random=table.is_random[rows][None],
        )
        want = sim.predict_rows(table, rows)
        np.testing.assert_allclose(got["click"][0], want["p_click"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got["long_view"][0], want["p_long_view"], rtol=1e-4, atol=1e-6)
        hazard = sim._hazard(logged_leave_features(table, rows))
        np.testing.assert_allclose(got["hazard"][0], hazard, rtol=1e-4, atol=1e-7)
    # after the whole session the simulated user state equals the log's state at the next row
    end = start + (length // k) * k
    if end < table.n_rows and table.user[end] == user:
        want_state = table.state_before(np.array([end]))
        st = twin.state
        assert (st.clicked == want_state.clicked).all()
        assert (st.skipped == want_state.skipped).all()
        np.testing.assert_allclose(st.counts, want_state.counts)
        np.testing.assert_allclose(st.totals, want_state.totals)
        assert (st.pairs.compact().keys == want_state.pairs.keys).all()
        np.testing.assert_allclose(st.pairs.values, want_state.pairs.values)


# --------------------------------------------------------------------- the UserModel contract
def test_is_a_user_model(sim: LearnedSimulator) -> None:
    assert isinstance(sim, UserModel)
    assert sim.behaviours == (
        "click",
        "long_view",
        "watch_ms",
        "like",
        "follow",
        "comment",
        "forward",
        "hate",
    )
    users = np.arange(5)
    assert sim.user_features(users).shape == (5, sim.user_feature_dim)
    assert sim.user_features(users).dtype == np.float32
    assert sim.history(users).shape == (5, sim.history_len)


def test_step_shapes_and_consistent_responses(sim: LearnedSimulator) -> None:
    b, k = 64, 6
    users, slate = _slate(sim, b, k, seed=1)
    rng = np.random.default_rng(0)
    sim.begin_session(users, rng)
    for _ in range(3):
        res = sim.step(users, slate, rng)
    assert set(res.responses) == set(sim.behaviours)
    for name in sim.behaviours:
        assert res.responses[name].shape == (b, k)
    assert res.left.shape == (b,) and res.left.dtype == bool
    assert res.elapsed_ms.shape == (b,)
    duration = sim.catalogue.duration_ms[slate]
    watch = res.responses["watch_ms"]
    assert ((watch >= 0) & (watch <= duration)).all()
    rule = watch >= np.minimum(duration, 18_000)  # KuaiRand's long-view rule
    assert (res.responses["long_view"] == rule).all()
    assert ((res.info["p_leave"] >= 0) & (res.info["p_leave"] <= 1)).all()
    # clicked items joined the history, newest last
    last = sim.history(users)[:, -1]
    clicked_any = res.responses["click"].any(axis=1)
    last_click = np.array(
        [slate[i][res.responses["click"][i]][-1] for i in np.flatnonzero(clicked_any)]
    )
    assert (last[clicked_any] == last_click).all()


def test_same_seed_same_responses_and_pickle(sim: LearnedSimulator) -> None:
    users, slate = _slate(sim, 32, 6, seed=2)
    clone = pickle.loads(pickle.dumps(sim))
    other = copy.deepcopy(sim)
    runs = []
    for s in (sim, clone, other):
        rng = np.random.default_rng(123)
        s.begin_session(users, rng)
        runs.append([s.step(users, slate, rng) for _ in range(3)])
    for a, b in zip(runs[0], runs[1], strict=True):
        for name in sim.behaviours:
            assert (a.responses[name] == b.responses[name]).all()
        assert (a.left == b.left).all()
    assert (runs[0][-1].responses["click"] == runs[2][-1].responses["click"]).all()
    rng = np.random.default_rng(7)
    different = sim.step(users, slate, rng).responses["click"]
    assert different.shape == (32, 6)


def test_step_is_vectorised_and_fast(sim: LearnedSimulator) -> None:
    import time

    users = np.arange(sim.n_users)
    wide = sim.for_sessions(np.resize(users, 1024))
    slate = np.random.default_rng(0).integers(0, sim.catalogue.n_items, (1024, 6))
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wide.step(np.arange(1024), slate, rng)
        t = time.perf_counter()
        for _ in range(5):
            wide.step(np.arange(1024), slate, rng)
        rate = 5 * 1024 * 6 / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    assert rate > 20_000  # >= 50,000 on an idle core; a loose bound for shared CI machines


def test_unseen_ids_use_the_unknown_row(sim: LearnedSimulator, table: LogTable) -> None:
    unseen = np.flatnonzero(table.train_item_count < table.config.min_item_count)
    assert (sim.vocab.item_row[unseen] == 0).all()
    assert (sim.vocab.tab_rows(np.array([999])) == 0).all()
    if len(unseen):
        users = np.arange(4)
        slate = np.resize(unseen, (4, 6))
        res = sim.step(users, slate, np.random.default_rng(0))
        assert res.responses["click"].shape == (4, 6)


def test_fit_leaves_global_torch_state_alone(table: LogTable) -> None:
    threads = torch.get_num_threads()
    before = torch.random.get_rng_state()
    small = copy.copy(table)
    small.config = SimulatorConfig(**{**SMALL, "epochs": 1, "leave_steps": 50})
    LearnedSimulator.fit(small)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.random.get_rng_state(), before)


# --------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(fitted: LearnedSimulator, table: LogTable, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "fidelity.json", "model.pt"]
    loaded = LearnedSimulator.load(path)
    assert loaded.config == fitted.config
    rows = table.rows("users", "days", "both")[:500]
    a, b = fitted.predict_rows(table, rows), loaded.predict_rows(table, rows)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    users, slate = _slate(fitted, 16, 6, seed=4)
    one, two = copy.deepcopy(fitted), loaded
    r1 = one.step(users, slate, np.random.default_rng(5))
    r2 = two.step(users, slate, np.random.default_rng(5))
    for name in fitted.behaviours:
        assert (r1.responses[name] == r2.responses[name]).all()


def _message(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text  # one line
    return text


def test_checkpoint_errors(fitted: LearnedSimulator, tmp_path: Path) -> None:
    good = fitted.save(tmp_path / "good")

    with pytest.raises(CheckpointError) as exc:
        LearnedSimulator.load(tmp_path / "nowhere")
    assert "nowhere" in _message(exc)

    missing = tmp_path / "missing"
    shutil.copytree(good, missing)
    (missing / "model.pt").unlink()
    with pytest.raises(CheckpointError) as exc:
        LearnedSimulator.load(missing)
    assert str(missing / "model.pt") in _message(exc)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    data = (corrupt / "model.pt").read_bytes()
    (corrupt / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        LearnedSimulator.load(corrupt)
    assert str(corrupt / "model.pt") in _message(exc)

    bad_json = tmp_path / "bad_json"
    shutil.copytree(good, bad_json)
    (bad_json / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError) as exc:
        LearnedSimulator.load(bad_json)
    assert str(bad_json / "config.json") in _message(exc)

    for name, edit in (
        ("edited_dim", lambda m: m["config"].__setitem__("embedding_dim", 24)),
        ("edited_items", lambda m: m["sizes"].__setitem__("n_items", m["sizes"]["n_items"] + 1)),
        ("edited_history", lambda m: m["config"].__setitem__("history_len", 7)),
    ):
        path = tmp_path / name
        shutil.copytree(good, path)
        meta = json.loads((path / "config.json").read_text())
        edit(meta)
        (path / "config.json").write_text(json.dumps(meta))
        with pytest.raises(CheckpointError) as exc:
            LearnedSimulator.load(path)
        text = _message(exc)
        assert str(path) in text and "does not match" in text


def test_train_simulator_writes_a_complete_checkpoint(world_dir: Path, tmp_path: Path) -> None:
    cfg = SimulatorConfig(**{**SMALL, "epochs": 1, "leave_steps": 50, "hidden": (16,)})
    result = train_simulator(world_dir, tmp_path / "sim", cfg, progress=False)
    out = Path(result["out"])
    for name in ("model.pt", "config.json", "fidelity.json", "fidelity.md"):
        assert (out / name).is_file()
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved["training"]["rows"] == result["rows"]
    assert "click_auc" in saved["targets"]
    sim = LearnedSimulator.load(out)
    assert sim.fidelity["rows"]["train"] == result["train_rows"]


def test_pair_counts_match_a_dense_table_through_inserts_and_merges() -> None:
    """The sparse user-author table (main + side table, merged when large) equals dense sums."""
    from recgym.simulators.learned import PairCounts

    rng = np.random.default_rng(0)
    n_users, n_authors = 40, 60
    pairs = PairCounts.from_pairs(n_authors, np.zeros(0, np.int64), np.zeros((0, 4)))
    dense = np.zeros((n_users, n_authors, 4), dtype=np.float64)
    for _ in range(1500):  # > 1024 new pairs in all: the side table is merged at least once
        users = rng.choice(n_users, size=rng.integers(1, 6), replace=False)
        authors = rng.integers(0, n_authors, size=(len(users), 3))
        x = rng.integers(0, 3, size=(len(users), 3, 4)).astype(np.float32)
        np.testing.assert_array_equal(pairs.lookup(users, authors), dense[users[:, None], authors])
        pairs.add(users, authors, x)
        np.add.at(dense, (np.repeat(users, 3), authors.ravel()), x.reshape(-1, 4))
    everyone = np.arange(n_users)
    grid = np.tile(np.arange(n_authors), (n_users, 1))
    np.testing.assert_array_equal(pairs.copy().lookup(everyone, grid), dense)
    np.testing.assert_array_equal(pairs.take(everyone[::-1]).lookup(everyone, grid), dense[::-1])


# --------------------------------------------------------------------- watch ratio and exposure
def test_ratio_bins_are_geometric_below_the_knee_and_equal_above() -> None:
    edges = ratio_edges(20)
    assert len(edges) == 21 and edges[0] == 0.0 and edges[-1] == 1.0
    assert (np.diff(edges) > 0).all()
    assert edges[1] == pytest.approx(RATIO_FLOOR)
    knee = int(np.argmin(np.abs(edges - RATIO_KNEE)))
    assert edges[knee] == pytest.approx(RATIO_KNEE)
    geo = edges[1 : knee + 1]
    np.testing.assert_allclose(geo[1:] / geo[:-1], (RATIO_KNEE / RATIO_FLOOR) ** (1 / 9))
    np.testing.assert_allclose(np.diff(edges[knee:]), 0.09)
    # a 10 s view of a 400 s video and a 20 s one land in different classes (equal bins of
    # 0.05 put both in the first)
    ratio = np.array([0.0, 0.0005, 10 / 400, 20 / 400, 0.55, 0.999, 1.0])
    complete = np.array([False] * 6 + [True])
    classes = ratio_class(ratio, complete, 20)
    assert classes[0] == classes[1] == 0
    assert classes[2] < classes[3] < classes[4] < classes[5] < classes[6] == 20
    with pytest.raises(ValueError, match="ratio_bins"):
        ratio_edges(3)


def test_sampled_watch_stays_in_its_bin_and_agrees_with_long_view() -> None:
    edges = ratio_edges(20)
    hist = np.zeros((1, 400, 21))
    hist[..., 5] = 1.0  # all mass in bin 5
    duration = np.full((1, 400), 600_000)  # 10 minutes: bin 5 is 3.6-6 s
    rng = np.random.default_rng(0)
    u = rng.random((2, 1, 400))
    watch = sample_watch(hist, np.zeros((1, 400), bool), duration, u[0], u[1])
    assert (watch >= np.floor(edges[5] * 600_000)).all()
    assert (watch <= np.ceil(edges[6] * 600_000)).all()
    # a long view (>= 18 s) keeps only the mass at or above 18 s: never bin 5
    watch = sample_watch(hist, np.ones((1, 400), bool), duration, u[0], u[1])
    assert (watch >= 18_000).all()


def test_context_carries_the_random_exposure_flag(sim: LearnedSimulator) -> None:
    cfg = SimulatorConfig(random_exposure_input=True)
    position, recency = np.arange(4), np.zeros((4, 2))
    flag = np.array([0, 1, 0, 1])
    x = context_features(position, recency, cfg, flag)
    assert x.shape == (4, CONTEXT_DIM) and (x[:, -1] == flag).all()
    off = SimulatorConfig()  # the default: the input is always 0
    assert not off.random_exposure_input
    assert (context_features(position, recency, off, flag)[:, -1] == 0).all()
    # a simulated slate counts as random exposures unless told otherwise; the flag matters
    users, slate = _slate(sim, 8, 6, seed=5)
    twin = copy.deepcopy(sim)
    ctx = sim._slate_context(users, slate)
    as_random = sim._predict_slate(users, slate, ctx, None)["p_click"]
    ones = twin._predict_slate(users, slate, ctx, None, np.ones((8, 6)))["p_click"]
    zeros = twin._predict_slate(users, slate, ctx, None, np.zeros((8, 6)))["p_click"]
    np.testing.assert_allclose(as_random, ones)
    assert not np.allclose(as_random, zeros)


def test_policy_session_lengths_compare_with_the_world_and_restore_both(
    sim: LearnedSimulator, world_dir: Path
) -> None:
    world = read_world(world_dir)
    assert world is not None and read_world(world_dir.parent) is None
    before = world.snapshot()
    clicked = sim.state.clicked.copy()
    out = policy_session_lengths(sim, world, n_sessions=40, seed=1)
    assert out["sessions"] == 40 and set(out["policies"]) == {"random", "longest-first"}
    for v in out["policies"].values():
        assert 1 <= v["world"] <= 100 and 1 <= v["simulator"] <= 100
        assert v["relative_error"] == pytest.approx((v["simulator"] - v["world"]) / v["world"])
    # both backends are back where they were, so the check is repeatable
    np.testing.assert_array_equal(world.state.patience, before.patience)
    np.testing.assert_array_equal(world.state.history, before.history)
    np.testing.assert_array_equal(sim.state.clicked, clicked)
    assert policy_session_lengths(sim, world, n_sessions=40, seed=1) == out


def test_leave_view_seconds_signal() -> None:
    """`leave_view_seconds` appends min(watch, 18 s) / 18 s to the leave model's signals (and
    widens its input by 4 features); off, the signals are SIGNALS."""
    from recgym.simulators.learned.leave import leave_dim, session_signals, signal_names

    off, on = SimulatorConfig(), SimulatorConfig(leave_view_seconds=True)
    assert signal_names(off) == SIGNALS and signal_names(on) == (*SIGNALS, "view_seconds")
    assert leave_dim(5, on) == leave_dim(5, off) + 4
    watch = np.array([[0, 3_000, 18_000, 60_000]])
    args = (watch > 0, watch >= 18_000, np.full((1, 4), 0.5), np.zeros((1, 4)),
            np.zeros((1, 4)), np.zeros((1, 4, 2)))  # fmt: skip
    plain = session_signals(*args, off, watch)
    viewed = session_signals(*args, on, watch)
    np.testing.assert_array_equal(viewed[..., :-1], plain)
    np.testing.assert_allclose(viewed[0, :, -1], [0.0, 3 / 18, 1.0, 1.0])
