"""The world's intent-driven scenario switch: which scenario a user's next request is in, and why.

`World` (simulators/world.py, module docstring point 6) delegates here; the functions read and
write its `UserState` in place. The mechanism, so that cross-scenario history carries information
about what comes next:

- each user has a *search intent*, the category of their strongest ``search_interest``, and a
  count ``unmet`` of feed requests since that intent was last met (a satisfying view, click and
  long view, of an item of that category);
- a feed request that does not meet it adds 1 to ``unmet``; a request that meets it, in either
  scenario, resets ``unmet`` and weakens the intent (``search_interest *= intent_met_decay``); a
  search that finds nothing adds nothing (the user searches again, for the same query);
- the next request is a search with probability ``sigmoid(logit(search_share) + switch_unmet *
  (min(unmet, unmet_cap) - unmet_centre))``; its query is the intent with probability
  ``query_intent_share``, else drawn from search and feed interests (the earlier rule);
- a satisfying view *in search* kindles a feed interest in the item's category (``interest >=
  search_carry``), so what is found in search shapes the next feed requests (``search_carry``
  is small, 0.15, so the world's random-exposure rates stay within KuaiRand's intervals);
- an intent weakened below ``intent_floor`` is replaced, at the next `next_scenario`, by a new
  one in a uniformly drawn category (strength uniform in [0.5, 1]).

Choices the issue leaves open: ``unmet`` counts requests, not items; the replacement intent is
uniform over leaf categories (so it is usually *not* a current feed interest, and the feed
rarely meets it: the user has to search for it, as in the paper's Figure 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import expit

from recgym.simulators.protocol import REC, SEARCH

if TYPE_CHECKING:
    from recgym.simulators.world import Dynamics
    from recgym.simulators.world_build import UserState


def search_intent(state: UserState, users: np.ndarray) -> np.ndarray:
    """(B,) the category of each user's strongest search interest."""
    return np.argmax(state.search_interest[np.asarray(users, dtype=np.int64)], axis=1)


def p_search(state: UserState, dyn: Dynamics, users: np.ndarray) -> np.ndarray:
    """(B,) probability that each user's next request is a search."""
    users = np.asarray(users, dtype=np.int64)
    share = np.clip(state.search_share[users], 1e-6, 1 - 1e-6)
    pressure = np.minimum(state.unmet[users], dyn.unmet_cap) - dyn.unmet_centre
    return expit(np.log(share / (1 - share)) + dyn.switch_unmet * pressure)


def next_scenario(
    state: UserState,
    dyn: Dynamics,
    n_categories: int,
    users: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(scenario (B,) int64 REC/SEARCH, query (B,) int64 leaf category, -1 on a feed request).

    Draws a fixed number of values per user from `rng` whatever the outcome, so a caller's stream
    stays aligned. An intent below ``intent_floor`` is replaced first.
    """
    users = np.asarray(users, dtype=np.int64)
    b = len(users)
    u = rng.random((5, b))
    weak = state.search_interest[users].max(axis=1) < dyn.intent_floor
    if weak.any():
        rows = users[weak]
        new_cat = np.minimum((u[0][weak] * n_categories).astype(np.int64), n_categories - 1)
        strength = (0.5 + 0.5 * u[1][weak]).astype(np.float32)
        state.search_interest[rows, new_cat] = np.maximum(
            state.search_interest[rows, new_cat], strength
        )
    scenario = np.where(u[2] < p_search(state, dyn, users), SEARCH, REC).astype(np.int64)
    weights = state.search_interest[users] + 0.5 * state.interest[users] + 1e-3
    cdf = np.cumsum(weights, axis=1)
    drawn = np.minimum((cdf < u[3][:, None] * cdf[:, -1:]).sum(axis=1), n_categories - 1)
    query = np.where(u[4] < dyn.query_intent_share, search_intent(state, users), drawn)
    return scenario, np.where(scenario == SEARCH, query, -1).astype(np.int64)


def transition(
    state: UserState,
    dyn: Dynamics,
    users: np.ndarray,
    categories: np.ndarray,
    scenario: np.ndarray,
    satisfied: np.ndarray,
) -> None:
    """After a request (B users x K items of `categories`, `satisfied` views): ``unmet``, the
    intent's strength and the search carry-over. A feed request changes only ``unmet`` and the
    intent's strength, which only search requests and `next_scenario` read."""
    is_search = np.broadcast_to(np.asarray(scenario) == SEARCH, (len(users),))
    intent = search_intent(state, users)
    met = (satisfied & (categories == intent[:, None])).any(axis=1)
    state.unmet[users] = np.where(met, 0.0, state.unmet[users] + (~is_search)).astype(np.float32)
    if met.any():
        state.search_interest[users[met], intent[met]] *= np.float32(dyn.intent_met_decay)
    found = satisfied & is_search[:, None]
    if found.any() and dyn.search_carry > 0:
        rows = np.broadcast_to(users[:, None], categories.shape)[found]
        state.interest[rows, categories[found]] = np.maximum(
            state.interest[rows, categories[found]], np.float32(dyn.search_carry)
        )


__all__ = ["next_scenario", "p_search", "search_intent", "transition"]
