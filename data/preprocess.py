"""Explicit filtering steps on a loaded Dataset; each returns a new one and logs what it removed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .schema import Dataset, FilterStep


def _apply(
    ds: Dataset,
    keep: np.ndarray | pd.Series | None,
    *,
    step: str,
    reason: str,
    order: np.ndarray | None = None,
    details: dict[str, int] | None = None,
    users: pd.DataFrame | None = None,
    items: pd.DataFrame | None = None,
) -> Dataset:
    """New Dataset with the kept rows (in `order` if given) and the step appended to its report."""
    inter = ds.interactions
    if keep is not None:
        inter = inter[np.asarray(keep, dtype=bool)]
    if order is not None:
        inter = inter.iloc[order]
    inter = inter.reset_index(drop=True)
    report = ds.report.copy()
    report.filters.append(
        FilterStep(
            step=step,
            reason=reason,
            rows_before=len(ds.interactions),
            rows_after=len(inter),
            details=details or {},
        )
    )
    return dataclasses.replace(
        ds,
        interactions=inter,
        users=ds.users if users is None else users,
        items=ds.items if items is None else items,
        report=report,
    )


def implicit_feedback(ds: Dataset, *, min_rating: int = 4) -> Dataset:
    """Keep only positive interactions.

    ml-100k: rating >= min_rating. KuaiRand: is_click == 1 or long_view == 1. KuaiSAR: click == 1
    on recommendation rows, click_cnt > 0 on search rows. Last.fm tag assignments and Foursquare
    check-ins are all positive already (nothing is removed; the step is still recorded).
    `min_rating` only applies to ml-100k.
    """
    inter = ds.interactions
    if ds.format == "ml-100k":
        keep = inter["rating"].to_numpy() >= min_rating
        reason = f"kept ratings >= {min_rating}"
    elif ds.format == "kuairand":
        keep = (inter["is_click"].to_numpy() == 1) | (inter["long_view"].to_numpy() == 1)
        reason = "kept is_click == 1 or long_view == 1"
    elif ds.format == "kuaisar":
        rec = (inter["scenario"] == "rec").to_numpy()
        clicked = inter["click"].fillna(0).to_numpy() == 1
        searched = inter["click_cnt"].fillna(0).to_numpy() > 0
        keep = np.where(rec, clicked, searched)
        reason = "kept click == 1 (rec) or click_cnt > 0 (search)"
    elif ds.format in ("lastfm", "foursquare"):
        keep = None
        reason = "every row is already a positive interaction"
    else:
        raise ValueError(f"no implicit-feedback rule for format {ds.format!r}")
    return _apply(ds, keep, step="implicit_feedback", reason=reason)


def dedup(ds: Dataset, keys: Sequence[str] = ("user_id", "item_id", "timestamp")) -> Dataset:
    """Drop rows repeating an earlier row's `keys` (the first occurrence is kept)."""
    missing = [k for k in keys if k not in ds.interactions.columns]
    if missing:
        raise ValueError(f"dedup keys not in interactions: {missing}")
    dup = ds.interactions.duplicated(subset=list(keys), keep="first").to_numpy()
    return _apply(ds, ~dup, step="dedup", reason=f"dropped repeats of ({', '.join(keys)})")


def k_core(ds: Dataset, k: int = 5) -> Dataset:
    """Iteratively drop users and items with fewer than `k` interactions (rows) until none remain.

    Unlike the other steps this also restricts `users` and `items` to the ids that survive, since
    the core defines the item space an evaluation ranks over. Report details give the rounds and
    the users/items before and after.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    inter = ds.interactions
    _, u = np.unique(inter["user_id"].to_numpy(), return_inverse=True)
    _, i = np.unique(inter["item_id"].to_numpy(), return_inverse=True)
    keep = np.ones(len(inter), dtype=bool)
    rounds = 0
    while True:
        user_count = np.bincount(u[keep], minlength=u.max(initial=-1) + 1)
        item_count = np.bincount(i[keep], minlength=i.max(initial=-1) + 1)
        new_keep = keep & (user_count[u] >= k) & (item_count[i] >= k)
        rounds += 1
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    kept = inter[keep]
    users = ds.users[ds.users["user_id"].isin(kept["user_id"].unique())].reset_index(drop=True)
    items = ds.items[ds.items["item_id"].isin(kept["item_id"].unique())].reset_index(drop=True)
    details = {
        "rounds": rounds,
        "users_before": int(inter["user_id"].nunique()),
        "users_after": int(kept["user_id"].nunique()),
        "items_before": int(inter["item_id"].nunique()),
        "items_after": int(kept["item_id"].nunique()),
    }
    return _apply(
        ds,
        keep,
        step="k_core",
        reason=f"users and items with fewer than {k} interactions removed iteratively",
        details=details,
        users=users,
        items=items,
    )


def sort_by_time(ds: Dataset, *, per_user: bool = True) -> Dataset:
    """Order rows by (user_id, timestamp), the order sequential models read a log in; with
    `per_user=False`, by timestamp alone. Stable: ties keep file order. Removes nothing."""
    keys = ["user_id", "timestamp"] if per_user else ["timestamp"]
    order = np.lexsort([ds.interactions[c].to_numpy() for c in reversed(keys)])
    reason = f"sorted by ({', '.join(keys)}), ties in file order"
    return _apply(ds, None, step="sort_by_time", reason=reason, order=order)
