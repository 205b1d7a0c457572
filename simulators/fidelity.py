"""How faithful a learned simulator is, measured only on sessions it was not fitted on.

`fidelity_report` scores a `LearnedSimulator` on the held-out sessions of its `LogTable`: held-out
users ("users"), held-out last days of the other users ("days"), and all held-out sessions
together ("all", which adds held-out users on held-out days). Per split it reports

- per behaviour: AUC, predicted vs observed rate, and calibration (mean predicted probability
  vs observed rate in each decile of predicted probability, and their count-weighted mean
  absolute gap, the ECE);
- watch time: MAE in seconds and relative to the mean logged watch time, of the expected watch
  time (expected watch ratio x duration) against the logged play time (clipped to the duration);
- session length, in exposures: logged vs simulated (mean, median, quantiles). The simulation
  replays every held-out session: its user starts from their logged state at the session's start
  (histories, counts), the session's logged exposures are shown in requests of `request_size`
  in logged order (the tab of a request's first exposure sets its scenario), and responses and
  leaving are sampled from the learned models; past the logged end, further requests are drawn
  uniformly from the user's held-out logged exposures (logged exposures keep their logged
  is_rand flag, the drawn ones count as random). A simulated session ends when the leave
  model says so (or at `max_requests`); its length is requests x request_size.

Two checks beyond the logging policy's own sessions:

- **defects**: an AUC below 0.5 (below chance: the model orders positives under negatives) is
  not printed silently; it goes to ``report["defects"]`` (one sentence each) and
  ``report["below_chance_auc"]`` ({split: {behaviour: {"auc", "positives"}}}), and
  `render_markdown` prints a DEFECT line for each;
- **session length under non-logging policies** (``report["session_length_policies"]``, when a
  `world` is given, e.g. the post-log world of a `recgym world generate` directory): the same
  users start one session each on the simulator and on the world, candidates come from
  `CandidateGenerator`, and slates are chosen by a policy the logs never used ("random": a
  uniform draw of the candidates, "longest-first": the longest candidates); mean requests per
  session on both, and the relative error. The logging-policy replay above cannot see a
  simulator whose sessions react wrongly to other slates.

When the data directory holds the world's `world_truth.parquet`, each split also gets the error
against the true probabilities (MAE and correlation of p_click and p_long_view, MAE of the
expected watch time, and the true p_click's own AUC, the ceiling for the learned one). The
truth's session lengths are the logged ones (the world wrote the held-out sessions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from recgym.data.writers import SEARCH_TAB
from recgym.simulators.candidates import CandidateGenerator
from recgym.simulators.generate import TRUTH_FILE
from recgym.simulators.learned import CONDITIONAL, SPLITS, LearnedSimulator, LogTable
from recgym.simulators.protocol import REC, SEARCH

BEHAVIOUR_COLUMNS = ("click", *CONDITIONAL)
EVAL_SPLITS = {"users": ("users",), "days": ("days",), "all": ("users", "days", "both")}
TARGETS = {"click_auc": 0.75, "session_length_mean_relative_error": 0.10}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
CHANCE_AUC = 0.5
"""An AUC below this is a defect: the model ranks positives below negatives."""
POLICY_CHECKS = ("random", "longest-first")
"""Non-logging slate policies whose session lengths `policy_session_lengths` compares."""


def read_truth(data_dir: str | Path) -> pd.DataFrame | None:
    """The world's true probabilities per logged exposure, or None for real (or other) data."""
    path = Path(data_dir) / TRUTH_FILE
    if not path.is_file():
        return None
    return pd.read_parquet(path)


def read_world(data_dir: str | Path) -> Any:
    """The ground-truth world as its logs left it (`recgym world generate`'s world_state.npz),
    or None for real data, or when the saved state does not match this code's world (then the
    policy session-length check is skipped, not failed: the logs are still good to learn from)."""
    from recgym.simulators.world_state import STATE_FILE, WorldStateError, load_world

    if not (Path(data_dir) / STATE_FILE).is_file():
        return None
    try:
        return load_world(data_dir)
    except WorldStateError:
        return None


