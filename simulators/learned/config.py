"""Settings of the learned simulator (`SimulatorConfig`) and the constants its parts share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

LONG_VIEW_MS = 18_000  # KuaiRand: long view = whole video if it is <= 18 s, else >= 18 s played

BROWSE_MS = 1_000  # time per exposure spent browsing, added to watch time in `elapsed_ms`

CONDITIONAL = ("long_view", "like", "follow", "comment", "forward", "hate")
# Per-exposure session signals the leave model accumulates (order matters: see `leave_features`).
SIGNALS = (
    "click",
    "long_view",
    "watch_ratio",
    "like",
    "hate",
    "quick_skip",
    "repeat",
    "fatigue",
    "minutes",
)

AFFINITY_DIM = 15  # see `affinity_features`

CONTEXT_DIM = 5  # see `context_features`


@dataclass(kw_only=True)
class SimulatorConfig:
    """How a learned simulator is built and fitted; saved as config.json beside the weights."""

    history_len: int = 20
    """Clicked (and skipped) items the response model pools per user; `history` returns clicks."""
    request_size: int = 6
    """Exposures per request in logs without request ids (a session is cut into runs of this)."""
    recent_window: int = 12
    """Previous exposures of the session searched for a repeat of the item's category."""
    fatigue_window: int = 48
    """Exposures before the request that count towards category fatigue."""
    fatigue_decay: float = 0.95
    """Per-exposure decay of category fatigue (0.95: an exposure 14 items back counts half)."""
    session_gap_minutes: float = 30.0
    """A gap longer than this between consecutive exposures of a user starts a new session."""
    embedding_dim: int = 32
    """Size of the item, leaf-category and top-category embeddings (and of pooled histories)."""
    author_dim: int = 16
    """Size of the author embedding."""
    tab_dim: int = 4
    """Size of the tab (scenario) embedding."""
    hidden: tuple[int, ...] = (256, 128)
    """Hidden layer sizes of the response model's MLP."""
    ratio_bins: int = 20
    """Watch-ratio bins on [0, 1) (`response.ratio_edges`: geometric below 0.1, equal-width
    above); one more class holds complete plays (ratio = 1)."""
    user_embedding: bool = True
    """Give every user with training exposures an id embedding (others share the unknown row)."""
    user_dropout: float = 0.2
    """Share of training rows whose user id is replaced by 'unknown' (trains it for new users)."""
    min_item_count: int = 3
    """Items with fewer training exposures share the 'unknown item' embedding row."""
    unknown_dropout: float = 0.02
    """Share of training rows whose item and author ids are replaced by 'unknown' (trains it)."""
    epochs: int = 8
    """Passes over the training rows for the response model. 8, not 4: the leave model reads the
    minutes a session has taken, and at 4 epochs the watch model over-predicts how long long
    videos are watched (the demo world: expected watch 40.9 s vs 24.3 s logged, replayed sessions
    35% too short, click AUC 0.739); at 8, replayed sessions are within 3% and click AUC 0.749,
    for about 1.6x the fit time (measured; tests/test_learned_simulator.py)."""
    random_oversample: int = 4
    """Times each uniformly random exposure (is_rand = 1) appears per epoch. Logged feeds show
    what the logging policy liked, so a model fitted on them alone overrates the click rate of
    items that policy would not pick. Held-out random exposures, predicted vs observed click
    rate: 7-day world logs, none 0.48 vs 0.32; default world logs (`recgym world generate`),
    x4 0.38 vs 0.34 at click AUC 0.751 (as without), x8 0.36 vs 0.34 at AUC 0.744. 1: none.
    How it ranks policies (`recgym bench fidelity` on five worlds, paired): x1 moves the
    watch-time tau by -0.065 [-0.140, +0.009], x16 by -0.087 [-0.139, -0.036] although it
    predicts the random exposures' click rate right (`benchmarks/results/fidelity/worlds/`)."""
    random_exposure_input: bool = False
    """Whether the response model reads if an exposure was uniformly random (is_rand = 1), every
    simulated exposure then counting as one. The idea: the logging policy picks items by the
    users' true click probability, so a model fitted on logged rows alone over-predicts for other
    policies' slates, and the prediction *as a random exposure* should transfer better. Off by
    default because the simulator is accepted by how it ranks policies, and there the input hurt
    in both worlds measured (`recgym bench fidelity`, Kendall tau watch / sessions): at 4 epochs
    on the world before the scenario switch, on 0.53 / 0.75 vs off 0.67 / 1.00; at 8 epochs on
    the current world, on 0.45 / 0.67 vs off 0.45 / 0.89 (`benchmarks/results/fidelity/`). With
    8 epochs its calibration argument no longer holds either: the demo's simulator with the input
    predicts random slates' CTR at 0.28 against the world's 0.37. True turns it on."""
    leave_view_seconds: bool = False
    """Whether the leave model also reads each exposure's seconds watched up to KuaiRand's
    long-view threshold, min(watch, 18 s) / 18 s (SIGNALS + ``view_seconds``, `leave.
    signal_names`): a whole 3 s clip is a long view by KuaiRand's rule but a sixth of a real
    view, which `long_view`, the watch ratio and the minutes spent cannot tell the hazard. Off by
    default: over five worlds of `recgym bench fidelity`, paired by world, it moved the
    watch-time tau by +0.036 [-0.087, +0.160] and the requests tau by +0.007 [-0.091, +0.105],
    inconclusive (`benchmarks/results/fidelity/worlds/`)."""
    calibrate_click_on_random: bool = False
    """After fitting, shift the click logit's intercept so that the training rows' uniformly
    random exposures (is_rand = 1) are predicted at their observed click rate
    (`fit._calibrate_click_on_random`, Newton steps as for the leave model's bias). Off by
    default: on the fidelity bench's world it brings the held-out random exposures' predicted
    click rate to 0.194 against 0.201 observed (0.232 without), but leaves the watch-time tau at
    0.45 and lowers the requests tau from 0.89 to 0.75 (`benchmarks/results/fidelity/
    ablation-click-calibration/`)."""
    batch_size: int = 2048
    """Rows per gradient step of the response model."""
    lr: float = 2e-3
    """Adam learning rate of the response model."""
    weight_decay: float = 1e-6
    """Adam L2 penalty of the response model."""
    leave_hidden: tuple[int, ...] = (64, 32)
    """Hidden layer sizes of the leave (hazard) model's MLP."""
    leave_steps: int = 1000
    """Gradient steps of the leave model (whatever the data size: small logs need many passes)."""
    leave_batch_size: int = 4096
    """Rows per gradient step of the leave model."""
    leave_lr: float = 3e-3
    """Adam learning rate of the leave model."""
    leave_weight_decay: float = 1e-4
    """Adam L2 penalty of the leave model."""
    heldout_user_share: float = 0.1
    """Share of logged users whose sessions are all held out for validation."""
    heldout_days: int = 2
    """Sessions starting on the last this-many logged dates are held out for validation."""
    seed: int = 0
    """Seed of the split, the weight initialisation and the batch order."""
    torch_threads: int = 1
    """Torch intra-op threads while fitting (restored afterwards)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulatorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SimulatorConfig fields: {', '.join(unknown)}")
        values = dict(data)
        for name in ("hidden", "leave_hidden"):
            if name in values:
                values[name] = tuple(int(v) for v in values[name])
        return cls(**values)
