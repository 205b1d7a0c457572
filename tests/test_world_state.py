"""The world saved after its logs: save/load round trip, fingerprint checks, world_dir envs."""

from __future__ import annotations

import json
import zipfile
from dataclasses import fields, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import recgym.envs  # noqa: F401  (registers the env ids)
from recgym.envs.backends import make_backend
from recgym.simulators.generate import CONFIG_FILE, STATE_FILE, generate
from recgym.simulators.logs import LogConfig, simulate_logs
from recgym.simulators.world import Dynamics, UserState, World, WorldConfig
from recgym.simulators.world_state import (
    WorldStateError,
    load_world,
    read_world_state,
    save_world_state,
    world_fingerprint,
)

WORLD = WorldConfig(n_users=60, n_items=300, n_authors=30, seed=3)
LOGS = LogConfig(days=3, seed=1)


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world_state")
    generate(out, WORLD, LOGS, progress=False)
    return out


@pytest.fixture(scope="module")
def logged_world() -> World:
    """The world that wrote `world_dir`, replayed in memory: its post-log state."""
    world = World(WORLD)
    simulate_logs(world, LOGS, progress=False)
    return world


def assert_same_state(a: UserState, b: UserState) -> None:
    for f in fields(UserState):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype, f.name
        np.testing.assert_array_equal(x, y, err_msg=f.name)


def differs(a: UserState, b: UserState) -> list[str]:
    return [
        f.name
        for f in fields(UserState)
        if not np.array_equal(getattr(a, f.name), getattr(b, f.name))
    ]


# --------------------------------------------------------------------------- round trip
def test_load_world_returns_the_world_as_it_stood_after_its_logs(world_dir, logged_world):
    loaded = load_world(world_dir)
    assert_same_state(loaded.state, logged_world.state)
    fresh = World(WORLD)
    # the logs really moved the users: history, bonds, interests, clocks all differ from cold
    changed = differs(loaded.state, fresh.state)
    assert {"history", "bond", "interest", "clock_ms"} <= set(changed)
    assert (loaded.state.history >= 0).sum() > 0 == (fresh.state.history >= 0).sum()


def test_state_initial_is_the_pre_log_world(world_dir):
    initial = load_world(world_dir, state="initial")
    assert_same_state(initial.state, World(WORLD).state)
    with pytest.raises(ValueError, match="state must be one of"):
        load_world(world_dir, state="after")


def test_static_parts_rebuild_deterministically_and_the_fingerprint_sees_config():
    a, b = World(WORLD), World(WORLD)
    assert world_fingerprint(a) == world_fingerprint(b)
    assert_same_state(a.state, b.state)
    np.testing.assert_array_equal(a.truth.item_latent, b.truth.item_latent)
    other = world_fingerprint(World(replace(WORLD, seed=4)))
    assert other["catalogue"] != world_fingerprint(a)["catalogue"]
    assert other["dynamics"] == world_fingerprint(a)["dynamics"]
    # stepping changes the state, never the fingerprint
    simulate_logs(a, LogConfig(days=1, seed=0), progress=False)
    assert world_fingerprint(a) == world_fingerprint(b)


def test_generate_lists_the_state_file_and_writes_identical_bytes(tmp_path, world_dir):
    summary = generate(tmp_path / "again", WORLD, LOGS, progress=False)
    assert STATE_FILE in summary["files"]
    assert (tmp_path / "again" / STATE_FILE).read_bytes() == (world_dir / STATE_FILE).read_bytes()
    config = json.loads((world_dir / CONFIG_FILE).read_text())
    assert config["state"]["file"] == STATE_FILE
    assert config["state"]["fingerprint"] == world_fingerprint(World(WORLD))


def test_save_then_read_round_trips_any_state(tmp_path):
    world = World(WORLD)
    simulate_logs(world, LogConfig(days=1, seed=5), progress=False)
    path = save_world_state(world, tmp_path)
    assert path == tmp_path / STATE_FILE and not list(tmp_path.glob("*.tmp"))
    assert_same_state(read_world_state(path, World(WORLD)), world.state)