def fidelity_report(
    sim: LearnedSimulator,
    table: LogTable,
    *,
    truth: pd.DataFrame | None = None,
    seed: int = 0,
    max_requests: int | None = None,
    world: Any = None,
    policy_sessions: int = 300,
) -> dict[str, Any]:
    """Score `sim` on the held-out sessions of `table` (see the module docstring).

    `truth` is `read_truth(...)` of the same data; `seed` seeds the session replay;
    `max_requests` caps a simulated session (default: twice the longest held-out logged session,
    at least 100 requests). `world`: the ground-truth world in the state the logs left it (its
    user state is restored afterwards); with it the report compares session lengths under
    non-logging policies over `policy_sessions` users. Returns a JSON-serialisable dict;
    `render_markdown` tabulates it.
    """
    held = table.rows(*EVAL_SPLITS["all"])
    pred = sim.predict_rows(table, held)
    true = _align_truth(table, held, truth) if truth is not None else None
    splits: dict[str, Any] = {}
    split_of_row = table.row_split()[held]
    for name, parts in EVAL_SPLITS.items():
        codes = [_code(p) for p in parts]
        mask = np.isin(split_of_row, codes)
        if not mask.any():
            continue
        splits[name] = _row_metrics(table, held[mask], {k: v[mask] for k, v in pred.items()})
        if true is not None:
            splits[name]["truth"] = _truth_metrics(
                table, held[mask], {k: v[mask] for k, v in pred.items()}, true[mask]
            )
    sessions = _session_lengths(sim, table, seed=seed, max_requests=max_requests)
    click_auc = splits.get("all", {}).get("behaviours", {}).get("click", {}).get("auc")
    rel = sessions.get("all", {}).get("relative_error_mean")
    report = {
        "rows": {
            "train": len(table.rows("train")),
            "heldout": len(held),
            **{name: s["rows"] for name, s in splits.items()},
        },
        "splits": splits,
        "session_length": sessions,
        "targets": {
            "click_auc": _target(click_auc, TARGETS["click_auc"], higher=True),
            "session_length_mean_relative_error": _target(
                None if rel is None else abs(rel),
                TARGETS["session_length_mean_relative_error"],
                higher=False,
            ),
        },
        "has_truth": truth is not None,
    }
    report["below_chance_auc"], report["defects"] = _auc_defects(splits)
    if world is not None:
        report["session_length_policies"] = policy_session_lengths(
            sim, world, n_sessions=policy_sessions, seed=seed
        )
    return report


