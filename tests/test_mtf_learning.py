"""Enhanced-State RL-MTF learning tests (issue 11).

Default run: on the tiny world (as it stood after its logs, MTL fitted on those logs),
Enhanced-State RL-MTF trained on data explored around mu_bp ranks the mu_bp-logged test set
better than mu_bp (weighted GAUC, paired over 5 evaluation seeds).

Does the best fusion depend on the item? Measured with scratch scripts (exploratory, not a repo
command) on the tiny default world (64 users x 4 episodes x 3 seeds): ranking by the MTL's
p_valid alone (a per-request fusion: power 1 on p_valid, 0 on the rest) gives 35.3 valid
consumptions per session against mu_bp's 24.0, and the per-item fusion that also demotes long
items (power on p_valid raised with the item's standardised log duration, 0.1 per std:
expressible only per item, since the product form's powers are >= 0) 36.9: the property holds
but is small. `TIME_PRESSED` is a world configuration made for the Integrated comparison where
it is large: watching costs 1.5x the calibrated patience per minute
(`Dynamics.patience_per_minute` 0.18 instead of 0.12), so long items end sessions sooner; there
the same per-item rule (0.4 per std) gives 13.5 against 9.7 for p_valid alone and 11.7 for the
best of 24 random per-request fusions. `test_the_time_pressed_world_rewards_a_per_item_fusion`
checks that property (``pytest -s`` prints its paired differences).

Slow (``pytest -m slow -s``, about 7 minutes; each prints its verdicts): with the paper-like
budget of 192 exploration episodes per slot and 16,000 gradient steps, one trained model per
test, Enhanced-State ranks above mu_bp on weighted GAUC and UVC in the default world, and above
IntegratedRL-MTF (same data, same steps) on both in the time-pressed world, each paired over 5
evaluation seeds. Measured when written: default world, Enhanced - mu_bp GAUC +0.158 [0.145,
0.172], UVC +8.9 [7.3, 10.6]; time-pressed world, Enhanced - IntegratedRL-MTF GAUC +0.178
[0.169, 0.188], UVC +3.2 [1.9, 4.4]. In exploratory runs (scratch scripts) on the default world
Enhanced-State stayed below IntegratedRL-MTF on UVC at 16,000 steps (-2.6 [-4.9, -0.2]) and
reached 37.4 at 32,000; no test runs that. With 12 exploration episodes and 400 steps
Enhanced-State is below mu_bp on UVC (the ranked critic's values are then close to the
items' immediate rewards, which favour long items; `agents.enhanced_state_mtf`, "The item critic").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from recgym.agents import enhanced_state_mtf as esm
from recgym.agents.mtf_data import (
    BASELINE_ACTION,
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
from recgym.envs.mtf import ACTION_DIM, MTF_CANDIDATE_FEATURES, MTFCore


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


TIME_PRESSED = {"patience_per_minute": 0.18}
"""`Dynamics` overrides of the item-dependent world (module docstring)."""
PV_ONLY = np.array([0.0, -1, -1, -1, -1, -1, 0, 0, 0, 0])
"""The per-request fusion "p_valid alone": power 1 on p_valid, 0 on the rest, bias 0.01."""
EXPLORE, STEPS = 192, 16_000


@pytest.fixture(scope="module")
def time_pressed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny world with `TIME_PRESSED` dynamics: its logs (4 days) and an MTL fitted on
    them."""
    from recgym.agents.mtl import MTLConfig, MTLModel
    from recgym.data.loaders import load
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import Dynamics, WorldConfig

    from .conftest import TINY_WORLD

    out = tmp_path_factory.mktemp("time_pressed")
    generate(
        out,
        WorldConfig(**TINY_WORLD),
        LogConfig(days=4, seed=11),
        progress=False,
        dynamics=Dynamics(**TIME_PRESSED),
    )
    model = MTLModel(MTLConfig(epochs=3, min_steps=200))
    model.fit(load(out, cache=False))
    return out, model.save(out / "mtl.pt")


