"""Session-v0's device-resident vector env (`envs.session_device`, issue 16), checked on the CPU
where it can be forced (``env_on_device=True`` over a ``resident=True`` simulator): the same
observation and bookkeeping as the host path's code on the same state, the masked simulator step
equal to the unmasked one on the live slots, no host synchronisation inside the fixed-shape step
(what CUDA-graph capture needs), Gymnasium's vector-env semantics, reproducible seeds, and the
same distributions as the host env."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from recgym.envs import register_all
from recgym.envs import session_device as sd
from recgym.envs.session import observe, slates_from_actions
from recgym.simulators import device_candidates
from recgym.simulators.learned import LearnedSimulator


def _venv(path: Path, n: int = 16, **kwargs: Any) -> gym.vector.VectorEnv:
    register_all()
    sim = LearnedSimulator.load(path, device="cpu", resident=True)
    kwargs.setdefault("env_on_device", True)
    return gym.make_vec("recgym/Session-v0", num_envs=n, vectorization_mode="vector_entry_point",
                        backend=sim, **kwargs)  # fmt: skip


def _scores(venv: gym.vector.VectorEnv, steps: int, seed: int = 0) -> np.ndarray:
    shape = (steps, venv.num_envs, venv.single_action_space.shape[0])
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def test_auto_picks_the_device_core_only_for_a_resident_backend_and_several_slots(
    tiny_checkpoint: Path,
) -> None:
    register_all()
    resident = LearnedSimulator.load(tiny_checkpoint, device="cpu", resident=True)
    host = LearnedSimulator.load(tiny_checkpoint, device="cpu")

    def core(n: int, backend: LearnedSimulator, **kw: Any) -> str:
        mode = "vector_entry_point"
        venv = gym.make_vec("recgym/Session-v0", num_envs=n, vectorization_mode=mode,
                            backend=backend, **kw)  # fmt: skip
        return type(venv.mdp).__name__

    assert core(4, resident) == "DeviceSessionMDP"
    assert core(1, resident) == "SessionMDP"  # a 1-slot vector env replays the single env
    assert core(4, host) == "SessionMDP"
    assert core(4, resident, env_on_device=False) == "SessionMDP"
    with pytest.raises(ValueError, match="env_on_device=True needs"):
        core(4, host, env_on_device=True)
    with pytest.raises(ValueError, match="4 slots need as many distinct users"):
        core(4, resident, users=np.array([1, 1, 2, 3]))
    with pytest.raises(ValueError, match="graph=True needs a CUDA device"):
        sd.DeviceSessionMDP(
            gym.make_vec(
                "recgym/Session-v0",
                num_envs=4,
                vectorization_mode="vector_entry_point",
                backend=resident,
                env_on_device=False,
            ).mdp,  # fmt: skip
            graph=True,
        )


def test_observation_and_bookkeeping_match_the_host_code_on_the_same_state(
    tiny_checkpoint: Path,
) -> None:
    """After every step, the host path's `observe` over the device core's state (users,
    candidates, exposure, shown, last, steps) gives exactly the returned observation; the slate
    is the host's top-k of the scores; the reward is the weighted responses."""
    venv = _venv(tiny_checkpoint)
    mdp = venv.mdp
    obs, info = venv.reset(seed=1)
    for scores in _scores(venv, 12):
        before = mdp.candidates.numpy().copy()
        obs, reward, terminated, truncated, info = venv.step(scores)
        stepped = info["_slate"]
        np.testing.assert_array_equal(
            info["slate"][stepped],
            slates_from_actions("x", scores[stepped], before[stepped], "scores", 6),
        )
        watch = info["responses"]["watch_ms"][stepped].sum(axis=1) * 1e-3
        np.testing.assert_allclose(reward[stepped], watch, rtol=1e-12)
        assert not reward[~stepped].any() and not (terminated | truncated)[~stepped].any()
        context = np.column_stack([mdp.steps.numpy() / mdp.max_steps, mdp.last.numpy()])
        expected = observe(
            mdp.sim,
            mdp.user.numpy(),
            mdp.candidates.numpy(),
            session=context,
            session_exposure=mdp.exposure.numpy(),
            shown=mdp.shown.numpy(),
            item_x=mdp.host.item_x,
        )
        for key, value in expected.items():
            np.testing.assert_array_equal(obs[key], value, err_msg=key)
        assert venv.observation_space.contains(obs)