# --------------------------------------------------------------------------- errors
def copy_dir(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_missing_state_file_names_it_and_says_what_to_do(tmp_path, world_dir):
    d = copy_dir(world_dir, tmp_path / "old")
    (d / STATE_FILE).unlink()
    with pytest.raises(WorldStateError, match=r"world_state\.npz: no saved world state.*initial"):
        load_world(d)
    load_world(d, state="initial")  # the pre-log world needs only world.json
    (d / CONFIG_FILE).unlink()
    with pytest.raises(WorldStateError, match=r"world\.json: no such file"):
        load_world(d, state="initial")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_state_file_names_it(tmp_path, world_dir, damage):
    d = copy_dir(world_dir, tmp_path / damage)
    data = (d / STATE_FILE).read_bytes()
    (d / STATE_FILE).write_bytes(b"not a zip at all" if damage == "garbage" else data[:200])
    with pytest.raises(WorldStateError, match=r"world_state\.npz: not a readable world state"):
        load_world(d)


def test_corrupt_world_json_names_it(tmp_path, world_dir):
    d = copy_dir(world_dir, tmp_path / "json")
    (d / CONFIG_FILE).write_text("{")
    with pytest.raises(WorldStateError, match=r"world\.json: not a valid world config"):
        load_world(d)


def test_a_state_from_another_config_is_refused(tmp_path, world_dir):
    d = copy_dir(world_dir, tmp_path / "mixed")
    config = json.loads((d / CONFIG_FILE).read_text())
    config["world"]["seed"] = 4  # same sizes, another world
    (d / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(
        WorldStateError, match=r"world_state\.npz: saved by a different world.*catalogue"
    ):
        load_world(d)


def test_a_state_from_other_dynamics_is_refused_naming_the_constants(
    tmp_path, world_dir, monkeypatch
):
    import recgym.simulators.world_state as ws

    name = next(f.name for f in fields(Dynamics) if isinstance(getattr(Dynamics(), f.name), float))
    changed = replace(Dynamics(), **{name: getattr(Dynamics(), name) + 1.0})

    class NewCodeWorld(World):  # what a later code version with other defaults would build
        def __init__(self, config=None, dynamics=None):
            super().__init__(config, changed)

    monkeypatch.setattr(ws, "World", NewCodeWorld)
    with pytest.raises(WorldStateError, match=rf"dynamics constants that differ: {name}\."):
        load_world(world_dir)


def test_a_world_written_with_other_dynamics_loads_with_them(tmp_path):
    """Dynamics passed to `generate` are recorded in world.json and `load_world` rebuilds the
    world with them (the item-dependent MTF world of tests/test_mtf_learning.py is one)."""
    dyn = replace(Dynamics(), patience_per_minute=0.18)
    generate(tmp_path, WORLD, LogConfig(days=1, seed=1), progress=False, dynamics=dyn)
    world = load_world(tmp_path)
    assert world.dynamics == dyn
    replayed = World(WORLD, dyn)
    simulate_logs(replayed, LogConfig(days=1, seed=1), progress=False)
    assert_same_state(world.state, replayed.state)
    cfg = json.loads((tmp_path / CONFIG_FILE).read_text())
    cfg["dynamics"]["patience_per_hour"] = 1.0
    (tmp_path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(WorldStateError, match=r"world\.json: not valid world dynamics"):
        load_world(tmp_path)


def test_a_state_with_other_fields_or_shapes_is_refused(tmp_path, world_dir):
    src = world_dir / STATE_FILE
    with zipfile.ZipFile(src) as zin:
        entries = {n: zin.read(n) for n in zin.namelist()}
    d = copy_dir(world_dir, tmp_path / "fields")
    with zipfile.ZipFile(d / STATE_FILE, "w") as zout:
        for name, data in entries.items():
            if name != "patience.npy":
                zout.writestr(name, data)
    with pytest.raises(WorldStateError, match=r"missing \['patience'\]"):
        load_world(d)
    d2 = copy_dir(world_dir, tmp_path / "shapes")
    arrays = dict(np.load(src))
    arrays["bond"] = arrays["bond"][:, :5]
    np.savez(d2 / STATE_FILE, **arrays)
    with pytest.raises(WorldStateError, match=r"field 'bond' is float32\[60, 5\]"):
        load_world(d2)


# --------------------------------------------------------------------------- backends and envs
def test_make_backend_world_dir(world_dir, logged_world):
    world = make_backend("world", world_dir=str(world_dir))
    assert_same_state(world.state, logged_world.state)
    with pytest.raises(ValueError, match="world_dir or world_config, not both"):
        make_backend("world", world_config={"n_users": 60}, world_dir=str(world_dir))
    with pytest.raises(ValueError, match="only applies to backend='world'"):
        make_backend("learned", checkpoint="x", world_dir=str(world_dir))
    with pytest.raises(ValueError, match="only applies to backend='world'"):
        make_backend(World(WORLD), world_dir=str(world_dir))


def rollout(env: gym.Env, seed: int, episodes: int) -> list[tuple]:
    """(user, shown slate, clicks, watch ms) of every request of `episodes` sessions."""
    space = env.action_space
    space.seed(seed)
    out = []
    env.reset(seed=seed)
    for e in range(episodes):
        if e:
            env.reset()
        done = False
        while not done:
            _, _, term, trunc, info = env.step(space.sample())
            r = info["responses"]
            out.append(
                (info["user_id"], tuple(info["slate"]), tuple(r["click"]), tuple(r["watch_ms"]))
            )
            done = term or trunc
    return out


@pytest.mark.parametrize("env_id", ["recgym/Session-v0", "recgym/UserAuthor-v0"])
def test_env_with_world_dir_starts_where_the_logs_ended(world_dir, logged_world, env_id):
    env = gym.make(env_id, backend="world", world_dir=str(world_dir), max_steps=20)
    assert_same_state(env.unwrapped.model.state, logged_world.state)
    runs = rollout(env, seed=7, episodes=15)
    # reset(seed) returns to the post-log state, so a same-seed rollout repeats exactly
    assert rollout(env, seed=7, episodes=15) == runs
    # ... and equals a rollout on the in-memory logged world, not one on the cold world
    warm = gym.make(env_id, backend=copy_world(logged_world), max_steps=20)
    assert rollout(warm, seed=7, episodes=15) == runs
    cold = gym.make(env_id, backend="world", world_config={**WORLD.__dict__}, max_steps=20)
    assert rollout(cold, seed=7, episodes=15) != runs


def copy_world(world: World) -> World:
    other = World(world.config, world.dynamics)
    other.restore(world.snapshot())
    return other


def test_random_slates_meet_warm_users_not_cold_ones(world_dir):
    """The true response to the same random slates, for the same users: the world_dir env's
    users answer exactly as the post-log world's and unlike the cold world's (they have
    histories, bonds, reinforced and faded interests, drifted tastes)."""
    env = gym.make("recgym/Session-v0", backend="world", world_dir=str(world_dir))
    warm = env.unwrapped.model
    rng = np.random.default_rng(0)
    users = np.arange(WORLD.n_users)
    slates = rng.integers(0, WORLD.n_items, (len(users), 6))
    p_warm = warm.expected_responses(users, slates)["click"]
    p_cold = World(WORLD).expected_responses(users, slates)["click"]
    np.testing.assert_array_equal(
        p_warm, load_world(world_dir).expected_responses(users, slates)["click"]
    )
    assert (np.abs(p_warm - p_cold) > 1e-6).mean() > 0.5


def test_world_dir_env_and_the_simulator_learned_from_the_logs_share_user_histories(
    tiny_logs, tiny_checkpoint
):
    """The point of world_dir: both backends start from the same users. Every user's history
    (last clicked items) in the world_dir env equals the learned simulator's, row for row."""
    from recgym.simulators.learned import LearnedSimulator

    sim = LearnedSimulator.load(tiny_checkpoint)
    env = gym.make("recgym/Session-v0", backend="world", world_dir=str(tiny_logs))
    world = env.unwrapped.model
    users = np.asarray(sim.user_ids)
    np.testing.assert_array_equal(world.history(users), sim.history(np.arange(sim.n_users)))
    assert (world.history(users) >= 0).sum() > len(users)  # real histories, not padding
    config = json.loads((tiny_logs / CONFIG_FILE).read_text())["world"]
    cold = gym.make("recgym/Session-v0", backend="world", world_config=config)
    assert (cold.unwrapped.model.history(users) < 0).all()
