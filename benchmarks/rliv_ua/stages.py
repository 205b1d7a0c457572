"""RLIV-UA bench stages on `benchmarks.engine`: logs, simulator, ASA samples, one per trained agent
and seed, one evaluation per agent and seed; `stages(cfg)` lists them.

Each stage's config holds exactly the settings it uses (the agent's config dataclass, the env
sizes where it plays the env); the engine adds the code it runs and its dependencies' keys, so
a changed setting reruns exactly the stages it reaches and those downstream. All stage functions
live in this module and `evaluate` (they share one code hash: editing an agent reruns every
agent, safe rather than minimal).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.engine import Stage, StageContext, StageResult
from recgym.benchmarks.rliv_ua.spec import ENV_ID, ID_SPACE, RLIV_VARIANTS, WORLD_ONLY, BenchConfig
from recgym.simulators import scri

UNTRAINED = frozenset({"random", "longest_first", "duration_diversity", "oracle"})
"""Agents without a training stage."""


# --------------------------------------------------------------------------- paths and envs
def logs_dir(logs: StageResult) -> Path:
    """The logs of the ``logs`` stage: its directory, or the real logs it names (``--data``)."""
    return Path(logs.result["data"]) if "data" in logs.result else logs.dir


def env_kwargs(backend: str, deps: dict[str, StageResult], env: dict[str, Any]) -> dict[str, Any]:
    """UserAuthor-v0 kwargs on `backend`: the learned simulator of the ``simulator`` stage, or the
    world as it stood after writing the logs (``world_dir``; issue 8 point 3)."""
    if backend in ("learned", "learned_b"):
        sim = deps["simulator" if backend == "learned" else "simulator-b"]
        return {"backend": "learned", "checkpoint": str(sim.dir), **env}
    return {"backend": "world", "world_dir": str(logs_dir(deps["logs"])), **env}


def _load_logs(ctx: StageContext) -> Any:
    from recgym import data

    return data.load(logs_dir(ctx.deps["logs"]))


# --------------------------------------------------------------------------- data stages
def _logs(ctx: StageContext) -> dict[str, Any]:
    if "data" in ctx.config:  # real KuaiRand logs: nothing to write, no world to evaluate on
        if not Path(ctx.config["data"]).is_dir():
            raise FileNotFoundError(f"--data {ctx.config['data']} is not a directory")
        return {"data": ctx.config["data"]}
    from recgym.simulators.generate import generate

    summary = generate(ctx.dir, ctx.config["world"], ctx.config["logs"], progress=False)
    return {k: summary[k] for k in ("rows", "users", "items")}


def _simulator(ctx: StageContext) -> dict[str, Any]:
    from recgym.simulators.train import train_simulator

    cfg = ctx.config
    logs = logs_dir(ctx.deps["logs"])
    result = train_simulator(logs, ctx.dir, cfg["simulator"], progress=False, device=cfg["device"])
    return {"rows": result["rows"], "train_rows": result["train_rows"]}


def _asa(ctx: StageContext) -> dict[str, Any]:
    """SCRI samples of the logs (`data.asa`) in one backend's ids and static features, so a
    model trained on them addresses that backend's id embeddings."""
    from recgym.data.asa import asa_samples
    from recgym.envs import make_env

    device = {"device": ctx.config["device"]}
    env = make_env(ENV_ID, **env_kwargs(ctx.config["backend"], ctx.deps, device))
    samples = asa_samples(_load_logs(ctx), backend=env.unwrapped.model)
    env.close()
    samples.save(ctx.dir / "asa.h5")
    counters = samples.buffer[np.arange(len(samples.buffer))].obs[:, -len(scri.UA_COUNTERS) :]
    return {
        "samples": len(samples.buffer),
        "tasks": list(samples.tasks),
        "nonzero_counter_share": float((counters > 0).any(1).mean()),
    }


# --------------------------------------------------------------------------- agent stages
def _deepfm(ctx: StageContext) -> dict[str, Any]:
    from recgym.agents.deepfm import DeepFMRanker

    model = DeepFMRanker(ctx.config)
    stats = model.fit(_load_logs(ctx))
    model.save(ctx.dir / "model.pt")
    return {"click_auc": stats.click_auc, "train_click_auc": stats.train_click_auc}


def _rankers(ctx: StageContext) -> dict[str, Any]:
    """The reference rankers' `RankingModel` (click and watch-ratio heads) fitted on the logs."""
    from recgym.agents.baselines import RankingModel

    model = RankingModel(ctx.config, target="click")
    stats = model.fit(_load_logs(ctx))
    model.save(ctx.dir / "model.pt")
    return {"click_auc": getattr(stats, "click_auc", None)}


