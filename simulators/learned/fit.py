"""Fitting a `LearnedSimulator`: the response model's and the leave model's training loops."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from recgym.device import resolve_device

from .config import CONDITIONAL
from .leave import LEAVE_CLIP, LeaveModel, leave_dim, logged_leave_features
from .response import ResponseModel, Vocab, ratio_class
from .table import LogTable, affinity_features, context_features

if TYPE_CHECKING:
    from .simulator import LearnedSimulator


def fit_simulator(
    cls: type[LearnedSimulator],
    table: LogTable,
    progress: bool = False,
    device: str | torch.device = "auto",
    graph: bool | None = None,
) -> LearnedSimulator:
    """Fit the response and leave models on the training sessions of `table`.

    Uses `config.torch_threads` threads and seeds torch's weight initialisation and batch
    order from `config.seed` (a local generator; the global torch seed is left alone, and the
    previous thread count is restored). The models train on `device` (`recgym.device`); the
    weights are initialised on the CPU and the batch order and dropout masks come from a CPU
    generator, so one seed gives the same initial weights and the same batches on any device.
    The labels, the leave model's features and every row's response-model inputs
    (`_RowInputs`) are copied to the device once; each batch is gathered there, so a GPU fit
    does no per-batch host work beyond drawing the batch order.

    `graph` (default: on CUDA) replays each full batch's optimisation step as a CUDA graph
    (`_TrainStep`); how the fit went is in ``sim.fit_report`` (``graph``: whether any step
    was replayed, ``graph_error``: why capture failed, if it did; the fit then went on
    eagerly). The CPU path is the eager loop, unchanged.
    """
    device = resolve_device(device)
    graph = device.type == "cuda" if graph is None else bool(graph)
    if graph and device.type not in _TrainStep.GRAPH_DEVICES:
        raise ValueError(f"graph=True needs a CUDA device, got {device}")
    cfg = table.config
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.torch_threads)
    try:
        gen = torch.Generator().manual_seed(cfg.seed)
        train_users = np.bincount(table.user[table.rows("train")], minlength=len(table.user_ids))
        vocab = Vocab(
            user_row=Vocab.rows(train_users * cfg.user_embedding),
            item_row=Vocab.rows(table.train_item_count, cfg.min_item_count),
            author_row=Vocab.rows(table.train_author_count),
            category_row=Vocab.rows(table.train_category_count),
            top_row=Vocab.rows(table.train_top_count),
            tabs=table.train_tabs,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            response = ResponseModel(**vocab.sizes(), user_dim=table.user_x.shape[1], config=cfg)
            leave = LeaveModel(leave_dim(table.user_x.shape[1], cfg), cfg)
        sim = cls(
            config=cfg,
            catalogue=table.catalogue,
            user_x=table.user_x,
            user_ids=table.user_ids,
            item_ids=table.item_ids,
            initial_state=table.final_state(),
            vocab=vocab,
            response=response,
            leave=leave,
            device=device,
        )
        rows = table.rows("train")
        steps = [_fit_response(sim, table, rows, gen, progress, graph)]
        if cfg.calibrate_click_on_random:
            _calibrate_click_on_random(sim, table, rows)
        steps.append(_fit_leave(sim, table, rows, gen, progress, graph))
        sim.fit_report = {
            "graph": any(step.replays > 0 for step in steps),
            "graph_error": next((step.error for step in steps if step.error), None),
        }
    finally:
        torch.set_num_threads(threads)
    sim.response.eval()
    sim.leave.eval()
    return sim


def _fit_response(
    sim: LearnedSimulator,
    table: LogTable,
    rows: np.ndarray,
    gen: torch.Generator,
    progress: bool,
    graph: bool = False,
) -> _TrainStep:
    cfg = sim.config
    model = sim.response.train()
    device = sim.device
    opt = _adam(model, cfg.lr, cfg.weight_decay, device, graph)
    extra = np.repeat(rows[table.is_random[rows]], max(cfg.random_oversample - 1, 0))
    rows = np.concatenate([rows, extra])
    schedule = _cosine(opt, cfg.epochs * math.ceil(len(rows) / cfg.batch_size))
    classes = ratio_class(table.ratio, table.complete, cfg.ratio_bins)
    labels = {
        "click": torch.from_numpy(table.labels["click"].astype(np.float32)).to(device),
        "cond": torch.from_numpy(
            np.stack([table.labels[b] for b in CONDITIONAL], axis=1).astype(np.float32)
        ).to(device),
        "ratio": torch.from_numpy(classes).to(device),
    }
    row_inputs = _RowInputs(sim, table)

    def step(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        t_r = batch["rows"]
        inputs = row_inputs(t_r)
        if "unknown" in batch:
            drop = batch["unknown"]
            inputs["item_row"] = inputs["item_row"].masked_fill(drop, 0)
            inputs["author_row"] = inputs["author_row"].masked_fill(drop, 0)
        if "user" in batch:
            inputs["user_row"] = inputs["user_row"].masked_fill(batch["user"], 0)
        out = model(**inputs)
        loss, stats = model.loss(
            out, labels["click"][t_r], labels["cond"][t_r], labels["ratio"][t_r]
        )
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), **stats}

    train = _TrainStep(step, opt, graph)
    n_batches = math.ceil(len(rows) / cfg.batch_size)
    bar = _bar(cfg.epochs * n_batches, "response model", progress)
    for epoch in range(cfg.epochs):
        # the epoch's batch order and dropout masks, drawn on the CPU in the order a batch
        # uses them and copied to the device once (a copy per batch would stall the device)
        perm = rows[torch.randperm(len(rows), generator=gen).numpy()]
        drops: dict[str, list[torch.Tensor]] = {"unknown": [], "user": []}
        for i in range(n_batches):
            size = min(cfg.batch_size, len(perm) - i * cfg.batch_size)
            if cfg.unknown_dropout > 0:
                drops["unknown"].append(torch.rand(size, generator=gen) < cfg.unknown_dropout)
            if cfg.user_dropout > 0:
                drops["user"].append(torch.rand(size, generator=gen) < cfg.user_dropout)
        t_perm = torch.from_numpy(perm).to(device)
        t_drops = {k: torch.cat(v).to(device) for k, v in drops.items() if v}
        for i in range(n_batches):
            batch = slice(i * cfg.batch_size, (i + 1) * cfg.batch_size)
            stats = train({"rows": t_perm[batch], **{k: v[batch] for k, v in t_drops.items()}})
            schedule.step()
            bar.update(1)
            if i % 50 == 0:
                bar.set_postfix(
                    epoch=epoch,
                    loss=f"{stats['loss'].item():.3f}",
                    click=f"{stats['click'].item():.3f}",
                )
    bar.close()
    model.eval()
    return train


class _RowInputs:
    """Every log row's response-model inputs on the simulator's device, gathered per batch.

    The same values `LearnedSimulator._inputs(**table.exposure_inputs(rows))` computes (the
    feature maps are elementwise per row), computed once for the whole table instead of per
    batch; on the CPU the id arrays are shared with the table, not copied.
    """

    def __init__(self, sim: LearnedSimulator, table: LogTable) -> None:
        on, cfg = sim._on_device, sim.config
        self.sim = sim
        self.ids = {
            name: on(getattr(table, name)) for name in ("user", "clicked", "skipped", "item")
        }
        self.features = {
            "affinity": on(affinity_features(table.affinity)),
            "tab_row": on(sim.vocab.tab_rows(table.tab)),
            "context": on(context_features(table.position, table.recency, cfg, table.is_random)),
        }

    def __call__(self, rows: torch.Tensor) -> dict[str, Any]:
        inputs = self.sim._id_inputs(**{name: a[rows] for name, a in self.ids.items()})
        inputs.update({name: a[rows] for name, a in self.features.items()})
        return inputs


def _fit_leave(
    sim: LearnedSimulator,
    table: LogTable,
    rows: np.ndarray,
    gen: torch.Generator,
    progress: bool,
    graph: bool = False,
) -> _TrainStep:
    cfg = sim.config
    x = logged_leave_features(table, rows)
    label = (table.position[rows] == table.session_length[table.session[rows]] - 1).astype(
        np.float32
    )
    model = sim.leave.train()
    low, high = np.quantile(x, [LEAVE_CLIP, 1 - LEAVE_CLIP], axis=0)
    model.low.copy_(torch.from_numpy(low.astype(np.float32)))
    model.high.copy_(torch.from_numpy(high.astype(np.float32)))
    clipped = np.clip(x, low, high)
    model.mean.copy_(torch.from_numpy(clipped.mean(axis=0)))
    model.std.copy_(torch.from_numpy(np.maximum(clipped.std(axis=0), 1e-3)))
    device = sim.device
    opt = _adam(model, cfg.leave_lr, cfg.leave_weight_decay, device, graph)
    t_x, t_y = torch.from_numpy(x).to(device), torch.from_numpy(label).to(device)
    batch = min(cfg.leave_batch_size, len(rows))
    schedule = _cosine(opt, cfg.leave_steps)

    def step(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        r = inputs["rows"]
        loss = F.binary_cross_entropy_with_logits(model(t_x[r]), t_y[r])
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    train = _TrainStep(step, opt, graph)
    bar = _bar(cfg.leave_steps, "leave model", progress)
    perm, used = torch.randperm(len(rows), generator=gen).to(device), 0
    for i in range(cfg.leave_steps):
        if used + batch > len(rows):  # a new pass over the rows
            perm, used = torch.randperm(len(rows), generator=gen).to(device), 0
        stats = train({"rows": perm[used : used + batch]})
        used += batch
        schedule.step()
        bar.update(1)
        if i % 50 == 0:
            bar.set_postfix(loss=f"{stats['loss'].item():.4f}")
    bar.close()
    model.eval()
    # shift the output bias so that expected session ends equal observed ones on the
    # training rows (what an exactly converged logistic fit satisfies): Newton steps
    with torch.no_grad():
        logits = torch.cat([model(t_x[i : i + 65536]) for i in range(0, len(t_x), 65536)])
        model.net[-1].bias += _intercept_shift(logits, t_y).float()
    return train


def _intercept_shift(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The shift s (0-d float64) that makes sum(sigmoid(logits + s)) = sum(labels): Newton
    steps (the condition an exactly converged logistic fit's intercept satisfies)."""
    shift = torch.zeros((), dtype=torch.float64, device=logits.device)
    for _ in range(20):
        p = torch.sigmoid(logits.double() + shift)
        step = (labels.double().sum() - p.sum()) / (p * (1 - p)).sum().clamp(min=1e-9)
        shift += step
        if abs(step) < 1e-6:
            break
    return shift


