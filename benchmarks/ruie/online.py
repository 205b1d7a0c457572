"""The online stages of `recgym bench ruie`: MultiScenario-v0 on the world and on a learned
simulator, with the offline models, DQN and the reference policies.

- ``simulator``: the learned backend of MultiScenario-v0, fitted on the bench's world logs. The
  response and leave models (`simulators.train.train_simulator`) read KuaiRand's schema, so the
  stage first writes the same logs in it: the world and log configs of the ``logs`` stage's
  ``world.json`` are replayed (`simulators.generate`; the same seeds give the same logs, checked
  row by row against the ``logs`` stage's truth file, else a ValueError). The scenario switch
  and the queries (`simulators.learned.scenario.fit_scenario_model`) are fitted on the
  ``logs`` stage's KuaiSAR files (rec_inter.csv, src_inter.csv) and saved beside the checkpoint,
  which `MultiScenarioEnv(backend="learned", checkpoint=DIR)` loads as a `ScenarioSimulator`;
- ``dqn-seed<i>``: Tianshou's DQN (`agents.dqn.train_dqn`, its per-candidate Q-network on the
  flat observation) trained online on MultiScenario-v0 in ``action_mode="discrete"`` (one item
  per request) on the world as it stood after its logs, or on the learned backend
  (``dqn_backend``), training seed i;
- ``online-seed<i>`` (world) and ``online-learned-seed<i>`` (learned backend): evaluation seed
  i on MultiScenario-v0 (top-6 of 50 candidates per request): random, popularity (click counts
  of the training behaviours), NextItNet and RUIE fitted offline with training seed i, DQN of
  training seed i (the top 6 candidates by its Q-values), and on the world the click oracle
  (reads the world's true click probabilities; it has no learned-backend row). Per session
  reward, requests and clicks per scenario; on the world also how RUIE's Q(search) tracks the
  world's true probability of a search. Every agent starts from the backend's state after the
  logs and meets the same users in the same order (the stage result lists each agent's session
  users, so the pairing is checked, not assumed).

With ``--data DIR`` (a KuaiSAR directory; `BenchConfig.data`) there is no world: the
``simulator`` stage is ``simulator_from_data`` (`simulators.train.train_simulator` on DIR
itself: the rows mapped to KuaiRand's columns by `simulators.learned.kuaisar`, and the
`ScenarioModel` fitted on the same files), DQN trains on that learned backend whatever
``dqn_backend`` says (`dqn_backend_of`), and only ``online-learned-seed<i>`` runs: no oracle, no
world rows and no Q-vs-truth tracking. The offline models index items by the protocol's dense
ids, so the learned backend's catalogue must list the same item ids (checked, else ValueError).

Choices: DQN's flat observation (`envs.contract.flatten_observation`: user, context, candidate
rows) has no scenario, query or behaviour sequence; it sees the scenario only through the
candidates a search retrieves (mostly of the query's category). DQN trains on single items
(discrete) and is evaluated on slates of 6 by its Q ranking, as in `recgym demo`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from recgym.benchmarks.engine import StageContext
from recgym.benchmarks.ruie.spec import LABELS, BenchConfig
from recgym.benchmarks.ruie.stages import auc, build_model, data_dir, fit_stage, split_of
from recgym.device import load_state, resolve_device

ONLINE_ENV = "recgym/MultiScenario-v0"
ORACLE = "click oracle (reads hidden state)"
BACKENDS: tuple[str, ...] = ("world", "learned")
"""Row ``backend`` values of the online results."""


def online_stage(seed: int, backend: str = "world") -> str:
    return f"online-seed{seed}" if backend == "world" else f"online-{backend}-seed{seed}"


def dqn_stage(seed: int) -> str:
    return f"dqn-seed{seed}"


def env_kwargs(cfg: BenchConfig) -> dict[str, Any]:
    """MultiScenario-v0's settings of the bench (every agent, training and evaluation)."""
    return {"max_steps": cfg.online_max_steps, "seq_len": cfg.seq_len}