@dataclass
class DurationAware:
    """A per-item fusion: `base` for every item, with the power on p_valid raised by ``c``
    per standard deviation of the item's log duration above the request's mean (so, as
    log(p + b) < 0, long items score lower)."""

    base: np.ndarray
    c: float
    per_item: bool = True

    def actions(self, obs: dict) -> np.ndarray:
        rows = np.asarray(obs["candidates"], dtype=np.float64)
        d = rows[..., MTF_CANDIDATE_FEATURES.index("log_duration")]
        z = (d - d.mean(1, keepdims=True)) / (d.std(1, keepdims=True) + 1e-6)
        a = np.broadcast_to(self.base, (*rows.shape[:2], ACTION_DIM)).copy()
        a[..., 0] = np.clip(a[..., 0] + self.c * z, -1.0, 1.0)
        return a


def _uvc(core: MTFCore, policy, seeds: range) -> dict[int, float]:
    return {s: evaluate_online(core, policy, 4, seed=200 + s)["uvc"] for s in seeds}


def test_the_time_pressed_world_rewards_a_per_item_fusion(time_pressed) -> None:
    """The world the Integrated comparison runs on has the property it needs: a per-item
    fusion beats p_valid alone, mu_bp and the best of 16 random per-request fusions (chosen on
    other seeds), paired over 5 evaluation seeds."""
    world, mtl = time_pressed
    core = MTFCore(world_dir=str(world), mtl=str(mtl), n_slots=64)
    rng = np.random.default_rng(0)
    draws = rng.uniform(-1, 1, (16, ACTION_DIM))
    picked = max(
        draws, key=lambda a: np.mean(list(_uvc(core, FixedFusion(a), range(90, 92)).values()))
    )
    per_item = _uvc(core, DurationAware(PV_ONLY, 0.4), range(5))
    for name, action in (("p_valid", PV_ONLY), ("mu_bp", BASELINE_ACTION), ("best random", picked)):
        rival = _uvc(core, FixedFusion(action), range(5))
        v = judge(Claim(metric="valid_consumption", a="per-item", b=name), per_item, rival)
        print(f"per-item - {name} UVC: {v.diff:.2f} [{v.low:.2f}, {v.high:.2f}]")  # pytest -s
        assert v.verdict == "reproduced", (name, v)


def _verdicts(enhanced, rival, core: MTFCore, rival_name: str) -> dict:
    policies = {"enhanced": enhanced, rival_name: rival}
    g = _gaucs(core, policies, range(5))
    uvc = {name: _uvc(core, p, range(5)) for name, p in policies.items()}
    return {
        metric: judge(
            Claim(metric=metric, a="enhanced", b=rival_name), v["enhanced"], v[rival_name]
        )
        for metric, v in (("weighted_gauc", g), ("valid_consumption", uvc))
    }


def _summary(verdicts: dict) -> dict:
    return {
        k: (v.verdict, round(v.diff, 4), round(v.low, 4), round(v.high, 4))
        for k, v in verdicts.items()
    }


@pytest.mark.slow
@pytest.mark.learning
def test_enhanced_state_beats_the_baseline_online_in_the_default_world(
    tiny_logs: Path, mtl_path: Path
) -> None:
    """GAUC and UVC against mu_bp, the policy it explored around (paired, 5 seeds)."""
    core, _, d0 = _setup(tiny_logs, mtl_path, explore_episodes=EXPLORE)
    enhanced, _ = esm.train(d0, esm.MTFRLConfig(gradient_steps=STEPS, batch_size=64, seed=0))
    verdicts = _verdicts(enhanced.policy, FixedFusion(), core, "mu_bp")
    print(_summary(verdicts))  # the figures the README quotes (pytest -s)
    assert all(v.verdict == "reproduced" for v in verdicts.values()), _summary(verdicts)


@pytest.mark.slow
@pytest.mark.learning
def test_enhanced_state_beats_integrated_where_the_best_fusion_depends_on_the_item(
    time_pressed,
) -> None:
    """GAUC and UVC against IntegratedRL-MTF trained on the same data with the same number
    of gradient steps, in the time-pressed world (paired, 5 seeds)."""
    world, mtl = time_pressed
    core, _, d0 = _setup(world, mtl, explore_episodes=EXPLORE)
    enhanced, _ = esm.train(d0, esm.MTFRLConfig(gradient_steps=STEPS, batch_size=64, seed=0))
    integrated, _ = esm.train(
        d0, esm.MTFRLConfig(per_item=False, gradient_steps=STEPS, batch_size=256, seed=0)
    )
    verdicts = _verdicts(enhanced.policy, integrated.policy, core, "integrated")
    print(_summary(verdicts))  # the figures the README quotes (pytest -s)
    assert all(v.verdict == "reproduced" for v in verdicts.values()), _summary(verdicts)
