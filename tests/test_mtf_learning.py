"""Enhanced-State RL-MTF learning tests (issue 11).

Default run: on the tiny world (as it stood after its logs, MTL fitted on those logs),
Enhanced-State RL-MTF trained on data explored around mu_bp ranks the mu_bp-logged test set
better than mu_bp (weighted GAUC, paired over 5 evaluation seeds).

Slow, and expected to fail (strict xfail, so a change that makes it pass is reported): the
issue's full claim - Enhanced-State beats mu_bp on UVC too, and beats the per-request
IntegratedRL-MTF on GAUC and UVC. Measured on 2026-11-26 on the tiny world with the code of
this commit: every one of the four verdicts *contradicted* (Enhanced - mu_bp: GAUC -0.010
[-0.014, -0.005], UVC -2.8 [-4.2, -1.4]; Enhanced - IntegratedRL-MTF: GAUC -0.072 [-0.083,
-0.062], UVC -10.4 [-13.5, -7.3]); variants tried (no unshown rows, lambda 2 / eta 3, gamma 0)
did not turn UVC positive. No world configuration where the best fusion depends on the item
was made: the default world was assumed to have that property, and this test is where it
would show; it does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recgym.agents import enhanced_state_mtf as esm
from recgym.agents.mtf_data import (
    Exploration,
    FixedFusion,
    UserBounds,
    collect_transitions,
    evaluate_online,
)
from recgym.agents.mtf_data import (
    test_scores as mtf_test_scores,
)
from recgym.benchmarks.claims import Claim, judge
from recgym.benchmarks.metrics import weighted_gauc
from recgym.envs.mtf import MTFCore


@pytest.fixture(scope="module")
def mtl_path(tiny_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from recgym.agents.mtl import MTLConfig, MTLModel
    from recgym.data.loaders import load

    model = MTLModel(MTLConfig(epochs=3, min_steps=200))
    model.fit(load(tiny_logs, cache=False))
    return model.save(tmp_path_factory.mktemp("mtl") / "mtl.pt")


def _setup(world_dir: Path, mtl: Path, explore_episodes: int) -> tuple:
    core = MTFCore(world_dir=str(world_dir), mtl=str(mtl), n_slots=64)
    bounds = UserBounds.make(core.model.n_users, 0.3, seed=1)
    d0 = collect_transitions(core, Exploration(FixedFusion(), bounds, seed=2), explore_episodes, 5)
    return core, bounds, d0


def _gaucs(core: MTFCore, policies: dict, seeds: range) -> dict[str, dict[int, float]]:
    zero = UserBounds(np.zeros((core.model.n_users, 10)), np.zeros((core.model.n_users, 10)))
    out: dict[str, dict[int, float]] = {name: {} for name in policies}
    for s in seeds:
        test = collect_transitions(core, Exploration(FixedFusion(), zero, seed=s), 2, 100 + s)
        for name, policy in policies.items():
            out[name][s] = weighted_gauc(**mtf_test_scores(policy, test, core))
    return out


@pytest.mark.learning
def test_enhanced_state_beats_the_baseline_it_explored_around_on_weighted_gauc(
    tiny_logs: Path, mtl_path: Path
) -> None:
    core, _, d0 = _setup(tiny_logs, mtl_path, explore_episodes=6)
    algo, _ = esm.train(d0, esm.MTFRLConfig(gradient_steps=150, batch_size=32, seed=0))
    g = _gaucs(core, {"enhanced": algo.policy, "mu_bp": FixedFusion()}, range(5))
    v = judge(Claim(metric="weighted_gauc", a="enhanced", b="mu_bp"), g["enhanced"], g["mu_bp"])
    assert v.verdict == "reproduced", v


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.xfail(
    strict=True,
    reason="measured 2026-11-26: Enhanced-State loses to mu_bp on UVC and to IntegratedRL-MTF "
    "on GAUC and UVC (module docstring)",
)
def test_enhanced_state_beats_integrated_and_mu_bp_online(tiny_logs: Path, mtl_path: Path) -> None:
    """The larger run: GAUC and UVC vs mu_bp, and GAUC and UVC vs IntegratedRL-MTF trained on
    the same data with the same budget, paired over 5 evaluation seeds."""
    core, _, d0 = _setup(tiny_logs, mtl_path, explore_episodes=12)
    enhanced, _ = esm.train(d0, esm.MTFRLConfig(gradient_steps=400, batch_size=64, seed=0))
    integrated, _ = esm.train(
        d0, esm.MTFRLConfig(per_item=False, gradient_steps=400, batch_size=256, seed=0)
    )
    policies = {
        "enhanced": enhanced.policy,
        "integrated": integrated.policy,
        "mu_bp": FixedFusion(),
    }
    g = _gaucs(core, policies, range(5))
    uvc = {
        name: {s: evaluate_online(core, p, 4, seed=200 + s)["uvc"] for s in range(5)}
        for name, p in policies.items()
    }
    verdicts = {
        (rival, metric): judge(
            Claim(metric=metric, a="enhanced", b=rival), values["enhanced"], values[rival]
        )
        for rival in ("mu_bp", "integrated")
        for metric, values in (("weighted_gauc", g), ("valid_consumption", uvc))
    }
    summary = {
        k: (v.verdict, round(v.diff, 4), round(v.low, 4), round(v.high, 4))
        for k, v in verdicts.items()
    }
    assert all(v.verdict == "reproduced" for v in verdicts.values()), summary
