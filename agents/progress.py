"""One progress bar per training stage for runs of Tianshou's trainers.

Tianshou's own ``show_progress`` draws a new bar for every epoch and another for each training
step's gradient updates: a DQN run of the demo wrote about 2,900 lines to a log. recgym's
trainers pass ``show_progress=False`` and give the trainer a `BarLogger`, which moves a single
bar over the whole run: by env steps online (``log_training_data``), by gradient steps offline
(``log_update_data``). The bar is drawn only when asked for and when stderr is a terminal
(tqdm's ``disable=None``); piped output gets the stage lines of the caller, not a bar.
"""

from __future__ import annotations

from typing import Any, Literal

from tianshou.utils import LazyLogger


def stage_bar(total: int, desc: str, enabled: bool, unit: str = "step") -> Any:
    """A tqdm bar of `total` units for one stage; None when not `enabled` (``--quiet``)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, dynamic_ncols=True)


class BarLogger(LazyLogger):
    """A Tianshou logger that logs nothing and moves one stage bar (`stage_bar`; may be None).

    ``counts="env"``: the bar follows the trainer's env-step counter (online trainers);
    ``counts="update"``: its gradient-step counter (the offline trainer, one step per update).
    Subclasses that override ``log_training_data`` / ``log_update_data`` call ``super()``.
    Call `close` when training ends.
    """

    def __init__(self, bar: Any = None, counts: Literal["env", "update"] = "env") -> None:
        super().__init__()
        self.bar, self.counts = bar, counts

    def _advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(max(min(int(step), self.bar.total) - self.bar.n, 0))

    def log_training_data(self, log_data: dict, step: int) -> None:
        if self.counts == "env":
            self._advance(step)

    def log_update_data(self, log_data: dict, step: int) -> None:
        if self.counts == "update":
            self._advance(step)

    def close(self) -> None:
        """Close the bar (its last line stays on the terminal)."""
        if self.bar is not None:
            self.bar.close()


__all__ = ["BarLogger", "stage_bar"]
