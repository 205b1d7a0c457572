"""`recgym bench throughput`: speed of the world, learned simulator and env; cost of logs, training.

Each measurement is the median of several timed repeats after a warm-up, appended as one JSON row
to `<out>/throughput.jsonl`, stamped with the engine's provenance (commit, dirty-tree hash that
includes untracked files, machine, versions, date; see `rows`); `<out>/throughput.md` is then
regenerated from every row of that file (the latest full-mode row per (bench, variant, metric,
batch); a quick-mode row only where no full-mode row exists). Numerical libraries are held to
two threads and torch to one (see TORCH_THREADS; ``--torch-threads``) so numbers compare across
machines with more cores.

Benches (metric names are fixed; ``variant`` says which code path when a bench has several):
- ``world_step``: `World.step` on pre-chosen slates of 6 items, batches of 1, 64 and 1024 users:
  ``responses_per_s`` (item responses per second; target >= 200,000 at batch 1024) and
  ``step_ms`` (time per step).
- ``full_request``: candidate generation + `oracle.greedy_click` ranking + `World.step` for 1024
  users: ``requests_per_s`` (user requests per second) and ``request_ms``.
- ``log_generate``: `simulators.generate.generate` writing about 1 M KuaiRand log rows:
  ``seconds`` (target <= 60), ``rows_per_s`` and ``rows``. One timed run (it takes tens of
  seconds).
- ``log_load``: loading those files back with `recgym.data.load` (cache off; falls back to
  `pandas.read_csv` of the log files when that is not importable, and says so in the note):
  ``seconds`` (target <= 10) and ``rows_per_s``.
- ``sim_inference``: the learned simulator on pre-chosen slates of 6 items, batches of 1, 64 and
  1024 distinct users. Variant ``step`` (`LearnedSimulator.step`: model forward, sampling, leave
  hazard, state update): ``responses_per_s`` (target >= 50,000 at batch 1024) and ``step_ms``;
  variant ``forward`` (`expected_responses`: the response model's forward only, no sampling or
  state change): ``responses_per_s`` and ``forward_ms``. A checkpoint with fewer users than the
  batch is tiled with `LearnedSimulator.for_sessions` (slot i is a copy of user i mod n_users).
- ``env_step``: ``steps_per_s`` of `recgym/Session-v0` (default sizes: 50 candidates, slate of
  6), random scores as actions. Variants ``<backend>/raw`` (one `gym.make` env, `env.step`,
  `reset` when an episode ends; batch 1) and ``<backend>/collector`` (a Tianshou `Collector` with
  a `RandomActionPolicy` over a `DummyVectorEnv` of 4 envs, `collect(n_step=64)` per call,
  transitions stored in a `VectorReplayBuffer`; batch 4), for backend ``world`` (the default
  `WorldConfig`) and ``learned``.
- ``sim_train``: `simulators.train.train_simulator` with the default `SimulatorConfig` on the
  ``log_generate`` bench's logs (generated again when that bench did not run), in a subprocess:
  ``seconds`` (wall time of the whole job, interpreter start included; target <= 300),
  ``peak_mb`` (the job's peak resident memory, its own ``ru_maxrss`` from `os.wait4`; target
  <= 4096) and ``rows``. One run.
- The fast-env benches ``vector_env``, ``collector_native``, ``peer`` and ``dqn_train``
  (`fast_envs`), and ``step_profile`` (`step_profile`: microseconds per single Session-v0 step
  in each of its parts, and SARDINE's beside it, ``us_per_step``).

The learned-simulator benches use ``--checkpoint PATH`` when given, else a checkpoint trained
once per invocation in a scratch directory (a world of 300 users logged for 3 days, the default
model sizes, one epoch): inference speed depends on the model's sizes, not on how well it fits.
``--quick`` shortens every timing block and uses a small log (200 users x 2 days, about 9,000
rows) for ``log_generate``, ``log_load`` and ``sim_train`` (whose targets then do not apply; it
also trains for one epoch only); its rows are marked mode="quick".

Modules: `benches` (the timing code, `Workspace`, `BENCHES`), `fast_envs`, `step_profile`,
`rows` (targets, the row format, the markdown table), `runner` (`ThroughputConfig`, `run`,
`main`: the command line is generated from the config's fields by
`recgym.benchmarks.engine_cli`). ``python -m recgym.benchmarks.throughput`` runs `main`.
"""

from __future__ import annotations

from recgym.benchmarks.throughput.benches import (
    BENCHES,
    SLATE,
    STEP_BATCHES,
    THREADS,
    TORCH_THREADS,
    Workspace,
)
from recgym.benchmarks.throughput.rows import (
    JSONL,
    MARKDOWN,
    SIZED_BENCHES,
    TARGETS,
    fmt,
    latest_rows,
    make_row,
    markdown,
    passes,
    read_rows,
    row_key,
)
from recgym.benchmarks.throughput.runner import ThroughputConfig, main, parse_args, run

__all__ = [
    "BENCHES",
    "JSONL",
    "MARKDOWN",
    "SIZED_BENCHES",
    "SLATE",
    "STEP_BATCHES",
    "TARGETS",
    "THREADS",
    "TORCH_THREADS",
    "ThroughputConfig",
    "Workspace",
    "fmt",
    "latest_rows",
    "main",
    "make_row",
    "markdown",
    "parse_args",
    "passes",
    "read_rows",
    "row_key",
    "run",
]
