"""RLIV-UA checkpoints: `save_rliv_ua` writes an algorithm's state and a JSON sidecar,
`load_rliv_ua` rebuilds it (also importable from `agents.rliv_ua`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from recgym.agents.checkpoint import config_from_dict, json_path
from recgym.agents.rliv_ua import (
    _STRUCTURE_FIELDS,
    KIND,
    RLIVUA,
    RLIVUAConfig,
    _make_algorithm,
    _make_net,
)
from recgym.agents.rliv_ua_policy import (
    StatesFn,
)
from recgym.device import load_state


def save_rliv_ua(algo: RLIVUA, path: str | Path) -> Path:
    """Write `algo.state_dict()` (weights, target net, optimiser, input/reward statistics, id
    vocabularies) to `path` and the config plus input sizes as JSON beside it (`path` + .json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = algo.policy.net
    torch.save(algo.state_dict(), path)
    emb = net.embedding
    meta = {
        "kind": KIND,
        "config": asdict(algo.config),
        "user_dim": emb.user_dim,
        "n_users": 0 if emb.user_id is None else len(emb.user_vocab),
        "n_authors": 0 if emb.author_id is None else len(emb.author_vocab),
        "n_items": 0 if emb.item_id is None else len(emb.item_vocab),
        "author_table": list(net.table_items.shape) if net.item_features else [0, 0],
        "n_candidates": int(algo.policy.action_space.shape[0]),
    }
    json_path(path).write_text(json.dumps(meta, indent=2))
    return path


def load_rliv_ua(
    path: str | Path,
    config: RLIVUAConfig | None = None,
    states_fn: StatesFn | None = None,
    device: str | None = None,
) -> RLIVUA:
    """Rebuild the RLIV-UA saved by `save_rliv_ua` (on any device) on `device` (None: the
    config's, given or saved). If `config` is given, its structural
    fields (towers, heads, widths, gamma, ids) must equal the saved ones; ValueError otherwise,
    as when the weights do not fit the saved config."""
    path = Path(path)
    meta = json.loads(json_path(path).read_text())
    if meta.get("kind") != KIND:
        raise ValueError(f"{json_path(path)} is not an {KIND} checkpoint (kind {meta.get('kind')})")
    # checkpoints from before item features were author-only
    saved = config_from_dict(
        RLIVUAConfig, {"item_features": False, **meta["config"]}, source=json_path(path)
    )
    if config is not None:
        diff = [
            f"{name}: saved {getattr(saved, name)!r}, given {getattr(config, name)!r}"
            for name in _STRUCTURE_FIELDS
            if getattr(saved, name) != getattr(config, name)
            and (name != "rank_task" or not saved.multi_task)  # any tower may rank
        ]
        if diff:
            raise ValueError(f"config does not match the checkpoint {path}: " + "; ".join(diff))
    ids = saved.id_embeddings and meta["n_users"] > 0
    net = _make_net(
        saved,
        int(meta["user_dim"]),
        np.zeros(meta["n_users"], np.int64) if ids else None,
        np.zeros(meta["n_authors"], np.int64) if ids else None,
        np.zeros(meta.get("n_items", 0), np.int64) if ids and meta.get("n_items") else None,
        tuple(meta.get("author_table", (0, 0))),
    )
    cfg = config or saved
    if device is not None:
        cfg = dataclasses.replace(cfg, device=device)
    algo = _make_algorithm(net, cfg, meta["n_candidates"], states_fn)
    state = load_state(path, cfg.device)
    for group, lr in zip(
        state["_optimizers"][0]["param_groups"], (cfg.embedding_lr, cfg.critic_lr), strict=True
    ):
        group["lr"] = lr  # the given config's learning rates, not the saved ones
    try:
        algo.load_state_dict(state)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"weights in {path} do not match the config in its JSON: {err}") from err
    algo.policy.net.eval()
    return algo


__all__ = ["load_rliv_ua", "save_rliv_ua"]
