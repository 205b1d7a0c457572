"""The `device` option (issue 16): resolution rules, every model honouring it, checkpoints loading
on any device. Runs without a GPU: CUDA is mocked where "auto" must pick it, and the ``meta``
device (shapes, no data) stands in for "a device other than the CPU" where a model is only
built; nothing here touches real CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tianshou.data import Batch, ReplayBuffer

from recgym.device import device_name, load_state, module_device, resolve_device

META = torch.device("meta")
SMALL_WORLD = {"n_users": 40, "n_items": 200, "n_authors": 20, "seed": 3}


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def mock_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch believes one CUDA device exists (resolution only: nothing may allocate on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def _devices(module: torch.nn.Module) -> set[torch.device]:
    return {t.device for t in [*module.parameters(), *module.buffers()]}


def _layout():
    from recgym.envs import make_env
    from recgym.envs.contract import row_layout

    env = make_env("recgym/Session-v0", world_config=SMALL_WORLD)
    return row_layout(env.observation_space)


# --------------------------------------------------------------------------- resolution
def test_resolve_device_rules(no_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(" AUTO ") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("meta") == META
    assert device_name("cpu") == "cpu"
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("gpu0")
    with pytest.raises(ValueError, match="string or torch.device"):
        resolve_device(0)  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", torch.device("cuda", 1)])
def test_cuda_without_cuda_is_a_clear_error(no_cuda: None, spec: str | torch.device) -> None:
    with pytest.raises(ValueError, match="CUDA is not available") as err:
        resolve_device(spec)
    assert "device='cpu' or 'auto'" in str(err.value)


def test_auto_picks_cuda_when_available(mock_cuda: None) -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:1")


def test_config_defaults_are_auto() -> None:
    from recgym.agents.baselines import RankerConfig
    from recgym.agents.continuous import CQLConfig, TD3Config
    from recgym.agents.deepfm import DeepFMConfig
    from recgym.agents.dqn import DQNConfig
    from recgym.agents.enhanced_state_mtf import MTFRLConfig
    from recgym.agents.iql import IQLConfig
    from recgym.agents.mtf_baselines import BaselineConfig
    from recgym.agents.mtl import MTLConfig
    from recgym.agents.rliv_ua import RLIVUAConfig
    from recgym.agents.rlur import RLURConfig
    from recgym.agents.sequence import TrainConfig

    configs = [RankerConfig, CQLConfig, TD3Config, DeepFMConfig, DQNConfig, MTFRLConfig]
    configs += [IQLConfig, BaselineConfig, MTLConfig, RLIVUAConfig, RLURConfig, TrainConfig]
    for cls in configs:
        assert cls().device == "auto", cls.__name__


# --------------------------------------------------------------------------- checkpoints
def test_load_state_maps_onto_the_requested_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.pt"
    torch.save({"w": torch.arange(3.0)}, path)
    state = load_state(path, "cpu")
    assert state["w"].device == torch.device("cpu") and state["w"].tolist() == [0.0, 1.0, 2.0]
    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_state(path, "meta")
    assert seen["map_location"] == META and seen["weights_only"] is True


def test_dqn_checkpoint_round_trip_with_map_location(tmp_path: Path, no_cuda: None) -> None:
    from recgym.agents.dqn import DQNConfig, build_dqn, load_dqn, save_dqn

    algo = build_dqn(layout=_layout(), config=DQNConfig(device="cpu"))
    path = save_dqn(algo, DQNConfig(device="cpu"), tmp_path / "dqn")
    loaded, cfg = load_dqn(path, device="meta")  # weights mapped onto another device
    assert cfg.device == "meta" and _devices(loaded.policy.model) == {META}
    again, _ = load_dqn(path)  # the saved config's device
    for a, b in zip(algo.policy.model.parameters(), again.policy.model.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_dqn(path, device="cuda")


# --------------------------------------------------------------------------- models honour it
def test_tianshou_agents_are_built_on_the_configured_device(no_cuda: None) -> None:
    from recgym.agents.continuous import CQLConfig, TD3Config, build_cql, build_td3
    from recgym.agents.dqn import DQNConfig, build_dqn
    from recgym.agents.mtf_baselines import BASELINES, BaselineConfig, build

    layout = _layout()
    for device in ("cpu", "meta"):
        dqn = build_dqn(layout=layout, config=DQNConfig(device=device))
        td3 = build_td3(layout, TD3Config(device=device))
        cql = build_cql(layout, CQLConfig(device=device))
        assert _devices(dqn) == _devices(td3) == _devices(cql) == {torch.device(device)}
        assert cql.cql_log_alpha.device == torch.device(device)  # set from the policy's device
        for name in BASELINES:
            assert _devices(build(name, 12, BaselineConfig(device=device))) == {
                torch.device(device)
            }, name
    with pytest.raises(ValueError, match="CUDA is not available"):
        build_td3(layout, TD3Config(device="cuda"))


def test_cpu_and_meta_builds_start_from_the_same_seeded_shapes() -> None:
    """Initialised on the CPU, then moved: the meta build has the CPU build's parameter shapes
    (what a GPU build would hold, with the CPU build's values)."""
    from recgym.agents.dqn import DQNConfig, build_dqn

    layout = _layout()
    cpu = build_dqn(layout=layout, config=DQNConfig(device="cpu"))
    meta = build_dqn(layout=layout, config=DQNConfig(device="meta"))
    assert [p.shape for p in cpu.parameters()] == [p.shape for p in meta.parameters()]


def test_mtf_learners_honour_the_device() -> None:
    from recgym.agents import enhanced_state_mtf as es_mtf
    from recgym.agents.iql import IQLConfig, train_iql

    rng = np.random.default_rng(0)
    tr = {"state": rng.normal(size=(32, 5)), "rows": rng.normal(size=(32, 3, 4))}
    for per_item in (True, False):
        algo = es_mtf.build(tr, es_mtf.MTFRLConfig(per_item=per_item, device="meta"))
        assert _devices(algo) == {META}
    n = 64
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    buf = ReplayBuffer(n, random_seed=0)
    buf.set_batch(
        Batch(obs=obs, act=act, rew=-(act[:, 0] ** 2), terminated=np.ones(n, bool),
              truncated=np.zeros(n, bool), done=np.ones(n, bool), obs_next=obs)
    )  # fmt: skip
    buf._size = n
    algo, _ = train_iql(buf, IQLConfig(gradient_steps=2, batch_size=16, device="cpu"))
    assert _devices(algo) == {torch.device("cpu")}
    assert algo.policy.act_array(obs[:4]).shape == (4, 1)


def test_rankers_and_mtl_honour_the_device(tiny_logs: Path, tmp_path: Path) -> None:
    from recgym.agents.baselines import RankerConfig, RankingModel
    from recgym.agents.deepfm import DeepFMConfig, DeepFMRanker, Vocabulary
    from recgym.agents.mtl import MTLConfig, MTLModel
    from recgym.data import load

    ds = load(tiny_logs)
    ranker = RankingModel(RankerConfig(epochs=1, device="cpu"))
    ranker.fit(ds)
    path = ranker.save(tmp_path / "ranker")
    assert _devices(RankingModel.load(path, device="meta").net) == {META}
    assert module_device(RankingModel.load(path).net) == torch.device("cpu")
    assert _devices(RankingModel(RankerConfig(device="meta")).net) == {META}

    vocab = Vocabulary.from_dataset(ds)
    fm = DeepFMRanker(DeepFMConfig(device="meta"))
    fm._build(vocab)
    assert _devices(fm.net) == {META}
    mtl = MTLModel(MTLConfig(device="meta"))
    mtl._build(vocab, 12)
    assert _devices(mtl.net) == {META}


def test_sequence_fit_uses_the_configured_device(no_cuda: None) -> None:
    from recgym.agents.sequence import TrainConfig, fit
    from recgym.agents.sequence.data import SequenceData
    from recgym.agents.sequence.recurrent import GRU4Rec

    rng = np.random.default_rng(0)
    data = SequenceData(seq=rng.integers(0, 30, (40, 6)), target=rng.integers(0, 30, 40))
    model = GRU4Rec(30, dim=8, max_len=6)
    history = fit(model, data, config=TrainConfig(epochs=1, batch_size=16))  # "auto" -> cpu
    assert module_device(model) == torch.device("cpu") and history["config"]["device"] == "auto"
    with pytest.raises(ValueError, match="CUDA is not available"):
        fit(GRU4Rec(30, dim=8, max_len=6), data, config=TrainConfig(epochs=1, device="cuda"))


# --------------------------------------------------------------------------- learned simulator
def test_learned_simulator_loads_onto_the_requested_device(
    tiny_checkpoint: Path, no_cuda: None
) -> None:
    from recgym.simulators.learned import CheckpointError, LearnedSimulator

    cpu = LearnedSimulator.load(tiny_checkpoint, device="cpu")
    assert cpu.device == torch.device("cpu")
    meta = LearnedSimulator.load(tiny_checkpoint, device="meta")
    assert meta.device == META
    assert _devices(meta.response) == _devices(meta.leave) == {META}
    tables = [v for k, v in vars(meta).items() if k.startswith("_t_")]
    assert tables and all(t.device == META for t in tables)
    # the step's inputs are gathered on the model's device
    inputs = meta._inputs(**_exposures(cpu))
    assert {t.device for v in inputs.values() for t in (v if isinstance(v, tuple) else (v,))} == {
        META
    }
    with pytest.raises(ValueError, match="CUDA is not available"):
        LearnedSimulator.load(tiny_checkpoint, device="cuda")
    with pytest.raises(CheckpointError):  # the device is checked, then the files
        LearnedSimulator.load(tiny_checkpoint / "missing", device="cpu")


def _exposures(sim) -> dict:
    b, k = 2, 3
    return {
        "user": np.repeat(np.arange(b), k),
        "clicked": sim.state.clicked[:b],
        "skipped": sim.state.skipped[:b],
        "item": np.arange(b * k),
        "affinity": np.zeros((b * k, 10), np.float32),
        "tab": np.ones(b * k, np.int64),
        "position": np.zeros(b * k, np.int64),
        "recency": np.zeros((b * k, 2), np.float32),
    }


def test_learned_backend_pickles_with_its_device_and_steps_alike(tiny_checkpoint: Path) -> None:
    """A pickled simulator (subprocess envs) rebuilds its lookup tables on its device and gives
    the same step from the same generator."""
    import pickle

    from recgym.simulators.learned import LearnedSimulator

    sim = LearnedSimulator.load(tiny_checkpoint, device="cpu")
    twin = pickle.loads(pickle.dumps(sim))
    assert twin.device == torch.device("cpu") and twin._t_item_row.device == twin.device
    users, slate = np.arange(4), np.arange(24).reshape(4, 6)
    a = sim.step(users, slate, np.random.default_rng(0))
    b = twin.step(users, slate, np.random.default_rng(0))
    np.testing.assert_array_equal(a.info["p_click"], b.info["p_click"])
    np.testing.assert_array_equal(a.responses["watch_ms"], b.responses["watch_ms"])


def test_train_simulator_refuses_cuda_without_cuda(
    tiny_logs: Path, tmp_path: Path, no_cuda: None
) -> None:
    from recgym.simulators.train import train_simulator

    with pytest.raises(ValueError, match="CUDA is not available"):
        train_simulator(tiny_logs, tmp_path / "ckpt", progress=False, device="cuda")
    assert not (tmp_path / "ckpt" / "model.pt").exists()


# --------------------------------------------------------------------------- downloads
def _tensors(step: int) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.full((4, 3), float(step)),
        "ids": torch.arange(6).reshape(2, 3) + 100 * step,
        "reward": torch.full((4,), float(-step), dtype=torch.float64),
        "done": torch.tensor(step % 2 == 1),
        "mask": torch.tensor([True, step % 2 == 0]),
    }


