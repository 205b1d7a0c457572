"""The leave model: a discrete-time session hazard, and the features it reads."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .config import BROWSE_MS, LONG_VIEW_MS, SIGNALS, SimulatorConfig
from .table import LogTable

LEAVE_CLIP = 0.005  # leave features are clipped to their [0.5 %, 99.5 %] training quantiles

QUICK_SKIP_RATIO = 0.3  # a click watched for less than this share of the video is a quick skip


def leave_features(
    signals: np.ndarray,
    cumulative: np.ndarray,
    count: np.ndarray,
    slot: np.ndarray,
    user_x: np.ndarray,
    request_size: int,
) -> np.ndarray:
    """The leave model's input for exposures (any leading shape S) -> S + (D,) float32.

    `signals` (S + (n,)) are this exposure's `signal_names`: click, long_view, watch ratio,
    like, hate, quick skip (a click watched < 30 % of the video), repeat (same-category
    exposures among the session's previous `recent_window`, divided by it), fatigue / 5
    (`logged_recency`), minutes spent on it (watch + BROWSE_MS; users tire with time, not only
    with requests) and, with `leave_view_seconds`, the seconds watched up to 18 s / 18 s.
    `cumulative` (S + (n,)) are their sums over the session up to and including this exposure,
    `count` the exposures so far including it and
    `slot` the exposure's index within its request. The features are: the signals, their sums / 20
    and log1p(sums) / 4, their running means, count / 100 and log1p(count) / 5, slot /
    request_size, whether the exposure closes a request, and the user's static features.
    """
    count = count[..., None].astype(np.float32)
    slot = slot[..., None].astype(np.float32)
    parts = [
        signals,
        cumulative / 20.0,
        np.log1p(cumulative) / 4.0,
        cumulative / count,
        count / 100.0,
        np.log1p(count) / 5.0,
        slot / request_size,
        slot == request_size - 1,
        user_x,
    ]
    return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=-1)


class LeaveModel(nn.Module):
    """Discrete-time session hazard h = P(this exposure is the session's last | session so far).

    An MLP on `leave_features`, each clipped to its training range (the LEAVE_CLIP and
    1 - LEAVE_CLIP quantiles of the training rows) and then standardised; the bounds, means and
    stds are buffers, so they travel with the state dict. The clipping keeps a simulated session
    that outlives every logged one at the hazard of the longest logged sessions instead of
    letting the MLP extrapolate (it learned a falling hazard from the few survivors).
    Loss: BCE against label 1 on the last exposure of every training session, 0 elsewhere; after
    training the output bias is shifted so that the hazards sum to the number of training
    sessions (as an exactly converged logistic fit does).
    """

    def __init__(self, n_features: int, config: SimulatorConfig) -> None:
        super().__init__()
        self.register_buffer("low", torch.full((n_features,), -torch.inf))
        self.register_buffer("high", torch.full((n_features,), torch.inf))
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in config.leave_hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) features -> (N,) hazard logits."""
        x = torch.maximum(torch.minimum(x, self.high), self.low)
        return self.net((x - self.mean) / self.std).squeeze(-1)


def signal_names(cfg: SimulatorConfig) -> tuple[str, ...]:
    """The per-exposure signals the leave model reads: SIGNALS, then ``view_seconds`` when
    `cfg.leave_view_seconds`."""
    return SIGNALS + (("view_seconds",) if cfg.leave_view_seconds else ())


def leave_dim(user_dim: int, cfg: SimulatorConfig) -> int:
    return 4 * len(signal_names(cfg)) + 4 + user_dim


def session_signals(
    click: np.ndarray,
    long_view: np.ndarray,
    ratio: np.ndarray,
    like: np.ndarray,
    hate: np.ndarray,
    recency: np.ndarray,
    cfg: SimulatorConfig,
    watch_ms: np.ndarray,
) -> np.ndarray:
    """Stack `signal_names(cfg)` on a last axis (float64)."""
    click = np.asarray(click, dtype=bool)
    quick = click & (np.asarray(ratio) < QUICK_SKIP_RATIO)
    repeat = recency[..., 0] / cfg.recent_window
    fatigue = recency[..., 1] / 5.0
    watch = np.asarray(watch_ms, dtype=np.float64)
    minutes = (watch + BROWSE_MS) / 60_000.0
    parts = (click, long_view, ratio, like, hate, quick, repeat, fatigue, minutes)
    if cfg.leave_view_seconds:
        parts += (np.minimum(watch, LONG_VIEW_MS) / LONG_VIEW_MS,)
    return np.stack([np.asarray(p, dtype=np.float64) for p in parts], axis=-1)


def logged_leave_features(table: LogTable, rows: np.ndarray | None = None) -> np.ndarray:
    """`leave_features` of logged exposures (all rows, or `rows`), from the logged responses.

    Session sums are cumulative sums along the (user, time)-sorted log minus the sum before the
    session's first row: vectorised, no loop over sessions.
    """
    cfg = table.config
    signals = session_signals(
        table.labels["click"],
        table.labels["long_view"],
        table.ratio,
        table.labels["like"],
        table.labels["hate"],
        table.recency,
        cfg,
        table.play_ms,
    )
    total = np.cumsum(signals, axis=0)
    before = np.vstack([np.zeros((1, signals.shape[1])), total])[table.session_start]
    cumulative = total - before[table.session]
    rows = np.arange(table.n_rows) if rows is None else rows
    position = table.position[rows]
    return leave_features(
        signals[rows],
        cumulative[rows],
        position + 1,
        position % cfg.request_size,
        table.user_x[table.user[rows]],
        cfg.request_size,
    )
