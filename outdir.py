"""Output directories: one check, before any work, that a command can write where it was told.

Every command that writes (`recgym world generate`, `demo`, `simulator train`, each `bench`
suite) calls `ensure_writable_dir` on its output directory first, so a bad `--out` fails in a
second with one line naming the path instead of a traceback after minutes of work. `recgym`'s
`main` prints an `OutputError` as ``error: <message>`` and exits 2.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputError(OSError):
    """An output directory cannot be created or written; the message names the path."""


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and its parents) if missing and check a file can be written in it.

    Returns the path as a `Path`. Raises `OutputError` when `path` is an existing non-directory,
    when it (or a parent) cannot be created — e.g. a parent is a file, or a parent directory is
    read-only — or when a probe file cannot be written in it (read-only mount, no permission).
    The probe is a real write rather than `os.access`, which answers yes to root regardless and
    knows nothing of read-only mounts.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"output directory {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot create output directory {out}: {reason}") from exc
    try:
        with tempfile.TemporaryFile(dir=out, prefix=".recgym-write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write to output directory {out}: {reason}") from exc
    return out


__all__ = ["OutputError", "ensure_writable_dir"]
