"""The learned simulator's batched step with the user state kept on its device (issue 16).

`LearnedSimulator` on the CPU keeps the user state in numpy arrays and samples with the caller's
numpy generator (`simulator.py`). On an accelerator that path would copy the predictions to the
host every step and the state would never leave it; here instead everything a step touches lives
on the simulator's device as torch tensors (`ResidentState`), and a step is

1. one upload of the users (B,) and the slate (B, K) (and the scenario / is_random flags when
   given);
2. on the device: the slate's session context, the affinity counts (category, overall and
   user-author), the response model, the response sampling, the leave model and the state update
   (histories, counts, session sums), with `torch.Generator` draws;
3. one download of what `StepResult` carries: the sampled responses, `left`, `elapsed_ms` and
   the info arrays (p_leave, p_click, hazard, expected_watch_ms), packed in one tensor.

The caller's numpy generator still drives the randomness: each call draws one 63-bit seed from
it and reseeds the simulator's `torch.Generator` on the device, so a seed gives the same users
on the same device. The draws are torch's, not numpy's, so the resident path is a different
(equally valid) sample than the host path; the predictions and the state updates are the same
computation (tested against the host path on the CPU, where the resident path can be forced).

User-author counts are a dense (U, A, 4) float32 table on the device when it fits in
`PAIR_TABLE_BYTES` (1 GiB: e.g. 60k users x 1k authors); otherwise they stay in the host's sparse
`PairCounts` and cost one extra round trip per step (lookup and update), said in `pairs_on_host`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recgym.data.writers import REC_TAB, SEARCH_TAB
from recgym.simulators.protocol import SEARCH, StepResult

from .config import BROWSE_MS, CONDITIONAL, LONG_VIEW_MS, SimulatorConfig
from .leave import QUICK_SKIP_RATIO
from .response import ratio_edges, ratio_values
from .state import PairCounts, SessionState, UserState
from .table import _recency_weights

if TYPE_CHECKING:
    from .simulator import LearnedSimulator

PAIR_TABLE_BYTES = 1 << 30
RESPONSES = ("click", "long_view", "watch_ms", *CONDITIONAL[1:])


@dataclass(kw_only=True)
class ResidentState:
    """`UserState` and `SessionState` of every user as tensors on one device (same fields)."""

    clicked: torch.Tensor  # (U, H) int64
    skipped: torch.Tensor  # (U, H) int64
    counts: torch.Tensor  # (U, C, 3) float32
    totals: torch.Tensor  # (U, 3) float32
    pairs: torch.Tensor | None  # (U, A, 4) float32 dense, or None: `host_pairs` holds them
    host_pairs: PairCounts | None
    count: torch.Tensor  # (U,) int64 exposures this session
    sums: torch.Tensor  # (U, n) float64 sums of `leave.signal_names`
    recent: torch.Tensor  # (U, W) int64

    @classmethod
    def from_host(
        cls, state: UserState, session: SessionState, device: torch.device
    ) -> ResidentState:
        def on(a: np.ndarray) -> torch.Tensor:  # a copy: the host state stays untouched
            return torch.from_numpy(np.ascontiguousarray(a)).to(device, copy=True)

        pairs, host_pairs = None, None
        n_users, n_authors = len(state.clicked), state.pairs.n_authors
        if n_users * n_authors * 16 <= PAIR_TABLE_BYTES:
            state.pairs.compact()
            pairs = torch.zeros(n_users * n_authors, 4, dtype=torch.float32, device=device)
            pairs[on(state.pairs.keys)] = on(state.pairs.values)
            pairs = pairs.view(n_users, n_authors, 4)
        else:
            host_pairs = state.pairs.copy()
        return cls(
            clicked=on(state.clicked),
            skipped=on(state.skipped),
            counts=on(state.counts),
            totals=on(state.totals),
            pairs=pairs,
            host_pairs=host_pairs,
            count=on(session.count),
            sums=on(session.sums),
            recent=on(session.recent),
        )

    @property
    def pairs_on_host(self) -> bool:
        return self.pairs is None

    def to_host(self) -> tuple[UserState, SessionState]:
        """The state as the host path keeps it (user state, session state)."""

        def np_(t: torch.Tensor) -> np.ndarray:
            return t.cpu().numpy().copy()

        if self.pairs is None:
            pairs = self.host_pairs.copy()
        else:
            n_authors = self.pairs.shape[1]
            flat = self.pairs.reshape(-1, 4)
            keys = torch.nonzero(flat.any(dim=1)).ravel()
            pairs = PairCounts(n_authors=n_authors, keys=np_(keys), values=np_(flat[keys]))
        user = UserState(
            clicked=np_(self.clicked),
            skipped=np_(self.skipped),
            counts=np_(self.counts),
            totals=np_(self.totals),
            pairs=pairs,
        )
        return user, SessionState(
            count=np_(self.count), sums=np_(self.sums), recent=np_(self.recent)
        )

    def author_counts(self, users: torch.Tensor, authors: torch.Tensor) -> torch.Tensor:
        """(B,) users, (B, K) authors -> (B, K, 4) user-author counts."""
        if self.pairs is not None:
            return self.pairs[users[:, None], authors]
        out = self.host_pairs.lookup(users.cpu().numpy(), authors.cpu().numpy())
        return torch.from_numpy(out).to(users.device)

    def add_author_counts(
        self, users: torch.Tensor, authors: torch.Tensor, x: torch.Tensor
    ) -> None:
        if self.pairs is not None:
            n_authors = self.pairs.shape[1]
            index = (users[:, None] * n_authors + authors).ravel()
            self.pairs.view(-1, 4).index_add_(0, index, x.reshape(-1, 4))
        else:
            self.host_pairs.add(users.cpu().numpy(), authors.cpu().numpy(), x.cpu().numpy())


class ResidentStep:
    """The resident path of one `LearnedSimulator` (its device, generator and constants)."""

    def __init__(self, sim: LearnedSimulator) -> None:
        self.sim = sim
        dev = sim.device
        self.device = dev
        cat = sim.catalogue
        self.category = torch.from_numpy(np.asarray(cat.category, dtype=np.int64)).to(dev)
        self.author = torch.from_numpy(np.asarray(cat.author, dtype=np.int64)).to(dev)
        self.duration = torch.from_numpy(np.asarray(cat.duration_ms, dtype=np.float64)).to(dev)
        rows = sim.vocab.tab_rows(np.array([REC_TAB, SEARCH_TAB]))
        self.rec_tab, self.search_tab = int(rows[0]), int(rows[1])
        n_ratio = sim.response.n_ratio
        self.ratio_values = torch.from_numpy(ratio_values(n_ratio)).to(dev)
        self.edges = torch.from_numpy(ratio_edges(n_ratio - 1).copy()).to(dev)
        self.generator = torch.Generator(device=dev)
        self._weights: dict[tuple[int, int], torch.Tensor] = {}

    # ----------------------------------------------------------------- helpers
    def _upload(self, a: Any, dtype: torch.dtype) -> torch.Tensor:
        arr = np.ascontiguousarray(a)
        return torch.from_numpy(arr).to(self.device, dtype=dtype, non_blocking=True)

    def _request(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        scenario: np.ndarray | None,
        is_random: np.ndarray | None,
    ) -> tuple[ResidentState, torch.Tensor, torch.Tensor, torch.Tensor | None, Any]:
        """A request's uploads: users, slate, search flags (None: all feed) and is_random
        flags (1.0: all random, as the host path's default)."""
        t_users, t_slate = self._upload(users, torch.int64), self._upload(slate, torch.int64)
        search = None
        if scenario is not None:
            search = self._upload(np.asarray(scenario) == SEARCH, torch.bool)
        flag = 1.0
        if is_random is not None:
            flag = self._upload(np.asarray(is_random).reshape(-1), torch.float32)
        return self.sim.state, t_users, t_slate, search, flag

    def _reseed(self, rng: np.random.Generator) -> None:
        self.generator.manual_seed(int(rng.integers(0, 2**63 - 1)))

    def recency(self, recent: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
        """`table.slate_recency` on the device: (B, W) recent, (B, K) cats -> (B, K, 2) float64."""
        cfg: SimulatorConfig = self.sim.config
        key = (recent.shape[1], cats.shape[1])
        if key not in self._weights:
            w = _recency_weights(*key, cfg.recent_window, cfg.fatigue_window, cfg.fatigue_decay)
            self._weights[key] = torch.from_numpy(w.copy()).to(self.device)
        window = torch.cat([recent, cats], dim=1)
        same = (window[:, None, :] == cats[:, :, None]).double()
        return torch.einsum("bkp,kpc->bkc", same, self._weights[key])

    # ----------------------------------------------------------------- the step
    def context(self, st: ResidentState, users: torch.Tensor, slate: torch.Tensor) -> dict:
        cats = self.category[slate]
        position = st.count[users][:, None] + torch.arange(slate.shape[1], device=self.device)
        return {"cats": cats, "position": position, "recency": self.recency(st.recent[users], cats)}

    def predict(
        self,
        st: ResidentState,
        users: torch.Tensor,
        slate: torch.Tensor,
        ctx: dict,
        search: torch.Tensor | None,
        is_random: torch.Tensor | float,
    ) -> dict[str, torch.Tensor]:
        """Response probabilities of a slate (each (B * K, ...), float64) on the device."""
        sim, cfg = self.sim, self.sim.config
        b, k = slate.shape
        cats = ctx["cats"]
        counts = torch.cat(
            [
                st.counts[users[:, None], cats],
                st.totals[users][:, None, :].expand(b, k, 3),
                st.author_counts(users, self.author[slate]),
            ],
            dim=-1,
        )
        tab = torch.full((b,), self.rec_tab, dtype=torch.int64, device=self.device)
        if search is not None:
            tab = torch.where(search, self.search_tab, self.rec_tab)
        position = ctx["position"].reshape(-1).float()
        recency = ctx["recency"].reshape(-1, 2).float()
        if isinstance(is_random, torch.Tensor):
            flag = is_random.to(torch.float32).expand(position.shape)
        else:  # a constant: a fill on the device, no host-to-device copy (CUDA-graph safe)
            flag = torch.full_like(position, float(is_random))
        context = torch.stack(
            [
                torch.log1p(position) / 5.0,
                (position % cfg.request_size) / cfg.request_size,
                recency[:, 0] / cfg.recent_window,
                recency[:, 1] / 5.0,
                flag * float(cfg.random_exposure_input),
            ],
            dim=1,
        )
        inputs = sim._id_inputs(
            user=users.repeat_interleave(k),
            clicked=st.clicked[users],
            skipped=st.skipped[users],
            item=slate.reshape(-1),
        )
        inputs["affinity"] = affinity_tensor(counts.reshape(b * k, -1))
        inputs["tab_row"] = tab.repeat_interleave(k)
        inputs["context"] = context
        with torch.inference_mode():
            click, cond, ratio = sim.response.split_outputs(sim.response(**inputs))
            p_click = torch.sigmoid(click).double()
            p_cond = torch.sigmoid(cond).double()
            p_ratio = torch.softmax(ratio.double(), dim=-1)
        mean_ratio = p_ratio @ self.ratio_values
        return {
            "p_click": p_click,
            "conditional": p_cond,
            "ratio": p_ratio,
            "expected_ratio": p_click * mean_ratio[:, 1] + (1 - p_click) * mean_ratio[:, 0],
            "mean_ratio": mean_ratio[:, 1],
        }

    def step(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        rng: np.random.Generator,
        scenario: np.ndarray | None,
        is_random: np.ndarray | None,
    ) -> StepResult:
        self._reseed(rng)
        b, k = slate.shape
        st, t_users, t_slate, search, flag = self._request(users, slate, scenario, is_random)
        out = self.sample(st, t_users, t_slate, search, flag)
        responses = out["responses"]
        per_item = [responses[name].double() for name in RESPONSES]
        per_item += [out["p_click"], out["hazard"], out["expected_watch_ms"]]
        packed = (
            torch.cat(
                [
                    torch.stack(per_item, dim=-1).reshape(b, -1),
                    torch.stack([out["left"].double(), out["p_leave"], out["elapsed_ms"]], 1),
                ],
                dim=1,
            )
            .cpu()
            .numpy()
        )  # the step's one download
        items = packed[:, : k * len(per_item)].reshape(b, k, len(per_item))
        host = {name: items[..., j] for j, name in enumerate(RESPONSES)}
        for name in RESPONSES:
            host[name] = host[name].astype(np.int64 if name == "watch_ms" else bool)
        tail = packed[:, k * len(per_item) :]
        n = len(RESPONSES)
        return StepResult(
            responses=host,
            left=tail[:, 0].astype(bool),
            elapsed_ms=tail[:, 2].astype(np.int64),
            info={
                "p_leave": tail[:, 1].copy(),
                "p_click": items[..., n].copy(),
                "hazard": items[..., n + 1].copy(),
                "expected_watch_ms": items[..., n + 2].copy(),
            },
        )

    def sample(
        self,
        st: ResidentState,
        users: torch.Tensor,
        slate: torch.Tensor,
        search: torch.Tensor | None = None,
        is_random: torch.Tensor | float = 1.0,
        *,
        mask: torch.Tensor | None = None,
        uniforms: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """A step on device tensors, nothing downloaded: (B,) users answer their (B, K) slates
        (draws from `generator`; `step` reseeds it first) and their state advances.

        `mask` (B,) bool: only those users' state advances (the others' responses are computed
        and their state written back unchanged), so a caller can step a fixed batch whatever
        subset is live (`envs.session_device` does, for CUDA graphs). `uniforms` (B,
        `n_uniforms(K)`) float64 in [0, 1): the draws, instead of `generator`'s. Returns
        ``responses`` (RESPONSES -> (B, K): bool, ``watch_ms`` float64 whole milliseconds),
        ``left`` (B,) bool, ``elapsed_ms`` and ``p_leave`` (B,) float64, ``p_click``,
        ``hazard`` and ``expected_watch_ms`` (B, K) float64. The device-resident Session-v0
        vector env (`envs.session_device`) steps through it."""
        b, k = slate.shape
        ctx = self.context(st, users, slate)
        pred = self.predict(st, users, slate, ctx, search, is_random)
        p_click = pred["p_click"].reshape(b, k)
        cond = pred["conditional"].reshape(b, k, len(CONDITIONAL), 2)
        ratio_p = pred["ratio"].reshape(b, k, 2, -1)
        duration = self.duration[slate]

        gen, dev = self.generator, self.device
        if uniforms is None:
            u = torch.rand(
                (3 + len(CONDITIONAL), b, k), generator=gen, device=dev, dtype=torch.float64
            )
            u_left = None
        else:
            u = uniforms[:, : (3 + len(CONDITIONAL)) * k].reshape(b, -1, k).transpose(0, 1)
            u_left = uniforms[:, (3 + len(CONDITIONAL)) * k]
        click = u[0] < p_click
        state = click.long()
        p_cond = torch.gather(cond, 3, state[..., None, None].expand(b, k, len(CONDITIONAL), 1))[
            ..., 0
        ]
        hist = torch.gather(ratio_p, 2, state[..., None, None].expand(b, k, 1, ratio_p.shape[-1]))[
            :, :, 0
        ]
        watch = self.sample_watch(hist, u[1] < p_cond[..., 0], duration, u[2], u[3])
        responses = {
            "click": click,
            "long_view": watch >= duration.clamp(max=LONG_VIEW_MS),
            "watch_ms": watch,
        }
        for j, name in enumerate(CONDITIONAL[1:], start=1):
            responses[name] = u[3 + j] < p_cond[..., j]
        hazard = self.advance(st, users, slate, responses, ctx, mask)
        p_leave = 1.0 - torch.prod(1.0 - hazard, dim=1)
        if u_left is None:
            u_left = torch.rand(b, generator=gen, device=dev, dtype=torch.float64)
        left = u_left < p_leave
        return {
            "responses": responses,
            "left": left,
            "elapsed_ms": watch.sum(dim=1) + BROWSE_MS * k,
            "p_leave": p_leave,
            "p_click": p_click,
            "hazard": hazard,
            "expected_watch_ms": pred["expected_ratio"].reshape(b, k) * duration,
        }

    @staticmethod
    def n_uniforms(k: int) -> int:
        """Uniforms one user's `sample` of a K-item slate takes (its `uniforms` width)."""
        return (3 + len(CONDITIONAL)) * k + 1

    def begin(self, users: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """`LearnedSimulator.begin_session` of (B,) device users (those in `mask`): empty
        session state."""
        st = self.sim.state
        put(st.count, users, torch.zeros_like(st.count[users]), mask)
        put(st.sums, users, torch.zeros_like(st.sums[users]), mask)
        put(st.recent, users, torch.full_like(st.recent[users], -1), mask)

    def sample_watch(
        self,
        hist: torch.Tensor,
        long_view: torch.Tensor,
        duration: torch.Tensor,
        u_class: torch.Tensor,
        u_within: torch.Tensor,
    ) -> torch.Tensor:
        """`response.sample_watch` on the device (same rule; see its docstring) -> float64 ms."""
        n_bins = hist.shape[-1] - 1
        lo, hi = self.edges[:-1], self.edges[1:]
        t = (duration.clamp(max=LONG_VIEW_MS) / duration.clamp(min=1))[..., None]
        lv = long_view[..., None]
        start = torch.where(lv, torch.maximum(lo, t), lo)
        end = torch.where(lv, hi, torch.minimum(hi, t))
        width = (end - start).clamp(min=0.0)
        complete = lv.double()
        mass = torch.cat(
            [hist[..., :n_bins] * width / (hi - lo), hist[..., n_bins:] * complete], -1
        )
        mass = mass + 1e-9 * torch.cat([width, complete], -1)
        cdf = torch.cumsum(mass, dim=-1)
        pick = (cdf < u_class[..., None] * cdf[..., -1:]).sum(dim=-1).clamp(max=n_bins)
        j = pick.clamp(max=n_bins - 1)[..., None]
        ratio = torch.gather(start, -1, j)[..., 0] + u_within * torch.gather(width, -1, j)[..., 0]
        ratio = torch.where(pick == n_bins, 1.0, ratio)
        raw = ratio * duration
        watch = torch.where(ratio >= t[..., 0], torch.ceil(raw), torch.floor(raw))
        return torch.minimum(watch, duration)

    def advance(
        self,
        st: ResidentState,
        users: torch.Tensor,
        slate: torch.Tensor,
        responses: dict[str, torch.Tensor],
        ctx: dict,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The host path's `_advance` on the device: hazards (B, K) float64, then the update
        (of the users in `mask`, default all)."""
        sim, cfg = self.sim, self.sim.config
        b, k = slate.shape
        click = responses["click"].bool()
        long_view = responses["long_view"].bool()
        watch = responses["watch_ms"].double()
        ratio = (watch / self.duration[slate].clamp(min=1)).clamp(0, 1)
        recency = ctx["recency"]
        signals = torch.stack(
            [
                click.double(),
                long_view.double(),
                ratio,
                responses["like"].double(),
                responses["hate"].double(),
                (click & (ratio < QUICK_SKIP_RATIO)).double(),
                recency[..., 0] / cfg.recent_window,
                recency[..., 1] / 5.0,
                (watch + BROWSE_MS) / 60_000.0,
            ]
            + ([watch.clamp(max=LONG_VIEW_MS) / LONG_VIEW_MS] if cfg.leave_view_seconds else []),
            dim=-1,
        )
        cumulative = st.sums[users][:, None, :] + torch.cumsum(signals, dim=1)
        position = ctx["position"]
        count = (position + 1)[..., None].float()
        slot = (position % cfg.request_size)[..., None].float()
        user_x = sim._t_user_x[users][:, None, :].expand(b, k, sim.user_feature_dim)
        cum32 = cumulative.float()
        x = torch.cat(
            [
                signals.float(),
                cum32 / 20.0,
                torch.log1p(cum32) / 4.0,
                cum32 / count,
                count / 100.0,
                torch.log1p(count) / 5.0,
                slot / cfg.request_size,
                (slot == cfg.request_size - 1).float(),
                user_x,
            ],
            dim=-1,
        )
        with torch.inference_mode():
            hazard = torch.sigmoid(sim.leave(x.reshape(b * k, -1)).double()).reshape(b, k)
        put(st.count, users, st.count[users] + k, mask)
        put(st.sums, users, cumulative[:, -1], mask)
        recent = torch.cat([st.recent[users], ctx["cats"]], dim=1)[:, -st.recent.shape[1] :]
        put(st.recent, users, recent, mask)
        follow = responses["follow"].bool()
        self.record(st, users, slate, ctx["cats"], click, long_view, follow, mask)
        return hazard

    def record(
        self,
        st: ResidentState,
        users: torch.Tensor,
        slate: torch.Tensor,
        cats: torch.Tensor,
        click: torch.Tensor,
        long_view: torch.Tensor,
        follow: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> None:
        """The host path's `_record` on the device (of the users in `mask`, default all)."""
        clicked = push_history(st.clicked[users], torch.where(click, slate, -1))
        put(st.clicked, users, clicked, mask)
        put(st.skipped, users, push_history(st.skipped[users], torch.where(click, -1, slate)), mask)
        x = torch.stack([torch.ones_like(click), click, long_view], dim=-1).float()
        if mask is not None:  # the others add zeros
            x = x * mask[:, None, None]
            follow = follow & mask[:, None]
        n_cat = st.counts.shape[1]
        st.counts.view(-1, 3).index_add_(
            0, (users[:, None] * n_cat + cats).reshape(-1), x.reshape(-1, 3)
        )
        st.totals[users] += x.sum(dim=1)
        st.add_author_counts(
            users, self.author[slate], torch.cat([x, follow[..., None].float()], -1)
        )

    def observe(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        responses: dict[str, np.ndarray],
        scenario: np.ndarray | None,
        is_random: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """`LearnedSimulator.observe` on the device (nothing sampled)."""
        st, t_users, t_slate, search, flag = self._request(users, slate, scenario, is_random)
        ctx = self.context(st, t_users, t_slate)
        out = self.unconditional(self.predict(st, t_users, t_slate, ctx, search, flag), t_slate)
        given = {
            name: self._upload(responses[name], torch.float64)
            for name in ("click", "long_view", "watch_ms", "like", "hate", "follow")
        }
        out["hazard"] = self.advance(st, t_users, t_slate, given, ctx)
        out["p_leave"] = 1.0 - torch.prod(1.0 - out["hazard"], dim=1)
        return {key: value.cpu().numpy() for key, value in out.items()}

    def expected(self, users: np.ndarray, slate: np.ndarray, scenario: np.ndarray | None) -> dict:
        st, t_users, t_slate, search, flag = self._request(users, slate, scenario, None)
        ctx = self.context(st, t_users, t_slate)
        out = self.unconditional(self.predict(st, t_users, t_slate, ctx, search, flag), t_slate)
        return {key: value.cpu().numpy() for key, value in out.items()}

    def unconditional(self, pred: dict[str, torch.Tensor], slate: torch.Tensor) -> dict:
        """`LearnedSimulator._unconditional` of device predictions (tensors shaped like slate)."""
        shape = slate.shape
        p_click = pred["p_click"]
        out = {"click": p_click.reshape(shape)}
        for j, name in enumerate(CONDITIONAL):
            p = pred["conditional"][:, j]
            out[name] = (p_click * p[:, 1] + (1 - p_click) * p[:, 0]).reshape(shape)
        out["watch_ms"] = pred["expected_ratio"].reshape(shape) * self.duration[slate]
        out["mean_ratio"] = pred["mean_ratio"].reshape(shape)
        return out


def affinity_tensor(counts: torch.Tensor) -> torch.Tensor:
    """`table.affinity_features` on the device: (N, 10) counts -> (N, 15) float32."""
    e, c, l_, e_all, c_all, l_all, ea, ca, la, fa = counts.float().unbind(-1)
    parts = [
        torch.log1p(e) / 4,
        torch.log1p(c) / 4,
        torch.log1p(l_) / 4,
        (c + 1) / (e + 2),
        (l_ + 0.5) / (e + 2),
        c / (c_all + 1),
        e / (e_all + 1),
        torch.log1p(e_all) / 8,
        (c_all + 1) / (e_all + 2),
        (l_all + 0.5) / (e_all + 2),
        torch.log1p(ea) / 3,
        torch.log1p(ca) / 3,
        torch.log1p(la) / 3,
        (ca + 1) / (ea + 2),
        fa.clamp(max=1.0),
    ]
    return torch.stack(parts, dim=-1)


def put(
    table: torch.Tensor, users: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
) -> None:
    """``table[users] = value``, or with `mask` (B,) bool only the masked rows (the others
    written back as they were: a fixed-shape write, no data-dependent indexing)."""
    if mask is not None:
        keep = mask.reshape((-1,) + (1,) * (value.dim() - 1))
        value = torch.where(keep, value, table[users])
    table[users] = value


def push_history(history: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """`state.push_history` on the device: append each row's `new` items (-1 = none)."""
    merged = torch.cat([history, new], dim=1)
    order = torch.argsort((merged >= 0).to(torch.int8), dim=1, stable=True)
    return torch.gather(merged, 1, order)[:, -history.shape[1] :]


__all__ = [
    "PAIR_TABLE_BYTES",
    "ResidentState",
    "ResidentStep",
    "affinity_tensor",
    "push_history",
    "put",
]