def dqn_config(cfg: BenchConfig, seed: int) -> Any:
    """`agents.dqn.DQNConfig` of training seed `seed`: DQNConfig's defaults but the budget
    (`dqn_steps` over `dqn_epochs`, `dqn_test_episodes` greedy sessions per epoch) and the
    warm-up, a quarter of the budget up to DQNConfig's 512 (tiny budgets still train)."""
    from recgym.agents.dqn import DQNConfig

    return DQNConfig(
        env_steps=cfg.dqn_steps,
        epochs=cfg.dqn_epochs,
        test_episodes=cfg.dqn_test_episodes,
        warmup_steps=min(DQNConfig().warmup_steps, max(cfg.dqn_steps // 4, 8)),
        seed=seed,
        device=cfg.device,
    )


def dqn_backend_of(cfg: BenchConfig) -> str:
    """Where DQN trains: ``cfg.dqn_backend``, or the learned backend with ``--data`` (no world)."""
    return "learned" if cfg.data else cfg.dqn_backend


def backend_kwargs(backend: str, deps: dict[str, Any], device: str) -> dict[str, Any]:
    """MultiScenarioEnv's backend arguments: the world as it stood after the logs, or the
    learned simulator of the ``simulator`` stage."""
    if backend == "world":
        return {"backend": "world", "world_dir": str(deps["logs"].dir)}
    if backend == "learned":
        return {"backend": "learned", "checkpoint": str(deps["simulator"].dir), "device": device}
    raise ValueError(f"bench ruie: unknown backend {backend!r}; expected one of {BACKENDS}")


# --------------------------------------------------------------------------- simulator
def simulator(ctx: StageContext) -> dict[str, Any]:
    """The learned backend (module docstring): KuaiRand-schema replay of the logs, response and
    leave models, and the scenario model fitted on the KuaiSAR files."""
    import pandas as pd

    from recgym.simulators.generate import TRUTH_FILE, generate
    from recgym.simulators.learned import LearnedSimulator
    from recgym.simulators.learned.scenario import fit_scenario_model
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.train import train_simulator
    from recgym.simulators.world import WorldConfig
    from recgym.simulators.world_state import CONFIG_FILE

    sar = ctx.deps["logs"].dir
    meta = json.loads((sar / CONFIG_FILE).read_text())
    rand = ctx.dir / "kuairand"
    generate(
        rand,
        WorldConfig(**meta["world"]),
        LogConfig(**meta["logs"]),
        fmt="kuairand",
        progress=ctx.progress,
    )
    if not pd.read_parquet(rand / TRUTH_FILE).equals(pd.read_parquet(sar / TRUTH_FILE)):
        raise ValueError(
            f"bench ruie simulator: the KuaiRand-schema replay of {sar / CONFIG_FILE} wrote "
            f"other logs than {sar / TRUTH_FILE}; the learned backend would not learn the "
            "bench's users"
        )
    summary = train_simulator(rand, ctx.dir, ctx.config["simulator"], False, ctx.config["device"])
    sim = LearnedSimulator.load(ctx.dir, device="cpu")
    model = fit_scenario_model(sar, sim.catalogue, sim.item_ids, sim.user_ids)
    model.save(ctx.dir)
    return {
        "targets": summary["targets"],
        "seconds": summary["seconds"],
        "p_search": model.p_search,
        "p_repeat": model.p_repeat,
    }


def simulator_from_data(ctx: StageContext) -> dict[str, Any]:
    """The learned backend of a ``--data`` run (module docstring): `train_simulator` on the
    KuaiSAR directory ``ctx.config["data"]``, which also fits and saves the `ScenarioModel`."""
    from recgym.simulators.learned.scenario import ScenarioModel
    from recgym.simulators.train import train_simulator

    summary = train_simulator(
        ctx.config["data"], ctx.dir, ctx.config["simulator"], False, ctx.config["device"]
    )
    model = ScenarioModel.load(ctx.dir)
    return {
        "targets": summary["targets"],
        "seconds": summary["seconds"],
        "watch_imputed_rows": summary["watch_imputed_rows"],
        "p_search": model.p_search,
        "p_repeat": model.p_repeat,
    }


# --------------------------------------------------------------------------- DQN
def dqn(ctx: StageContext) -> dict[str, Any]:
    """DQN of one training seed on MultiScenario-v0 (module docstring)."""
    from recgym.agents.dqn import save_dqn, train_dqn

    cfg = ctx.config["dqn"]
    env = {**ctx.config["env"], **backend_kwargs(ctx.config["backend"], ctx.deps, cfg.device)}
    algo, stats = train_dqn(env, cfg, progress=ctx.progress, env_id=ONLINE_ENV)
    save_dqn(algo, cfg, ctx.dir / "dqn.pt", env, env_id=ONLINE_ENV)
    return {
        "learning_curve": stats.learning_curve,
        "env_steps": stats.env_steps,
        "gradient_steps": stats.gradient_steps,
        "seconds": stats.seconds,
    }


# --------------------------------------------------------------------------- online
def online(ctx: StageContext) -> dict[str, Any]:
    """One evaluation seed of the online table on one backend (module docstring)."""
    from recgym.agents.baselines import QSlatePolicy, RandomPolicy
    from recgym.agents.dqn import load_dqn
    from recgym.agents.references import ClickOracle
    from recgym.agents.ruie import RUIEPolicy
    from recgym.agents.sequence import Popularity
    from recgym.envs.multi_scenario import MultiScenarioEnv
    from recgym.simulators.world_state import load_world

    cfg: BenchConfig = ctx.config["bench"]
    seed, backend = ctx.config["seed"], ctx.config["backend"]
    logs_dir = ctx.deps["logs"].dir if "logs" in ctx.deps else None
    b, split = split_of(cfg, data_dir(cfg, logs_dir))
    if not cfg.data and not np.array_equal(b.item_ids, np.arange(b.n_items)):
        raise ValueError("online: the logs' item ids are not the world's 0..n_items-1")
    popularity = Popularity(b.n_items, max_len=cfg.seq_len)
    popularity.fit_counts(split.train)
    agents: dict[str, Any] = {
        "random": RandomPolicy(seed=seed),
        "popularity": RUIEPolicy(popularity),
    }
    for name in ("nextitnet", "ruie"):
        model = build_model(name, b.n_items, cfg, seed)
        path = ctx.deps[fit_stage(name, seed)].dir / "model.pt"
        model.to(resolve_device(cfg.device)).load_state_dict(load_state(path, cfg.device))
        agents[LABELS[name]] = RUIEPolicy(model.eval())
    if dqn_stage(seed) in ctx.deps:
        algo, _ = load_dqn(ctx.deps[dqn_stage(seed)].dir / "dqn.pt", device=cfg.device)
        agents["DQN"] = QSlatePolicy(algo)

    def make_env(world: Any = None) -> Any:
        if backend == "world":
            return MultiScenarioEnv(backend=world or load_world(logs_dir), **env_kwargs(cfg))
        env = MultiScenarioEnv(**backend_kwargs(backend, ctx.deps, cfg.device), **env_kwargs(cfg))
        n_items = env.unwrapped.catalogue.n_items
        if n_items != b.n_items:
            raise ValueError(
                f"online ({backend}): the learned backend's catalogue has {n_items} items, the "
                f"logs' behaviours {b.n_items}; the offline models' item ids would not match"
            )
        responses = getattr(env.unwrapped.model, "responses", env.unwrapped.model)
        if cfg.data and not np.array_equal(responses.item_ids, b.item_ids):
            raise ValueError(
                f"online ({backend}): the learned backend's item ids are not the offline "
                f"models' (the sorted item ids of {cfg.data})"
            )
        return env

    if backend == "world":
        world = load_world(logs_dir)
        agents[ORACLE] = (ClickOracle(world, None, slate_size=6, seed=seed), world)
    rows, users = [], {}
    for name, policy in agents.items():
        policy, world = policy if isinstance(policy, tuple) else (policy, None)
        track = backend == "world" and name == "RUIE"
        users[name] = []
        totals, tracking = run_sessions(
            make_env(world), policy, cfg.online_episodes, seed, track, users[name]
        )
        rows += [
            ctx.row(env=ONLINE_ENV, agent=name, backend=backend, seed=seed, metric=m, value=v)
            for m, v in (totals | tracking).items()
        ]
    ctx.write_rows(rows)
    return {"users": users}


def run_sessions(
    env: Any,
    policy: Any,
    episodes: int,
    seed: int,
    track: bool,
    users: list[int] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-session means of reward, requests and clicks per scenario over `episodes` sessions
    from ``reset(seed=seed)``; with `track` (a world backend), how the policy's model
    Q(search) (before each request after the first) tracks the world's true p(search) and the
    scenario drawn. Each session's user is appended to `users` when given."""
    import torch

    totals = {"reward": 0.0, "session_length": 0.0, "clicks_feed": 0.0, "clicks_search": 0.0}
    q_search, p_true, drawn = [], [], []
    world = env.unwrapped.model
    if hasattr(policy, "reset"):
        policy.reset(seed)
    obs, info = env.reset(seed=seed)
    for _ in range(episodes):
        if users is not None:
            users.append(int(np.asarray(obs["user_id"]).ravel()[0]))
        done = False
        while not done:
            obs_before = obs
            obs, reward, term, trunc, info = env.step(policy.act(obs_before))
            clicks = int(np.asarray(info["responses"]["click"]).sum())
            scenario = "clicks_search" if int(info["scenario_shown"]) == 1 else "clicks_feed"
            totals[scenario] += clicks
            totals["reward"] += reward
            totals["session_length"] += 1
            done = term or trunc
            if track and not done and (obs["seq_item"] >= 0).any():
                # obs["scenario"] was just drawn with probability world.p_search (the draw
                # does not change search_share or unmet)
                model = policy.model
                seq = torch.as_tensor(obs["seq_item"][None])
                ctx = {"scenario": torch.as_tensor(np.maximum(obs["seq_scenario"], 0)[None])}
                q_search.append(float(model.q_values(seq, ctx)[0, 1]))
                p_true.append(float(world.p_search(obs["user_id"])[0]))
                drawn.append(int(obs["scenario"][0]))
        if done:
            obs, info = env.reset()
    out = {k: v / episodes for k, v in totals.items()}
    tracked: dict[str, float] = {}
    if track and len(q_search) > 2:
        q, p = np.asarray(q_search), np.asarray(p_true)
        tracked["switch_auc"] = auc(q, np.asarray(drawn) == 1)
        tracked["switch_corr"] = (
            float(np.corrcoef(q, p)[0, 1]) if q.std() > 0 and p.std() > 0 else float("nan")
        )
    return out, tracked


def sim_config(cfg: BenchConfig) -> Any:
    """The learned backend's `SimulatorConfig`: its defaults but `sim_epochs`, seeded by the
    bench's root seed."""
    from recgym.simulators.learned import SimulatorConfig

    return SimulatorConfig(epochs=cfg.sim_epochs, seed=cfg.seed)


def trained_in(agent: str, cfg: BenchConfig) -> str:
    """Where an online agent learned what it knows (the report's "trained in" column)."""
    if agent in ("random", ORACLE):
        return "-" if agent == "random" else "- (reads the world's click probabilities)"
    if agent == "DQN":
        where = "the world" if dqn_backend_of(cfg) == "world" else "the learned simulator"
        return f"MultiScenario-v0 on {where} ({cfg.dqn_steps} env steps)"
    if cfg.data:
        return "the KuaiSAR files " + ("(click counts)" if agent == "popularity" else "(offline)")
    if agent == "popularity":
        return "the world's logs (click counts)"
    return "the world's logs (offline, KuaiSAR schema)"


__all__ = [
    "BACKENDS",
    "ONLINE_ENV",
    "ORACLE",
    "backend_kwargs",
    "dqn",
    "dqn_backend_of",
    "dqn_config",
    "dqn_stage",
    "env_kwargs",
    "online",
    "online_stage",
    "run_sessions",
    "sim_config",
    "simulator",
    "simulator_from_data",
    "trained_in",
]
