"""Offline datasets to Minari and back (`recgym.data.minari`): the episode <-> buffer logic on
every registered env (always runs), the Minari round trip and `recover_environment` (skipped
without the ``minari`` extra), and ``recgym data export --format minari``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from tianshou.data import Batch, ReplayBuffer

from recgym.data.minari import (
    Episode,
    buffer_to_episodes,
    check_episode,
    collect_episodes,
    default_dataset_id,
    episodes_to_buffer,
    infer_space,
)
from recgym.envs import ENV_IDS, make_env


def _env_kwargs() -> dict[str, dict]:
    """tests/test_envs.py's small-world kwargs per env id (helpers add new ids there)."""
    spec = importlib.util.spec_from_file_location(
        "_recgym_test_envs", Path(__file__).parent / "test_envs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ENV_KWARGS


ENV_KWARGS = _env_kwargs()


def random_policy(env: gym.Env, seed: int):
    env.action_space.seed(seed)
    return lambda _obs: env.action_space.sample()


def sessions(env_id: str, episodes: int = 3, seed: int = 1) -> tuple[gym.Env, list[Episode]]:
    env = make_env(env_id, **ENV_KWARGS.get(env_id, {}))
    return env, collect_episodes(env, random_policy(env, seed), episodes, seed, max_steps=12)


def assert_same_tree(a, b, where: str) -> None:
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{where}: shape {a.shape} vs {b.shape}"
    assert np.array_equal(a, b), where


def assert_same_episodes(a: list[Episode], b: list[Episode], rew_dtype: bool = True) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for name in ("observations", "actions", "rewards", "terminations", "truncations"):
            assert_same_tree(getattr(x, name), getattr(y, name), f"episode {i} {name}")
        assert_same_tree(x.infos, y.infos, f"episode {i} infos")


def assert_same_buffers(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert len(a) == len(b)
    x, y = a[np.arange(len(a))], b[np.arange(len(b))]
    for key in ("obs", "act", "rew", "terminated", "truncated", "done", "obs_next", "info"):
        assert_same_tree(_plain(x[key]), _plain(y[key]), key)


def _plain(value):
    if isinstance(value, Batch):
        return {k: _plain(v) for k, v in value.items()}
    return np.asarray(value)


def scri_like_buffer(n: int = 9) -> ReplayBuffer:
    """ASA-shaped rows: flat states whose next state is approximated (no chaining), flags
    False, per-row infos (user, author, rewards per task)."""
    rng = np.random.default_rng(0)
    never = np.zeros(n, dtype=bool)
    obs = rng.normal(size=(n, 5)).astype(np.float32)
    batch = Batch(
        obs=obs,
        act=rng.integers(0, 50, n).astype(np.int64),
        rew=rng.uniform(0, 30, n).astype(np.float32),
        terminated=never,
        truncated=never,
        done=never,
        obs_next=(obs + 1).astype(np.float32),
        info=Batch(
            user=rng.integers(0, 9, n).astype(np.int64),
            rewards=rng.uniform(0, 1, (n, 4)).astype(np.float32),
        ),
    )
    buf = ReplayBuffer(n, random_seed=0)
    buf.set_batch(batch)
    buf._size = n
    return buf


# --------------------------------------------------------------------------- without Minari
@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_sessions_round_trip_through_a_buffer(env_id: str) -> None:
    env, eps = sessions(env_id)
    assert isinstance(env.observation_space, gym.spaces.Dict)
    for ep in eps:
        check_episode(ep)
        assert ep.terminations[-1] or ep.truncations[-1]
        assert env.observation_space.contains({k: v[0] for k, v in ep.observations.items()})
    buffer = episodes_to_buffer(eps)
    assert len(buffer) == sum(len(ep) for ep in eps)
    assert isinstance(buffer.obs, Batch) and sorted(buffer.obs.keys()) == sorted(
        env.observation_space
    )
    assert_same_episodes(buffer_to_episodes(buffer), eps)


def test_non_chaining_rows_keep_their_flags_and_infos() -> None:
    buf = scri_like_buffer()
    eps = buffer_to_episodes(buf)
    assert [len(e) for e in eps] == [1] * len(buf)  # obs_next never is the next obs
    assert not any(e.terminations.any() or e.truncations.any() for e in eps)
    back = episodes_to_buffer(eps)
    assert_same_buffers(buf, back)
    assert back.info.rewards.dtype == np.float32


def test_full_circular_buffer_is_read_oldest_first() -> None:
    buf = ReplayBuffer(4)
    for t in range(6):  # rows 4 and 5 overwrite 0 and 1; one chained trajectory
        buf.add(
            Batch(obs=np.array([t], np.float32), act=t, rew=float(t), terminated=t == 5,
                  truncated=False, obs_next=np.array([t + 1], np.float32), info={})
        )  # fmt: skip
    (ep,) = buffer_to_episodes(buf)
    assert ep.observations.ravel().tolist() == [2, 3, 4, 5, 6]
    assert ep.terminations.tolist() == [False, False, False, True]


def test_bad_episodes_are_named() -> None:
    ep = Episode(
        observations=np.zeros((3, 2)),
        actions=np.zeros(2),
        rewards=np.zeros(2),
        terminations=np.zeros(2, bool),
        truncations=np.zeros(1, bool),
    )
    with pytest.raises(ValueError, match="episode 7: truncations has 1 entries"):
        check_episode(ep, "episode 7")
    ep.truncations = np.zeros(2, bool)
    ep.observations = np.zeros((2, 2))
    with pytest.raises(ValueError, match="T \\+ 1 = 3"):
        episodes_to_buffer([ep])
    with pytest.raises(ValueError, match="empty"):
        buffer_to_episodes(ReplayBuffer(3))


def test_inferred_spaces_and_ids() -> None:
    space = infer_space({"a": np.array([[1, 2], [3, -4]]), "b": np.zeros((2, 3), np.float32)})
    assert space["a"].low.min() == -4 and space["a"].high.max() == 3
    assert space["b"].dtype == np.float32 and np.isinf(space["b"].high).all()
    assert default_dataset_id("random", "recgym/Session-v0") == "recgym/session/random-v0"
    assert default_dataset_id("ASA samples") == "recgym/asa_samples-v0"


# --------------------------------------------------------------------------- with Minari
@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_minari_round_trip_on_every_env(env_id: str, tmp_path: Path) -> None:
    minari = pytest.importorskip("minari")
    from recgym.data.minari import datasets_root, export_minari, load_minari, minari_to_buffer

    env, eps = sessions(env_id)
    dataset_id = default_dataset_id("random", env_id)
    export_minari(eps, dataset_id, root=tmp_path, env=env, algorithm_name="random")
    assert_same_episodes(load_minari(dataset_id, tmp_path), eps)
    assert_same_buffers(minari_to_buffer(dataset_id, tmp_path), episodes_to_buffer(eps))
    with datasets_root(tmp_path):
        dataset = minari.load_dataset(dataset_id)
        assert dataset.total_episodes == len(eps)
        assert dataset.observation_space == env.observation_space
        recovered = dataset.recover_environment()
    assert recovered.spec.id == env_id
    assert recovered.spec.kwargs == env.spec.kwargs
    obs, _ = recovered.reset(seed=1)
    assert_same_tree(obs, {k: v[0] for k, v in eps[0].observations.items()}, "reset obs")
    with pytest.raises(ValueError, match="exists"):
        export_minari(eps, dataset_id, root=tmp_path, env=env)
    export_minari(eps[:1], dataset_id, root=tmp_path, env=env, overwrite=True)
    assert len(load_minari(dataset_id, tmp_path)) == 1


def test_minari_round_trip_of_asa_like_rows(tmp_path: Path) -> None:
    pytest.importorskip("minari")
    from recgym.data.minari import export_minari, minari_to_buffer

    buf = scri_like_buffer()
    export_minari(buffer_to_episodes(buf), "recgym/asa-v0", root=tmp_path)
    assert_same_buffers(minari_to_buffer("recgym/asa-v0", tmp_path), buf)


def test_cli_exports_sessions_and_hdf5_buffers(tmp_path: Path, capsys) -> None:
    pytest.importorskip("minari")
    from recgym.cli import main
    from recgym.data.minari import load_minari, minari_to_buffer

    kwargs = '{"world_config": {"n_users": 60, "n_items": 300, "n_authors": 30}}'
    argv = ["data", "export", "--format", "minari", "--root", str(tmp_path)]
    assert (
        main([*argv, "--env-kwargs", kwargs, "--episodes", "2", "--policy", "longest-first"]) == 0
    )
    eps = load_minari("recgym/session/longest_first-v0", tmp_path)
    assert len(eps) == 2 and all(e.terminations[-1] or e.truncations[-1] for e in eps)
    buf = scri_like_buffer()
    buf.save_hdf5(str(tmp_path / "buf.h5"))
    assert (
        main(
            [*argv, "--buffer", str(tmp_path / "buf.h5"), "--dataset-id", "recgym/logged_buffer-v0"]
        )
        == 0
    )
    assert_same_buffers(minari_to_buffer("recgym/logged_buffer-v0", tmp_path), buf)
    assert (
        main(
            [*argv, "--buffer", str(tmp_path / "buf.h5"), "--dataset-id", "recgym/logged_buffer-v0"]
        )
        == 2
    )
    assert "exists" in capsys.readouterr().err


def test_cli_exports_asa_samples_with_their_sidecar(tmp_path: Path) -> None:
    pytest.importorskip("minari")
    from recgym.cli import main
    from recgym.data.asa import SCRISamples
    from recgym.data.minari import minari_to_buffer

    buf = scri_like_buffer()
    path = SCRISamples(buffer=buf, tasks=("click", "watch_time"), user_dim=2, id_space="backend",
                       source="test").save(tmp_path / "scri.h5")  # fmt: skip
    argv = ["data", "export", "--format", "minari", "--root", str(tmp_path), "--buffer", str(path)]
    assert main(argv) == 0
    assert_same_buffers(minari_to_buffer("recgym/asa-v0", tmp_path), buf)
