"""A learned scenario switch on top of a learned user simulator: the backend of
`recgym/MultiScenario-v0` when the users are learned from logs rather than the world.

`ScenarioModel` is fitted on a KuaiSAR directory (`data.loaders.kuaisar`): per user, in time
order, the feed requests of rec_inter.csv and the search sessions of src_inter.csv. It learns

- the switch: P(the next request is a search | feed requests since the last search (0..4+),
  the last search's outcome (none yet / nothing clicked / a click)), a smoothed table over every
  request that another request of the same user follows within ``session_gap_minutes``;
- the query: P(the query repeats the previous one | the previous search's outcome) and, for a
  new query, each user's category mix (their clicked items' categories, shrunk towards the
  global mix of query categories). A search session's category is the most frequent category
  of the items it showed (KuaiSAR's keywords are anonymous tokens; choice).

`ScenarioSimulator` composes it with any response backend (`UserModel`) over the same item and
user ids - here a `LearnedSimulator`, whose response model takes the scenario as an input (it
was fitted on KuaiRand-schema logs whose tab says feed or search), so feed *and* search
responses, and leaving, are the learned simulator's; the switch and the query are this model's.

Choices where the data is silent: KuaiSAR does not mark feed requests; ``request_size``
consecutive rec_inter rows of a user (6, what `recgym world generate` writes) form one, and the
``search`` flag of its last row says whether a search follows (as the writers and the real
KuaiSAR define it). Categories come from the response backend's catalogue (ids must match the
KuaiSAR files', as they do for world-written directories).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recgym.simulators.protocol import REC, SEARCH, Catalogue, StepResult, UserModel

SCENARIO_FILE = "scenario.json"
RUN_BUCKETS = 5
"""Feed-run buckets of the switch table: 0, 1, 2, 3 and 4+ feed requests since the last search."""
OUTCOMES = 3
"""Last search outcome: 0 none yet, 1 nothing clicked, 2 a click."""


@dataclass
class ScenarioModel:
    """The fitted switch and query model (module docstring); plain arrays, saved as JSON."""

    p_search: list[list[float]]
    """(RUN_BUCKETS, OUTCOMES) P(next request is a search)."""
    p_repeat: list[float]
    """(OUTCOMES,) P(a search repeats the previous query | the previous search's outcome)."""
    category_mix: list[list[float]]
    """(n_users, n_categories) each user's query-category distribution for a new query."""
    counts: list[list[int]]
    """(RUN_BUCKETS, OUTCOMES) decisions behind each p_search cell (for reports)."""

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SCENARIO_FILE
        path.write_text(json.dumps(asdict(self)))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> ScenarioModel:
        path = Path(directory) / SCENARIO_FILE
        if not path.is_file():
            raise ValueError(
                f"{path} not found: fit a scenario model on KuaiSAR logs "
                "(simulators.learned.scenario.fit_scenario_model) and save it beside the checkpoint"
            )
        return cls(**json.loads(path.read_text()))


def fit_scenario_model(
    directory: str | Path,
    catalogue: Catalogue,
    item_ids: np.ndarray,
    user_ids: np.ndarray,
    *,
    request_size: int = 6,
    session_gap_minutes: float = 30.0,
    prior: float = 2.0,
) -> ScenarioModel:
    """Fit on the KuaiSAR directory `directory` for a backend whose catalogue index i is raw
    item id ``item_ids[i]`` and whose user index j is raw user id ``user_ids[j]``."""
    from recgym.data.loaders.kuaisar import load_kuaisar

    inter = load_kuaisar(directory, cache=False).interactions
    inter = inter[inter["user_id"].isin(user_ids)]
    is_search = (inter["scenario"] == "search").to_numpy()
    user = np.searchsorted(user_ids, inter["user_id"].to_numpy(np.int64))
    raw_item = inter["item_id"].to_numpy(np.int64)
    pos = np.minimum(np.searchsorted(item_ids, raw_item), len(item_ids) - 1)
    category = np.where(item_ids[pos] == raw_item, catalogue.category[pos], -1)
    rows = pd.DataFrame(
        {
            "user": user,
            "ts": inter["timestamp"].to_numpy(np.int64),
            "search": is_search,
            "session": inter["search_session_id"].fillna(-1).to_numpy(np.int64),
            "click": np.where(
                is_search,
                inter["click_cnt"].fillna(0).to_numpy(np.int64) > 0,
                inter["click"].fillna(0).to_numpy(np.int64) > 0,
            ),
            "category": category,
            "row": np.arange(len(inter)),
        }
    ).sort_values(["user", "ts", "row"], kind="stable")
    # requests: a search session, or request_size consecutive feed rows between searches
    seg = (rows["user"] != rows["user"].shift()) | (rows["search"] != rows["search"].shift())
    seg = seg.cumsum()
    within = rows.groupby(seg).cumcount().to_numpy()
    sub = pd.Series(np.where(rows["search"], rows["session"], within // request_size))
    seg = seg.reset_index(drop=True)
    rows["request"] = ((seg != seg.shift()) | (sub != sub.shift())).cumsum().to_numpy()
    req = rows.groupby("request", sort=True).agg(
        user=("user", "first"),
        ts=("ts", "first"),
        end=("ts", "last"),
        search=("search", "first"),
        click=("click", "max"),
        category=("category", lambda c: c[c >= 0].mode().min() if (c >= 0).any() else -1),
    )
    u, s = req["user"].to_numpy(), req["search"].to_numpy(dtype=bool)
    click, qcat = req["click"].to_numpy(dtype=bool), req["category"].to_numpy(np.int64)
    ts, end = req["ts"].to_numpy(), req["end"].to_numpy()
    follows = np.r_[(u[1:] == u[:-1]) & (ts[1:] - end[:-1] < 60_000 * session_gap_minutes), False]
    # the state after each request: feed requests since the last search, last search outcome
    frame = pd.DataFrame({"u": u, "s": s})
    block = frame.groupby("u")["s"].cumsum().to_numpy()
    run = frame.groupby([u, block]).cumcount().to_numpy() + (block == 0)
    run = np.where(s, 0, run)
    outcome = (
        pd.Series(np.where(s, np.where(click, 2.0, 1.0), np.nan)).groupby(u).ffill().fillna(0)
    ).to_numpy(np.int64)
    bucket = np.minimum(run, RUN_BUCKETS - 1)
    nxt_search = np.r_[s[1:], False]
    hits = np.zeros((RUN_BUCKETS, OUTCOMES))
    totals = np.zeros((RUN_BUCKETS, OUTCOMES))
    np.add.at(hits, (bucket[follows], outcome[follows]), nxt_search[follows])
    np.add.at(totals, (bucket[follows], outcome[follows]), 1.0)
    base = nxt_search[follows].mean() if follows.any() else 0.5
    p_search = (hits + prior * base) / (totals + prior)
    # query repeats: each search with an earlier search of the same user
    searches = np.flatnonzero(s & (qcat >= 0))
    su = u[searches]
    has_prev = np.r_[False, su[1:] == su[:-1]]
    now, before = searches[has_prev], searches[np.flatnonzero(has_prev) - 1]
    prev_out = np.where(click[before], 2, 1)
    repeat = qcat[now] == qcat[before]
    p_repeat = [
        float((repeat[prev_out == o].sum() + 0.5) / ((prev_out == o).sum() + 1.0))
        for o in range(OUTCOMES)
    ]
    n_cat = catalogue.n_categories
    global_mix = np.bincount(qcat[searches], minlength=n_cat) + 1.0
    global_mix /= global_mix.sum()
    clicked = rows[rows["click"] & (rows["category"] >= 0)]
    per_user = np.zeros((len(user_ids), n_cat))
    np.add.at(per_user, (clicked["user"].to_numpy(), clicked["category"].to_numpy()), 1.0)
    mix = (per_user + 5.0 * global_mix) / (per_user.sum(1, keepdims=True) + 5.0)
    return ScenarioModel(
        p_search=p_search.tolist(),
        p_repeat=p_repeat,
        category_mix=mix.tolist(),
        counts=totals.astype(int).tolist(),
    )


class ScenarioSimulator:
    """A `UserModel` with ``next_scenario``: responses from `responses`, the switch and query
    from a `ScenarioModel` (module docstring). Per-user switch state: the feed run, the last
    search's outcome and query; kept across sessions, restored by `restore`/`reset_state`."""

    def __init__(self, responses: UserModel, model: ScenarioModel):
        self.responses, self.model = responses, model
        self.catalogue: Catalogue = responses.catalogue
        self.behaviours = responses.behaviours
        self.n_users = responses.n_users
        self.user_feature_dim = responses.user_feature_dim
        self.history_len = responses.history_len
        self._p_search = np.asarray(model.p_search, dtype=np.float64)
        self._p_repeat = np.asarray(model.p_repeat, dtype=np.float64)
        self._cdf = np.cumsum(np.asarray(model.category_mix, dtype=np.float64), axis=1)
        if self._cdf.shape != (self.n_users, self.catalogue.n_categories):
            raise ValueError(
                f"ScenarioModel fitted for {self._cdf.shape} (users, categories); the response "
                f"backend has ({self.n_users}, {self.catalogue.n_categories})"
            )
        self.reset_switch()

    @classmethod
    def load(cls, checkpoint: str | Path) -> ScenarioSimulator:
        """A `LearnedSimulator` checkpoint directory with a `ScenarioModel` saved beside it."""
        from recgym.simulators.learned import LearnedSimulator

        model = ScenarioModel.load(checkpoint)
        return cls(LearnedSimulator.load(checkpoint), model)

    def reset_switch(self) -> None:
        self.run = np.zeros(self.n_users, dtype=np.int64)
        self.outcome = np.zeros(self.n_users, dtype=np.int64)
        self.last_query = np.full(self.n_users, -1, dtype=np.int64)

    # ------------------------------------------------------------------ state
    def reset_state(self) -> None:
        if hasattr(self.responses, "reset_state"):
            self.responses.reset_state()
        self.reset_switch()

    def snapshot(self) -> tuple:
        inner = (
            self.responses.snapshot()
            if hasattr(self.responses, "snapshot")
            else copy.deepcopy(getattr(self.responses, "state", None))
        )
        return inner, self.run.copy(), self.outcome.copy(), self.last_query.copy()

    def restore(self, snap: tuple) -> None:
        inner, run, outcome, last_query = snap
        if hasattr(self.responses, "restore"):
            self.responses.restore(inner)
        else:
            self.responses.reset_state()
        self.run, self.outcome, self.last_query = run.copy(), outcome.copy(), last_query.copy()

    # ------------------------------------------------------------------ UserModel
    def user_features(self, users: np.ndarray) -> np.ndarray:
        return self.responses.user_features(users)

    def history(self, users: np.ndarray) -> np.ndarray:
        return self.responses.history(users)

    def begin_session(self, users: np.ndarray, rng: np.random.Generator) -> None:
        self.responses.begin_session(users, rng)

    def step(
        self,
        users: np.ndarray,
        slate: np.ndarray,
        rng: np.random.Generator,
        scenario: np.ndarray | None = None,
    ) -> StepResult:
        users = np.asarray(users, dtype=np.int64)
        scen = np.full(len(users), REC) if scenario is None else np.asarray(scenario)
        res = self.responses.step(users, slate, rng, scenario=scen)
        is_search = scen == SEARCH
        clicked = np.asarray(res.responses["click"], dtype=bool).any(axis=1)
        self.run[users] = np.where(is_search, 0, self.run[users] + 1)
        self.outcome[users] = np.where(is_search, np.where(clicked, 2, 1), self.outcome[users])
        return res

    def next_scenario(
        self, users: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scenario (B,), query category (B,), -1 in the feed): the switch table at each user's
        (feed run, last outcome), then the query (repeat, or a draw from the user's mix)."""
        users = np.asarray(users, dtype=np.int64)
        u = rng.random((3, len(users)))
        bucket = np.minimum(self.run[users], RUN_BUCKETS - 1)
        p = self._p_search[bucket, self.outcome[users]]
        scenario = np.where(u[0] < p, SEARCH, REC).astype(np.int64)
        cdf = self._cdf[users]
        drawn = np.minimum((cdf < u[1][:, None] * cdf[:, -1:]).sum(1), cdf.shape[1] - 1)
        last = self.last_query[users]
        repeat = (last >= 0) & (u[2] < self._p_repeat[self.outcome[users]])
        query = np.where(repeat, last, drawn)
        is_search = scenario == SEARCH
        self.last_query[users] = np.where(is_search, query, last)
        return scenario, np.where(is_search, query, -1).astype(np.int64)


__all__ = ["SCENARIO_FILE", "ScenarioModel", "ScenarioSimulator", "fit_scenario_model"]