def _calibrate_click_on_random(sim: LearnedSimulator, table: LogTable, rows: np.ndarray) -> None:
    """Shift the click logit (the head's bias) so that the predicted click rate of the training
    rows' uniformly random exposures equals their observed rate (`SimulatorConfig.
    calibrate_click_on_random`); no random exposures: nothing to do."""
    random_rows = rows[table.is_random[rows]]
    if len(random_rows) == 0:
        return
    model = sim.response.eval()
    row_inputs = _RowInputs(sim, table)
    t_rows = torch.from_numpy(random_rows).to(sim.device)
    labels = torch.from_numpy(table.labels["click"][random_rows].astype(np.float32))
    with torch.no_grad():
        logits = torch.cat(
            [model(**row_inputs(t_rows[i : i + 8192]))[:, 0] for i in range(0, len(t_rows), 8192)]
        )
        model.head.bias[0] += _intercept_shift(logits, labels.to(sim.device)).float()


def _adam(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    device: torch.device,
    graph: bool = False,
) -> torch.optim.Adam:
    """Adam; on CUDA its fused kernel (one launch per step instead of one per parameter group
    and operation: the small models' steps are launch-bound there). The CPU keeps the default
    implementation, so CPU fits are unchanged. For a graphed step (`graph`) the learning rate
    is a tensor on the device and the optimiser capturable: a replayed step then reads the
    rate the schedule set (a float would be frozen into the graph at capture) and counts its
    steps on the device."""
    fused = torch.device(device).type == "cuda" or graph
    if graph:
        rate = torch.tensor(lr, dtype=torch.float32, device=device)
        return torch.optim.Adam(
            model.parameters(), lr=rate, weight_decay=weight_decay, fused=True, capturable=True
        )
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)


