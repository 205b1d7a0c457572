"""`recgym bench mtf [--quick] [--data DIR]`: the Enhanced-State RL-MTF paper's Tables 1-4.

Stages (`benchmarks.engine`, each keyed by its config and code):

1. ``logs``: a ground-truth world and its KuaiRand-schema logs (skipped with ``--data DIR``:
   real KuaiRand logs);
2. ``simulator``: the learned user simulator fitted on the logs;
3. ``mtl``: the multi-task ranking model (`agents.mtl`) fitted on the logs;
4. ``run-<backend>-seed<i>``: per backend (the world as it stood after its logs, and the
   learned simulator; only the simulator with ``--data``) and training seed i, in
   `recgym/MTFSession-v0`'s batched core: the exploration dataset D0 around the fixed fusion
   mu_bp (per-user bounds), the test dataset logged by mu_bp, every agent trained
   (`benchmarks.mtf.agents`: ES online; DDPG, CQL+SAC, BatchRL-MTF (BCQ), IQL and
   IntegratedRL-MTF w/o PTM offline on D0; IntegratedRL-MTF and Enhanced-State RL-MTF with the
   progressive training mode, exploring around their own policies), then weighted GAUC on the
   test set (Section 4.1.2's protocol) and UVC / UDT online under evaluation seed i.

The report (``results.md``, ``results.json``, ``rows.jsonl``, plots) has the per-backend
tables of every agent, Tables 1-4 with the paper's numbers beside ours, and the claims
writer's verdict on every ordering the paper states (`benchmarks.mtf.tables.CLAIMS`).
"""

from __future__ import annotations

from recgym.benchmarks.mtf.runner import (
    AGENTS,
    BACKENDS,
    ENHANCED,
    ENV_ID,
    METRICS,
    TABLE1_AGENTS,
    MTFBenchConfig,
    main,
    run,
    stages,
)

__all__ = [
    "AGENTS",
    "BACKENDS",
    "ENHANCED",
    "ENV_ID",
    "METRICS",
    "MTFBenchConfig",
    "TABLE1_AGENTS",
    "main",
    "run",
    "stages",
]
