"""The simulator fit's training step (`simulators.learned.fit._TrainStep`, issue 16): eager on
the CPU, unchanged; on CUDA each full batch's step is replayed as a CUDA graph.

The graph path's bookkeeping (warm-up, capture, static copies of each batch, eager partial
batches, the tensor learning rate, the fallback when capture fails) is checked on the CPU with
the CUDA parts emulated (`_CpuGraphStep`): a replay there reruns the recorded step on the static
tensors with fresh gradients, which is what a graph's replay computes. That the step contains
nothing a capture forbids is checked by op name; the real capture runs where CUDA exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from recgym.data import load
from recgym.simulators.learned import LearnedSimulator, SimulatorConfig, build_log_table
from recgym.simulators.learned import fit as fit_module
from recgym.simulators.learned.fit import _TrainStep


class _CpuReplay:
    """What replaying a captured step computes: the step on the static tensors, gradients
    written afresh, results in the same output tensors."""

    def __init__(self, step: _CpuGraphStep) -> None:
        self.step = step

    def replay(self) -> None:
        step = self.step
        step.opt.zero_grad(set_to_none=True)
        out = step.fn(step._static)
        if not step._out:
            step._out = out
        for key, value in out.items():
            step._out[key].copy_(value)


class _CpuGraphStep(_TrainStep):
    """`_TrainStep`'s graph path with its CUDA calls emulated on the CPU (see the module doc).
    Like a real capture, `_capture` records the step without running it."""

    GRAPH_DEVICES = ("cuda", "cpu")
    made: list[_CpuGraphStep] = []
    refuse: str | None = None  # a capture error to raise

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _CpuGraphStep.made.append(self)

    def _warm(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self._eager(batch)

    def _capture(self, batch: dict[str, torch.Tensor]) -> None:
        if self.refuse:
            raise RuntimeError(self.refuse)
        self._static = {key: value.clone() for key, value in batch.items()}
        self.opt.zero_grad(set_to_none=True)
        self._out = {}
        self._graph = _CpuReplay(self)

    def _after_failed_capture(self) -> None:
        pass


CONFIG = {
    "epochs": 2,
    "hidden": (32,),
    "embedding_dim": 8,
    "author_dim": 4,
    "batch_size": 256,
    "leave_steps": 40,
    "leave_batch_size": 512,
    "heldout_days": 1,
}


@pytest.fixture(scope="module")
def table(tiny_logs: Path) -> Any:
    return build_log_table(load(tiny_logs), SimulatorConfig(**CONFIG))


def _weights(sim: LearnedSimulator) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value.detach().cpu().clone()
        for name, model in (("response", sim.response), ("leave", sim.leave))
        for key, value in model.state_dict().items()
    }


def _emulated_fit(
    table: Any, monkeypatch: pytest.MonkeyPatch, warmup: int, refuse: str | None = None
) -> tuple[LearnedSimulator, list[_CpuGraphStep]]:
    monkeypatch.setattr(fit_module, "_TrainStep", _CpuGraphStep)
    monkeypatch.setattr(_CpuGraphStep, "WARMUP", warmup)
    monkeypatch.setattr(_CpuGraphStep, "refuse", refuse)
    monkeypatch.setattr(_CpuGraphStep, "made", [])
    sim = LearnedSimulator.fit(table, device="cpu", graph=True)
    return sim, list(_CpuGraphStep.made)


def test_the_cpu_fit_is_eager_and_refuses_a_graph(table: Any) -> None:
    sim = LearnedSimulator.fit(table, device="cpu")
    assert sim.fit_report == {"graph": False, "graph_error": None}
    with pytest.raises(ValueError, match="graph=True needs a CUDA device"):
        LearnedSimulator.fit(table, device="cpu", graph=True)


def test_graph_adam_reads_a_tensor_rate_that_the_schedule_moves() -> None:
    model = torch.nn.Linear(3, 2)
    opt = fit_module._adam(model, 2e-3, 0.0, torch.device("cpu"), graph=True)
    schedule = fit_module._cosine(opt, 4)
    group = opt.param_groups[0]
    assert group["capturable"] and group["fused"]
    rate = group["lr"]
    assert isinstance(rate, torch.Tensor)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    schedule.step()
    schedule.step()  # the same tensor, filled in place (a replay reads its address)
    assert group["lr"] is rate and float(rate) == pytest.approx(1e-3)
    assert opt.state[model.weight]["step"].device == model.weight.device


def test_replayed_steps_train_exactly_like_eager_ones(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, eager_steps = _emulated_fit(table, monkeypatch, warmup=10**9)
    assert eager.fit_report == {"graph": False, "graph_error": None}
    assert all(step.replays == 0 for step in eager_steps)
    graphed, steps = _emulated_fit(table, monkeypatch, warmup=3)
    assert graphed.fit_report == {"graph": True, "graph_error": None}
    # every full batch after the warm-up was replayed; each epoch's short last batch was not
    cfg = table.config
    rows = table.rows("train")
    n_rows = len(rows) + int(table.is_random[rows].sum()) * (cfg.random_oversample - 1)
    full, partial = divmod(n_rows, cfg.batch_size)
    assert partial > 0 and full > 3
    response, leave = steps
    assert response.replays == cfg.epochs * full - 3
    assert leave.replays == cfg.leave_steps - 3
    a, b = _weights(eager), _weights(graphed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_a_failed_capture_is_reported_and_the_fit_goes_on_eagerly(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    eager, _ = _emulated_fit(table, monkeypatch, warmup=10**9)
    failed, steps = _emulated_fit(table, monkeypatch, warmup=3, refuse="capture refused")
    assert failed.fit_report == {"graph": False, "graph_error": "RuntimeError: capture refused"}
    assert all(step.error and not step.graph for step in steps)
    a, b = _weights(eager), _weights(failed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_the_training_steps_never_synchronise_with_the_host(
    table: Any, monkeypatch: pytest.MonkeyPatch, sync_check: type
) -> None:
    """What capture needs, over every op of the steps (forward, loss, backward, the fused
    Adam step): checked on the graph path's own optimiser and batches."""
    seen: list[str] = []

    class Checked(_CpuGraphStep):
        def _eager(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            self.opt.zero_grad(set_to_none=True)
            with sync_check() as check:
                out = self.fn(batch)
            seen.extend(check.seen)
            return out

    monkeypatch.setattr(fit_module, "_TrainStep", Checked)
    monkeypatch.setattr(Checked, "WARMUP", 10**9)
    sim = LearnedSimulator.fit(table, device="cpu", graph=True)
    assert sim.fit_report["graph"] is False
    assert seen == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_fit_matches_the_eager_cuda_fit(table: Any) -> None:
    graphed = LearnedSimulator.fit(table, device="cuda")
    assert graphed.fit_report == {"graph": True, "graph_error": None}
    eager = LearnedSimulator.fit(table, device="cuda", graph=False)
    assert eager.fit_report["graph"] is False
    a, b = _weights(eager), _weights(graphed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_click_calibration_on_random_exposures(table: Any) -> None:
    """`calibrate_click_on_random`: after the fit, the training rows' uniformly random exposures
    are predicted at their observed click rate; off (the default), nothing moves but the
    click intercept."""
    import dataclasses

    rows = table.rows("train")
    random_rows = rows[table.is_random[rows]]
    assert len(random_rows) > 50
    observed = table.labels["click"][random_rows].mean()

    def predicted(sim: LearnedSimulator) -> float:
        with torch.no_grad():
            out = sim.response(**fit_module._RowInputs(sim, table)(torch.from_numpy(random_rows)))
        return float(torch.sigmoid(out[:, 0]).mean())

    plain = LearnedSimulator.fit(table, device="cpu")
    calibrated_table = dataclasses.replace(
        table, config=dataclasses.replace(table.config, calibrate_click_on_random=True)
    )
    calibrated = LearnedSimulator.fit(calibrated_table, device="cpu")
    assert abs(predicted(plain) - observed) > 1e-3  # something to calibrate
    assert predicted(calibrated) == pytest.approx(observed, abs=1e-5)
    a, b = _weights(plain), _weights(calibrated)
    moved = [key for key in a if not torch.equal(a[key], b[key])]
    assert moved == ["response.head.bias"]
    assert torch.equal(a["response.head.bias"][1:], b["response.head.bias"][1:])
