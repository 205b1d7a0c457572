"""Training and evaluation pairs for the sequence models: (prefix -> next item) and leave-one-out.

A user's sequence is a 1-D int array of 0-based item ids, oldest first. `SequenceData` holds N
(prefix, target) rows with the prefix in the padding convention of `base` (left-padded with -1,
newest last, the newest ``max_len`` items); ``user`` says which input sequence a row came from and
``seen`` (optional) every item the user had interacted with before the target, untruncated, which
full-ranking evaluation excludes.

Side information aligned with the sequences (e.g. per-interaction scenario ids) is passed as
``aligned={"scenario": [per-user arrays]}`` and becomes ``context["scenario"]`` (N, L) aligned with
``seq`` (-1 at padding) and ``context["target_scenario"]`` (N,), the target's own value.

`leave_one_out` is the protocol of RDRSR (section 4.1, after SASRec/NCF): per user the last item is
the test target, the second-to-last the validation target, all earlier items train; test prefixes
hold the training and validation items. With ``validation=False`` it is RUIE's (section 4.1): the
last item tests, everything before it trains. Training rows are every (prefix -> next) pair of the
training part with a prefix of at least ``min_len - 1`` items (``min_len=1`` also trains on the
empty prefix -> first item, as RUIE's sliding window does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from recgym.agents.sequence.base import PAD


@dataclass
class SequenceData:
    """N (prefix -> target) rows; see the module doc."""

    seq: np.ndarray
    """(N, L) int64 prefixes, -1 left-padded, newest last."""
    target: np.ndarray
    """(N,) int64 next-item ids."""
    context: dict[str, np.ndarray] | None = None
    """Optional side information: (N, L) arrays aligned with seq and (N,) ``target_*`` arrays."""
    user: np.ndarray | None = None
    """(N,) index of the input sequence each row came from (None when not known)."""
    seen: list[np.ndarray] | None = field(default=None, repr=False)
    """Per row, every item seen before the target (untruncated); None = the items in seq."""

    def __post_init__(self) -> None:
        self.seq = np.asarray(self.seq, dtype=np.int64)
        self.target = np.asarray(self.target, dtype=np.int64)
        n = len(self.target)
        if self.seq.ndim != 2 or len(self.seq) != n or self.target.ndim != 1:
            raise ValueError(
                f"SequenceData: seq must be (N, L) and target (N,), got {self.seq.shape} and "
                f"{self.target.shape}"
            )
        if n and (self.seq.min() < PAD or self.target.min() < 0):
            raise ValueError("SequenceData: ids must be >= 0 (seq may hold -1 padding)")
        for key, arr in (self.context or {}).items():
            if len(arr) != n:
                raise ValueError(f"SequenceData: context[{key!r}] has {len(arr)} rows, not {n}")
        if self.user is not None and len(self.user) != n:
            raise ValueError(f"SequenceData: user has {len(self.user)} rows, not {n}")
        if self.seen is not None and len(self.seen) != n:
            raise ValueError(f"SequenceData: seen has {len(self.seen)} rows, not {n}")

    def __len__(self) -> int:
        return len(self.target)

    @property
    def max_len(self) -> int:
        return self.seq.shape[1]

    def subset(self, rows: np.ndarray) -> SequenceData:
        """The rows `rows` (indices or a bool mask) as a new SequenceData."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return SequenceData(
            self.seq[rows],
            self.target[rows],
            None if self.context is None else {k: v[rows] for k, v in self.context.items()},
            None if self.user is None else self.user[rows],
            None if self.seen is None else [self.seen[i] for i in rows],
        )

    def seen_lists(self) -> list[np.ndarray]:
        """Per row, the items to exclude from full ranking (``seen``, else seq's ids)."""
        if self.seen is not None:
            return self.seen
        return [r[r != PAD] for r in self.seq]

    @classmethod
    def from_user_sequences(
        cls,
        sequences: Sequence[np.ndarray],
        max_len: int,
        min_len: int = 2,
        aligned: Mapping[str, Sequence[np.ndarray]] | None = None,
    ) -> SequenceData:
        """Every (prefix -> next) pair with a prefix of >= ``min_len - 1`` items (module doc).

        Rows are ordered by user, then by position. ``seen`` is left None (the prefix is what
        a training row has seen). Raises ValueError on a negative id or misaligned side info.
        """
        if min_len < 1:
            raise ValueError(f"min_len must be >= 1, got {min_len}")
        flat, starts, lengths = _concat(sequences, "sequences")
        # a target at global position p with user start s: prefix positions p-max_len .. p-1
        pos = np.arange(flat.size)
        user = np.repeat(np.arange(len(lengths)), lengths)
        offset = pos - np.repeat(starts, lengths)
        keep = offset >= min_len - 1
        pos, user = pos[keep], user[keep]
        idx = pos[:, None] - max_len + np.arange(max_len)[None, :]
        valid = idx >= starts[user][:, None]
        idx = np.where(valid, idx, 0)
        seq = np.where(valid, flat[idx] if flat.size else 0, PAD)
        context = None
        if aligned:
            context = {}
            for key, arrays in aligned.items():
                side, _, side_len = _concat(arrays, f"aligned[{key!r}]", allow_negative=True)
                if not np.array_equal(side_len, lengths):
                    bad = int(np.flatnonzero(side_len != lengths)[0])
                    raise ValueError(
                        f"aligned[{key!r}][{bad}] has {side_len[bad]} entries, the sequence "
                        f"{lengths[bad]}"
                    )
                context[key] = np.where(valid, side[idx] if side.size else 0, PAD)
                context[f"target_{key}"] = side[pos]
        return cls(seq.astype(np.int64), flat[pos], context, user)