def _as_downloaded(step: int) -> dict[str, object]:
    return {k: (bool(v) if v.dim() == 0 else v.numpy()) for k, v in _tensors(step).items()}


def _equal(got: dict[str, object], want: dict[str, object]) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, bool):
            assert got[key] is value, key
        else:
            assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
            np.testing.assert_array_equal(got[key], value, err_msg=key)


@pytest.mark.parametrize("pool", [0, 3])
def test_download_returns_every_tensor_and_never_writes_into_arrays_still_held(
    host_download: None, pool: int
) -> None:
    """Whatever the caller keeps of earlier calls (an array, a view of one, a row, a torch
    tensor sharing its memory) is never overwritten: the pool only reuses result buffers no
    returned array holds and falls back to fresh copies when all are held."""
    from recgym.device import Download

    dl = Download(pool=pool)
    holders = [
        lambda out: out["obs"][1:],  # a view
        lambda out: out["ids"][0],  # a row
        lambda out: torch.from_numpy(out["reward"]),  # a tensor on the same memory
        lambda out: out["mask"].reshape(2, 1)[1],  # a view of a view
        lambda out: out,  # the whole dict
    ]
    kept: list[tuple[object, object]] = []
    for step in range(40):
        out = dl(_tensors(step))
        _equal(out, _as_downloaded(step))
        if step % 4 == 0:  # keep something of every fourth call; drop the rest
            what = holders[(step // 4) % len(holders)]
            kept.append((what(out), what(_as_downloaded(step))))
        for held, want in kept:  # nothing kept changed since
            if isinstance(held, dict):
                _equal(held, want)
            else:
                np.testing.assert_array_equal(np.asarray(held), np.asarray(want))
        del out
    if pool:
        assert all(len(entries) <= pool for entries in dl.results.values())


def test_download_pool_reuses_buffers_a_caller_dropped(host_download: None) -> None:
    """Dropping each call's results before the next-but-one call (what a collector copying
    them into its buffer does) cycles through two result buffers per dtype and makes no host
    copy; keeping every result falls back to staging and fresh copies with the pool full."""
    from recgym.device import Download

    dl = Download(pool=3)
    bases = set()
    out = None
    for step in range(10):
        out = dl(_tensors(step))  # the previous `out` is alive during the call
        _equal(out, _as_downloaded(step))
        bases.add(out["obs"].base.__array_interface__["data"][0])
    assert len(bases) == 2  # two float32 result buffers, reused in turn
    assert all(len(entries) == 2 for entries in dl.results.values())
    assert dl.staging == {}  # never needed a staging copy
    del out

    kept = [dl(_tensors(step)) for step in range(6)]
    for step, got in enumerate(kept):
        _equal(got, _as_downloaded(step))
    assert all(len(entries) == 3 for entries in dl.results.values())
    assert set(dl.staging) == {torch.float32, torch.int64, torch.float64, torch.bool}

    # a bigger call than the buffers: an unused buffer too small is replaced, not overrun
    big = {"obs": torch.arange(50, dtype=torch.float32)}
    kept.clear()
    got = dl(big)
    np.testing.assert_array_equal(got["obs"], np.arange(50, dtype=np.float32))
    assert max(e[0].numel() for e in dl.results[torch.float32]) >= 50


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pooled_download_from_cuda_never_overwrites_held_results() -> None:
    """From a real CUDA device (pinned buffers, asynchronous copies): every call's values, and
    the results kept of every third call unchanged by later calls."""
    from recgym.device import Download

    dl = Download(pool=2)
    kept = []
    for step in range(10):
        out = dl({key: value.cuda() for key, value in _tensors(step).items()})
        _equal(out, _as_downloaded(step))
        if step % 3 == 0:
            kept.append((step, out))
        for s, held in kept:
            _equal(held, _as_downloaded(s))
        del out
    assert all(len(entries) == 2 for entries in dl.results.values())
    assert all(entries[0][0].is_pinned() for entries in dl.results.values())
    assert dl.staging  # with both buffers held, calls fell back to staging copies


def test_download_without_a_device_copy_returns_the_tensors_memory() -> None:
    from recgym.device import Download, download

    got = Download(pool=3)(_tensors(2))
    _equal(got, _as_downloaded(2))
    assert download(_tensors(1))["done"] is True


# --------------------------------------------------------------------------- the GPU check
def test_gpu_check_on_cpu_writes_rows_saying_no_cuda(
    tiny_checkpoint: Path, tmp_path: Path, no_cuda: None
) -> None:
    from recgym.benchmarks.gpu_check import GPUCheckConfig, run
    from recgym.benchmarks.throughput.rows import read_rows

    config = GPUCheckConfig(out=str(tmp_path), quick=True, only=("vector_env", "dqn_train"),
                            checkpoint=str(tiny_checkpoint), vector_n=16, dqn_steps=32)  # fmt: skip
    rows = run(config)
    assert read_rows(tmp_path / "throughput.jsonl") == rows
    by = {(r["variant"], r["metric"]): r for r in rows}
    assert by[("cuda", "available")]["value"] == 0
    assert "no CUDA device" in by[("cuda", "available")]["note"]
    assert by[("vector_env/cpu", "steps_per_s")]["value"] > 0
    assert by[("vector_env/cpu", "steps_per_s")]["batch"] == 16
    # the median of timed blocks, results dropped; beside it the same blocks keeping them
    assert "median of 5 blocks" in by[("vector_env/cpu", "steps_per_s")]["note"]
    assert "dropped at the next step" in by[("vector_env/cpu", "steps_per_s")]["note"]
    assert by[("vector_env_kept/cpu", "steps_per_s")]["value"] > 0
    assert "kept to the end" in by[("vector_env_kept/cpu", "steps_per_s")]["note"]
    assert by[("backend_step/cpu", "steps_per_s")]["value"] > 0
    assert "host state" in by[("backend_step/cpu", "steps_per_s")]["note"]
    assert "median of 5 blocks" in by[("backend_step/cpu", "steps_per_s")]["note"]
    assert by[("dqn_train/cpu", "steps_per_s")]["value"] > 0
    assert not any(r["metric"] == "speedup" for r in rows)  # nothing to compare with
    assert all(r["bench"] == "gpu_check" and r["mode"] == "quick" for r in rows)
    assert "gpu_check" in (tmp_path / "throughput.md").read_text()


def test_gpu_check_cuda_rows_and_ratios_with_mocked_cuda(
    tmp_path: Path, mock_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a CUDA machine writes (device names, speedups, the issue's targets), from
    given timings: nothing runs on the mocked device."""
    from recgym.benchmarks.gpu_check import Check, GPUCheckConfig, devices
    from recgym.benchmarks.throughput.benches import Workspace
    from recgym.benchmarks.throughput.rows import passes

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 (mocked)")
    assert devices("auto") == [torch.device("cuda"), torch.device("cpu")]
    assert devices("cpu") == [torch.device("cpu")]
    check = Check(GPUCheckConfig(out=str(tmp_path)), Workspace(root=tmp_path, quick=False))
    check.no_cuda_row()
    assert check.rows == []  # CUDA is there: no "no CUDA device" row
    check.compare("sim_fit", {"cuda": 20.0, "cpu": 150.0}, "s", "fit", higher_is_faster=False)
    check.compare("vector_env", {"cuda": 6e5, "cpu": 2e4}, "1/s", "env", batch=4096)
    by = {(r["variant"], r["metric"]): r for r in check.rows}
    assert by[("sim_fit", "speedup")]["value"] == pytest.approx(7.5)
    assert passes(by[("sim_fit", "speedup")]) is True
    assert by[("vector_env", "speedup")]["value"] == pytest.approx(30.0)
    assert passes(by[("vector_env/cuda", "steps_per_s")]) is True
    assert "NVIDIA H100 (mocked)" in by[("sim_fit/cuda", "seconds")]["note"]
    assert by[("sim_fit/cpu", "seconds")]["note"].startswith("cpu;")


def test_gpu_check_refuses_cuda_without_cuda(no_cuda: None, tmp_path: Path) -> None:
    from recgym.benchmarks.gpu_check import GPUCheckConfig, parse_args

    with pytest.raises(ValueError, match="CUDA is not available"):
        GPUCheckConfig(out=str(tmp_path), device="cuda")
    with pytest.raises(SystemExit):
        parse_args(["--device", "cuda", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="only"):
        GPUCheckConfig(only=("nope",))


def test_gpu_check_quick_sim_fit_on_cpu(tmp_path: Path) -> None:
    from recgym.benchmarks.gpu_check import GPUCheckConfig, run

    rows = run(GPUCheckConfig(out=str(tmp_path), quick=True, only=("sim_fit",), device="cpu"))
    fit = [r for r in rows if r["variant"] == "sim_fit/cpu"]
    assert len(fit) == 1 and fit[0]["value"] > 0 and "rows" in fit[0]["note"]


@pytest.mark.parametrize("graph_error", [None, "RuntimeError: capture refused"])
def test_gpu_check_sim_fit_rows_on_mocked_cuda(
    tmp_path: Path,
    tiny_logs: Path,
    mock_cuda: None,
    monkeypatch: pytest.MonkeyPatch,
    graph_error: str | None,
) -> None:
    """On CUDA sim_fit times the graphed fit and the eager one and says how the fit went (the
    fits themselves are mocked: nothing runs on the mocked device)."""
    from types import SimpleNamespace

    from recgym.benchmarks import gpu_check
    from recgym.benchmarks.throughput.benches import Workspace

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 (mocked)")
    monkeypatch.setattr(gpu_check, "_warm", lambda device: None)
    calls = []

    def fake_fit(table: object, device: torch.device, graph: bool | None = None) -> tuple:
        calls.append((device.type, graph))
        seconds = {("cuda", None): 4.0, ("cuda", False): 20.0, ("cpu", None): 100.0}
        report = {"graph": graph_error is None, "graph_error": graph_error}
        return seconds[(device.type, graph)], SimpleNamespace(fit_report=report)

    monkeypatch.setattr(gpu_check, "_timed_fit", fake_fit)
    work = Workspace(root=tmp_path, quick=True)
    work.logs, work.log_rows = tiny_logs, 1
    check = gpu_check.Check(gpu_check.GPUCheckConfig(out=str(tmp_path), quick=True), work)
    check.sim_fit()
    assert calls == [("cuda", None), ("cuda", False), ("cpu", None)]
    by = {(r["variant"], r["metric"]): r for r in check.rows}
    assert by[("sim_fit", "speedup")]["value"] == pytest.approx(25.0)
    assert by[("sim_fit_eager/cuda", "seconds")]["value"] == 20.0
    note = by[("sim_fit/cuda", "seconds")]["note"]
    if graph_error is None:
        assert "training steps replayed as CUDA graphs" in note
    else:
        assert f"eager: capture failed ({graph_error})" in note


def test_envs_pass_the_device_to_the_learned_backend(tiny_checkpoint: Path, no_cuda: None) -> None:
    import gymnasium as gym

    from recgym.envs import make_env, register_all

    env = make_env("recgym/Session-v0", backend="learned", checkpoint=str(tiny_checkpoint),
                   device="cpu")  # fmt: skip
    assert env.unwrapped.driver.model.device == torch.device("cpu")
    register_all()
    kwargs = {"backend": "learned", "checkpoint": str(tiny_checkpoint), "device": "cpu"}
    venv = gym.make_vec(
        "recgym/Session-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs
    )
    venv.reset(seed=0)
    venv.step(np.zeros((2, 50), np.float32))
    with pytest.raises(ValueError, match="CUDA is not available"):
        make_env("recgym/Session-v0", backend="learned", checkpoint=str(tiny_checkpoint),
                 device="cuda")  # fmt: skip


def test_gpu_check_profiles_run_on_the_cpu(tiny_logs: Path, tiny_checkpoint: Path) -> None:
    """The diagnostics `recgym bench gpu` writes on CUDA (OUT/gpu_check_profile.md), run on the
    CPU: a profiled slice of the fit (which then stops, leaving the fit's step class as it was)
    and of the device env."""
    from recgym.benchmarks.gpu_profile import env_profile, fit_profile
    from recgym.data import load
    from recgym.envs import register_all
    from recgym.simulators.learned import LearnedSimulator, SimulatorConfig, build_log_table
    from recgym.simulators.learned import fit as fit_module

    step_class = fit_module._TrainStep
    table = build_log_table(load(tiny_logs), SimulatorConfig(batch_size=64, heldout_days=1))
    text = fit_profile(table, torch.device("cpu"), skip=2, batches=3)
    assert text.startswith("3 training steps after 2") and "aten::" in text
    assert "embedding_dense_backward" in text  # the backward was profiled
    assert fit_module._TrainStep is step_class
    register_all()
    sim = LearnedSimulator.load(tiny_checkpoint, device="cpu", resident=True)
    text = env_profile(sim, 8, steps=2)
    assert text.startswith("2 steps of 8 slots") and "aten::" in text


def test_gpu_check_vector_rates_time_blocks_and_keep_results_only_when_asked(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_vector_rates` times `repeats` blocks of `calls` steps on one env; a step's results are
    dropped at the next step unless `keep` holds every one until all blocks have run."""
    import weakref

    from recgym.benchmarks import gpu_check
    from recgym.envs import register_all
    from recgym.simulators.learned import LearnedSimulator

    register_all()
    sim = LearnedSimulator.load(tiny_checkpoint, device="cpu")
    alive: list[int] = []  # per step: observations of earlier steps still alive after it
    refs: list[weakref.ref] = []
    real_warm = gpu_check.warm_vector_env
    for keep in (False, True):
        alive.clear()
        refs.clear()

        def warm(*args: object, **kwargs: object) -> tuple[object, np.ndarray]:
            venv, actions = real_warm(*args, **kwargs)
            step = venv.step

            def counted(action: np.ndarray) -> object:
                out = step(action)
                alive.append(sum(r() is not None for r in refs))
                refs.append(weakref.ref(out[0]["item_id"]))
                return out

            venv.step = counted
            return venv, actions

        monkeypatch.setattr(gpu_check, "warm_vector_env", warm)
        rates, how = gpu_check._vector_rates(sim, 4, calls=3, repeats=2, keep=keep)
        assert len(rates) == 2 and all(r > 0 for r in rates)
        assert how == "host state and env"
        assert len(alive) == 6
        if keep:
            assert alive == list(range(6))  # every earlier step's arrays still held
        else:
            assert max(alive) <= 1  # at most the previous step's, until its name is rebound
    assert gpu_check._blocks([1e5, 3e5, 2e5]) == "median of 3 blocks (100,000-300,000)"
    assert gpu_check._blocks([5.0]) == "one block"