def _cql_buffer(ctx: StageContext) -> dict[str, Any]:
    """CQL's offline buffer, logged once in the learned simulator by the noisy projected DeepFM
    of the first seed (`agents.continuous.collect_offline_buffer`)."""
    from recgym.agents.continuous import collect_offline_buffer
    from recgym.agents.deepfm import DeepFMRanker

    ranker = DeepFMRanker.load(ctx.deps[ctx.config["ranker"]].dir / "model.pt")
    env = env_kwargs("learned", ctx.deps, ctx.config["env"])
    buffer = collect_offline_buffer(env, ctx.config["data"], ranker, ENV_ID, progress=False)
    buffer.save_hdf5(str(ctx.dir / "buffer.h5"))
    return {"transitions": len(buffer), "mean_reward": float(np.mean(buffer.rew))}


def _cql(ctx: StageContext) -> dict[str, Any]:
    from tianshou.data import ReplayBuffer

    from recgym.agents.continuous import train_cql
    from recgym.envs import make_env
    from recgym.envs.contract import row_layout

    env = env_kwargs("learned", ctx.deps, ctx.config["env"])
    buffer = ReplayBuffer.load_hdf5(str(ctx.deps["cql-buffer"].dir / "buffer.h5"))
    probe = make_env(ENV_ID, **env)
    layout = row_layout(probe.observation_space)
    probe.close()
    policy, stats = train_cql(buffer, layout, ctx.config["agent"], env, ENV_ID, False)
    policy.save(ctx.dir / "model.pt")
    return {"gradient_steps": stats.gradient_steps, "seconds": stats.seconds}


def _online(ctx: StageContext) -> dict[str, Any]:
    """DQN, TD3 or RLUR (over the seed's DeepFM) trained online on the learned simulator."""
    kind, cfg = ctx.config["kind"], ctx.config["agent"]
    env = env_kwargs("learned", ctx.deps, ctx.config["env"])
    path = ctx.dir / "model.pt"
    if kind == "dqn":
        from recgym.agents.dqn import save_dqn, train_dqn

        algo, stats = train_dqn(env, cfg, progress=False, env_id=ENV_ID)
        save_dqn(algo, cfg, path, env, env_id=ENV_ID)
    elif kind == "td3":
        from recgym.agents.continuous import train_td3

        policy, stats = train_td3(env, cfg, ENV_ID, False)
        policy.save(path)
    else:
        from recgym.agents.deepfm import DeepFMRanker
        from recgym.agents.rlur import train_rlur

        ranker = DeepFMRanker.load(ctx.deps[ctx.config["ranker"]].dir / "model.pt")
        policy, stats = train_rlur(ranker, env, cfg, ENV_ID, False)
        policy.save(path)
    return {
        "learning_curve": stats.learning_curve,
        "gradient_steps": stats.gradient_steps,
        "seconds": stats.seconds,
    }


def _rliv(ctx: StageContext) -> dict[str, Any]:
    """An RLIV-UA variant on one backend's ASA samples; its towers are the samples' tasks."""
    from recgym.agents.rliv_ua import save_rliv_ua, train_rliv_ua
    from recgym.data.asa import load_asa

    asa = ctx.deps[f"asa-{ctx.config['backend']}"]
    config = replace(ctx.config["agent"], tasks=tuple(asa.result["tasks"]))
    samples = load_asa(asa.dir / "asa.h5")
    algo, stats = train_rliv_ua(samples.buffer, config, progress=False)
    save_rliv_ua(algo, ctx.dir / "model.pt")
    return {"loss_curve": stats.loss_curve, "gradient_steps": stats.gradient_steps}


# --------------------------------------------------------------------------- agent configs
def _small(cfg: BenchConfig, **values: Any) -> dict[str, Any]:
    return values if cfg.small_nets else {}