class Split(NamedTuple):
    """Leave-one-out split: train rows, validation rows (None without validation), test rows."""

    train: SequenceData
    valid: SequenceData | None
    test: SequenceData


def leave_one_out(
    sequences: Sequence[np.ndarray],
    max_len: int,
    min_len: int = 2,
    validation: bool = True,
    aligned: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> Split:
    """Split every user's sequence by leave-one-out (module doc).

    Each sequence needs 3 items with validation (2 without); a shorter one raises ValueError
    naming it (filter users first, e.g. by k-core). ``valid`` and ``test`` carry ``user`` and
    ``seen`` (every earlier item, untruncated).
    """
    held = 2 if validation else 1
    seqs = [np.asarray(s).reshape(-1) for s in sequences]
    lengths = np.array([s.size for s in seqs], dtype=np.int64)
    short = np.flatnonzero(lengths < held + 1)
    if short.size:
        raise ValueError(
            f"leave_one_out: sequence {int(short[0])} has {int(lengths[short[0]])} items; "
            f"needs >= {held + 1} ({short.size} sequences too short)"
        )
    side = dict(aligned or {})

    def cut(stop: int) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
        return [s[: s.size - stop] for s in seqs], {
            k: [np.asarray(a)[: len(a) - stop] for a in v] for k, v in side.items()
        }

    train_seqs, train_side = cut(held)
    train = SequenceData.from_user_sequences(train_seqs, max_len, min_len, train_side or None)
    evals = []
    for stop in range(held - 1, -1, -1):  # validation (stop=1) then test (stop=0)
        upto, upto_side = cut(stop)
        rows = SequenceData.from_user_sequences(upto, max_len, 1, upto_side or None)
        last = np.cumsum([s.size for s in upto]) - 1  # each user's final row
        data = rows.subset(last)
        data.user = np.arange(len(seqs))
        data.seen = [s[:-1] for s in upto]
        evals.append(data)
    return Split(train, evals[0] if validation else None, evals[-1])


def _concat(
    arrays: Sequence[np.ndarray], what: str, allow_negative: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(flat int64 array, start of each array, length of each array)."""
    parts = [np.asarray(a).reshape(-1) for a in arrays]
    lengths = np.array([p.size for p in parts], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    flat = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
    for i, p in enumerate(parts):
        if p.size and not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"{what}[{i}] holds {p.dtype}, not integer ids")
    if not allow_negative and flat.size and flat.min() < 0:
        bad = int(np.searchsorted(starts + lengths, np.flatnonzero(flat < 0)[0], side="right"))
        raise ValueError(f"{what}[{bad}] holds a negative item id (ids are >= 0)")
    return flat, starts, lengths


__all__ = ["SequenceData", "Split", "leave_one_out"]