def test_masked_simulator_step_equals_the_unmasked_step_on_the_live_users(
    tiny_checkpoint: Path,
) -> None:
    sim = LearnedSimulator.load(tiny_checkpoint, device="cpu", resident=True)
    twin = copy.deepcopy(sim)
    step, twin_step = sim._resident_step, twin._resident_step
    rng = np.random.default_rng(0)
    users = torch.from_numpy(rng.choice(sim.n_users, 12, replace=False))
    live = torch.from_numpy(rng.random(12) < 0.6)
    for _ in range(3):
        slate = torch.from_numpy(rng.integers(0, sim.catalogue.n_items, (12, 6)))
        u = torch.from_numpy(rng.random((12, step.n_uniforms(6))))
        a = step.sample(sim.state, users, slate, mask=live, uniforms=u)
        b = twin_step.sample(twin.state, users[live], slate[live], uniforms=u[live])
        for name, value in b["responses"].items():
            torch.testing.assert_close(a["responses"][name][live], value, rtol=0, atol=0)
        torch.testing.assert_close(a["left"][live], b["left"], rtol=0, atol=0)
    mine, theirs = sim.state.to_host(), twin.state.to_host()
    for x, y in zip(mine, theirs, strict=True):
        for field in ("clicked", "skipped", "counts", "totals", "count", "sums", "recent"):
            if hasattr(x, field):
                np.testing.assert_array_equal(getattr(x, field), getattr(y, field), field)


def test_the_fixed_shape_step_never_synchronises_with_the_host(
    tiny_checkpoint: Path, sync_check: type
) -> None:
    """What CUDA-graph capture needs: no `.item()`/`bool()`, no data-dependent shapes, no
    tensors from host data inside `_step` (checked by op name on the CPU)."""
    venv = _venv(tiny_checkpoint)
    venv.reset(seed=0)
    mdp = venv.mdp
    mdp.inputs["stepping"][:10] = True
    mdp.inputs["resetting"][10:] = True
    mdp.inputs["u"].uniform_()
    mdp.inputs["u_users"].uniform_()
    with sync_check() as check:
        out = mdp._step(**mdp.inputs)
    assert check.seen == []
    assert out["still_repeats"].dim() == 0


def test_vector_env_semantics_distinct_users_and_truncation(tiny_checkpoint: Path) -> None:
    venv = _venv(tiny_checkpoint, n=12, max_steps=3)
    obs, info = venv.reset(seed=0)
    assert venv.observation_space.contains(obs)
    ended = np.zeros(12, dtype=bool)
    n_ends = 0
    for scores in _scores(venv, 20):
        obs, reward, terminated, truncated, info = venv.step(scores)
        users = obs["user_id"][:, 0]
        assert len(np.unique(users)) == 12  # distinct users in the slots at every step
        # next-step autoreset: the slots that ended last step reset now
        assert not reward[ended].any() and not (terminated | truncated)[ended].any()
        np.testing.assert_array_equal(info["_user_id"], True)
        assert (obs["context"][ended, 0] == 0).all()  # a fresh session's request index
        assert np.all(np.sort(obs["item_id"], axis=1)[:, 1:] != np.sort(obs["item_id"])[:, :-1])
        ended = terminated | truncated
        n_ends += ended.sum()
        assert not (terminated & truncated).any()
    assert n_ends >= 12 * 20 // 4  # max_steps 3: every slot ends at least every 4 calls