def agent_configs(cfg: BenchConfig, seed: int) -> dict[str, Any]:
    """The config dataclass of every trained agent for training seed `seed`."""
    from recgym.agents.baselines import RankerConfig
    from recgym.agents.continuous import CQLConfig, TD3Config
    from recgym.agents.deepfm import DeepFMConfig
    from recgym.agents.dqn import DQNConfig
    from recgym.agents.rliv_ua import RLIVUAConfig
    from recgym.agents.rlur import RLURConfig

    online = {
        "env_steps": cfg.online_steps,
        "test_episodes": cfg.online_test_episodes,
        "device": cfg.device,
    }
    online.update(_small(cfg, epochs=1, warmup_steps=16, hidden_sizes=(16,), batch_size=16))
    epochs = 2 if cfg.rliv_steps >= 2 else 1
    rliv = RLIVUAConfig(
        tau=cfg.rliv_tau,
        epochs=epochs,
        steps_per_epoch=max(cfg.rliv_steps // epochs, 1),
        batch_size=cfg.rliv_batch,
        seed=seed,
        device=cfg.device,
        **_small(cfg, hidden_sizes=(16,), embedding_dim=8),
    )
    return {
        "ranking_model": DeepFMConfig(
            target="click",
            epochs=cfg.deepfm_epochs,
            seed=seed,
            device=cfg.device,
            **_small(cfg, embedding_dim=4, hidden_sizes=(16,)),
        ),
        "rankers": RankerConfig(
            epochs=cfg.deepfm_epochs,
            request_size=cfg.slate_size,
            seed=seed,
            device=cfg.device,
            **_small(cfg, hidden_sizes=(16,)),
        ),
        "cql": CQLConfig(
            gradient_steps=cfg.cql_steps,
            num_repeat_actions=cfg.cql_repeat,
            test_episodes=0,
            seed=seed,
            device=cfg.device,
            **_small(cfg, hidden_sizes=(16,), batch_size=16, epochs=1),
        ),
        "dqn": DQNConfig(**online, seed=seed),
        "td3": TD3Config(**online, seed=seed),
        "rlur": RLURConfig(**online, seed=seed),
        **{v: replace(rliv, **switches) for v, switches in RLIV_VARIANTS.items()},
    }


def simulator_config(cfg: BenchConfig, world: int) -> Any:
    from recgym.simulators.learned import SimulatorConfig

    small = _small(cfg, hidden=(32,), embedding_dim=8, author_dim=4, heldout_days=1)
    return SimulatorConfig(
        epochs=cfg.sim_epochs, leave_steps=cfg.sim_leave_steps, seed=world, **small
    )


# --------------------------------------------------------------------------- the stage list
def train_stage(agent: str, seed: int, backend: str | None = None) -> str:
    """Name of the stage that trains `agent` for `seed` (RLIV-UA variants: per backend)."""
    if agent in ("click_ranker", "myopic_watch_ranker"):
        agent = "rankers"  # one RankingModel fit, viewed two ways
    return f"{agent}-seed{seed}" if backend is None else f"{agent}-{backend}-seed{seed}"


def eval_stage(agent: str, seed: int) -> str:
    return f"evaluate-{agent}-seed{seed}"


def world_prefix(cfg: BenchConfig, world: int) -> str:
    """Prefix of one world's stage names: none with a single world, else ``w<seed>-``."""
    return f"w{world}-" if cfg.multi_world else ""


def is_evaluation(name: str) -> bool:
    """Whether stage `name` is an evaluation stage (of any world)."""
    return re.fullmatch(r"(w\d+-)?evaluate-.+", name) is not None


class InWorld:
    """A stage function run under a world's prefix: it sees its deps by their unprefixed names
    (``logs``, ``simulator``, ...), so the stage functions are the same in every world.
    Picklable (a module-level function and a string) for the sweep's workers."""

    def __init__(self, fn: Any, prefix: str) -> None:
        self.fn, self.prefix = fn, prefix

    def __call__(self, ctx: StageContext) -> Any:
        deps = {n.removeprefix(self.prefix): r for n, r in ctx.deps.items()}
        return self.fn(replace(ctx, deps=deps))


def stages(cfg: BenchConfig) -> list[Stage]:
    """Every stage of `cfg`, in running order (each after the stages it depends on): one world's
    stages per world seed, under the world's name prefix when there are several."""
    out: list[Stage] = []
    for world in cfg.world_seeds:
        prefix = world_prefix(cfg, world)
        for st in world_stages(cfg, world):
            if prefix:
                st = Stage(
                    prefix + st.name,
                    st.config,
                    InWorld(st.fn, prefix),
                    deps=tuple(prefix + d for d in st.deps),
                    code=(st.fn.__module__, *st.code),
                )
            out.append(st)
    return out


def world_stages(cfg: BenchConfig, world: int) -> list[Stage]:
    """The stages of one world (seed `world`: the world, its logs, both simulator fits and the
    CQL buffer), unprefixed."""
    from recgym.benchmarks.rliv_ua.evaluate import evaluate_stage
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    want, backends = set(cfg.agents), cfg.backends
    env = {
        "n_candidates": cfg.n_candidates,
        "slate_size": cfg.slate_size,
        "max_steps": cfg.max_steps,
        "device": cfg.device,
    }
    if cfg.data:
        logs = Stage("logs", {"data": str(Path(cfg.data).resolve())}, _logs)
    else:
        logs_config = {
            "world": WorldConfig(**cfg.world_config(world)),
            "logs": LogConfig(days=cfg.days, seed=world),
        }
        logs = Stage("logs", logs_config, _logs)
    sim = simulator_config(cfg, world)
    sim_a = {"simulator": sim, "device": cfg.device}
    sim_b = {"simulator": replace(sim, seed=sim.seed + 1), "device": cfg.device}
    out = [logs, Stage("simulator", sim_a, _simulator, deps=("logs",))]
    if "learned_b" in backends:  # another seed: other initialisation, other held-out users
        out.append(Stage("simulator-b", sim_b, _simulator, ("logs",)))
    spaces = tuple(dict.fromkeys(ID_SPACE[b] for b in backends))
    if want & set(RLIV_VARIANTS):
        for b in spaces:
            deps = ("logs", "simulator") if b == "learned" else ("logs",)
            out.append(Stage(f"asa-{b}", {"backend": b, "device": cfg.device}, _asa, deps=deps))
    configs = {s: agent_configs(cfg, s) for s in cfg.seeds}
    needs_deepfm = want & {"ranking_model", "rlur", "cql"}
    for s in cfg.seeds:
        if needs_deepfm:
            out.append(
                Stage(
                    train_stage("ranking_model", s),
                    configs[s]["ranking_model"],
                    _deepfm,
                    deps=("logs",),
                )
            )
        if want & {"click_ranker", "myopic_watch_ranker"}:
            out.append(
                Stage(train_stage("rankers", s), configs[s]["rankers"], _rankers, deps=("logs",))
            )
    if "cql" in want:
        from recgym.agents.continuous import OfflineDataConfig

        first = train_stage("ranking_model", cfg.seeds[0])
        data = OfflineDataConfig(n_steps=cfg.cql_data_steps, seed=world)
        out.append(
            Stage(
                "cql-buffer",
                {"data": data, "env": env, "ranker": first},
                _cql_buffer,
                deps=("logs", "simulator", first),
            )
        )
        for s in cfg.seeds:
            out.append(
                Stage(
                    train_stage("cql", s),
                    {"agent": configs[s]["cql"], "env": env},
                    _cql,
                    deps=("logs", "simulator", "cql-buffer"),
                )
            )
    for s in cfg.seeds:
        for kind in ("dqn", "td3", "rlur"):
            if kind not in want:
                continue
            config: dict[str, Any] = {"kind": kind, "agent": configs[s][kind], "env": env}
            deps: tuple[str, ...] = ("logs", "simulator")
            if kind == "rlur":
                config["ranker"] = train_stage("ranking_model", s)
                deps += (config["ranker"],)
            out.append(Stage(train_stage(kind, s), config, _online, deps=deps))
    for variant in (v for v in RLIV_VARIANTS if v in want):
        for b in spaces:
            for s in cfg.seeds:
                config = {"agent": configs[s][variant], "backend": b}
                out.append(Stage(train_stage(variant, s, b), config, _rliv, deps=(f"asa-{b}",)))
    sims = ("simulator", "simulator-b") if "learned_b" in backends else ("simulator",)
    for agent in cfg.agents:
        on = tuple(b for b in backends if not (agent in WORLD_ONLY and b != "world"))
        if not on:
            continue
        for s in cfg.seeds:
            trained: tuple[str, ...] = ()
            if agent in RLIV_VARIANTS:
                trained = tuple(dict.fromkeys(train_stage(agent, s, ID_SPACE[b]) for b in on))
            elif agent not in UNTRAINED:
                trained = (train_stage(agent, s),)
            config = {
                "agent": agent,
                "seed": s,
                "episodes": cfg.episodes,
                "backends": on,
                "env": env,
                "world": None if cfg.data else world,
            }
            out.append(
                Stage(
                    eval_stage(agent, s),
                    config,
                    evaluate_stage,
                    deps=("logs", *sims, *trained),
                )
            )
    return out


__all__ = [
    "InWorld",
    "agent_configs",
    "env_kwargs",
    "eval_stage",
    "is_evaluation",
    "logs_dir",
    "stages",
    "train_stage",
    "world_prefix",
    "world_stages",
]
