"""Torch devices: one place that turns a `device` option into a `torch.device` and loads weights.

Every model, simulator and bench config in recgym takes ``device: str = "auto"`` and resolves
it here. ``"auto"`` is CUDA (the current CUDA device) when torch sees one and the CPU otherwise,
so on a machine without a GPU every default run is the CPU run it always was. An explicit
CUDA device without CUDA is an error, not a silent fall-back to the CPU: a run that asked for a
GPU and got none would report CPU timings as GPU ones.

Random streams stay on the host where they decide *what* is computed (batch order, dropout masks,
ε-greedy, the simulator's response draws: numpy generators), so a seed gives the same batches and
the same sampled users on any device; only floating-point rounding of the kernels differs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEVICE_HELP = (
    "torch device: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'; "
    "'cuda' without CUDA is an error"
)


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The `torch.device` a ``device`` option names.

    ``"auto"`` (or None): ``cuda`` when `torch.cuda.is_available()`, else ``cpu``. ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` and ``"meta"`` (shape-only construction) as torch spells them; a CUDA
    device without CUDA, or an index past `torch.cuda.device_count()`, raises ValueError naming
    what was asked for and what there is. Other device types torch knows (``mps``...) pass
    through unchecked.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(spec, torch.device):
        device = spec
    elif isinstance(spec, str):
        try:
            device = torch.device(spec.strip())
        except RuntimeError as exc:
            raise ValueError(
                f"device {spec!r} is not a torch device; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
    else:
        raise ValueError(f"device must be a string or torch.device, got {type(spec).__name__}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} requested but CUDA is not available here (torch "
                f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use "
                "device='cpu' or 'auto'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {str(device)!r} requested but only {count} CUDA device(s) exist"
            )
    return device


def device_name(device: str | torch.device) -> str:
    """A human-readable name of `device` for reports: the GPU's model for CUDA, else the type."""
    device = resolve_device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def load_state(path: str | Path, device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """`torch.load(path, map_location=device, weights_only=True)`: weights saved on any device
    (a GPU's included) load onto `device` ('auto' resolved by `resolve_device`)."""
    kwargs.setdefault("weights_only", True)
    return torch.load(path, map_location=resolve_device(device), **kwargs)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); CPU for one with neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


class Download:
    """Device tensors -> numpy arrays, one device-to-host copy per dtype: each dtype's tensors
    are flattened into one buffer, copied, and split back into views of that copy (a 0-d bool
    comes back as a Python bool). The arrays are the caller's: no later call writes into
    memory an array it returned still uses.

    From CUDA the copies go without blocking into pinned host memory, then one wait. With
    ``pool`` = 0 they land in staging buffers kept for the next call, and one host copy per
    dtype moves them into a fresh array: a pinned buffer per call would be allocated anew
    (slowly) whenever the caller keeps the arrays it got, and a pageable copy is several times
    slower than a pinned one. With ``pool`` = K each dtype also keeps up to K pinned *result*
    buffers: a call copies straight into one that no array from an earlier call still uses
    (``sys.getrefcount``: every returned array is a view holding its buffer) and returns
    views of it, so no host copy and no fresh memory (whose page faults cost more than the
    transfer: 13.6 MB a step for Session-v0's device env at 4,096 slots). When all K are in
    use (a caller keeping every result) it falls back to staging and a fresh copy, so pinned
    memory stays bounded at K buffers. A caller that drops a step's results before the next
    step needs two buffers (the previous step's arrays are alive while the next downloads),
    one that also keeps the previous observation three."""

    def __init__(self, pool: int = 0) -> None:
        self.staging: dict[torch.dtype, torch.Tensor] = {}
        self.pool = pool
        # per dtype: [pinned tensor, its numpy view]; the view is what returned arrays hold
        self.results: dict[torch.dtype, list[list[Any]]] = {}
        self._free_refs: int | None = None  # sys.getrefcount of a result nobody else holds

    @staticmethod
    def _copied_through_host(tensor: torch.Tensor) -> bool:
        """Whether `tensor` needs a device-to-host copy (tests emulate a device on the CPU)."""
        return tensor.is_cuda

    @staticmethod
    def _pinned(numel: int, dtype: torch.dtype) -> torch.Tensor:
        return torch.empty(numel, dtype=dtype, pin_memory=True)

    def _unused(self, entry: list[Any]) -> bool:
        return sys.getrefcount(entry[1]) <= self._free_refs  # type: ignore[operator]

    def _result_buffer(self, dtype: torch.dtype, numel: int) -> list[Any] | None:
        """A pooled result buffer of `dtype` with room for `numel` that no returned array
        uses (an unused one too small is replaced); None when the pool has none to give."""
        entries = self.results.setdefault(dtype, [])
        spare = None
        for entry in entries:
            if self._unused(entry):
                if entry[0].numel() >= numel:
                    return entry
                spare = entry
        if spare is None and len(entries) >= self.pool:
            return None
        tensor = self._pinned(numel, dtype)
        entry = [tensor, tensor.numpy()]
        if spare is None:
            entries.append(entry)
        else:
            spare[:] = entry
            entry = spare
        if self._free_refs is None:
            self._free_refs = sys.getrefcount(entry[1])
        return entry

    def __call__(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        by_dtype: dict[torch.dtype, list[str]] = {}
        for key, value in tensors.items():
            by_dtype.setdefault(value.dtype, []).append(key)
        flats: list[np.ndarray] = []
        staged: list[bool] = []  # whether a flat is a staging buffer (copied out below)
        streams = []
        for dtype, keys in by_dtype.items():
            flat = torch.cat([tensors[key].reshape(-1) for key in keys])
            n = flat.numel()
            if not self._copied_through_host(flat):
                flats.append(flat.numpy())
                staged.append(False)
                continue
            entry = self._result_buffer(dtype, n) if self.pool else None
            if entry is None:
                buffer = self.staging.get(dtype)
                if buffer is None or buffer.numel() < n:
                    buffer = self.staging[dtype] = self._pinned(n, dtype)
                target, host = buffer, buffer.numpy()
            else:
                target, host = entry
            target[:n].copy_(flat, non_blocking=True)
            if flat.is_cuda:
                streams.append(torch.cuda.current_stream(flat.device))
            flats.append(host[:n])
            staged.append(entry is None)
        for stream in streams[-1:]:  # one stream: the last copy's wait covers them all
            stream.synchronize()
        out: dict[str, Any] = {}
        for keys, flat, copy in zip(by_dtype.values(), flats, staged, strict=True):
            if copy:
                flat = flat.copy()  # the staging buffer is the next call's
            offset = 0
            for key in keys:
                part = tensors[key]
                size = part.numel()
                value = flat[offset : offset + size].reshape(tuple(part.shape))
                out[key] = bool(value) if part.dim() == 0 and part.dtype == torch.bool else value
                offset += size
        return out


def download(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """`Download` without kept staging buffers (CPU tensors, one-off calls)."""
    return Download()(tensors)


__all__ = [
    "DEVICE_HELP",
    "Download",
    "device_name",
    "download",
    "load_state",
    "module_device",
    "resolve_device",
]