def test_same_seed_same_run_and_named_users(tiny_checkpoint: Path) -> None:
    def run(seed: int) -> list[np.ndarray]:
        venv = _venv(tiny_checkpoint, n=8)
        obs, _ = venv.reset(seed=seed)
        out = [obs["candidates"]]
        for scores in _scores(venv, 10):
            obs, reward, *_ = venv.step(scores)
            out += [obs["candidates"], reward]
        return out

    first, second, other = run(4), run(4), run(5)
    for x, y in zip(first, second, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(first, other, strict=True))
    venv = _venv(tiny_checkpoint, n=3)
    obs, info = venv.reset(seed=0, options={"user": np.array([5, 7, 9])})
    np.testing.assert_array_equal(obs["user_id"][:, 0], [5, 7, 9])
    with pytest.raises(ValueError, match="repeats a user"):
        venv.reset(seed=0, options={"user": np.array([5, 5, 9])})


def _structure(info: dict) -> dict:
    """Keys (recursively), dtypes and shapes of a vector info."""
    out = {}
    for key, value in info.items():
        if isinstance(value, dict):
            out[key] = _structure(value)
        else:
            out[key] = (np.asarray(value).dtype.str, np.shape(value))
    return out


def test_vector_info_is_the_host_envs_with_zeros_where_a_slot_reset(tiny_checkpoint: Path) -> None:
    """The device core builds Gymnasium's vector info itself (`vector_step`): the same keys,
    dtypes, shapes and masks as the host env's scattered info, zeros in the rows of slots that
    reset; actions of resetting slots are ignored (a NaN there is fine), float64 scores and
    per-row checks take the careful path."""
    venvs = [_venv(tiny_checkpoint, n=12, max_steps=2, env_on_device=d) for d in (True, False)]
    for venv in venvs:
        venv.reset(seed=0)
    scores = _scores(venvs[0], 6)
    for t, step in enumerate(scores):
        infos = []
        for venv in venvs:
            autoreset = venv._autoreset.copy()
            action = step.astype(np.float64) if t % 2 else step.copy()
            action[autoreset, 0] = np.nan  # ignored: those slots reset
            _, _, _, _, info = venv.step(action)
            infos.append((info, autoreset))
        (dev, reset_dev), (host, _) = infos
        assert _structure(dev) == _structure(host)
        for key in ("slate", "categories", "candidates_shown"):
            np.testing.assert_array_equal(dev[f"_{key}"], ~reset_dev)
        np.testing.assert_array_equal(dev["responses"]["_click"], ~reset_dev)
        assert dev["_user_id"].all() and dev["_candidates"].all()
        if reset_dev.any():
            assert not dev["slate"][reset_dev].any()
            assert not dev["responses"]["watch_ms"][reset_dev].any()
        np.testing.assert_array_equal(dev["candidates"], venvs[0].mdp.candidates.numpy())
    bad = scores[0].copy()
    bad[:, 3] = np.inf
    with pytest.raises(ValueError, match="finite"):
        venvs[0].step(bad)
    with pytest.raises(ValueError, match="shape"):
        venvs[0].step(np.zeros((12, 7), np.float32))


def test_discrete_actions_and_bad_actions(tiny_checkpoint: Path) -> None:
    venv = _venv(tiny_checkpoint, n=4, action_mode="discrete")
    obs, _ = venv.reset(seed=0)
    choice = np.array([0, 3, 7, 49])
    _, _, _, _, info = venv.step(choice)
    np.testing.assert_array_equal(info["slate"][:, 0], obs["item_id"][np.arange(4), choice])
    with pytest.raises(ValueError, match="outside Discrete"):
        venv.step(np.array([0, 1, 2, 50]))
    venv = _venv(tiny_checkpoint, n=4)
    venv.reset(seed=0)
    bad = np.zeros((4, 50), dtype=np.float32)
    bad[2, 7] = np.nan
    with pytest.raises(ValueError, match="finite"):
        venv.step(bad)


def test_rows_that_still_repeat_after_the_fixed_rounds_are_redrawn(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device_candidates, "DEDUP_ROUNDS", 0)
    venv = _venv(tiny_checkpoint, n=8)
    obs, _ = venv.reset(seed=0)
    for scores in _scores(venv, 5):
        obs, *_ = venv.step(scores)
        s = np.sort(obs["item_id"], axis=1)
        assert (s[:, 1:] != s[:, :-1]).all()
        np.testing.assert_array_equal(obs["item_id"], venv.mdp.candidates.numpy())


