"""The seeded ground-truth world: users, items and authors whose behaviour is known exactly.

The world is the embedded default behind every env and the source of synthetic logs in the real
KuaiRand/KuaiSAR schemas. It is built to contain the effects the four papers study, so that their
algorithms have something to learn, and it exposes its truth so that every learned simulator and
policy can be scored against it.

How a request plays out (`World.step`), for a batch of B users each shown K items:

1. *Click.* ``p_click = sigmoid(c0 + interest + match + clickbait + popularity + follow
   - fatigue - position)``: users click what matches an active interest and their latent taste,
   and clickbait items (high `clickbait`) attract clicks. Duration does not enter.
2. *Watch.* Engagement ``e = sat + sat_noise * N(0, 1)``, where ``sat`` rises with interest,
   match, quality and the user-author bond and falls with clickbait and category fatigue. A
   clicked item is watched for a fraction ``ratio = min(1, 1.2 * sigmoid(e - watch_duration *
   log(duration / watch_ref_ms)))`` of its duration: the fraction falls with duration (slope
   ``watch_duration`` > 1 in log duration), so short videos are watched whole and play time
   barely grows with duration, as in KuaiRand (rank correlation of duration with watched
   fraction on clicked random exposures -0.61, with play time 0.12). An unclicked item is
   skimmed (exponential, mean ``skim_ms``, at most half its duration). ``long_view`` follows
   KuaiRand's rule (whole video if <= 18 s, else >= 18 s).
3. *Other behaviours.* like / comment / forward rise with ``sigmoid(e)`` (how much the item
   pleased, whatever its length); hate rises with disappointed clickbait (clicked, no long
   view); follow rises with the number of earlier satisfying contacts with the author (click ->
   follow); gifts go only to followed live-streaming authors and grow with the bond (follow ->
   gift). Satisfying contacts (click and long view) deepen the bond. Rates are calibrated to
   KuaiRand's random exposures (`simulators.calibrate`).
4. *Patience.* A satisfying view (click and long view) restores patience by what it was worth:
   ``patience_restore * (1 - exp(-watch_s / patience_restore_tau_s)) / K`` per item, so the
   restore grows with the seconds actually watched and saturates (tau 6 s: a 3 s clip watched
   whole restores 39%, a view that reaches KuaiRand's 18 s long-view threshold 95%).
   Disappointed clicks, hate, and repetition (categories shown recently or several times in one
   slate) drain it; every request costs a little and every minute spent on it (watch time plus
   a second per item) costs ``patience_per_minute``. The user leaves with probability ``0.01 +
   0.99 * sigmoid(8 * (0.3 - patience))``. This is the long-term trade-off: a ranker of
   immediate watch time serves long videos from the top interest, which spend patience faster
   than a satisfying view restores it, and ends sessions early; "longest first" gains watch
   per request and loses it in session length; "shortest first" cannot farm patience with
   clips watched whole, because a few seconds of viewing restore only part of what a real view
   does (a fixed restore per satisfying view made it the world's best non-oracle policy); a
   ranker that protects patience (satisfying items of moderate length, fresh categories, no
   clickbait) keeps users much longer and gets more watch in total. Neither single-feature
   rule is within reach of that ranker, nor beats the myopic one on watch time.
5. *Interests.* Each user has a sparse set of active interests (strength per leaf category).
   Satisfying consumption reinforces an interest and can kindle a new one; between sessions
   interests fade (and die below a threshold), new ones are born, the latent taste drifts and the
   share of search requests drifts. So the *number* of interests changes over time.

6. *Scenarios: the intent-driven switch* (`simulators/scenarios.py`; `World.next_scenario`,
   called only by the log writer and `recgym/MultiScenario-v0`). A user's search intent (their
   strongest ``search_interest`` category) left unmet by feed requests (``unmet`` counts them)
   raises the chance that the next request is a search, whose query is that intent; a
   satisfying view meets it (it weakens, and is later replaced by a new one); a satisfying
   view in search kindles a feed interest in its category, so what is found in search shapes
   the next feed requests. Cross-scenario history thus predicts the next scenario, query and
   feed clicks. A feed request changes only ``unmet`` and the intent's strength, which only
   search requests read, so Session-v0 and UserAuthor-v0 are unchanged.

Item durations are log-normal around KuaiRand's median (82 s; 3 s to 10 minutes).

All per-user state lives in arrays indexed by user id, so a step over a batch is a handful of
numpy operations; users in one batch must be distinct. Randomness while stepping comes from the
generator the caller passes (an env's ``np_random``); the world's construction uses its own seed.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.special import expit, ndtr

from recgym.simulators import scenarios
from recgym.simulators.arrays import add_at, gather
from recgym.simulators.features import user_feature_matrix
from recgym.simulators.protocol import BEHAVIOURS, REC, SEARCH, StepResult
from recgym.simulators.world_build import (
    RANGE_BUCKETS,
    RealMarginals,
    Truth,
    UserState,
    build_catalogue,
    build_users,
    epoch_ms,
    item_table,
    user_table,
    validate,
)

DAY_MS = 86_400_000
LONG_VIEW_MS = 18_000


@dataclass(kw_only=True)
class WorldConfig:
    """Size and seed of a ground-truth world. Behavioural constants live in `Dynamics`."""

    n_users: int = 1000
    """Number of users."""
    n_items: int = 3000
    """Number of items (videos)."""
    n_authors: int = 300
    """Number of authors; productivity is Zipf-skewed, so a few authors upload many items."""
    n_top_categories: int = 6
    """Top-level categories; each has `leaves_per_top` leaf categories."""
    leaves_per_top: int = 5
    """Leaf categories per top category (n_categories = n_top_categories * leaves_per_top)."""
    latent_dim: int = 16
    """Dimension of the latent taste/item vectors."""
    live_author_share: float = 0.15
    """Share of authors who stream live and can receive gifts."""
    history_len: int = 20
    """How many consumed items `history` returns per user."""
    seed: int = 0
    """Root of the world's seed tree (construction only; stepping uses the caller's generator)."""
    real_features: str | None = None
    """Optional directory with KuaiRand-Pure's user_features_pure.csv and
    video_features_basic_pure.csv. Given it, the world takes its marginals from real rows
    (`RealMarginals`): users' static features are a seeded bootstrap of whole real user rows
    (activity level, onehot_feat0..17, register days, follow/fan/friend counts, author flag;
    the joint distribution is kept, and activity still sets patience and session frequency),
    item durations a bootstrap of real video durations, and author productivity a bootstrap
    of the real items-per-author counts. Interests, tastes, categories and all behaviour stay
    synthetic, so the static features carry only the signal the real ones carry (through
    activity). None: everything synthetic."""


@dataclass(kw_only=True)
class Dynamics:
    """The behavioural constants of the world; changing them changes the MDP (bump env versions).

    - ``click_*``: terms of the click logit (bias; weights of interest in the item's category,
      taste match, the item's clickbait, log popularity, following the author, category fatigue,
      and a penalty per slate position);
    - ``sat_*``: terms of the engagement logit ``e = sat + sat_noise * N(0, 1)`` (bias, interest,
      match, quality, clickbait (negative), fatigue (negative), user-author bond). Engagement is
      how much the user likes the item, whatever its length: likes, comments, forwards, follows
      and gifts rise with ``sigmoid(e)``;
    - ``watch_duration`` / ``watch_ref_ms``: the watched fraction of a clicked item is
      ``min(1, 1.2 * sigmoid(e - watch_duration * log(duration / watch_ref_ms)))``, so it falls
      with duration and play time grows only like ``duration ** (1 - watch_duration)``;
      ``skim_ms`` is the mean time spent on an item that is not clicked (exponential, at most half
      its duration);
    - ``like_bias``, ``comment_bias``, ``forward_bias``, ``hate_bias``, ``follow_bias``,
      ``follow_bond``, ``gift_bias``: the rarer behaviours' logits (see `World.step`);
    - ``patience_*``: per item, a satisfying view (click and long view) of ``watch_s`` seconds
      restores ``patience_restore * (1 - exp(-watch_s / patience_restore_tau_s)) / K`` (the
      restore grows with the seconds watched and saturates; chosen so that a clip watched whole
      in a few seconds is worth less than a real view, and "shortest first" cannot farm
      patience), disappointed clicks (click, no long view) and hates drain it (``/ K`` each), a
      repeated category drains it;
      every request costs ``patience_cost`` and every minute spent on it (watching plus a second
      per item) ``patience_per_minute``; after a request the user leaves with ``leave_floor +
      (1 - leave_floor) * sigmoid(8 * (leave_threshold - patience))``;
    - ``fatigue_decay``: per-item decay of category fatigue;
    - ``interest_*`` / ``*_drift_per_day``: interests are reinforced by satisfying views, fade
      per day, die below ``interest_death``, new ones are born at a daily rate; taste and the
      search share drift daily; ``session_gap_hours`` is the mean gap between sessions;
    - ``switch_unmet``, ``unmet_cap``, ``unmet_centre``, ``query_intent_share``,
      ``intent_met_decay``, ``intent_floor``, ``search_carry``: the intent-driven scenario
      switch (module docstring, point 6); ``switch_unmet = 0`` and ``search_carry = 0`` turn
      it off (the search share alone then picks the scenario).

    The defaults are calibrated to KuaiRand's random exposures (`simulators.calibrate`,
    ``recgym world calibrate``); `World` documents each mechanism where it is computed.
    """

    click_bias: float = -2.8
    click_interest: float = 4.5
    click_match: float = 0.8
    click_clickbait: float = 1.6
    click_popularity: float = 0.25
    click_follow: float = 0.6
    click_fatigue: float = 0.15
    click_position: float = 0.06
    sat_bias: float = 2.6
    sat_interest: float = 1.0
    sat_match: float = 0.5
    sat_quality: float = 0.4
    sat_clickbait: float = 1.5
    sat_fatigue: float = 0.25
    sat_bond: float = 0.25
    sat_noise: float = 0.9
    watch_duration: float = 1.35
    watch_ref_ms: float = 5_000.0
    skim_ms: float = 2200.0
    like_bias: float = -7.0
    comment_bias: float = -8.5
    forward_bias: float = -8.5
    hate_bias: float = -7.5
    follow_bias: float = -9.0
    follow_bond: float = 1.9
    gift_bias: float = -7.0
    patience_restore: float = 0.6
    patience_restore_tau_s: float = 6.0
    patience_disappoint: float = 0.08
    patience_hate: float = 0.08
    patience_repeat: float = 0.05
    patience_cost: float = 0.004
    patience_per_minute: float = 0.12
    leave_floor: float = 0.01
    leave_threshold: float = 0.3
    fatigue_decay: float = 0.75
    interest_reinforce: float = 0.04
    interest_fade_per_day: float = 0.93
    interest_death: float = 0.1
    interest_birth_per_day: float = 0.25
    taste_drift_per_day: float = 0.05
    search_drift_per_day: float = 0.25
    session_gap_hours: float = 10.0
    switch_unmet: float = 0.8
    unmet_cap: float = 4.0
    unmet_centre: float = 1.5
    query_intent_share: float = 0.8
    intent_met_decay: float = 0.4
    intent_floor: float = 0.45
    search_carry: float = 0.15


class World:
    """A seeded ground-truth population; satisfies `simulators.protocol.UserModel`."""

    behaviours: tuple[str, ...] = BEHAVIOURS

    def __init__(self, config: WorldConfig | None = None, dynamics: Dynamics | None = None):
        self.config = config or WorldConfig()
        self.dynamics = dynamics or Dynamics()
        cfg = self.config
        validate(cfg)
        if cfg.n_users * cfg.n_authors > 400_000_000:
            raise ValueError(
                f"n_users * n_authors = {cfg.n_users * cfg.n_authors:,} is too large for the dense "
                "user-author bond table; use fewer users or authors"
            )
        ss_items, ss_users = np.random.SeedSequence(cfg.seed).spawn(2)
        real = None
        if cfg.real_features is not None:
            real = RealMarginals.load(cfg.real_features)
        self.catalogue, item_truth = build_catalogue(cfg, np.random.default_rng(ss_items), real)
        self.truth, self._initial = build_users(
            cfg, self.catalogue, item_truth, np.random.default_rng(ss_users), real
        )
        self.state = copy.deepcopy(self._initial)
        self.n_users = cfg.n_users
        self.history_len = cfg.history_len
        self._user_features = user_feature_matrix(self.user_table())
        self.user_feature_dim = self._user_features.shape[1]

    # ----------------------------------------------------------------- state management
    def reset_state(self) -> None:
        """Return every user to the state the world was built with."""
        self.state = copy.deepcopy(self._initial)

    def snapshot(self) -> UserState:
        return copy.deepcopy(self.state)

    def restore(self, snapshot: UserState) -> None:
        self.state = copy.deepcopy(snapshot)

    # ----------------------------------------------------------------- UserModel protocol
    def user_features(self, users: np.ndarray) -> np.ndarray:
        return self._user_features[users]

    def history(self, users: np.ndarray) -> np.ndarray:
        return self.state.history[users]

    def n_interests(
        self, users: np.ndarray | None = None, threshold: float | None = None
    ) -> np.ndarray:
        """Number of active interests per user (strength above the death threshold)."""
        thr = self.dynamics.interest_death if threshold is None else threshold
        interest = self.state.interest if users is None else self.state.interest[users]
        return (interest > thr).sum(axis=1)

    def begin_session(
        self,
        users: np.ndarray,
        rng: np.random.Generator,
        start_ms: np.ndarray | None = None,
    ) -> None:
        """Start a session: time passes since the last one (drift, fading, births), patience resets.

        `start_ms` sets each user's clock; by default a gap of about `session_gap_hours` is drawn.
        """
        users = np.asarray(users, dtype=np.int64)
        st, dyn = self.state, self.dynamics
        if start_ms is None:
            gap = rng.exponential(dyn.session_gap_hours * 3_600_000, size=len(users)) + 600_000
            start_ms = st.clock_ms[users] + gap.astype(np.int64)
        start_ms = np.asarray(start_ms, dtype=np.int64)
        days = np.maximum(start_ms - st.clock_ms[users], 0) / DAY_MS
        self._pass_time(users, days, rng)
        st.clock_ms[users] = start_ms
        st.patience[users] = self.truth.user_base_patience[users] + rng.normal(0, 0.05, len(users))
        st.session_steps[users] = 0

    def step(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        rng: np.random.Generator,
        scenario: np.ndarray | None = None,
    ) -> StepResult:
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        if len(users) > 1 and (np.diff(np.sort(users)) == 0).any():
            raise ValueError("World.step needs distinct users in one batch")
        st, dyn, cat_ = self.state, self.dynamics, self.catalogue
        b, k = slate.shape
        terms = self._terms(users, slate, scenario)

        click = rng.random((b, k)) < expit(terms["click_logit"])
        engage = terms["sat"] + dyn.sat_noise * rng.standard_normal((b, k))
        ratio = np.minimum(1.0, 1.2 * expit(engage - terms["length"]))
        duration = cat_.duration_ms.take(slate)
        skim = np.minimum(rng.exponential(dyn.skim_ms, (b, k)), 0.5 * duration)
        watch_ms = np.where(click, ratio * duration, skim).astype(np.int64)
        long_view = watch_ms >= np.minimum(duration, LONG_VIEW_MS)
        satisfied = click & long_view
        disappointed = click & ~long_view
        joy = expit(engage)  # duration-free: a long video watched in part can still please
        interest = terms["interest"]
        followed = terms["followed"]
        bond = terms["bond"]
        cb = terms["clickbait"]
        u = rng.random((6, b, k))
        like = click & (u[0] < expit(dyn.like_bias + 3.0 * joy + interest))
        comment = click & (u[1] < expit(dyn.comment_bias + 3.0 * joy + 0.8 * followed))
        forward = click & (u[2] < expit(dyn.forward_bias + 3.0 * joy + 0.8 * interest))
        hate = u[3] < expit(dyn.hate_bias + 4.0 * cb * disappointed - 1.5 * interest)
        follow = (
            click
            & ~followed
            & (
                u[4]
                < expit(dyn.follow_bias + dyn.follow_bond * np.log1p(bond) + 2 * joy - 1.5 * cb)
            )
        )
        live = cat_.author_is_live[terms["author"]]
        gift = (
            click
            & followed
            & live
            & (u[5] < expit(dyn.gift_bias + 0.8 * np.log1p(bond) + 2.0 * joy))
        )

        # --- state transition -------------------------------------------------------------
        rows = np.broadcast_to(users[:, None], (b, k))
        author = terms["author"]
        add_at(st.bond, (rows[satisfied], author[satisfied]), 1.0)
        st.follows[rows[follow], author[follow]] = True
        cats = terms["category"]
        shown = np.bincount(
            (np.arange(b)[:, None] * cat_.n_categories + cats).ravel(),
            minlength=b * cat_.n_categories,
        ).reshape(b, cat_.n_categories)
        # repetition: recent exposure to the slate's categories plus duplicates within the slate
        sorted_cats = np.sort(cats, axis=1)
        distinct = 1 + (np.diff(sorted_cats, axis=1) != 0).sum(axis=1)
        repeat = np.minimum(terms["fatigue"], 3.0).mean(axis=1) / 3.0 + 0.5 * (k - distinct) / k
        st.fatigue[users] = st.fatigue[users] * dyn.fatigue_decay + shown
        elapsed = watch_ms.sum(axis=1) + 1000 * k
        # a satisfying view restores with the seconds watched, saturating: a 5 s clip watched
        # whole restores little, a minute-long view nearly the full `patience_restore`
        value = np.where(
            satisfied, -np.expm1(-watch_ms / (1000.0 * dyn.patience_restore_tau_s)), 0.0
        )
        patience = st.patience[users] + (
            dyn.patience_restore * value.mean(axis=1)
            - dyn.patience_disappoint * disappointed.mean(axis=1)
            - dyn.patience_hate * hate.mean(axis=1)
            - dyn.patience_repeat * repeat
            - dyn.patience_cost
            - dyn.patience_per_minute * elapsed / 60_000.0
        )
        # in the state's dtype, as the in-place update of ``st.patience[users]`` would store it
        patience = np.clip(patience.astype(st.patience.dtype, copy=False), -1.0, 1.5)
        st.patience[users] = patience
        # interests: satisfying consumption reinforces an interest, or kindles a new one (a few
        # satisfying items of a category lift it past `interest_death`)
        sat_rows, sat_cats = rows[satisfied], cats[satisfied]
        current = st.interest[sat_rows, sat_cats]
        st.interest[sat_rows, sat_cats] = np.minimum(1.0, current + dyn.interest_reinforce)
        scenarios.transition(st, dyn, users, terms["category"], terms["scenario"], satisfied)
        self._push_history(users, np.where(click, slate, -1))
        st.clock_ms[users] += elapsed
        st.session_steps[users] += 1
        p_leave = dyn.leave_floor + (1 - dyn.leave_floor) * expit(
            8.0 * (dyn.leave_threshold - patience)
        )
        left = rng.random(b) < p_leave
        responses = {
            "click": click,
            "long_view": long_view,
            "watch_ms": watch_ms,
            "like": like,
            "follow": follow,
            "comment": comment,
            "forward": forward,
            "hate": hate,
            "gift": gift,
        }
        return StepResult(
            responses=responses,
            left=left,
            elapsed_ms=elapsed.astype(np.int64),
            info={"p_leave": p_leave, "scenario": terms["scenario"]},
        )

    # ----------------------------------------------------------------- scenarios
    def search_intent(self, users: np.ndarray) -> np.ndarray:
        """(B,) each user's search intent: the category of their strongest search interest."""
        return scenarios.search_intent(self.state, users)

    def p_search(self, users: np.ndarray) -> np.ndarray:
        """(B,) true probability that each user's next request is a search (point 6)."""
        return scenarios.p_search(self.state, self.dynamics, users)

    def next_scenario(
        self, users: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scenario (B,) REC/SEARCH, query (B,) leaf category or -1) of each user's next
        request (point 6; `simulators.scenarios.next_scenario`)."""
        return scenarios.next_scenario(
            self.state, self.dynamics, self.catalogue.n_categories, users, rng
        )

    # ----------------------------------------------------------------- truth for scoring
    def expected_responses(
        self, users: np.ndarray, slate: np.ndarray, scenario: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """True response probabilities for `slate` (B, K) without changing any state.

        `click` and `long_view` are exact; `watch_ms` is the expectation of watch time with the
        engagement noise integrated by 24-point Gauss-Hermite quadrature (`mean_ratio`: the
        expected watched fraction given a click). A satisfying view (click and long view) has
        probability `long_view`, a disappointed click `click - long_view`.
        """
        users = np.asarray(users, dtype=np.int64)
        slate = np.asarray(slate, dtype=np.int64)
        dyn = self.dynamics
        terms = self._terms(users, slate, scenario)
        p_click = expit(terms["click_logit"])
        duration = self.catalogue.duration_ms[slate].astype(np.float64)
        # P(ratio * duration >= threshold), ratio = min(1, 1.2 * sigmoid(sat + sd * eps - length))
        need = np.minimum(duration, LONG_VIEW_MS) / duration / 1.2
        need = np.clip(need, 1e-9, 1 - 1e-9)
        z = (np.log(need / (1 - need)) + terms["length"] - terms["sat"]) / dyn.sat_noise
        p_long_given_click = 1.0 - ndtr(z)
        nodes, weights = np.polynomial.hermite_e.hermegauss(24)
        weights = weights / weights.sum()
        engage = terms["sat"][..., None] + dyn.sat_noise * nodes
        ratios = np.minimum(1.0, 1.2 * expit(engage - terms["length"][..., None]))
        mean_ratio = (ratios * weights).sum(axis=-1)
        skim = dyn.skim_ms * (1 - np.exp(-0.5 * duration / dyn.skim_ms))
        watch = p_click * mean_ratio * duration + (1 - p_click) * skim
        return {
            "click": p_click,
            "long_view": p_click * p_long_given_click,
            "watch_ms": watch,
            "mean_ratio": mean_ratio,
            "clickbait": terms["clickbait"],
        }

    # ----------------------------------------------------------------- tables for log writers
    def user_table(self) -> pd.DataFrame:
        """Users in KuaiRand's user_features schema (`world_build.user_table`)."""
        return user_table(self)

    def item_table(self, start_date: str = "2022-04-08") -> pd.DataFrame:
        """Items in KuaiRand's video_features_basic schema (`world_build.item_table`)."""
        return item_table(self, start_date)

    def config_dict(self) -> dict:
        return {"world": asdict(self.config), "dynamics": asdict(self.dynamics)}

    # ----------------------------------------------------------------- internals
    def _terms(
        self, users: np.ndarray, slate: np.ndarray, scenario: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        st, dyn, c, t = self.state, self.dynamics, self.catalogue, self.truth
        b, k = slate.shape
        rows = users[:, None]
        # 1-D takes (`arrays.gather`): the values of ``[slate]`` / ``[rows, cats]`` indexing
        cats = c.category.take(slate)
        author = c.author.take(slate)
        interest = gather(st.interest, rows, cats)
        if scenario is None:
            scenario = np.full(b, REC, dtype=np.int64)
        is_search = (np.asarray(scenario) == SEARCH)[:, None]
        if is_search.any():  # else np.where would return `interest` unchanged
            interest = np.where(
                is_search, np.maximum(interest, gather(st.search_interest, rows, cats)), interest
            )
        match = np.einsum(
            "bd,bkd->bk", st.latent[users], t.item_latent.take(slate, axis=0)
        ) / np.sqrt(t.item_latent.shape[1])
        fatigue = gather(st.fatigue, rows, cats)
        bond = gather(st.bond, rows, author)
        followed = gather(st.follows, rows, author)
        cb = t.item_clickbait.take(slate)
        click_logit = (
            dyn.click_bias
            + dyn.click_interest * interest
            + dyn.click_match * match
            + dyn.click_clickbait * cb
            + dyn.click_popularity * t.item_log_popularity.take(slate)
            + dyn.click_follow * followed
            - dyn.click_fatigue * fatigue
            - dyn.click_position * np.arange(k)
            + 0.5 * is_search
        )
        sat = (
            dyn.sat_bias
            + dyn.sat_interest * interest
            + dyn.sat_match * match
            + dyn.sat_quality * t.item_quality.take(slate)
            - dyn.sat_clickbait * cb
            - dyn.sat_fatigue * fatigue
            + dyn.sat_bond * np.log1p(bond)
        )
        length = dyn.watch_duration * np.log(c.duration_ms.take(slate) / dyn.watch_ref_ms)
        return {
            "click_logit": click_logit,
            "sat": sat,
            "length": length,
            "interest": interest,
            "fatigue": fatigue,
            "bond": bond,
            "followed": followed,
            "clickbait": cb,
            "author": author,
            "category": cats,
            "scenario": np.asarray(scenario),
        }

    def _push_history(self, users: np.ndarray, consumed: np.ndarray) -> None:
        """Append each row's consumed items (-1 = none) to the users' history, keeping order."""
        st = self.state
        merged = np.concatenate([st.history[users], consumed], axis=1)
        # a stable partition, -1 entries first: one np.sort of (valid << bits | column) keys
        # orders each row as the stable argsort of ``merged >= 0`` would, several times faster
        width = merged.shape[1]
        bits = max(1, (width - 1).bit_length())
        keys = ((merged >= 0).astype(np.int64) << bits) | np.arange(width, dtype=np.int64)
        order = np.sort(keys, axis=1)[:, -self.history_len :] & ((1 << bits) - 1)
        st.history[users] = np.take_along_axis(merged, order, axis=1)

    def _pass_time(self, users: np.ndarray, days: np.ndarray, rng: np.random.Generator) -> None:
        """Advance users by `days` (B,): fatigue recovers, interests fade/die/are born, drift."""
        st, dyn = self.state, self.dynamics
        n_cat = self.catalogue.n_categories
        d = days[:, None]
        st.fatigue[users] *= np.exp(-24.0 * d)  # fatigue halves within about 40 minutes
        interest = st.interest[users] * dyn.interest_fade_per_day**d
        interest[interest < dyn.interest_death] = 0.0
        born = rng.random(len(users)) < 1.0 - np.exp(-dyn.interest_birth_per_day * days)
        empty = interest.max(axis=1) == 0.0
        new_cat = rng.integers(0, n_cat, len(users))
        give = born | empty
        interest[give, new_cat[give]] = np.maximum(interest[give, new_cat[give]], 0.6)
        st.interest[users] = interest.astype(np.float32)
        sd = np.sqrt(days)[:, None]
        st.latent[users] += rng.normal(0, 1, st.latent[users].shape) * dyn.taste_drift_per_day * sd
        logit = np.log(st.search_share[users] / (1 - st.search_share[users]))
        logit += rng.normal(0, 1, len(users)) * dyn.search_drift_per_day * np.sqrt(days)
        st.search_share[users] = expit(logit)


__all__ = [
    "DAY_MS",
    "LONG_VIEW_MS",
    "RANGE_BUCKETS",
    "Dynamics",
    "RealMarginals",
    "Truth",
    "UserState",
    "World",
    "WorldConfig",
    "epoch_ms",
]
