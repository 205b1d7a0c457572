"""The JSON side of agent checkpoints: where it lives, what it can hold, configs read back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np


def json_path(path: Path) -> Path:
    """The JSON file beside a weights file (``model.pt`` -> ``model.pt.json``)."""
    return path.with_name(path.name + ".json")


def jsonable(value: Any) -> Any:
    """`json.dumps` default for checkpoint metadata: numpy values and paths; anything else fails."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in the checkpoint JSON")


def config_from_dict(config_cls: type, data: Mapping[str, Any], source: Any = None) -> Any:
    """A config dataclass from its JSON dict (lists back to tuples); a field the class does not
    have raises ValueError naming `source` (the file it came from)."""
    unknown = set(data) - {f.name for f in fields(config_cls)}
    if unknown:
        where = f"{source} has" if source is not None else "got"
        raise ValueError(f"{where} unknown {config_cls.__name__} fields {sorted(unknown)}")
    values = dict(data)
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return config_cls(**values)