def test_candidates_come_from_the_host_generators_distribution(tiny_checkpoint: Path) -> None:
    """On the same histories, the device draw and `CandidateGenerator` agree on the share of
    candidates in the history's categories and on the mean popularity of every column
    (4 standard errors; 3,000 rows each), and rows are distinct."""
    from recgym.simulators.candidates import CandidateGenerator

    sim = LearnedSimulator.load(tiny_checkpoint, device="cpu")
    generator = CandidateGenerator(catalogue=sim.catalogue, n_candidates=50)
    device = device_candidates.DeviceCandidates(generator, torch.device("cpu"))
    rng = np.random.default_rng(0)
    history = sim.state.clicked[rng.integers(0, sim.n_users, 3000)]
    history[:300] = -1  # some users without history: popularity fills their history slots
    host = generator(history, rng)
    u = torch.rand((len(history), device.n_uniforms), generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)  # fmt: skip
    dev, still = device(torch.from_numpy(history), u)
    dev = dev.numpy()
    assert not still.any()
    s = np.sort(dev, axis=1)
    assert (s[:, 1:] != s[:, :-1]).all()
    cat, pop = sim.catalogue.category, sim.catalogue.popularity
    seen = np.where(history >= 0, cat[np.maximum(history, 0)], -1)

    def in_history(c: np.ndarray) -> np.ndarray:
        return (cat[c][:, :, None] == seen[:, None, :]).any(axis=2)

    for a, b in [(in_history(host), in_history(dev))] + [
        (pop[host[:, j]], pop[dev[:, j]]) for j in (0, 24, 25, 39, 40, 49)
    ]:
        a, b = a.astype(float).ravel(), b.astype(float).ravel()
        se = np.sqrt(a.var() / len(a) + b.var() / len(b))
        assert abs(a.mean() - b.mean()) < 4 * se


