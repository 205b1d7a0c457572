"""Learning tests on a world: RLIV-UA (item-aware state) trained offline on ASA samples of the
world's logs, evaluated on that world against the click ranker and the myopic watch-time ranker.

The world has a known long-term effect (`simulators.world`): clickbait and repetition drain a
user's patience and end sessions early, satisfying items and user-author bonds build value over
later interactions. A click-greedy ranker wins CTR and loses watch time; the myopic watch-time
ranker already maximises each request's watch time, so beating it needs the long term.

Pairing: RLIV-UA is trained with seeds 0 and 1; every agent is evaluated with evaluation seeds
0-4 (under a seed every agent meets the same users in the same order); a claim is judged on the
per-evaluation-seed differences (RLIV-UA averaged over its two training seeds), 95% t-interval
(`benchmarks.claims.judge`). Both tests take minutes: marked slow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

WORLD = {"n_users": 300, "n_items": 1000, "n_authors": 100, "seed": 0}
ENV_KWARGS = {"world_config": WORLD, "max_steps": 50}
EVAL_SEEDS = (0, 1, 2, 3, 4)
TRAIN_SEEDS = (0, 1)
EPISODES = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world's effect checked, then every agent's per-seed metrics on the world."""
    from recgym import data
    from recgym.agents.baselines import RankerConfig, RankingModel
    from recgym.agents.references import rankers_from_model
    from recgym.agents.rliv_ua import LIVSlatePolicy, RLIVUAConfig, train_rliv_ua
    from recgym.data.asa import asa_samples
    from recgym.envs import make_env
    from recgym.envs.evaluation import evaluate
    from recgym.simulators import oracle
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import World, WorldConfig

    # the world has the long-term effect: protecting patience beats click-greedy on watch time
    world = World(WorldConfig(**WORLD))
    users = np.arange(WORLD["n_users"])
    watch = {}
    for policy in (oracle.greedy_click, oracle.patience_keeper):
        world.reset_state()
        sessions = oracle.run_sessions(world, policy, users, np.random.default_rng(0), max_steps=50)
        watch[policy.__name__] = sessions["watch_s"].mean()
    assert watch["patience_keeper"] > 1.5 * watch["greedy_click"], watch

    logs = tmp_path_factory.mktemp("learning_world")
    generate(logs, WorldConfig(**WORLD), LogConfig(days=4, seed=0), progress=False)
    ds = data.load(logs)

    def env_fn(seed: int):
        return make_env("recgym/UserAuthor-v0", **ENV_KWARGS)

    samples = asa_samples(ds, backend=env_fn(0).unwrapped.model)  # the world's ids
    ranker = RankingModel(RankerConfig(epochs=4), target="click")
    ranker.fit(ds)
    click, myopic = rankers_from_model(ranker)
    out = {
        "click ranker": evaluate(click, env_fn, episodes=EPISODES, seeds=EVAL_SEEDS),
        "myopic watch ranker": evaluate(myopic, env_fn, episodes=EPISODES, seeds=EVAL_SEEDS),
    }
    for seed in TRAIN_SEEDS:
        # tau 0.05 for 600 steps: Table 1's 0.005 needs far more steps (see train_rliv_ua)
        config = RLIVUAConfig(
            tasks=samples.tasks, tau=0.05, epochs=2, steps_per_epoch=300, batch_size=256, seed=seed
        )
        algo, _ = train_rliv_ua(samples.buffer, config, progress=False)
        policy = LIVSlatePolicy(algo)
        out[f"RLIV-UA seed {seed}"] = evaluate(policy, env_fn, episodes=EPISODES, seeds=EVAL_SEEDS)
    return out


def _paired(runs: dict[str, Any], rival: str, metric: str) -> Any:
    """RLIV-UA (mean over its training seeds) vs `rival` on `metric`, paired by eval seed."""
    from recgym.benchmarks import claims

    rliv = np.mean([runs[f"RLIV-UA seed {s}"][metric]["per_seed"] for s in TRAIN_SEEDS], axis=0)
    other = runs[rival][metric]["per_seed"]
    claim = claims.Claim(metric=metric, a="RLIV-UA", b=rival)
    return claims.judge(claim, dict(enumerate(rliv)), dict(enumerate(other)))


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.timeout(900)
def test_rliv_ua_from_world_logs_beats_the_click_ranker_on_world_watch_time(runs) -> None:
    click = runs["click ranker"]
    for seed in TRAIN_SEEDS:
        res = runs[f"RLIV-UA seed {seed}"]
        liv, base = res["watch_time_s"], click["watch_time_s"]
        summary = {"seed": seed, "rliv_ua": liv, "click_ranker": base}
        # a margin over seeds: 30% more watch on average, and the 95% intervals apart
        assert liv["mean"] >= 1.3 * base["mean"], summary
        assert liv["ci_low"] > base["ci_high"], summary
        # it is the trade-off at work: the click ranker keeps the higher CTR
        assert click["ctr"]["mean"] > res["ctr"]["mean"], (click["ctr"], res["ctr"])
    assert _paired(runs, "click ranker", "watch_time_s").verdict == "reproduced"


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.timeout(900)
@pytest.mark.xfail(
    strict=False,
    reason="measured 2026-11-26 (item-aware RLIV-UA, this test's world, budgets and steps): "
    "watch time per session RLIV-UA 309 (training seed 0) / 303 (seed 1) vs the myopic "
    "watch ranker 267 s; paired difference per evaluation seed "
    "-10, +132, +19, +41, +13 s, mean +39 [95%: -30, +107]: inconclusive. Session length 5.17 / "
    "5.15 vs 5.50, mean -0.34 [-1.26, +0.58]: inconclusive, mean against RLIV-UA. (Author-only "
    "variant: +43 s [-10, +95], -0.27 [-0.94, +0.40].)",
)
def test_rliv_ua_beats_the_myopic_watch_ranker_on_the_world(runs) -> None:
    """Issue 14 point 6: the long-term claim, RLIV-UA above the myopic watch-time ranker on
    watch time or session length on the world (paired interval excluding 0)."""
    verdicts = [_paired(runs, "myopic watch ranker", m) for m in ("watch_time_s", "session_length")]
    assert any(v.verdict == "reproduced" for v in verdicts), verdicts


def test_the_paired_judgement_reads_rliv_ua_over_its_training_seeds() -> None:
    """`_paired` averages RLIV-UA over its training seeds before pairing by evaluation seed."""
    runs = {
        "RLIV-UA seed 0": {"watch_time_s": {"per_seed": [3.0, 4.0, 5.0]}},
        "RLIV-UA seed 1": {"watch_time_s": {"per_seed": [5.0, 6.0, 7.0]}},
        "rival": {"watch_time_s": {"per_seed": [1.0, 2.0, 3.1]}},
    }
    verdict = _paired(runs, "rival", "watch_time_s")
    assert verdict.diff == pytest.approx(2.9666, abs=1e-3) and verdict.seeds == (0, 1, 2)
    assert verdict.verdict == "reproduced"
