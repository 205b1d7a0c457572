"""`recgym world generate`: build a world, log it with the behaviour policy, write real schemas."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.data.writers import write_kuairand, write_kuaisar
from recgym.simulators.logs import LogConfig, simulate_logs
from recgym.simulators.world import Dynamics, World, WorldConfig
from recgym.simulators.world_state import (
    CONFIG_FILE,
    STATE_FILE,
    load_world,
    save_world_state,
    world_fingerprint,
)

TRUTH_FILE = "world_truth.parquet"


def generate(
    out: str | Path,
    world_config: WorldConfig,
    log_config: LogConfig,
    fmt: str = "kuairand",
    progress: bool = True,
    dynamics: Dynamics | None = None,
) -> dict:
    """Write logs of a fresh world to `out` in `fmt` ("kuairand" or "kuaisar").

    Besides the dataset files, `out` gets `world.json` (the configs, enough to rebuild the
    identical world), `world_state.npz` (the users' state as it stands after the logs, see
    `simulators.world_state`; `load_world(out)` returns that world, ready to be the env's
    backend) and `world_truth.parquet` (per logged exposure: user_id, item_id, timestamp and
    the world's true p_click, p_long_view and expected_watch_ms). Loaders ignore all three.
    `dynamics` (default: the calibrated `Dynamics()`) is recorded in `world.json`, and
    `simulators.world_state.load_world` rebuilds the world with it. Returns a summary dict.
    """
    if fmt not in ("kuairand", "kuaisar"):
        raise ValueError(f"unknown format {fmt!r}; expected 'kuairand' or 'kuaisar'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = World(world_config, dynamics)
    logs = simulate_logs(world, log_config, progress=progress)
    if fmt == "kuairand":
        files = write_kuairand(logs, world.user_table(), world.item_table(), out, gifts=True)
    else:
        follows = np.argwhere(world.state.follows)
        # authors are not users in the world; KuaiSAR's social graph links users, so author a
        # stands for user a mod n_users (a documented stand-in, not a world effect)
        social = pd.DataFrame(
            {"user_id": follows[:, 0], "user_follow_id": follows[:, 1] % world.n_users}
        )
        files = write_kuaisar(
            logs,
            world.user_table(),
            world.item_table(),
            out,
            n_top_categories=world_config.n_top_categories,
            follows=social[social.user_id != social.user_follow_id].drop_duplicates(),
            seed=log_config.seed,
        )
    truth = logs[["user_id", "item_id", "timestamp", "p_click", "p_long_view", "expected_watch_ms"]]
    truth.to_parquet(out / TRUTH_FILE, index=False)
    save_world_state(world, out)  # the world after its logs: where the env backend starts
    config = {
        "format": fmt,
        "world": asdict(world_config),
        "logs": asdict(log_config),
        "dynamics": asdict(world.dynamics),
        "state": {"file": STATE_FILE, "fingerprint": world_fingerprint(world)},
    }
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return {
        "out": str(out),
        "format": fmt,
        "rows": len(logs),
        "users": int(logs["user_id"].nunique()) if len(logs) else 0,
        "items": int(logs["item_id"].nunique()) if len(logs) else 0,
        "sessions": int(logs["session_id"].nunique()) if len(logs) else 0,
        "files": [p.name for p in files] + [TRUTH_FILE, STATE_FILE, CONFIG_FILE],
    }


__all__ = ["CONFIG_FILE", "STATE_FILE", "TRUTH_FILE", "generate", "load_world"]
