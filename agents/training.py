"""What recgym's Tianshou training runs share: an online run's settings and the trainer parameters.

`OnlineRunConfig` holds the settings of an off-policy run on vector envs (DQN, TD3, RLUR);
`off_policy_params` and `offline_params` build Tianshou 2's trainer parameters the same way for
every algorithm: whole epochs covering the requested budget, a test step per epoch when there
is a test collector, recgym's logger (one progress bar per run), no Tianshou bars or prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tianshou.data import ReplayBuffer
from tianshou.trainer import OfflineTrainerParams, OffPolicyTrainerParams


@dataclass(kw_only=True)
class OnlineRunConfig:
    """The budget and collection settings of an online off-policy run (base of DQN's and TD3's
    configs)."""

    buffer_size: int = 20_000
    """Replay buffer capacity (transitions, over all envs)."""
    n_envs: int = 4
    """Training envs (DummyVectorEnv); each has its own copy of the backend."""
    env_steps: int = 6_000
    """Training env steps in total (rounded up to whole epochs of `env_steps // epochs`)."""
    epochs: int = 6
    """Number of epochs; each ends with a test step that adds a point to the learning curve."""
    collect_steps: int = 8
    """Env steps collected per training step (a multiple of n_envs)."""
    updates_per_step: float = 0.25
    """Gradient steps per collected env step."""
    batch_size: int = 128
    """Transitions per gradient step."""
    warmup_steps: int = 512
    """Transitions collected with uniform random actions before training starts."""
    test_episodes: int = 10
    """Greedy (deterministic) episodes per test step on one test env."""
    seed: int = 0
    """Seeds numpy's global RNG (exploration), torch, the envs and the buffer's sampler."""
    device: str = "auto"
    """Torch device of the networks (`recgym.device.resolve_device`: 'auto' = CUDA when
    available, else CPU); weights are initialised on the CPU and moved, so a seed gives the same
    initial weights on every device."""

    def check(self) -> None:
        """Raise a ValueError naming the setting when the collection settings cannot work."""
        if self.collect_steps % self.n_envs:
            raise ValueError(
                f"collect_steps ({self.collect_steps}) must be a multiple of n_envs ({self.n_envs})"
            )


def epoch_plan(total_steps: int, epochs: int) -> tuple[int, int]:
    """(epochs, steps per epoch): at least one epoch, whole epochs covering `total_steps`."""
    epochs = max(int(epochs), 1)
    return epochs, -(-int(total_steps) // epochs)


def _common(
    test_collector: Any, test_episodes: int, logger: Any, epochs: int, steps: int, batch: int
) -> dict[str, Any]:
    return {
        "test_collector": test_collector,
        "max_epochs": epochs,
        "epoch_num_steps": steps,
        "batch_size": batch,
        # Tianshou wants a positive count even when there is no test collector to use it
        "test_step_num_episodes": test_episodes if test_collector is not None else 1,
        "logger": logger,
        "verbose": False,
        "show_progress": False,  # Tianshou's is a bar per epoch; the logger moves one bar
    }


def off_policy_params(
    cfg: OnlineRunConfig,
    train_collector: Any,
    test_collector: Any,
    logger: Any,
    **extra: Any,
) -> OffPolicyTrainerParams:
    """Tianshou's off-policy trainer parameters for a run of `cfg` (`extra`: e.g. a
    ``training_fn``)."""
    epochs, steps = epoch_plan(cfg.env_steps, cfg.epochs)
    return OffPolicyTrainerParams(
        training_collector=train_collector,
        collection_step_num_env_steps=cfg.collect_steps,
        update_step_num_gradient_steps_per_sample=cfg.updates_per_step,
        **_common(test_collector, cfg.test_episodes, logger, epochs, steps, cfg.batch_size),
        **extra,
    )


def offline_params(
    buffer: ReplayBuffer,
    *,
    gradient_steps: int,
    epochs: int,
    batch_size: int,
    logger: Any,
    test_collector: Any = None,
    test_episodes: int = 1,
) -> OfflineTrainerParams:
    """Tianshou's offline trainer parameters: `gradient_steps` (rounded up to whole epochs) of
    `batch_size` samples from `buffer`."""
    epochs, steps = epoch_plan(gradient_steps, epochs)
    return OfflineTrainerParams(
        buffer=buffer, **_common(test_collector, test_episodes, logger, epochs, steps, batch_size)
    )


__all__ = ["OnlineRunConfig", "epoch_plan", "off_policy_params", "offline_params"]
