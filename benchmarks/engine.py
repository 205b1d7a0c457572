"""The benchmark engine: stages keyed by config + code, atomic outputs, JSONL rows with provenance.

A *stage* is (name, config dataclass, function, dependencies). Its key is a hash of

- its config as canonical JSON (sorted keys, tuples as lists),
- the code it runs: the source of the module that defines the function and, transitively, of
  every ``recgym`` module those files import (found statically with `ast`, including imports inside
  function bodies and the parent packages' ``__init__.py``). Files are read from disk, so tracked,
  untracked and uncommitted edits all count (a function from outside the package is covered by
  the bytes of its own file). A stage may name extra modules (``code=``) whose
  imports are hidden from `ast` (e.g. reached through a string); all stage functions of one module
  share that module's hash, so editing any of them reruns all of them (safe, not minimal);
- the keys of the stages it depends on, so a change reruns its stage and everything downstream.

Outputs live in ``<out>/<stage>/<key>/``. A stage writes into a temporary sibling directory and
the engine renames it into place only after the function returned and ``stage.json`` was written,
so a crash never leaves a half stage that looks done; the next run deletes the leftover and redoes
the stage. What is not hashed (recorded in each row's provenance instead): third-party library
versions, data files outside the package, the machine.

A bench is a list of stages (`benchmarks/demo.py` is the worked example)::

    def train(ctx):                      # writes under ctx.dir, returns a small JSON result
        model = fit(load(ctx.deps["logs"].dir), ctx.config)
        model.save(ctx.dir / "model")
        return {"loss": model.loss}

    def evaluate(ctx):                   # one row per (agent, backend, seed, metric)
        ctx.write_rows(ctx.row(env=..., agent=..., backend=..., seed=s, metric=m, value=v) ...)

    done = Engine("out").run([
        Stage("logs", LogConfig(days=7), write_logs),
        Stage("train", TrainConfig(lr=1e-3), train, deps=("logs",)),
        Stage("evaluate", {"seeds": (0, 1, 2)}, evaluate, deps=("train",)),
    ])
    rows = done["evaluate"].rows()      # -> report.write_report / claims.judge_rows

Stages whose dependencies are done run in parallel with
``Engine(out, sweep=SweepConfig(workers=2))`` or ``ray="local"`` (`benchmarks.sweep`; on the
command line ``--workers N`` / ``--ray [ADDRESS]``), so a bench that makes one stage per agent x
backend x seed x config has its jobs fanned out.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from recgym.benchmarks.sweep import SweepConfig, default_sweep

ROWS = "rows.jsonl"
"""File name of a stage's result rows inside its output directory."""
STAGE_FILE = "stage.json"
"""What a finished stage directory records: name, key, config, code hash, deps, result."""
LOG = "stage_log.jsonl"
"""``<out>/stage_log.jsonl``: one line per stage per run, ``"action"`` = ran / reused."""
TENSORBOARD = "tensorboard"
"""``<out>/tensorboard/<stage>/<agent>/seed<seed>``: TensorBoard curves of a stage's trainers."""
ROW_FIELDS = ("env", "agent", "backend", "seed", "metric", "value", "stage_key")
"""Fields every result row has (plus ``provenance`` and any extra fields a stage adds)."""


