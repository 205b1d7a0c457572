"""`recgym bench rliv-ua`: the RLIV-UA paper's Tables 2 and 3 (Sec. 4) on `recgym/UserAuthor-v0`.

The job, stage by stage (each writes its artefact; a re-run skips every stage whose artefact
exists *for the same settings*; `--fresh` redoes them all):

1. **logs**: build the ground-truth world and log it with the biased behaviour policy in
   KuaiRand's schema (`simulators.generate`); or take real KuaiRand logs with ``--data DIR``,
   in which case there is no ground truth and the world backend is skipped.
2. **simulator**: fit the learned user simulator on those logs (`simulators.train`).
3. **asa**: turn the logs into SCRI samples by Adjacent State Approximation (`data.asa`), once
   per evaluation backend: the samples carry the backend's user/author ids and static features,
   so a model trained on them addresses the right id embeddings (`asa_samples(backend=...)`).
   Both sample sets hold exactly the same logged rows.
4. **agents** (one checkpoint per agent and training seed), every one from the same logs:
   - offline: RankingModel = DeepFM fitted on the logs and ranking by P(click) (the paper's
     RankingModel, "best on CTR"); RLIV-UA and its ablations on the ASA samples (w/o MT: the
     watch-time tower only; w/o SL: no r_hat + gamma * V split; w/o MT & SL: both); CQL
     (Tianshou) on an offline buffer logged *in the learned simulator* by the noisy projected
     DeepFM (`agents.continuous.collect_offline_buffer`: logged KuaiRand rows do not hold the
     linear ranking weights CQL acts with, so its transitions have to come from a rollout of
     a log-like policy in the simulator of the logs; one buffer, shared by CQL's seeds);
   - online on the learned simulator: DQN, TD3 (linear ranking weights) and RLUR (TD3 over the
     fusion weights of the seed's DeepFM predictions, `agents.rlur`);
   - reference rows (`agents.references`): random; the click ranker and the myopic watch
     ranker (one `RankingModel` fit on the logs per seed, viewed two ways); longest-first and
     duration+diversity (observation rules); the patience oracle, which reads the world's
     hidden state and is evaluated on the world only. The long-term claim "RLIV-UA beats the
     myopic watch ranker" (watch time, session length) sits beside the paper's claims.
   The gift tower and the assistance gift net of RLIV-UA do not exist here, as in the paper's
   offline study: KuaiRand-schema logs carry no gift signal (`simulators.scri.tasks_for`).
5. **evaluate**: every agent on `recgym/UserAuthor-v0` over the learned simulator AND over the
   ground-truth world as it stood after writing the logs (backend "world", ``world_dir`` = the
   logs: the user state the simulator learned starts from); one JSONL row per agent x backend x
   seed in ``rows.jsonl``.
6. **report**: Table 2 / Table 3 layouts as markdown + CSV, a bar plot, the paper's numbers and
   a reproduced / contradicted / inconclusive verdict per claim computed from the rows
   (regenerated from the JSONL, never edited by hand; ``--report-only`` redoes just this).

Seeds: seed s is a *training* seed and an *evaluation* seed at once (the quick preset has 3,
the full one 5; claims are judged on the paired per-seed differences, `benchmarks.claims`).
Every trained agent is trained once per seed (initialisation, minibatch order, exploration, id
dropout) on the same logs, simulator and offline buffer, and evaluated on fresh envs reset with
seed s; the interval over seeds therefore covers training and evaluation noise, not the
randomness of the world, the logs or the simulator fit (one of each per run, from
``--world-seed``).

RLIV-UA's target-network rate: the paper's Table 1 says tau = 0.005 with 250 x 1e4 steps of
1024 samples; a CPU budget of a few hundred steps leaves the values mostly unpropagated at that
rate (`agents.rliv_ua.train_rliv_ua`). This benchmark therefore uses tau = 0.05 for 600 steps of
256 samples in ``--quick`` (30 full target moves; the SCRI learning test's LIVs come within
~5 % of the truth at this budget) and tau = 0.02 for 2000 steps of 1024 samples in the full
run (40 moves). ``--rliv-tau 0.005`` restores Table 1's value.

Cost on 2 CPU cores: ``--quick`` took 14.5 min (872 s with the reference rows, cores shared
with another bench; measured, results in `benchmarks/results/rliv_ua/quick`); the full preset
(a 1000-user world, 14 days, 5 seeds, 5x the online and 6x the CQL budgets) is estimated at
about 2 hours from the quick run's per-step costs and has not been run. ``--tiny`` is the smoke
test (about 20 s).

Metrics (`envs.evaluation.METRICS` plus gifts): per session, requests (session length), watch
seconds, CTR (pooled over shown items), distinct categories shown (our "diversity": the paper's
is an unspecified 0-1 score), new follows, and gifts, which only the ground-truth world
produces (counted here from the step infos; a learned simulator of KuaiRand has no gifts).
"""

from recgym.benchmarks.rliv_ua.evaluate import eval_cells, load_policy, play_seed, read_rows
from recgym.benchmarks.rliv_ua.runner import _parser as _parser
from recgym.benchmarks.rliv_ua.runner import config_from_args, main, run
from recgym.benchmarks.rliv_ua.spec import (
    AGENTS,
    BACKENDS,
    PAPER_TABLE2,
    PAPER_TABLE3,
    PRESETS,
    REFERENCES,
    RLIV_VARIANTS,
    TABLE2,
    TABLE3,
    TABLE_METRICS,
    WORLD_ONLY,
    AgentInfo,
    BenchConfig,
)
from recgym.benchmarks.rliv_ua.stages import Job
from recgym.benchmarks.rliv_ua.tables import (
    VERDICT_WORDS,
    Claim,
    Verdict,
    aggregate,
    all_claims,
    judge,
    long_term_claims,
    paper_claims,
    paper_verdict,
    report,
)

__all__ = [
    "AGENTS",
    "BACKENDS",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PRESETS",
    "REFERENCES",
    "RLIV_VARIANTS",
    "TABLE2",
    "TABLE3",
    "TABLE_METRICS",
    "VERDICT_WORDS",
    "WORLD_ONLY",
    "AgentInfo",
    "BenchConfig",
    "Claim",
    "Job",
    "Verdict",
    "aggregate",
    "all_claims",
    "config_from_args",
    "eval_cells",
    "judge",
    "load_policy",
    "long_term_claims",
    "main",
    "paper_claims",
    "paper_verdict",
    "play_seed",
    "read_rows",
    "report",
    "run",
]
