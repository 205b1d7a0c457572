"""Seeding Tianshou training without touching the caller's random state.

Tianshou 2.0.1 draws some of its randomness where no generator can be passed in:

- ε-greedy exploration (`DiscreteQLearningPolicy.add_exploration_noise`) and `GaussianNoise`
  (TD3's exploration) call the *global* `np.random` functions;
- network initialisation, SAC's sampled actions, CQL's random actions and dropout use torch's
  global generator;
- a replay buffer samples with its own ``np.random.RandomState`` (``_random_state``), which only
  the constructor's ``random_seed`` sets: `ReplayBuffer.from_data` and `load_hdf5` always use
  42, and `VectorReplayBuffer`'s manager ignores ``random_seed`` (it keeps 42) - and there is
  no public method to reseed a buffer that exists.

`seeded_global_rngs` seeds the two global generators for the duration of a block (a training
run) and puts the caller's states back afterwards, so a recgym training call is reproducible
from its config's seed and never changes the random state of the program that called it.
`seed_buffer_sampler` is the one place that sets a buffer's private sampler.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from tianshou.data import ReplayBuffer, ReplayBufferManager


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Within the block, numpy's global `np.random` state and torch's global generators (CPU,
    and every CUDA device when CUDA is available) start from `seed`; on exit (also on an
    exception) they are restored to what they were before the block.

    The global state is process-wide: two threads training at once would share it (run
    concurrent trainings in separate processes, as vector envs and benchmark stages do).
    """
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        # the one place recgym sets numpy's global state: Tianshou reads it and takes no rng
        np.random.set_state(np.random.RandomState(seed).get_state())
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)


def seed_buffer_sampler(buffer: ReplayBuffer, seed: int) -> ReplayBuffer:
    """Make `buffer` sample its batches from ``np.random.RandomState(seed)``; returns it.

    Tianshou 2.0.1 has no public way to reseed an existing buffer, so this sets its private
    ``_random_state`` (read by `ReplayBuffer.sample_indices`); for a `VectorReplayBuffer` (a
    `ReplayBufferManager`) also each sub-buffer's, as ``random_seed=seed`` at construction
    would. A buffer sampled before this call draws the same batches afterwards as a fresh one.
    """
    buffer._random_state = np.random.RandomState(seed)
    if isinstance(buffer, ReplayBufferManager):
        for sub in buffer.buffers:
            sub._random_state = np.random.RandomState(seed)
    return buffer


__all__ = ["seed_buffer_sampler", "seeded_global_rngs"]
