"""`LearnedSimulator`: the response model, the leave model and the user state composed into a user.

It answers a whole slate at once from the users' state at the start of the request (see the
package docstring for what a request is), samples with the caller's numpy generator only, and
advances the state.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recgym.data.writers import REC_TAB, SEARCH_TAB
from recgym.device import resolve_device
from recgym.simulators.arrays import add_at
from recgym.simulators.protocol import BEHAVIOURS, SEARCH, Catalogue, StepResult

from .checkpoint import load_checkpoint, save_checkpoint
from .config import BROWSE_MS, CONDITIONAL, LONG_VIEW_MS, SimulatorConfig
from .fit import fit_simulator
from .leave import LeaveModel, leave_features, session_signals, signal_names
from .resident import ResidentState, ResidentStep
from .response import ResponseModel, Vocab, ratio_values, sample_watch
from .state import SessionState, UserState, push_history
from .table import LogTable, affinity_features, context_features, slate_recency


class LearnedSimulator:
    """Users learned from logs; satisfies `simulators.protocol.UserModel`.

    `step` for users (B,) and slate (B, K): the response model gives, per item, the click
    probability and click-conditional probabilities of the other behaviours and of the watch
    ratio, all from the user's state at the start of the request. Sampling uses numpy draws from
    the caller's generator only (torch samples nothing). Each exposure is predicted as a
    uniformly random one (`SimulatorConfig.random_exposure_input`) unless `is_random` (B, K)
    flags it otherwise (the fidelity replay of logged slates passes the logged flags):

    1. click ~ Bernoulli(p_click);
    2. long_view ~ Bernoulli(p_long_view | click state);
    3. the watch ratio is drawn from the predicted ratio histogram of that click state restricted
       to the part consistent with the drawn long_view (ratio >= t or < t, with t = min(duration,
       18 s) / duration; uniform within a bin); watch_ms = ratio * duration, and long_view is
       then recomputed from watch_ms by KuaiRand's rule, so the two always agree;
    4. like, follow, comment, forward and hate ~ Bernoulli(p | click state), independently;
    5. per exposure the hazard h_k of the leave model (on the sampled responses); the user leaves
       after the request with probability 1 - prod_k (1 - h_k).

    Then the items join the user's clicked or skipped history, the category counts grow and the
    session state advances. `elapsed_ms` is the summed watch time plus `BROWSE_MS` per exposure.
    `scenario` maps to the KuaiRand tab the synthetic logs use (REC -> tab 1, SEARCH -> tab 4);
    a tab never seen in training uses the 'unknown' tab row. Users in one call must be distinct.
    The initial state of every user is their state at the end of the log it was fitted on.

    `device` (`recgym.device.resolve_device`; default 'auto' = CUDA when available) holds the two
    models and every lookup table (catalogue id -> embedding row, item and user features): a
    step's inputs are gathered on the device and the models run there; the predicted
    probabilities and hazards come back to the host once per call (three arrays and one), where
    the user state lives and the caller's numpy generator samples the responses.

    `resident` (default: True on an accelerator, i.e. any device but the CPU and `meta`) keeps
    the user state on the device as well and samples there (`resident.py`): a step then uploads
    the users and the slate and downloads only what `StepResult` carries. It draws with a
    `torch.Generator` seeded from the caller's generator, so a seed gives the same users on one
    device, but not the same draws as the host path. CPU runs therefore keep the host path (and
    its results) unless asked.
    """

    behaviours: tuple[str, ...] = tuple(b for b in BEHAVIOURS if b != "gift")

    def __init__(
        self,
        *,
        config: SimulatorConfig,
        catalogue: Catalogue,
        user_x: np.ndarray,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        initial_state: UserState,
        vocab: Vocab,
        response: ResponseModel,
        leave: LeaveModel,
        fidelity: dict | None = None,
        device: str | torch.device = "auto",
        resident: bool | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.resident_option = resident
        self.config = config
        self.catalogue = catalogue
        self.user_ids = user_ids
        self.item_ids = item_ids
        self.vocab = vocab
        self.response = response.to(self.device).eval()
        self.leave = leave.to(self.device).eval()
        self.fidelity = fidelity or {}
        self.fit_report: dict[str, Any] = {}  # set by `fit` (fit.py); empty when loaded
        self.history_len = config.history_len
        self._user_x = np.ascontiguousarray(user_x, dtype=np.float32)
        self.n_users = len(self._user_x)
        self.user_feature_dim = self._user_x.shape[1]
        self._initial = initial_state
        self._user_row = vocab.user_row
        self._item_x = catalogue.item_features(np.arange(catalogue.n_items))
        self._tensors()
        self.reset_state()

    def _tensors(self) -> None:
        """Lookup tables as torch tensors on the device (catalogue id -> embedding row, item
        features)."""
        cat, v = self.catalogue, self.vocab
        self.device = getattr(self, "device", torch.device("cpu"))  # pickles from before devices
        on = self._on_device
        # index -1 (history padding) reads the appended last entry (row 0); it is masked anyway
        self._t_item_row = on(np.append(v.item_row, 0))
        self._t_cat_row = on(np.append(v.category_row[cat.category], 0))
        self._t_author_row = on(v.author_row[cat.author])
        self._t_top_row = on(v.top_row[cat.top_category])
        self._t_item_x = on(self._item_x)
        self._t_user_x = on(self._user_x)
        self._t_user_row = on(self._user_row)
        option = getattr(self, "resident_option", None)
        accelerator = self.device.type not in ("cpu", "meta")  # meta: shapes only, no state
        self.resident = accelerator if option is None else bool(option)
        self._resident_step = ResidentStep(self) if self.resident else None

    def _on_device(self, a: np.ndarray | torch.Tensor) -> torch.Tensor:
        """`a` as a tensor on the simulator's device (shares memory on the CPU)."""
        t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
        return t.to(self.device)

    def to(self, device: str | torch.device) -> LearnedSimulator:
        """Move the models, lookup tables and user state to `device` (in place); returns self."""
        self._host_state()
        self.device = resolve_device(device)
        self.response.to(self.device)
        self.leave.to(self.device)
        self._tensors()
        self._place_state()
        return self

    def _host_state(self) -> None:
        """Bring a device-resident state back to the host path's arrays."""
        if isinstance(self.state, ResidentState):
            self.state, self._session = self.state.to_host()

    def _place_state(self) -> None:
        """Put the host state on the device when the resident path is on."""
        if self.resident and not isinstance(self.state, ResidentState):
            self.state = ResidentState.from_host(self.state, self._session, self.device)
            self._session = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in [k for k in state if k.startswith("_t_")] + ["_resident_step"]:
            state.pop(key, None)
        if isinstance(self.state, ResidentState):  # pickles hold host arrays only
            state["state"], state["_session"] = self.state.to_host()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._tensors()
        self._place_state()

    # ----------------------------------------------------------------- state
    def reset_state(self) -> None:
        """Every user back to their state at the end of the log; no session in progress."""
        self.state = self._initial.copy()
        window = max(self.config.recent_window, self.config.fatigue_window)
        self._session = SessionState.empty(self.n_users, window, len(signal_names(self.config)))
        self._place_state()

    def for_sessions(self, users: np.ndarray, state: UserState | None = None) -> LearnedSimulator:
        """A simulator sharing this one's models whose user i is a copy of `users[i]`.

        Slot i starts from row i of `state` (e.g. `LogTable.state_before`; default: the users'
        current state). Fidelity replays use it to run many logged sessions, several of the
        same user, side by side.
        """
        twin = copy.copy(self)
        twin._user_x = self._user_x[users]
        twin._t_user_x = self._on_device(twin._user_x)
        twin._user_row = self._user_row[users]
        twin._t_user_row = self._on_device(twin._user_row)
        twin.n_users = len(users)
        twin.user_ids = self.user_ids[users]
        if state is None:
            current = self.state.to_host()[0] if self.resident else self.state
            state = current.take(users)
        twin._initial = state
        twin.reset_state()
        return twin

    # ----------------------------------------------------------------- UserModel protocol
    def user_features(self, users: np.ndarray) -> np.ndarray:
        return self._user_x[users]

    def history(self, users: np.ndarray) -> np.ndarray:
        if self.resident:
            index = torch.as_tensor(np.asarray(users, dtype=np.int64), device=self.device)
            return self.state.clicked[index].cpu().numpy()
        return self.state.clicked[users]

    def begin_session(self, users: np.ndarray, rng: np.random.Generator) -> None:
        """Reset the session state (position, running sums, recent categories); history stays."""
        users = np.asarray(users, dtype=np.int64)
        s = self.state if self.resident else self._session
        if self.resident:
            users = torch.as_tensor(users, device=self.device)
        s.count[users] = 0
        s.sums[users] = 0.0
        s.recent[users] = -1

    def step(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        rng: np.random.Generator,
        scenario: np.ndarray | None = None,
        *,
        is_random: np.ndarray | None = None,
    ) -> StepResult:
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        if self.resident:
            return self._resident_step.step(users, slate, rng, scenario, is_random)
        b, k = slate.shape
        ctx = self._slate_context(users, slate)
        pred = self._predict_slate(users, slate, ctx, scenario, is_random)
        p_click = pred["p_click"].reshape(b, k)
        cond = pred["conditional"].reshape(b, k, len(CONDITIONAL), 2)
        ratio_p = pred["ratio"].reshape(b, k, 2, -1)
        duration = self.catalogue.duration_ms[slate]

        u = rng.random((3 + len(CONDITIONAL), b, k))
        click = u[0] < p_click
        state = click.astype(np.int64)
        p_cond = np.take_along_axis(cond, state[..., None, None], axis=-1)[..., 0]  # (B, K, 6)
        hist = np.take_along_axis(ratio_p, state[..., None, None], axis=2)[:, :, 0]  # (B, K, R)
        watch_ms = sample_watch(hist, u[1] < p_cond[..., 0], duration, u[2], u[3])
        long_view = watch_ms >= np.minimum(duration, LONG_VIEW_MS)
        responses = {"click": click, "long_view": long_view, "watch_ms": watch_ms}
        for j, name in enumerate(CONDITIONAL[1:], start=1):
            responses[name] = u[3 + j] < p_cond[..., j]

        hazard = self._advance(users, slate, responses, ctx)
        p_leave = 1.0 - np.prod(1.0 - hazard, axis=1)
        left = rng.random(b) < p_leave
        elapsed = watch_ms.sum(axis=1) + BROWSE_MS * k
        return StepResult(
            responses=responses,
            left=left,
            elapsed_ms=elapsed.astype(np.int64),
            info={
                "p_leave": p_leave,
                "p_click": p_click,
                "hazard": hazard,
                "expected_watch_ms": pred["expected_ratio"].reshape(b, k) * duration,
            },
        )

    def observe(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        responses: dict[str, np.ndarray],
        scenario: np.ndarray | None = None,
        *,
        is_random: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Advance `users` as if they had answered `slate` with `responses` (e.g. logged ones).

        `responses` needs (B, K) click, long_view, watch_ms, like, follow and hate. Returns what
        the models predicted before seeing them (`expected_responses`' keys) plus the hazard
        (B, K) and p_leave (B,) given them; `is_random` (B, K) as in `step` (logged replays pass
        the logged is_rand). Nothing is sampled. Fidelity checks and tests use it
        to replay logs through exactly the code path `step` uses.
        """
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        if self.resident:
            return self._resident_step.observe(users, slate, responses, scenario, is_random)
        ctx = self._slate_context(users, slate)
        pred = self._predict_slate(users, slate, ctx, scenario, is_random)
        out = self._unconditional(pred, slate)
        out["hazard"] = self._advance(users, slate, responses, ctx)
        out["p_leave"] = 1.0 - np.prod(1.0 - out["hazard"], axis=1)
        return out

    def _slate_context(self, users: np.ndarray, slate: np.ndarray) -> dict[str, np.ndarray]:
        """Session context of a slate: categories, positions and (repeat, fatigue)."""
        s = self._session
        cats = self.catalogue.category[slate]
        position = s.count[users][:, None] + np.arange(slate.shape[1])
        recency = slate_recency(s.recent[users], cats, self.config)
        return {"cats": cats, "position": position, "recency": recency}

    def _advance(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        responses: dict[str, np.ndarray],
        ctx: dict[str, np.ndarray],
    ) -> np.ndarray:
        """Hazard (B, K) of each exposure given the responses; then update every user state."""
        cfg, s = self.config, self._session
        b, k = slate.shape
        click = np.asarray(responses["click"], dtype=bool)
        long_view = np.asarray(responses["long_view"], dtype=bool)
        ratio = np.clip(
            responses["watch_ms"] / np.maximum(self.catalogue.duration_ms[slate], 1), 0, 1
        )
        signals = session_signals(
            click,
            long_view,
            ratio,
            responses["like"],
            responses["hate"],
            ctx["recency"],
            cfg,
            responses["watch_ms"],
        )
        cumulative = s.sums[users][:, None, :] + np.cumsum(signals, axis=1)
        user_x = np.broadcast_to(self._user_x[users][:, None, :], (b, k, self.user_feature_dim))
        position = ctx["position"]
        x = leave_features(
            signals, cumulative, position + 1, position % cfg.request_size, user_x, cfg.request_size
        )
        hazard = self._hazard(x.reshape(b * k, -1)).reshape(b, k)
        s.count[users] += k
        s.sums[users] = cumulative[:, -1]
        s.recent[users] = np.concatenate([s.recent[users], ctx["cats"]], axis=1)[
            :, -s.recent.shape[1] :
        ]
        follow = np.asarray(responses["follow"], dtype=bool)
        self._record(users, slate, ctx["cats"], click, long_view, follow)
        return hazard

    # ----------------------------------------------------------------- predictions
    def expected_responses(
        self, users: np.ndarray, slate: np.ndarray, scenario: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Predicted probabilities for `slate` (B, K) at the users' current state (no change).

        Returns unconditional `click`, `long_view`, `like`, `follow`, `comment`, `forward`, `hate`
        (p = p_click * p(.|click) + (1 - p_click) * p(.|no click)), `watch_ms` (expected) and,
        as `World.expected_responses` does, `mean_ratio`: the expected watched fraction given a
        click (the ratio classes' representative values weighted by their probabilities).
        """
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        if self.resident:
            return self._resident_step.expected(users, slate, scenario)
        ctx = self._slate_context(users, slate)
        return self._unconditional(self._predict_slate(users, slate, ctx, scenario), slate)

    def _unconditional(self, pred: dict[str, np.ndarray], slate: np.ndarray) -> dict:
        shape = slate.shape
        out = {"click": pred["p_click"].reshape(shape)}
        for name in CONDITIONAL:
            out[name] = pred[f"p_{name}"].reshape(shape)
        out["watch_ms"] = pred["expected_ratio"].reshape(shape) * self.catalogue.duration_ms[slate]
        out["mean_ratio"] = pred["mean_ratio"].reshape(shape)
        return out

    def _predict_slate(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        ctx: dict[str, np.ndarray],
        scenario: np.ndarray | None,
        is_random: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Predictions for a slate; `is_random` (B, K) flags exposures as uniformly random
        (default: all, see `SimulatorConfig.random_exposure_input`)."""
        b, k = slate.shape
        cats = ctx["cats"]
        st = self.state
        tab = np.full(b, REC_TAB, dtype=np.int64)
        if scenario is not None:
            tab = np.where(np.asarray(scenario) == SEARCH, SEARCH_TAB, REC_TAB)
        counts = np.concatenate(
            [
                st.counts[users[:, None], cats],
                np.broadcast_to(st.totals[users][:, None, :], (b, k, 3)),
                st.pairs.lookup(users, self.catalogue.author[slate]),
            ],
            axis=-1,
        )
        return self._predict(
            user=np.repeat(users, k),
            clicked=st.clicked[users],
            skipped=st.skipped[users],
            item=slate.ravel(),
            affinity=counts.reshape(b * k, -1),
            tab=np.repeat(tab, k),
            position=ctx["position"].ravel(),
            recency=ctx["recency"].reshape(b * k, 2),
            is_random=1.0 if is_random is None else np.asarray(is_random).reshape(b * k),
        )

    def predict_rows(self, table: LogTable, rows: np.ndarray, batch: int = 16384) -> dict:
        """Predictions for logged exposures `rows` of `table`, from their logged inputs.

        Returns unconditional probabilities `p_click`, `p_long_view`, ..., `p_hate` and
        `expected_ratio`, `expected_watch_ms`, each (len(rows),) float64.
        """
        keys = ["p_click"] + [f"p_{b}" for b in CONDITIONAL] + ["expected_ratio"]
        out = {key: np.empty(len(rows), dtype=np.float64) for key in keys}
        for lo in range(0, len(rows), batch):
            r = rows[lo : lo + batch]
            pred = self._predict(**table.exposure_inputs(r))
            for key in keys:
                out[key][lo : lo + len(r)] = pred[key]
        out["expected_watch_ms"] = out["expected_ratio"] * table.duration_ms[rows]
        return out

    def _inputs(
        self,
        *,
        user: np.ndarray | torch.Tensor,
        clicked: np.ndarray | torch.Tensor,
        skipped: np.ndarray | torch.Tensor,
        item: np.ndarray | torch.Tensor,
        affinity: np.ndarray,
        tab: np.ndarray,
        position: np.ndarray,
        recency: np.ndarray,
        is_random: np.ndarray | float = 1.0,
    ) -> dict[str, Any]:
        """Model inputs for N exposures; histories have one row per user group (N / G rows each)."""
        inputs = self._id_inputs(user=user, clicked=clicked, skipped=skipped, item=item)
        inputs["affinity"] = self._on_device(affinity_features(affinity))
        inputs["tab_row"] = self._on_device(self.vocab.tab_rows(tab))
        inputs["context"] = self._on_device(
            context_features(position, recency, self.config, is_random)
        )
        return inputs

    def _id_inputs(
        self,
        *,
        user: np.ndarray | torch.Tensor,
        clicked: np.ndarray | torch.Tensor,
        skipped: np.ndarray | torch.Tensor,
        item: np.ndarray | torch.Tensor,
    ) -> dict[str, Any]:
        """The inputs gathered from the device's lookup tables by user, history and item ids."""

        def long(a: np.ndarray | torch.Tensor) -> torch.Tensor:
            if isinstance(a, torch.Tensor):
                return a.to(self.device).long()
            return self._on_device(np.ascontiguousarray(a, dtype=np.int64))

        t_user, t_item = long(user), long(item)
        t_clicked, t_skipped = long(clicked), long(skipped)
        return {
            "user_row": self._t_user_row[t_user],
            "user_x": self._t_user_x[t_user],
            "clicked": (
                self._t_item_row[t_clicked].masked_fill(t_clicked < 0, -1),
                self._t_cat_row[t_clicked],
            ),
            "skipped": (
                self._t_item_row[t_skipped].masked_fill(t_skipped < 0, -1),
                self._t_cat_row[t_skipped],
            ),
            "item_row": self._t_item_row[t_item],
            "author_row": self._t_author_row[t_item],
            "category_row": self._t_cat_row[t_item],
            "top_row": self._t_top_row[t_item],
            "item_x": self._t_item_x[t_item],
        }

    def _predict(self, **arrays: Any) -> dict[str, np.ndarray]:
        """Response probabilities for N exposures (arguments as `_inputs`)."""
        with torch.inference_mode():
            out = self.response(**self._inputs(**arrays))
            click, cond, ratio = self.response.split_outputs(out)
            # the probabilities are computed on the device; these are the call's host copies
            p_click = torch.sigmoid(click).double().cpu().numpy()
            p_cond = torch.sigmoid(cond).double().cpu().numpy()  # (N, 6, 2)
            p_ratio = torch.softmax(ratio.double(), dim=-1).cpu().numpy()  # (N, 2, R)
        mean_ratio = p_ratio @ ratio_values(p_ratio.shape[-1])  # (N, 2)
        result = {
            "p_click": p_click,
            "conditional": p_cond,
            "ratio": p_ratio,
            "expected_ratio": p_click * mean_ratio[:, 1] + (1 - p_click) * mean_ratio[:, 0],
            "mean_ratio": mean_ratio[:, 1],
        }
        for j, name in enumerate(CONDITIONAL):
            result[f"p_{name}"] = p_click * p_cond[:, j, 1] + (1 - p_click) * p_cond[:, j, 0]
        return result

    def _hazard(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(self.leave(self._on_device(x)).double()).cpu().numpy()

    def _record(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        cats: np.ndarray,
        click: np.ndarray,
        long_view: np.ndarray,
        follow: np.ndarray,
    ) -> None:
        """Add a request's exposures to the users' histories, category and author counts."""
        st = self.state
        st.clicked[users] = push_history(st.clicked[users], np.where(click, slate, -1))
        st.skipped[users] = push_history(st.skipped[users], np.where(click, -1, slate))
        x = np.stack([np.ones(click.shape), click, long_view], axis=-1).astype(np.float32)
        n_cat = self.catalogue.n_categories
        flat = st.counts.reshape(-1, 3)  # a view: counts of user u, category c at u * C + c
        add_at(flat, ((users[:, None] * n_cat + cats).ravel(),), x.reshape(-1, 3))
        st.totals[users] += x.sum(axis=1)
        pair_x = np.concatenate([x, follow[..., None]], axis=-1).astype(np.float32)
        st.pairs.add(users, self.catalogue.author[slate], pair_x)

    # ----------------------------------------------------------------- fitting and checkpoints
    @classmethod
    def fit(
        cls,
        table: LogTable,
        progress: bool = False,
        device: str | torch.device = "auto",
        graph: bool | None = None,
    ) -> LearnedSimulator:
        """Fit the response and leave models on the training sessions of `table` (`fit.py`) on
        `device` ('auto': CUDA when available); the simulator stays there. `graph`: replay the
        training steps as CUDA graphs (default: on CUDA; `fit_simulator`), reported in
        ``fit_report``."""
        return fit_simulator(cls, table, progress, device, graph)

    def save(self, path: str | Path) -> Path:
        """Write `path`/model.pt (weights and lookup arrays), config.json and fidelity.json."""
        return save_checkpoint(self, path)

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device = "auto", resident: bool | None = None
    ) -> LearnedSimulator:
        """Read a checkpoint directory written by `save` (on any device) onto `device`; any
        problem raises `CheckpointError`. `resident` as in the class docstring."""
        sim = load_checkpoint(cls, path, device)
        if resident is not None and resident != sim.resident:
            sim._host_state()
            sim.resident_option = resident
            sim._tensors()
            sim._place_state()
        return sim