class _TrainStep:
    """One optimisation step, run eagerly or replayed as a CUDA graph.

    `fn(batch)` runs the forward pass, the loss, the backward pass and the optimiser step on
    the tensors of `batch` (a dict of tensors on the device) and returns detached statistics.
    Eager (``graph=False``, the CPU path): zero the gradients (to None), call `fn`.

    Graph (CUDA): on a GPU these small models' steps cost more to launch, a few hundred kernels
    one by one from Python, than to run. The first batch fixes the full batch's shapes; the
    first `WARMUP` full batches run eagerly on a side stream (capture needs the optimiser's
    state, cuBLAS's handles and the autograd buffers to exist already), then the next one is
    captured into a graph that reads static copies of the batch tensors and is replayed for it
    and every later full batch (its tensors copied into the static ones first). Replays write
    the gradients rather than add to them (they were None at capture), and the returned
    statistics are the graph's output tensors, overwritten by each replay. A batch of another
    size (an epoch's last) runs eagerly. The optimiser must be capturable with a tensor
    learning rate (`_adam(..., graph=True)`). If capture fails, `error` says why and the fit
    goes on eagerly. `replays` counts the replayed steps.
    """

    WARMUP = 3
    GRAPH_DEVICES = ("cuda",)

    def __init__(
        self,
        fn: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
        opt: torch.optim.Optimizer,
        graph: bool,
    ) -> None:
        self.fn, self.opt, self.graph = fn, opt, graph
        self.error: str | None = None
        self.replays = 0
        self._warmed = 0
        self._shapes: dict[str, torch.Size] | None = None
        self._static: dict[str, torch.Tensor] = {}
        self._out: dict[str, torch.Tensor] = {}
        self._graph: Any = None

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.graph:
            return self._eager(batch)
        shapes = {key: value.shape for key, value in batch.items()}
        if self._shapes is None:
            self._shapes = shapes
        if shapes != self._shapes:
            return self._eager(batch)
        if self._graph is None:
            if self._warmed < self.WARMUP:
                self._warmed += 1
                return self._warm(batch)
            try:
                self._capture(batch)
            except Exception as error:  # noqa: BLE001 - any capture failure: go on eagerly
                self.error = f"{type(error).__name__}: {error}"
                self.graph, self._graph = False, None
                self._after_failed_capture()
                return self._eager(batch)
        for key, value in batch.items():
            self._static[key].copy_(value)
        self._graph.replay()
        self.replays += 1
        return self._out

    def _eager(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.opt.zero_grad(set_to_none=True)
        return self.fn(batch)

    def _warm(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        main = torch.cuda.current_stream()
        side = torch.cuda.Stream()
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self._eager(batch)
        main.wait_stream(side)
        return out

    def _capture(self, batch: dict[str, torch.Tensor]) -> None:
        self._static = {key: value.clone() for key, value in batch.items()}
        self.opt.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._out = self.fn(self._static)
        self._graph = graph

    def _after_failed_capture(self) -> None:
        torch.cuda.synchronize()


def _cosine(opt: torch.optim.Optimizer, n_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay of the learning rate from its initial value to 0 over `n_steps`."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(n_steps, 1), 1.0)))
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch")
