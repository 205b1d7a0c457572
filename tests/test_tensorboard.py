"""TensorBoard curves (`agents.tb`): short trainings of every bench agent write event files with
the expected scalar tags; the engine puts them under <out>/tensorboard/<stage>/<agent>/seed<s>,
and --no-tensorboard turns them off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recgym.agents.tb import logging_to

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

ENV = {
    "world_config": {"n_users": 50, "n_items": 200, "n_authors": 20, "seed": 5},
    "n_candidates": 20,
    "slate_size": 4,
    "max_steps": 8,
}
ONLINE = {"epochs": 2, "warmup_steps": 16, "test_episodes": 1, "hidden_sizes": (16,)}


def scalars(run_dir: Path) -> dict[str, list[float]]:
    """{tag: values} of the event files in `run_dir`."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {t: [e.value for e in events.Scalars(t)] for t in events.Tags()["scalars"]}


def test_online_and_offline_trainers_write_their_curves(tmp_path: Path) -> None:
    from recgym.agents.continuous import (
        CQLConfig,
        OfflineDataConfig,
        TD3Config,
        collect_offline_buffer,
        train_cql,
        train_td3,
    )
    from recgym.agents.dqn import DQNConfig, train_dqn
    from recgym.envs import make_env
    from recgym.envs.contract import row_layout

    with logging_to(tmp_path):
        _, dqn = train_dqn(ENV, DQNConfig(env_steps=96, seed=3, **ONLINE), progress=False)
        train_td3(ENV, TD3Config(env_steps=128, seed=4, batch_size=16, **ONLINE), progress=False)
        data = collect_offline_buffer(ENV, OfflineDataConfig(n_steps=64), progress=False)
        layout = row_layout(make_env("recgym/Session-v0", **ENV).observation_space)
        cql = CQLConfig(gradient_steps=20, epochs=2, batch_size=16, test_episodes=1,
                        hidden_sizes=(16,), seed=5)  # fmt: skip
        train_cql(data, layout, cql, ENV, progress=False)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*/*")) == [
        "CQL/seed5",
        "DQN/seed3",
        "TD3/seed4",
    ]
    curve = scalars(tmp_path / "DQN" / "seed3")
    # the test returns TensorBoard shows are the learning curve the trainer returns
    assert curve["test/returns_stat/mean"] == pytest.approx([r for _, r in dqn.learning_curve])
    assert {"update/loss", "info/best_reward"} <= set(curve)
    td3, cql = scalars(tmp_path / "TD3" / "seed4"), scalars(tmp_path / "CQL" / "seed5")
    assert {"test/returns_stat/mean", "update/actor_loss", "update/critic1_loss"} <= set(td3)
    assert {"test/returns_stat/mean", "update/actor_loss", "update/critic1_loss"} <= set(cql)


def test_rliv_ua_and_deepfm_write_their_losses(tmp_path: Path, tiny_logs: Path) -> None:
    from tianshou.data import Batch, ReplayBuffer

    from recgym import data
    from recgym.agents.deepfm import DeepFMConfig, DeepFMRanker
    from recgym.agents.rliv_ua import RLIVUAConfig, train_rliv_ua
    from recgym.simulators.scri import TASKS, state_dim

    rng = np.random.default_rng(0)
    n, dim = 64, state_dim(2)
    never = np.zeros(n, dtype=bool)
    buf = ReplayBuffer(n)
    buf.set_batch(
        Batch(obs=rng.uniform(0, 1, (n, dim)).astype(np.float32), act=np.arange(n),
              rew=rng.uniform(0, 9, n).astype(np.float32), terminated=never, truncated=never,
              done=never, obs_next=rng.uniform(0, 1, (n, dim)).astype(np.float32),
              info=Batch(user=rng.integers(0, 4, n), author=rng.integers(0, 4, n),
                         rewards=rng.uniform(0, 1, (n, len(TASKS))).astype(np.float32),
                         timestamp=np.arange(n)))
    )  # fmt: skip
    buf._size = n
    with logging_to(tmp_path):
        cfg = RLIVUAConfig(tasks=TASKS[:3], batch_size=16, epochs=2, steps_per_epoch=20, seed=1,
                           item_features=False)  # fmt: skip
        train_rliv_ua(buf, cfg, progress=False)
        DeepFMRanker(DeepFMConfig(epochs=2, embedding_dim=4, hidden_sizes=(8,), seed=2)).fit(
            data.load(tiny_logs)
        )
    assert "update/loss" in scalars(tmp_path / "RLIV-UA" / "seed1")
    losses = scalars(tmp_path / "DeepFM" / "seed2")["train/loss"]
    assert len(losses) == 2 and all(np.isfinite(losses))


def _train_dqn_stage(ctx):  # a stage of the test's bench (runs in this process)
    from recgym.agents.dqn import DQNConfig, train_dqn

    train_dqn(ENV, DQNConfig(env_steps=32, seed=ctx.config["seed"], **ONLINE), progress=False)
    return {}


def test_engine_stages_log_under_out_and_the_option_turns_it_off(tmp_path: Path) -> None:
    from recgym.benchmarks.engine import Engine, Stage
    from recgym.benchmarks.sweep import SweepConfig

    stages = [Stage("dqn-seed7", {"seed": 7}, _train_dqn_stage)]
    Engine(tmp_path / "on", progress=False).run(stages)
    run_dir = tmp_path / "on" / "tensorboard" / "dqn-seed7" / "DQN" / "seed7"
    assert "test/returns_stat/mean" in scalars(run_dir)
    off = SweepConfig(tensorboard=False)
    Engine(tmp_path / "off", progress=False, sweep=off).run(stages)
    assert not (tmp_path / "off" / "tensorboard").exists()
    # a stage that runs again replaces its curves instead of adding a second run beside them
    Engine(tmp_path / "on", progress=False, fresh=True).run(stages)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


def test_own_loop_trainers_write_update_curves(tmp_path: Path) -> None:
    """Trainers without a Tianshou trainer (IQL here; the MTF learners, the offline baselines and
    ES use the same `update_curve`) and every `agents.sequence` model through `fit` (so RUIE and
    RDRSR too) write ``update/...`` scalars."""
    from tianshou.data import Batch, ReplayBuffer

    from recgym.agents.iql import IQLConfig, train_iql
    from recgym.agents.sequence import SequenceData, TrainConfig, fit, make_model

    rng = np.random.default_rng(0)
    n = 64
    buf = ReplayBuffer(n, random_seed=0)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    for i in range(n):
        buf.add(Batch(obs=obs[i], act=act[i], rew=float(-abs(act[i, 0])), terminated=True,
                      truncated=False, obs_next=obs[i], info={}))  # fmt: skip
    sequences = [np.arange(i, i + 6) % 20 for i in range(30)]
    data = SequenceData.from_user_sequences(sequences, max_len=5)
    with logging_to(tmp_path):
        train_iql(buf, IQLConfig(gradient_steps=20, batch_size=16, seed=2))
        fit(make_model("gru4rec", 20, dim=8, max_len=5), data, data, TrainConfig(epochs=2), seed=1)
    iql = scalars(tmp_path / "IQL" / "seed2")
    assert {"update/value_loss", "update/critic_loss", "update/actor_loss"} <= set(iql)
    assert len(iql["update/value_loss"]) == 2  # every UPDATE_INTERVAL (10) of 20 steps
    gru = scalars(tmp_path / "GRU4Rec" / "seed1")
    assert len(gru["update/loss"]) == 2 and len(gru["update/valid_ndcg@10"]) == 2