def _auc_defects(splits: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """AUCs below `CHANCE_AUC` per split and behaviour, and one sentence per defect."""
    below: dict[str, Any] = {}
    defects = []
    for name, split in splits.items():
        for b, m in split["behaviours"].items():
            auc = m["auc"]
            if auc is None or auc >= CHANCE_AUC:
                continue
            positives = int(round(m["observed"] * split["rows"]))
            below.setdefault(name, {})[b] = {"auc": auc, "positives": positives}
            defects.append(
                f"{b} AUC {auc:.3f} on held-out split '{name}' is below chance ({CHANCE_AUC}; "
                f"{positives:,} positives of {split['rows']:,} rows): the model orders {b} "
                "positives below negatives"
            )
    return below, defects


def policy_session_lengths(
    sim: LearnedSimulator,
    world: Any,
    *,
    n_sessions: int = 300,
    seed: int = 0,
    max_requests: int = 100,
    slate_size: int = 6,
    n_candidates: int = 50,
) -> dict[str, Any]:
    """Mean requests per session under `POLICY_CHECKS` on `sim` and on `world`, same users.

    `n_sessions` distinct users (a seeded draw) start one session each, in one batch, on each
    backend; every request draws `n_candidates` with `CandidateGenerator` from the backend's
    own catalogue and history, and the policy picks `slate_size` of them. Sessions end when the
    backend says the user left, or at `max_requests`. Both backends are returned to the state
    they had before (the world by `snapshot`/`restore`, the simulator by `reset_state`).
    """
    n_users = min(sim.n_users, world.n_users)
    out: dict[str, Any] = {"sessions": int(min(n_sessions, n_users)), "policies": {}}
    users = np.sort(
        np.random.default_rng([seed, 31]).choice(n_users, size=out["sessions"], replace=False)
    )
    saved = world.snapshot()
    try:
        for p, policy in enumerate(POLICY_CHECKS):
            means = {}
            for name, model in (("simulator", sim), ("world", world)):
                rng = np.random.default_rng([seed, 37, p])
                means[name] = _policy_sessions(
                    model, users, policy, rng, max_requests, slate_size, n_candidates
                )
                if name == "world":
                    world.restore(saved)
                else:
                    sim.reset_state()
            out["policies"][policy] = {
                **means,
                "relative_error": (means["simulator"] - means["world"]) / means["world"],
            }
    finally:
        world.restore(saved)
        sim.reset_state()
    return out


def _policy_sessions(
    model: Any,
    users: np.ndarray,
    policy: str,
    rng: np.random.Generator,
    max_requests: int,
    slate_size: int,
    n_candidates: int,
) -> float:
    """Mean requests per session of `users` on `model` with slates chosen by `policy`."""
    gen = CandidateGenerator(catalogue=model.catalogue, n_candidates=n_candidates)
    model.begin_session(users, rng)
    active = np.ones(len(users), dtype=bool)
    requests = np.zeros(len(users), dtype=np.int64)
    for _ in range(max_requests):
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            break
        cand = gen(model.history(users[idx]), rng)
        if policy == "random":
            key = rng.random(cand.shape)
        elif policy == "longest-first":
            key = -model.catalogue.duration_ms[cand].astype(np.float64)
        else:
            raise ValueError(f"unknown policy {policy!r}; expected one of {POLICY_CHECKS}")
        slate = np.take_along_axis(cand, np.argsort(key, axis=1)[:, :slate_size], axis=1)
        result = model.step(users[idx], slate, rng)
        requests[idx] += 1
        active[idx[np.asarray(result.left, dtype=bool)]] = False
    return float(requests.mean())


def render_markdown(report: dict[str, Any]) -> str:
    """A short markdown summary of a fidelity report: one column per held-out split."""
    splits = report["splits"]
    names = list(splits)
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def row(label: str, values: list[Any], fmt: str = "{:.3f}") -> None:
        shown = ["-" if v is None else fmt.format(v) for v in values]
        lines.append(f"| {label} | " + " | ".join(shown) + " |")

    row("rows", [splits[n]["rows"] for n in names], "{:,}")
    for b in BEHAVIOUR_COLUMNS:
        row(f"{b} AUC", [splits[n]["behaviours"][b]["auc"] for n in names])
    for b in ("click", "long_view"):
        row(f"{b} ECE", [splits[n]["behaviours"][b]["ece"] for n in names], "{:.4f}")
        row(
            f"{b} rate predicted / observed",
            [
                "{:.3f} / {:.3f}".format(
                    splits[n]["behaviours"][b]["predicted"], splits[n]["behaviours"][b]["observed"]
                )
                for n in names
            ],
            "{}",
        )
    row(
        "click rate on random exposures predicted / observed (rows)",
        [_random_cell(splits[n].get("random_exposures")) for n in names],
        "{}",
    )
    row("watch MAE (s)", [splits[n]["watch"]["mae_s"] for n in names], "{:.2f}")
    row("watch MAE / mean", [splits[n]["watch"]["relative_mae"] for n in names])
    sl = report["session_length"]
    row(
        "session length mean simulated / logged",
        [
            "{:.1f} / {:.1f}".format(sl[n]["simulated"]["mean"], sl[n]["logged"]["mean"])
            if n in sl
            else None
            for n in names
        ],
        "{}",
    )
    row(
        "session length median simulated / logged",
        [
            "{:.0f} / {:.0f}".format(sl[n]["simulated"]["median"], sl[n]["logged"]["median"])
            if n in sl
            else None
            for n in names
        ],
        "{}",
    )
    if report.get("has_truth"):
        for key, label in (
            ("p_click", "p_click"),
            ("p_long_view", "p_long_view"),
        ):
            row(f"{label} MAE vs truth", [splits[n]["truth"][key]["mae"] for n in names], "{:.4f}")
            row(f"{label} corr with truth", [splits[n]["truth"][key]["corr"] for n in names])
        row(
            "expected watch MAE vs truth (s)",
            [splits[n]["truth"]["watch"]["mae_s"] for n in names],
            "{:.2f}",
        )
        row("true p_click AUC (ceiling)", [splits[n]["truth"]["click_auc"] for n in names])
    targets = report["targets"]
    lines.append("")
    for name, t in targets.items():
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        verdict = "met" if t["met"] else "NOT met"
        lines.append(f"- target {name} {t['rule']}: {value} ({verdict})")
    lines.append(f"- session length: {report['session_length'].get('method', '')}")
    pol = report.get("session_length_policies")
    if pol:
        for name, v in pol["policies"].items():
            lines.append(
                f"- session length under {name} slates ({pol['sessions']} users, requests): "
                f"simulator {v['simulator']:.2f} vs world {v['world']:.2f} "
                f"({100 * v['relative_error']:+.0f}%)"
            )
    for defect in report.get("defects", []):
        lines.append(f"- **DEFECT**: {defect}")
    return "\n".join(lines) + "\n"


def _random_cell(r: dict | None) -> str | None:
    if not r or not r["rows"]:
        return None
    return f"{r['click_predicted']:.3f} / {r['click_observed']:.3f} ({r['rows']:,})"


# --------------------------------------------------------------------- per-row metrics
def _code(split: str) -> int:
    return SPLITS[split]


def _row_metrics(table: LogTable, rows: np.ndarray, pred: dict[str, np.ndarray]) -> dict:
    behaviours = {}
    for b in BEHAVIOUR_COLUMNS:
        y = table.labels[b][rows].astype(np.float64)
        p = pred[f"p_{b}"]
        calibration = _calibration(p, y)
        behaviours[b] = {
            "auc": _auc(y, p),
            "observed": float(y.mean()),
            "predicted": float(p.mean()),
            "ece": float(
                sum(c["n"] * abs(c["predicted"] - c["observed"]) for c in calibration) / len(y)
            ),
            "calibration": calibration,
        }
    logged = table.play_ms[rows].astype(np.float64)
    err = np.abs(pred["expected_watch_ms"] - logged)
    rand = table.is_random[rows]
    return {
        "rows": int(len(rows)),
        "sessions": int(len(np.unique(table.session[rows]))),
        "behaviours": behaviours,
        # exposure bias: a policy-shaped log over-represents items the logging policy liked;
        # on the uniformly random exposures (is_rand = 1) the predicted rate should still hold
        "random_exposures": {
            "rows": int(rand.sum()),
            "click_observed": float(table.labels["click"][rows][rand].mean())
            if rand.any()
            else None,
            "click_predicted": float(pred["p_click"][rand].mean()) if rand.any() else None,
        },
        "watch": {
            "mae_s": float(err.mean() / 1000),
            "relative_mae": float(err.mean() / max(logged.mean(), 1e-9)),
            "mean_predicted_s": float(pred["expected_watch_ms"].mean() / 1000),
            "mean_logged_s": float(logged.mean() / 1000),
        },
    }


def _calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted vs observed rate per decile of predicted probability."""
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, bins):
        if len(chunk) == 0:
            continue
        out.append(
            {
                "predicted": float(p[chunk].mean()),
                "observed": float(y[chunk].mean()),
                "n": int(len(chunk)),
            }
        )
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    if y.min(initial=0) == y.max(initial=0):
        return None  # one class only: AUC undefined
    return float(roc_auc_score(y, p))


def _align_truth(table: LogTable, rows: np.ndarray, truth: pd.DataFrame) -> pd.DataFrame:
    """Truth rows aligned with `rows` by (raw user id, raw item id, timestamp); NaN if absent."""
    keys = pd.DataFrame(
        {
            "user_id": table.user_ids[table.user[rows]],
            "item_id": table.item_ids[table.item[rows]],
            "timestamp": table.timestamp[rows],
        }
    )
    cols = ["user_id", "item_id", "timestamp", "p_click", "p_long_view", "expected_watch_ms"]
    dedup = truth[cols].drop_duplicates(["user_id", "item_id", "timestamp"])
    return keys.merge(dedup, how="left", on=["user_id", "item_id", "timestamp"])


def _truth_metrics(
    table: LogTable, rows: np.ndarray, pred: dict[str, np.ndarray], true: pd.DataFrame
) -> dict:
    ok = true["p_click"].notna().to_numpy()
    out: dict[str, Any] = {"matched_rows": int(ok.sum())}
    for key in ("p_click", "p_long_view"):
        t = true[key].to_numpy(np.float64)[ok]
        p = pred[key][ok]
        out[key] = {
            "mae": float(np.abs(p - t).mean()) if ok.any() else None,
            "corr": float(np.corrcoef(p, t)[0, 1]) if ok.sum() > 1 else None,
            "mean_predicted": float(p.mean()) if ok.any() else None,
            "mean_true": float(t.mean()) if ok.any() else None,
        }
    t_watch = true["expected_watch_ms"].to_numpy(np.float64)[ok]
    err = np.abs(pred["expected_watch_ms"][ok] - t_watch)
    out["watch"] = {
        "mae_s": float(err.mean() / 1000) if ok.any() else None,
        "relative_mae": float(err.mean() / max(t_watch.mean(), 1e-9)) if ok.any() else None,
    }
    y = table.labels["click"][rows][ok]
    out["click_auc"] = _auc(y, true["p_click"].to_numpy(np.float64)[ok]) if ok.any() else None
    return out


# --------------------------------------------------------------------- session replay
def _session_lengths(
    sim: LearnedSimulator, table: LogTable, *, seed: int, max_requests: int | None
) -> dict[str, Any]:
    k = table.config.request_size
    sessions = table.sessions(*EVAL_SPLITS["all"])
    if len(sessions) == 0:
        return {}
    starts = table.session_start[sessions]
    lengths = table.session_length[sessions]
    users = table.user[starts]
    cap = max_requests or max(100, 2 * int(np.ceil(lengths.max() / k)))
    # the pool each session continues from: its user's held-out logged exposures
    held = table.rows(*EVAL_SPLITS["all"])
    pool_user = table.user[held]  # sorted by user (rows are)
    pool_lo = np.searchsorted(pool_user, users)
    pool_n = np.searchsorted(pool_user, users, side="right") - pool_lo
    last_tab = table.tab[starts + lengths - 1]

    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    twin = sim.for_sessions(users, table.state_before(starts))
    slots = np.arange(len(sessions))
    twin.begin_session(slots, rng)
    active = np.ones(len(sessions), dtype=bool)
    n_requests = np.zeros(len(sessions), dtype=np.int64)
    for j in range(cap):
        idx = slots[active]
        if len(idx) == 0:
            break
        pos = j * k + np.arange(k)
        logged = pos[None, :] < lengths[idx, None]
        row = starts[idx, None] + np.minimum(pos[None, :], lengths[idx, None] - 1)
        draw = pool_lo[idx, None] + (rng.random((len(idx), k)) * pool_n[idx, None]).astype(int)
        slate = np.where(logged, table.item[row], table.item[held[draw]])
        tab = np.where(logged[:, 0], table.tab[row[:, 0]], last_tab[idx])
        scenario = np.where(tab == SEARCH_TAB, SEARCH, REC)
        # logged exposures keep their logged is_rand; the continuation counts as random
        flags = np.where(logged, table.is_random[row], True)
        result = twin.step(idx, slate, rng, scenario, is_random=flags)
        n_requests[idx] += 1
        active[idx[result.left]] = False
    simulated = n_requests * k
    out: dict[str, Any] = {
        "unit": "exposures",
        "request_size": k,
        "max_requests": cap,
        "censored": int(active.sum()),
        "method": (
            f"replay of {len(sessions):,} held-out sessions in requests of {k} logged exposures "
            "through the learned response and leave models from each user's logged state, "
            "continuing past the logged end with the user's held-out logged items; "
            "length = requests until leaving x request size"
        ),
    }
    split = table.split[sessions]
    for name, parts in EVAL_SPLITS.items():
        mask = np.isin(split, [_code(p) for p in parts])
        if not mask.any():
            continue
        log_stats, sim_stats = _stats(lengths[mask]), _stats(simulated[mask])
        out[name] = {
            "sessions": int(mask.sum()),
            "logged": log_stats,
            "simulated": sim_stats,
            "relative_error_mean": (sim_stats["mean"] - log_stats["mean"]) / log_stats["mean"],
        }
    return out


def _stats(x: np.ndarray) -> dict[str, float]:
    q = np.quantile(x, QUANTILES)
    return {
        "mean": float(x.mean()),
        "median": float(np.median(x)),
        **{f"q{int(100 * a)}": float(v) for a, v in zip(QUANTILES, q, strict=True)},
    }


def _target(value: float | None, threshold: float, *, higher: bool) -> dict[str, Any]:
    rule = f">= {threshold}" if higher else f"<= {threshold}"
    met = value is not None and (value >= threshold if higher else value <= threshold)
    return {"value": value, "threshold": threshold, "rule": rule, "met": bool(met)}


__all__ = [
    "CHANCE_AUC",
    "POLICY_CHECKS",
    "TARGETS",
    "TRUTH_FILE",
    "fidelity_report",
    "policy_session_lengths",
    "read_truth",
    "read_world",
    "render_markdown",
]