def test_same_dynamics_as_the_host_env(tiny_checkpoint: Path) -> None:
    """Mean reward per step and the rate of users leaving agree with the host env's within
    4 standard errors over slots (40 slots x 60 steps each)."""

    def per_slot(env_on_device: bool) -> np.ndarray:
        venv = _venv(tiny_checkpoint, n=40, env_on_device=env_on_device)
        venv.reset(seed=11)
        total, count = np.zeros((40, 2)), np.zeros(40)
        for scores in _scores(venv, 60, seed=2):
            _, reward, terminated, _, info = venv.step(scores)
            live = info.get("_slate", np.zeros(40, bool))
            total[live] += np.column_stack([reward, terminated])[live]
            count += live
        return total / count[:, None]

    a, b = per_slot(True), per_slot(False)
    for j in range(2):
        se = np.sqrt(a[:, j].var() / len(a) + b[:, j].var() / len(b))
        assert abs(a[:, j].mean() - b[:, j].mean()) < 4 * se, j


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_replays_the_eager_device_step(tiny_checkpoint: Path) -> None:
    """Where there is a GPU: the captured step gives the eager step's run (same kernels, same
    uniforms), a seeded reset recaptures it over the simulator's new state tensors, and the
    run repeats."""

    def run(graph: bool) -> list[np.ndarray]:
        register_all()
        sim = LearnedSimulator.load(tiny_checkpoint, device="cuda")
        venv = gym.make_vec("recgym/Session-v0", num_envs=16, backend=sim, graph=graph,
                            vectorization_mode="vector_entry_point")  # fmt: skip
        mdp = venv.mdp
        assert type(mdp).__name__ == "DeviceSessionMDP" and mdp.graph_wanted == graph
        out: list[np.ndarray] = []
        for _ in range(2):  # the second seeded reset replaces the state: a new capture
            obs, _ = venv.reset(seed=0)
            out.append(obs["candidates"])
            for scores in _scores(venv, 8):
                obs, reward, terminated, truncated, _ = venv.step(scores)
                out += [obs["item_id"], obs["candidates"], reward, terminated | truncated]
        assert mdp.graph_error is None
        return out

    graphed, eager = run(True), run(False)
    half = len(graphed) // 2
    for x, y in zip(graphed[:half], graphed[half:], strict=True):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(graphed, eager, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_tianshou_collector_over_the_device_core(tiny_checkpoint: Path) -> None:
    """Tianshou's Collector steps and resets subsets of env ids (`step_slots`/`reset_slots`
    on some slots): episodes end, the buffer fills, the other slots' sessions carry on."""
    from tianshou.algorithm.algorithm_base import RandomActionPolicy
    from tianshou.data import Collector, VectorReplayBuffer

    from recgym.envs.tianshou_vector import TianshouVectorEnv

    venv = TianshouVectorEnv(_venv(tiny_checkpoint, n=6, max_steps=5), info="none")
    venv.seed(0)
    collector = Collector(
        RandomActionPolicy(venv.action_space[0]), venv, VectorReplayBuffer(600, 6)
    )
    collector.reset()
    stats = collector.collect(n_episode=12)
    assert stats.n_collected_episodes == 12
    assert (stats.lens >= 1).all() and (stats.lens <= 5).all()
    assert len(collector.buffer) == stats.n_collected_steps


def test_gpu_check_times_the_parts_of_a_device_env_step(tiny_checkpoint: Path) -> None:
    """`recgym bench gpu`'s breakdown of a device env step (device step, download, host), run
    here on the CPU's eager device env: three non-negative milliseconds per step."""
    from recgym.benchmarks.gpu_profile import vector_step_parts

    register_all()
    sim = LearnedSimulator.load(tiny_checkpoint, device="cpu", resident=True)
    parts = vector_step_parts(sim, 8, 2)
    assert set(parts) == {"device", "download", "host"}
    assert parts["device"] > 0 and parts["download"] > 0 and parts["host"] >= 0


def test_pooled_downloads_leave_every_kept_result_as_it_was(tiny_checkpoint: Path) -> None:
    """The device env's download path as from CUDA (pooled result buffers, staging copies;
    emulated on the CPU): the same observations, rewards and infos as the direct CPU path, and
    results a caller keeps (every third step's, whole or as one array) never change after."""
    from recgym.device import Download

    class HostDownload(Download):  # the device path, on unpinned CPU memory
        @staticmethod
        def _copied_through_host(tensor: torch.Tensor) -> bool:
            return True

        @staticmethod
        def _pinned(numel: int, dtype: torch.dtype) -> torch.Tensor:
            return torch.empty(numel, dtype=dtype)

    steps = 12
    runs = {}
    for emulated in (False, True):
        venv = _venv(tiny_checkpoint, n=8, max_steps=3)
        if emulated:
            venv.mdp._download = HostDownload(pool=venv.mdp._download.pool)
        actions = _scores(venv, steps)
        copies, kept = [], []
        venv.reset(seed=3)
        for t in range(steps):
            result = venv.step(actions[t])
            copies.append(copy.deepcopy(result))
            if t % 3 == 0:
                kept.append((t, result))
            elif t % 3 == 1:
                kept.append((t, result[0]["candidates"]))
            del result
        runs[emulated] = copies, kept, venv.mdp._download
    (direct, _, _), (emulated, kept, dl) = runs[False], runs[True]
    assert dl.results and any(len(e) > 1 for e in dl.results.values())  # the pool was used
    for a, b in zip(direct, emulated, strict=True):
        for key in a[0]:
            np.testing.assert_array_equal(a[0][key], b[0][key])
        for x, y in zip(a[1:4], b[1:4], strict=True):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a[4]["candidates"], b[4]["candidates"])
        np.testing.assert_array_equal(a[4]["slate"], b[4]["slate"])
    for t, held in kept:  # still what the step returned
        if isinstance(held, tuple):
            for key, value in held[0].items():
                np.testing.assert_array_equal(value, emulated[t][0][key])
            np.testing.assert_array_equal(held[1], emulated[t][1])
            np.testing.assert_array_equal(held[4]["responses"]["click"],
                                          emulated[t][4]["responses"]["click"])  # fmt: skip
        else:
            np.testing.assert_array_equal(held, emulated[t][0]["candidates"])
