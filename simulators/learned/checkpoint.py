"""Simulator checkpoints: a directory of model.pt (weights, lookup arrays), config and fidelity."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recgym.device import resolve_device
from recgym.simulators.protocol import Catalogue

from .config import SimulatorConfig
from .leave import LeaveModel, leave_dim
from .response import ResponseModel, Vocab
from .state import PairCounts, UserState

if TYPE_CHECKING:
    from .simulator import LearnedSimulator

FORMAT_VERSION = 3  # 2: the leave model reads minutes spent (SIGNALS gained "minutes");
# 3: watch-ratio classes are `ratio_edges` bins (geometric at the low end), no longer equal-width

CHECKPOINT_FILES = ("model.pt", "config.json", "fidelity.json")


class CheckpointError(RuntimeError):
    """A simulator checkpoint is missing, unreadable, or inconsistent with its own config."""


def save_checkpoint(sim: LearnedSimulator, path: str | Path) -> Path:
    """Write `path`/model.pt (weights and lookup arrays), config.json and fidelity.json."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cat, st = sim.catalogue, sim._initial
    arrays = {
        "author": cat.author,
        "category": cat.category,
        "top_category": cat.top_category,
        "duration_ms": cat.duration_ms,
        "popularity": cat.popularity,
        "author_is_live": cat.author_is_live,
        "user_x": sim._user_x,
        "user_ids": sim.user_ids,
        "item_ids": sim.item_ids,
        "clicked": st.clicked,
        "skipped": st.skipped,
        "counts": st.counts,
        "totals": st.totals,
        "pair_keys": st.pairs.compact().keys,
        "pair_values": st.pairs.values,
        "user_row": sim.vocab.user_row,
        "item_row": sim.vocab.item_row,
        "author_row": sim.vocab.author_row,
        "category_row": sim.vocab.category_row,
        "top_row": sim.vocab.top_row,
        "tabs": sim.vocab.tabs,
    }
    payload = {
        "response": sim.response.state_dict(),
        "leave": sim.leave.state_dict(),
        "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
    }
    _atomic(path / "model.pt", lambda p: torch.save(payload, p))
    meta = {
        "format_version": FORMAT_VERSION,
        "config": sim.config.to_dict(),
        "sizes": checkpoint_sizes(sim),
    }
    _atomic(path / "config.json", lambda p: p.write_text(json.dumps(meta, indent=2)))
    report = json.dumps(sim.fidelity, indent=2, default=_json_default)
    _atomic(path / "fidelity.json", lambda p: p.write_text(report))
    return path


def checkpoint_sizes(sim: LearnedSimulator) -> dict[str, int]:
    """The sizes config.json records and `load_checkpoint` checks against the weights."""
    return {
        "n_users": sim.n_users,
        "n_items": sim.catalogue.n_items,
        "n_authors": sim.catalogue.n_authors,
        "n_categories": sim.catalogue.n_categories,
        "user_feature_dim": sim.user_feature_dim,
        **{f"vocab_{k}": v for k, v in sim.vocab.sizes().items()},
    }


def load_checkpoint(
    cls: type[LearnedSimulator], path: str | Path, device: str | torch.device = "auto"
) -> LearnedSimulator:
    """Read a checkpoint directory written by `save`; any problem raises `CheckpointError`.

    The weights are read onto the CPU (`map_location`, whatever device saved them) and the
    simulator is built on `device` (`recgym.device.resolve_device`)."""
    device = resolve_device(device)  # a bad device fails before the files are read
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no simulator checkpoint here (directory not found)")
    for name in CHECKPOINT_FILES:
        if not (path / name).is_file():
            raise CheckpointError(f"{path / name}: file of the simulator checkpoint is missing")
    try:
        meta = json.loads((path / "config.json").read_text())
        version = meta["format_version"]
        config = SimulatorConfig.from_dict(meta["config"])
        sizes = {k: int(v) for k, v in meta["sizes"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path / 'config.json'}: unreadable config ({exc})") from exc
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / 'config.json'}: checkpoint format {version}, this recgym reads "
            f"{FORMAT_VERSION}"
        )
    try:
        fidelity = json.loads((path / "fidelity.json").read_text())
    except ValueError as exc:
        raise CheckpointError(f"{path / 'fidelity.json'}: unreadable ({exc})") from exc
    try:
        payload = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        arrays = {k: v.numpy() for k, v in payload["arrays"].items()}
        response_state, leave_state = payload["response"], payload["leave"]
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"{path / 'model.pt'}: unreadable weights ({_first_line(exc)})"
        ) from exc
    mismatch = f"{path}: config.json does not match the weights in model.pt"
    try:
        vocab = Vocab(
            user_row=arrays["user_row"],
            item_row=arrays["item_row"],
            author_row=arrays["author_row"],
            category_row=arrays["category_row"],
            top_row=arrays["top_row"],
            tabs=arrays["tabs"],
        )
        response = ResponseModel(
            **{k: sizes[f"vocab_{k}"] for k in vocab.sizes()},
            user_dim=sizes["user_feature_dim"],
            config=config,
        )
        response.load_state_dict(response_state)
        leave = LeaveModel(leave_dim(sizes["user_feature_dim"], config), config)
        leave.load_state_dict(leave_state)
        sim = cls(
            config=config,
            catalogue=Catalogue(
                author=arrays["author"],
                category=arrays["category"],
                top_category=arrays["top_category"],
                duration_ms=arrays["duration_ms"],
                popularity=arrays["popularity"],
                n_authors=sizes["n_authors"],
                n_categories=sizes["n_categories"],
                author_is_live=arrays["author_is_live"],
            ),
            user_x=arrays["user_x"],
            user_ids=arrays["user_ids"],
            item_ids=arrays["item_ids"],
            initial_state=UserState(
                clicked=arrays["clicked"],
                skipped=arrays["skipped"],
                counts=arrays["counts"],
                totals=arrays["totals"],
                pairs=PairCounts(
                    n_authors=sizes["n_authors"],
                    keys=arrays["pair_keys"],
                    values=arrays["pair_values"],
                ),
            ),
            vocab=vocab,
            response=response,
            leave=leave,
            fidelity=fidelity,
            device=device,
        )
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise CheckpointError(f"{mismatch} ({_first_line(exc)})") from exc
    actual = checkpoint_sizes(sim)
    wrong = [
        f"{k}: config {v}, weights {actual.get(k)}" for k, v in sizes.items() if actual.get(k) != v
    ]
    st = sim._initial
    if st.clicked.shape[1] != config.history_len:
        wrong.append(f"history_len: config {config.history_len}, weights {st.clicked.shape[1]}")
    if st.counts.shape != (sim.n_users, sim.catalogue.n_categories, 3):
        wrong.append("category counts have the wrong shape")
    if wrong:
        raise CheckpointError(f"{mismatch} ({'; '.join(wrong)})")
    return sim


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _atomic(path: Path, write: Callable[[Path], Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
