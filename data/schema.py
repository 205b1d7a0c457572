"""The normalised Dataset every loader returns, its load report, and the raw files' schemas."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

FORMATS = ("kuairand", "kuaisar", "ml-100k", "lastfm", "foursquare")

# The three normalised columns every format's `.interactions` starts with.
KEY_COLUMNS = ("user_id", "item_id", "timestamp")


class DataError(ValueError):
    """A data file does not match its schema.

    The message names the file, the column and the offending row (1-based physical line number in
    the file and, when practical, the row's raw text), e.g.
    ``log_standard_4_08_to_4_21_pure.csv: column 'user_id', line 17: expected a non-negative
    integer, got 'abc' | row: abc,5543,20220430,...``. The parts are also attributes.
    """

    def __init__(
        self,
        problem: str,
        *,
        file: str | Path | None = None,
        column: str | None = None,
        line: int | None = None,
        row: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = Path(file) if file is not None else None
        self.file = self.path.name if self.path is not None else None
        self.column = column
        self.line = line
        self.row = row
        where = []
        if column is not None:
            where.append(f"column {column!r}")
        if line is not None:
            where.append(f"line {line}")
        message = problem
        if where:
            message = f"{', '.join(where)}: {message}"
        if self.path is not None:  # a directory is shown in full: its name alone says little
            message = f"{self.path if self.path.is_dir() else self.file}: {message}"
        if row is not None:
            shown = row if len(row) <= 200 else row[:197] + "..."
            message = f"{message} | row: {shown}"
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# Load report


@dataclass(kw_only=True)
class FileRead:
    """One raw file read by a loader."""

    file: str
    role: str  # "interactions", "users", "items" or the `extra` table name
    rows: int


@dataclass(kw_only=True)
class FilterStep:
    """One preprocessing step applied after loading, with what it removed."""

    step: str
    reason: str
    rows_before: int
    rows_after: int
    details: dict[str, int] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.rows_before - self.rows_after


@dataclass(kw_only=True)
class LoadReport:
    """What a load read (rows per file), what it noticed, and every filter applied afterwards."""

    files: list[FileRead] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    filters: list[FilterStep] = field(default_factory=list)
    cache: str | None = None  # the parquet cache entry written or read, if any
    from_cache: bool = False

    def rows_read(self, role: str = "interactions") -> int:
        """Total rows read from the files with this role."""
        return sum(f.rows for f in self.files if f.role == role)

    def copy(self) -> LoadReport:
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadReport:
        return cls(
            files=[FileRead(**f) for f in data.get("files", [])],
            notes=list(data.get("notes", [])),
            filters=[FilterStep(**f) for f in data.get("filters", [])],
            cache=data.get("cache"),
            from_cache=bool(data.get("from_cache", False)),
        )


# ---------------------------------------------------------------------------------------------
# The normalised dataset


@dataclass(kw_only=True)
class Dataset:
    """A loaded dataset in the normalised form every downstream stage trusts.

    `interactions` starts with `user_id`, `item_id` (int64) and `timestamp` (int64 epoch
    milliseconds, UTC), followed by the raw columns, typed. When `timestamp_kind` is "ordinal"
    (the derived Foursquare table, which has no absolute time) `timestamp` is the 0-based position
    of the row within its user's rows in file order: it orders a user's rows, nothing more.
    `users` and `items` are catalogues: one row per user/item from the feature files, or just the
    ids seen in the data when the format has no such file (the report says which).
    """

    format: str
    source: Path
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)
    report: LoadReport
    timestamp_kind: str = "epoch_ms"  # "epoch_ms" | "ordinal"
    variant: str | None = (
        None  # KuaiRand: "pure" | "1k" | "27k"; Foursquare: "tsmc2014" | "derived"
    )

    def time_range(self) -> tuple[str, str] | None:
        """First and last interaction day as ISO dates (UTC); None without absolute time."""
        if self.timestamp_kind != "epoch_ms" or self.interactions.empty:
            return None
        ts = self.interactions["timestamp"]
        first, last = (pd.Timestamp(int(v), unit="ms", tz="UTC") for v in (ts.min(), ts.max()))
        return first.date().isoformat(), last.date().isoformat()

    def summary(self) -> dict[str, Any]:
        """The short description `inspect` prints: sizes, time range, files and filters."""
        inter = self.interactions
        return {
            "format": self.format,
            "variant": self.variant,
            "source": str(self.source),
            "rows": len(inter),
            "users": len(self.users),
            "items": len(self.items),
            "users_with_interactions": int(inter["user_id"].nunique()),
            "items_with_interactions": int(inter["item_id"].nunique()),
            "time_range": self.time_range(),
            "timestamp_kind": self.timestamp_kind,
            "files": {f.file: f.rows for f in self.report.files},
            "filtered": [
                {
                    "step": s.step,
                    "reason": s.reason,
                    "removed": s.removed,
                    "rows_after": s.rows_after,
                }
                for s in self.report.filters
            ],
            "notes": list(self.report.notes),
        }


# ---------------------------------------------------------------------------------------------
# Raw file schemas
#
# A column's `kind` says how it is parsed, checked and stored:
#   id              non-negative int64, never empty
#   int / int8      int64 / int8 (pandas Int64 / Int8 when nullable)
#   intlike         an integer the file may write as "87433.0"; stored as pandas Int64 (nullable)
#   float32/float64 floats; empty -> NaN
#   str / category  pandas string[pyarrow] / category; empty -> NA
#   yyyymmdd        an int64 date like 20220422, checked to be a real date
#   datetime        "YYYY-MM-DD[ HH:MM:SS]" -> datetime64[ms] (naive, as written)
#   date_dmy        "01-Jan-1995" -> datetime64[ms]
#   epoch_s         int64 seconds since 1970 (>= 0, never empty)
#   epoch_ms        int64 milliseconds since 1970 (>= 0, never empty)
#   epoch_ms_float  milliseconds written as a float ("1684742000000.0") -> int64
#   twitter_time    "Tue Apr 03 18:00:09 +0000 2012" -> int64 epoch milliseconds


_NULLABLE_BY_DEFAULT = {"str", "category", "datetime", "date_dmy", "float32", "float64", "intlike"}


@dataclass(frozen=True)
class Column:
    """One column of a raw file."""

    name: str
    kind: str
    nullable: bool | None = None  # None: True for text, dates and floats, False otherwise
    required: bool = True  # must appear in the header (header files only)

    @property
    def allows_null(self) -> bool:
        return self.kind in _NULLABLE_BY_DEFAULT if self.nullable is None else self.nullable


@dataclass(frozen=True)
class FileSpec:
    """How one raw file is laid out and what its columns are."""

    columns: tuple[Column, ...]
    delimiter: str = ","
    header: bool = True  # False: no header line; the columns are `columns`, in order
    quoting: bool = True  # False: '"' is an ordinary character (Last.fm, MovieLens, TSMC2014)
    encoding: str = "utf-8"  # utf-8 files that turn out not to be valid UTF-8 are read as latin-1
    require_rows: bool = True  # a header with no rows is an error
    other_columns: str = "str"  # kind for columns not in `columns` (header files)

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


def _flags(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, "int8") for n in names)


KUAIRAND_LOG = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("video_id", "id"),
        Column("date", "yyyymmdd"),
        Column("hourmin", "int"),
        Column("time_ms", "epoch_ms"),
        *_flags("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate"),
        Column("long_view", "int8"),
        Column("play_time_ms", "int"),
        Column("duration_ms", "int"),
        Column("profile_stay_time", "int"),
        Column("comment_stay_time", "int"),
        Column("is_profile_enter", "int8"),
        Column("is_rand", "int8"),
        Column("tab", "int8"),
    )
)

KUAIRAND_USER_FEATURES = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("user_active_degree", "category"),
        Column("is_lowactive_period", "int8"),
        Column("is_live_streamer", "int8"),  # -124 is a sentinel in the original data, kept
        Column("is_video_author", "int8"),
        Column("follow_user_num", "int"),
        Column("follow_user_num_range", "category"),
        Column("fans_user_num", "int"),
        Column("fans_user_num_range", "category"),
        Column("friend_user_num", "int"),
        Column("friend_user_num_range", "category"),
        Column("register_days", "int"),
        Column("register_days_range", "category"),
        *(Column(f"onehot_feat{i}", "intlike") for i in range(18)),
    )
)

KUAIRAND_VIDEO_BASIC = FileSpec(
    columns=(
        Column("video_id", "id"),
        Column("author_id", "id"),
        Column("video_type", "category"),
        Column("upload_dt", "datetime"),
        Column("upload_type", "category"),
        Column("visible_status", "intlike"),
        Column("video_duration", "intlike"),  # ms
        Column("server_width", "intlike"),
        Column("server_height", "intlike"),
        Column("music_id", "int"),
        Column("music_type", "intlike"),
        Column("tag", "str"),  # comma-separated category ids, e.g. "39,68"
    )
)

# Daily-averaged counters; the exact list varies, so everything but the id is read as float64.
KUAIRAND_VIDEO_STATISTIC = FileSpec(columns=(Column("video_id", "id"),), other_columns="float64")

KUAISAR_REC = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("item_id", "id"),
        Column("playing_time", "float32"),  # ms
        Column("duration_ms", "float32"),
        Column("time", "datetime"),  # Beijing time, as written
        Column("timestamp", "epoch_ms_float"),
        *_flags("click", "forward", "like", "follow", "search", "search_item_related"),
    )
)

KUAISAR_SRC = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("search_session_id", "int"),
        Column("search_session_time", "datetime"),  # Beijing time, as written
        Column("search_session_timestamp", "epoch_ms_float"),
        Column("keyword", "str"),  # token id list, e.g. "[20, 34, 3]"
        Column("search_source", "category"),
        Column("item_id", "id"),
        Column("click_cnt", "int"),
        Column("item_type", "category"),
    )
)

# Social graphs may be empty (no follows): a header alone is accepted there.
KUAISAR_SOCIAL = FileSpec(
    columns=(Column("user_id", "id"), Column("user_follow_id", "id")), require_rows=False
)

# Feature files of KuaiSAR were not available to check against: only the id is required.
KUAISAR_USER_FEATURES = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("search_active_level", "intlike", required=False),
        Column("rec_active_level", "intlike", required=False),
        Column("onehot_feat1", "intlike", required=False),
        Column("onehot_feat2", "intlike", required=False),
    )
)

KUAISAR_ITEM_FEATURES = FileSpec(
    columns=(
        Column("item_id", "id"),
        Column("caption", "str", required=False),
        Column("author_id", "intlike", required=False),  # 0 is padding
        Column("item_type", "category", required=False),
        Column("upload_time", "str", required=False),  # "1970-1-1" is padding, so kept as text
        Column("upload_type", "category", required=False),
        *(
            Column(f"{level}_level_category_{suffix}", kind, required=False)
            for level in ("first", "second", "third", "fourth")
            for suffix, kind in (("id", "intlike"), ("name", "category"), ("name_en", "category"))
        ),
    )
)

MOVIELENS_RATINGS = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("item_id", "id"),
        Column("rating", "int8"),
        Column("timestamp", "epoch_s"),
    ),
    delimiter="\t",
    header=False,
    quoting=False,
)

MOVIELENS_USERS = FileSpec(
    columns=(
        Column("user_id", "id"),
        Column("age", "int"),
        Column("gender", "category"),
        Column("occupation", "category"),
        Column("zip_code", "str"),  # not numeric: Canadian codes like "T8H1N" occur
    ),
    delimiter="|",
    header=False,
    quoting=False,
)

MOVIELENS_GENRES = (
    "unknown", "action", "adventure", "animation", "childrens", "comedy", "crime", "documentary",
    "drama", "fantasy", "film_noir", "horror", "musical", "mystery", "romance", "sci_fi",
    "thriller", "war", "western",
)  # fmt: skip

MOVIELENS_ITEMS = FileSpec(
    columns=(
        Column("item_id", "id"),
        Column("title", "str"),
        Column("release_date", "date_dmy"),
        Column("video_release_date", "date_dmy"),
        Column("imdb_url", "str"),
        *_flags(*(f"genre_{g}" for g in MOVIELENS_GENRES)),
    ),
    delimiter="|",
    header=False,
    quoting=False,
    encoding="latin-1",
)

_DAT = {"delimiter": "\t", "quoting": False}

LASTFM_TAGGED = FileSpec(
    columns=(
        Column("userID", "id"),
        Column("artistID", "id"),
        Column("tagID", "id"),
        Column("day", "int8"),
        Column("month", "int8"),
        Column("year", "int"),
    ),
    **_DAT,
)

LASTFM_TAGGED_TIMESTAMPS = FileSpec(
    columns=(
        Column("userID", "id"),
        Column("artistID", "id"),
        Column("tagID", "id"),
        Column("timestamp", "epoch_ms"),
    ),
    **_DAT,
)

LASTFM_USER_ARTISTS = FileSpec(
    columns=(Column("userID", "id"), Column("artistID", "id"), Column("weight", "int")), **_DAT
)

LASTFM_USER_FRIENDS = FileSpec(
    columns=(Column("userID", "id"), Column("friendID", "id")), require_rows=False, **_DAT
)

LASTFM_ARTISTS = FileSpec(
    columns=(
        Column("id", "id"),
        Column("name", "str"),
        Column("url", "str"),
        Column("pictureURL", "str"),
    ),
    **_DAT,
)

LASTFM_TAGS = FileSpec(
    columns=(Column("tagID", "id"), Column("tagValue", "str")), encoding="latin-1", **_DAT
)

FOURSQUARE_TSMC = FileSpec(
    columns=(
        Column("userId", "id"),
        Column("venueId", "str", nullable=False),
        Column("venueCategoryId", "str"),
        Column("venueCategory", "category"),
        Column("latitude", "float64", nullable=False),
        Column("longitude", "float64", nullable=False),
        Column("timezoneOffset", "int"),  # minutes
        Column("utcTimestamp", "twitter_time"),
    ),
    delimiter="\t",
    header=False,
    quoting=False,
)

FOURSQUARE_DERIVED = FileSpec(
    columns=(
        Column("tid", "id"),  # weekly trajectory of one user
        Column("label", "id"),  # user
        Column("lat", "float64", nullable=False),
        Column("lon", "float64", nullable=False),
        Column("day", "category"),
        Column("hour", "int8"),
        Column("poi", "id"),  # venue
        Column("category", "category"),
        Column("price", "int"),  # -999 = unknown
        Column("rating", "float32"),  # -999 = unknown
        Column("weather", "category"),
    )
)
