"""The JSON side of agent checkpoints (agents/checkpoint.py), shared by every agent's save/load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytest

from recgym.agents.checkpoint import config_from_dict, json_path, jsonable


@dataclass(kw_only=True)
class _Config:
    hidden: tuple[int, ...] = (8, 8)
    lr: float = 1e-3


def test_config_round_trips_through_json_with_tuples_back():
    cfg = _Config(hidden=(4, 2), lr=0.5)
    back = config_from_dict(_Config, json.loads(json.dumps(asdict(cfg))))
    assert back == cfg and isinstance(back.hidden, tuple)


def test_unknown_fields_name_the_source():
    with pytest.raises(ValueError, match=r"model\.pt\.json has unknown _Config fields \['depth'\]"):
        config_from_dict(_Config, {"lr": 1.0, "depth": 3}, source=json_path(Path("model.pt")))


def test_jsonable_takes_numpy_and_paths_and_refuses_the_rest():
    text = json.dumps({"a": np.arange(2), "b": np.float32(1.5), "c": Path("x")}, default=jsonable)
    assert json.loads(text) == {"a": [0, 1], "b": 1.5, "c": "x"}
    with pytest.raises(TypeError, match="cannot store object"):
        json.dumps({"d": object()}, default=jsonable)
