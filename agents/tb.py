"""Training curves to TensorBoard: Tianshou's `TensorboardLogger` beside each trainer's logger.

Where the logs go is set once per stage, not per trainer: the bench engine runs every stage
inside ``logging_to(<out>/tensorboard/<stage>)`` (`benchmarks.engine.execute_stage`), and each
trainer wraps its own logger with ``attach(logger, agent, seed)``, which adds a
`TensorboardLogger` writing to ``<that dir>/<agent>/seed<seed>`` - or returns the logger
unchanged when no directory is set (outside the engine, or ``--no-tensorboard``). So a trainer
needs one line and no new argument, and a stage's curves sit beside its outputs: open them with
``tensorboard --logdir <out>/tensorboard``.

Scalars (Tianshou's names): ``test/returns_stat/mean`` per test step (online trainers, CQL),
``train/...`` every `TRAIN_INTERVAL` env steps, ``update/loss...`` every `UPDATE_INTERVAL`
gradient steps, ``info/...`` per epoch; trainers without a Tianshou trainer (DeepFM) write
their own scalars through `scalar_writer`, or ``update/<name>`` through `update_curve` (the MTF
learners, IQL, the offline baselines, ES, and every `agents.sequence` model - RUIE and RDRSR
included - through `agents.sequence.fit`). Needs the ``tensorboard`` package (a dependency of
Tianshou 2.0.1; extra ``recgym[tensorboard]``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tianshou.utils import BaseLogger, TensorboardLogger

TRAIN_INTERVAL = 100
"""Env steps between two ``train/`` points (Tianshou's default is 1,000)."""
UPDATE_INTERVAL = 10
"""Gradient steps between two ``update/`` points (losses; Tianshou's default is 1,000)."""

_dirs: list[Path | None] = [None]


def current_dir() -> Path | None:
    """The directory `attach` writes under now (None: no TensorBoard logs)."""
    return _dirs[-1]


@contextmanager
def logging_to(log_dir: str | Path | None, clear: bool = True) -> Iterator[Path | None]:
    """Inside the block, `attach` writes under `log_dir` (None turns logging off). `clear`
    deletes what an earlier run left there first, so a re-run stage has one set of curves."""
    path = None if log_dir is None else Path(log_dir)
    if path is not None and clear:
        shutil.rmtree(path, ignore_errors=True)
    _dirs.append(path)
    try:
        yield path
    finally:
        _dirs.pop()


def _run_dir(agent: str, seed: int | None) -> Path | None:
    base = current_dir()
    if base is None:
        return None
    name = agent.replace("/", "-").replace(" ", "_")
    return base / name / ("seed" + str(seed) if seed is not None else "run")


def make_logger(log_dir: str | Path) -> BaseLogger:
    """A Tianshou `TensorboardLogger` writing event files to `log_dir` (created)."""
    from torch.utils.tensorboard import SummaryWriter

    Path(log_dir).mkdir(parents=True, exist_ok=True)
    return TensorboardLogger(
        SummaryWriter(str(log_dir)),
        training_interval=TRAIN_INTERVAL,
        update_interval=UPDATE_INTERVAL,
    )


class TeeLogger(BaseLogger):
    """Hands every trainer call to several loggers (the trainer's own first); attribute
    reads (``curve``, ``bar``) go to the first, so callers keep using it as before."""

    def __init__(self, *loggers: BaseLogger) -> None:
        super().__init__(training_interval=0, test_interval=0, update_interval=0, info_interval=0)
        self.loggers = loggers

    def __getattr__(self, name: str) -> Any:
        loggers = self.__dict__.get("loggers")
        if not loggers:
            raise AttributeError(name)
        return getattr(loggers[0], name)

    def log_training_data(self, log_data: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_training_data(log_data, step)

    def log_test_data(self, log_data: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_test_data(log_data, step)

    def log_update_data(self, log_data: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_update_data(log_data, step)

    def log_info_data(self, log_data: dict, step: int) -> None:
        for logger in self.loggers:
            logger.log_info_data(log_data, step)

    def write(self, step_type: str, step: int, data: dict) -> None:
        for logger in self.loggers:
            logger.write(step_type, step, data)

    def prepare_dict_for_logging(self, log_data: dict) -> dict:
        return log_data

    def save_data(self, epoch: int, env_step: int, update_step: int, save_checkpoint_fn=None):
        for logger in self.loggers:
            logger.save_data(epoch, env_step, update_step, save_checkpoint_fn)

    def restore_data(self) -> tuple[int, int, int]:
        return self.loggers[0].restore_data()

    @staticmethod
    def restore_logged_data(log_path: str) -> dict:
        return {}

    def finalize(self) -> None:
        for logger in self.loggers:
            logger.finalize()

    def close(self) -> None:
        """Close every logger (the trainer's own bar, the event files)."""
        for logger in self.loggers:
            if hasattr(logger, "close"):
                logger.close()
            else:
                logger.finalize()


def attach(logger: BaseLogger, agent: str, seed: int | None = None) -> BaseLogger:
    """`logger` plus a TensorBoard logger for (`agent`, `seed`) when `logging_to` set a
    directory; `logger` itself otherwise."""
    run_dir = _run_dir(agent, seed)
    if run_dir is None:
        return logger
    return TeeLogger(logger, make_logger(run_dir))


def scalar_writer(agent: str, seed: int | None = None) -> Any:
    """A `SummaryWriter` for (`agent`, `seed`) for trainers that run their own loop, or None
    when no directory is set; call ``.close()`` when done."""
    run_dir = _run_dir(agent, seed)
    if run_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    return SummaryWriter(str(run_dir))


def _scalars(stats: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """(name, value) of the numbers in a stats object or dict: floats and ints, a nested stats
    object's fields, and the ``mean`` of Tianshou's sequence summaries."""
    items = stats.items() if isinstance(stats, dict) else vars(stats).items()
    for key, value in items:
        if isinstance(value, bool) or key.startswith("_"):
            continue
        if isinstance(value, int | float):
            yield prefix + key, float(value)
        elif hasattr(value, "mean") and isinstance(value.mean, int | float):
            yield prefix + key, float(value.mean)
        elif hasattr(value, "__dict__") and not callable(value):
            yield from _scalars(value, f"{prefix}{key}/")


@contextmanager
def update_curve(
    agent: str, seed: int | None = None, every: int = UPDATE_INTERVAL
) -> Iterator[Any]:
    """For trainers with their own update loop: yields ``log(step, stats)``, which writes
    ``update/<name>`` for every number in `stats` (a Tianshou ``TrainingStats``, or a dict)
    every `every` steps to (`agent`, `seed`)'s run directory; a no-op outside `logging_to`."""
    writer = scalar_writer(agent, seed)

    def log(step: int, stats: Any) -> None:
        if writer is None or stats is None or step % every:
            return
        for name, value in _scalars(stats):
            writer.add_scalar(f"update/{name}", value, step)

    try:
        yield log
    finally:
        if writer is not None:
            writer.close()


__all__ = [
    "TRAIN_INTERVAL",
    "UPDATE_INTERVAL",
    "TeeLogger",
    "attach",
    "current_dir",
    "logging_to",
    "make_logger",
    "scalar_writer",
    "update_curve",
]