# --------------------------------------------------------------------------- canonical JSON
def jsonable(value: Any, nan_as_none: bool = False) -> Any:
    """Plain-JSON form of configs and results: dataclasses, tuples, numpy, paths, sets.

    Non-finite floats stay floats (Python's json writes NaN) unless `nan_as_none`, which the
    report files use so that other tools can read them.
    """

    def conv(v: Any) -> Any:
        return jsonable(v, nan_as_none)

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: conv(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): conv(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [conv(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(conv(v) for v in value)
    if isinstance(value, np.ndarray):
        return conv(value.tolist())
    if isinstance(value, np.generic):
        return conv(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and nan_as_none and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} as JSON: {value!r}")


def canonical_json(value: Any) -> str:
    """Sorted-key, separator-fixed JSON: equal configs give equal strings (and hashes)."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"))


def digest(value: Any, n: int = 16) -> str:
    """First `n` hex digits of the SHA-256 of `value`'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:n]


# --------------------------------------------------------------------------- code hashing
PACKAGE = "recgym"


ROOT = Path(__file__).resolve().parents[1]
"""The directory of the ``recgym`` package (the repository root)."""


def _module_file(name: str, root: Path, package: str) -> Path | None:
    """Source file of module `name` of `package` (directory `root`), found without importing."""
    parts = name.split(".")
    if parts[0] != package:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _imports_of(name: str, path: Path, package: str) -> set[str]:
    """`package` modules `path` (module `name`) imports anywhere in its body, plus its parents."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                mod = ".".join(parent + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)  # `from pkg import module`
    parts = name.split(".")
    found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return {m for m in found if m == package or m.startswith(package + ".")}


def code_files(
    modules: Iterable[str], root: Path = ROOT, package: str = PACKAGE
) -> dict[str, Path]:
    """{module: source file} of `modules` and every `package` module they import, transitively
    (`root` is the package's directory; the defaults are recgym's)."""
    todo, files = list(modules), {}
    while todo:
        name = todo.pop()
        if name in files:
            continue
        path = _module_file(name, root, package)
        if path is None:
            continue  # `from pkg import function`: not a module; or not ours
        files[name] = path
        todo.extend(_imports_of(name, path, package) - files.keys())
    return files


def code_hash(modules: Iterable[str], root: Path = ROOT, package: str = PACKAGE) -> str:
    """Hash of the source of `modules` and their `package` imports (file bytes, by name)."""
    h = hashlib.sha256()
    for name, path in sorted(code_files(modules, root, package).items()):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- provenance
def _git(args: Sequence[str], cwd: Path) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, check=True, timeout=30
    ).stdout


def provenance() -> dict[str, Any]:
    """Where a row came from: git commit, a hash of the dirty tree (tracked changes *and*
    untracked files' content), machine, Python/numpy/torch versions (read once per process), and
    the current UTC date."""
    return {**tree_provenance(ROOT), "date": datetime.now(UTC).isoformat(timespec="seconds")}


@cache
def tree_provenance(root: Path) -> dict[str, Any]:
    """`provenance` without the date, for the git work tree at `root` (cached per process)."""
    commit, dirty = "unknown", "unknown"
    try:
        commit = _git(["rev-parse", "HEAD"], root).decode().strip()
        status = _git(["status", "--porcelain", "-z", "--untracked-files=all"], root)
        h = hashlib.sha256(_git(["diff", "HEAD", "--binary"], root))
        for entry in sorted(e for e in status.split(b"\0") if e[:2] == b"??"):
            path = root / entry[3:].decode()
            h.update(entry + (path.read_bytes() if path.is_file() else b""))
        dirty = h.hexdigest()[:16] if status.strip() else "clean"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "git_commit": commit,
        "dirty_tree": dirty,
        "machine": {
            "node": platform.node(),
            "platform": platform.platform(terse=True),
            "nproc": os.cpu_count(),
        },
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_version,
    }


# --------------------------------------------------------------------------- rows
def make_row(
    *,
    env: str,
    agent: str,
    backend: str,
    seed: int,
    metric: str,
    value: float,
    stage_key: str,
    **extra: Any,
) -> dict[str, Any]:
    """One result row: the ROW_FIELDS, any `extra` fields, and this process's provenance."""
    value = float(value)
    return {
        "env": env,
        "agent": agent,
        "backend": backend,
        "seed": int(seed),
        "metric": metric,
        "value": value,
        "stage_key": stage_key,
        **jsonable(extra),
        "provenance": provenance(),
    }


def append_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append JSON lines to a file (one write per call); also used for the stage log."""
    text = "".join(json.dumps(jsonable(r), sort_keys=True) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a bad line raises naming the file and line."""
    rows = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: line {i} is not JSON ({e.msg})") from None
        missing = [k for k in ROW_FIELDS if k not in row]
        if missing:
            raise ValueError(f"{path}: line {i} lacks {', '.join(missing)}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class Stage:
    """A named step: ``fn(ctx)`` writes files under ``ctx.dir`` and returns a small JSON result."""

    name: str
    config: Any
    fn: Callable[[StageContext], Mapping[str, Any] | None]
    deps: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    """Extra modules whose code the stage runs but `ast` cannot see from `fn`'s module."""

    def modules(self) -> tuple[str, ...]:
        return (self.fn.__module__, *self.code)


@dataclass
class StageResult:
    """A finished stage: its directory, key and the JSON result its function returned."""

    name: str
    key: str
    dir: Path
    result: dict[str, Any]
    reused: bool
    seconds: float

    def rows(self) -> list[dict[str, Any]]:
        """The stage's result rows (``rows.jsonl`` in its directory), [] when it wrote none."""
        path = self.dir / ROWS
        return read_rows(path) if path.exists() else []


@dataclass
class StageContext:
    """What a stage function gets: its config, its (temporary) directory, its deps' results."""

    name: str
    key: str
    config: Any
    dir: Path
    deps: dict[str, StageResult]
    say: Callable[[str], None] = field(default=print)
    progress: bool = True
    """Whether the stage may print progress (the engine's `progress`)."""

    def write_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Append rows to this stage's ``rows.jsonl`` (moved into place with the stage)."""
        append_rows(self.dir / ROWS, rows)

    def row(self, **fields: Any) -> dict[str, Any]:
        """`make_row` with this stage's key filled in."""
        return make_row(stage_key=self.key, **fields)


class Engine:
    """Runs stages in order under one output directory, reusing those whose key is done.

    `fresh` deletes every output the given stages ever wrote before running ("discard
    everything"; not needed for correctness). `code_root`/`package` say whose modules are hashed
    (recgym's by default; tests point them at a scratch package). `sweep` fans the stages (jobs)
    out to a process pool or Ray (`benchmarks.sweep`); None takes `sweep.default_sweep()`,
    serial unless ``recgym bench ... --workers N / --ray`` set one.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        progress: bool = True,
        fresh: bool = False,
        code_root: Path = ROOT,
        package: str = PACKAGE,
        sweep: SweepConfig | None = None,
    ) -> None:
        self.out = Path(out)
        self.sweep = sweep if sweep is not None else default_sweep()
        self.code_root, self.package = Path(code_root), package
        self.progress = progress
        self.fresh = fresh
        self._code_cache: dict[tuple[str, ...], str] = {}

    def say(self, msg: str) -> None:
        if self.progress:
            print(msg, flush=True)

    def key(self, stage: Stage, dep_keys: Mapping[str, str]) -> str:
        modules = tuple(sorted(set(stage.modules())))
        if modules not in self._code_cache:
            self._code_cache[modules] = self._code_of(stage, modules)
        return digest(
            {
                "stage": stage.name,
                "config": stage.config,
                "code": self._code_cache[modules],
                "deps": dict(dep_keys),
            }
        )

    def _code_of(self, stage: Stage, modules: tuple[str, ...]) -> str:
        mod = stage.fn.__module__
        if mod == self.package or mod.startswith(self.package + "."):
            return code_hash(modules, self.code_root, self.package)
        # a function from outside the package (a script, a test): its own file's bytes, and
        # the package modules that file imports
        source = inspect.getsourcefile(stage.fn)
        if not source or not Path(source).is_file():
            return code_hash(modules, self.code_root, self.package)
        path = Path(source)
        roots = (*modules, *_imports_of(mod, path, self.package))
        own = hashlib.sha256(path.read_bytes()).hexdigest()
        return digest([code_hash(roots, self.code_root, self.package), own])

    def run(self, stages: Sequence[Stage]) -> dict[str, StageResult]:
        """Run (or reuse) every stage, in the given order; deps must come earlier."""
        self._check_writable()
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        seen: set[str] = set()
        for stage in stages:
            missing = [d for d in stage.deps if d not in seen]
            if missing:
                raise ValueError(f"stage {stage.name!r} needs {missing} to run before it")
            seen.add(stage.name)
        if self.fresh:  # "discard everything": drop every output these stages ever wrote
            for name in names:
                shutil.rmtree(self.out / name, ignore_errors=True)
        if self.sweep.parallel:  # jobs fan out; failures are retried, then reported together
            from recgym.benchmarks.sweep import run_parallel

            return run_parallel(self, stages, self.sweep)
        done: dict[str, StageResult] = {}
        for stage in stages:
            done[stage.name] = self._run_one(stage, {d: done[d] for d in stage.deps})
        return done

    def _check_writable(self) -> None:
        from recgym.outdir import ensure_writable_dir

        ensure_writable_dir(self.out)  # OutputError: one line naming the path (CLI exit 2)

    def _run_one(self, stage: Stage, deps: dict[str, StageResult]) -> StageResult:
        key = self.key(stage, {d: r.key for d, r in deps.items()})
        reused = self.reuse(stage, key)
        if reused is not None:
            return reused
        self.say(f"[{stage.name}] ...")
        stage_args = self.job_args(stage, key, deps)
        result, seconds = execute_stage(
            *stage_args, say=self.say, progress=self.progress, tensorboard=self.sweep.tensorboard
        )
        self.say(f"[{stage.name}] done in {seconds} s")
        self._log(stage.name, key, "ran", seconds)
        final = self.out / stage.name / key
        return StageResult(stage.name, key, final, result, False, seconds)

    def reuse(self, stage: Stage, key: str) -> StageResult | None:
        """The finished output of `stage` under `key` (logged as reused), or None."""
        final = self.out / stage.name / key
        if not (final / STAGE_FILE).exists():
            return None
        record = json.loads((final / STAGE_FILE).read_text())
        self.say(f"[{stage.name}] reusing {final}")
        self._log(stage.name, key, "reused", 0.0)
        return StageResult(stage.name, key, final, record["result"], True, 0.0)

    def job_args(
        self, stage: Stage, key: str, deps: dict[str, StageResult]
    ) -> tuple[Stage, str, dict[str, StageResult], str, str]:
        """`execute_stage`'s positional arguments for `stage` (picklable: a job's payload)."""
        code = self._code_cache[tuple(sorted(set(stage.modules())))]
        return stage, key, deps, str(self.out), code

    def _log(self, name: str, key: str, action: str, seconds: float, **extra: Any) -> None:
        line = {
            "stage": name,
            "key": key,
            "action": action,
            "seconds": seconds,
            "date": datetime.now(UTC).isoformat(timespec="microseconds"),
            "pid": os.getpid(),
            **extra,
        }
        append_rows(self.out / LOG, [line])

    log = _log
    """One stage-log line (``action``: ran / reused / failed); the sweep logs its jobs with it."""


def execute_stage(
    stage: Stage,
    key: str,
    deps: dict[str, StageResult],
    out: str | Path,
    code: str,
    *,
    say: Callable[[str], None] = print,
    progress: bool = True,
    tensorboard: bool = True,
) -> tuple[dict[str, Any], float]:
    """Run `stage` into ``<out>/<stage>/<key>/`` atomically; returns (result, seconds).

    The function writes into a temporary sibling directory, renamed into place only after it
    returned and ``stage.json`` was written (so a crash never leaves a half stage that looks
    done). Runs in the engine's process or in a sweep worker (`benchmarks.sweep`). With
    `tensorboard`, the trainers it calls write their curves under
    ``<out>/tensorboard/<stage>/<agent>/seed<seed>`` (`agents.tb`; cleared when the stage runs).
    """
    from recgym.agents.tb import logging_to

    final = Path(out) / stage.name / key
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in final.parent.glob(f".tmp-{key}-*"):
        if not _alive(leftover.name.rsplit("-", 1)[-1]):  # a crashed (killed) earlier try
            shutil.rmtree(leftover, ignore_errors=True)
    tmp = final.parent / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # a failed earlier try in this same process
    tmp.mkdir()
    t = time.perf_counter()
    try:
        ctx = StageContext(stage.name, key, stage.config, tmp, deps, say, progress)
        with logging_to(Path(out) / TENSORBOARD / stage.name if tensorboard else None):
            result = jsonable(stage.fn(ctx) or {})
        seconds = round(time.perf_counter() - t, 2)
        record = {
            "stage": stage.name,
            "key": key,
            "config": jsonable(stage.config),
            "code": code,
            "deps": {d: r.key for d, r in deps.items()},
            "seconds": seconds,
            "result": result,
            "provenance": provenance(),
        }
        (tmp / STAGE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
        if (final / STAGE_FILE).exists():  # another process finished the same key first
            shutil.rmtree(tmp)
            result = json.loads((final / STAGE_FILE).read_text())["result"]
        else:
            if final.exists():  # a directory without stage.json is not done
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result, seconds


def _alive(pid: str) -> bool:
    """Whether `pid` is a running process other than this one (its temp dir is in use)."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def stage_log(out: str | Path) -> list[dict[str, Any]]:
    """The lines of ``<out>/stage_log.jsonl`` (empty when no stage ever ran there)."""
    path = Path(out) / LOG
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


__all__ = [
    "Engine",
    "ROWS",
    "ROW_FIELDS",
    "Stage",
    "StageContext",
    "StageResult",
    "append_rows",
    "canonical_json",
    "code_files",
    "code_hash",
    "digest",
    "execute_stage",
    "jsonable",
    "make_row",
    "provenance",
    "read_rows",
    "stage_log",
    "tree_provenance",
]
