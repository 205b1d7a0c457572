"""Format detection: which dataset a directory (or file) holds, from its file names."""

from __future__ import annotations

import re
from pathlib import Path

from ..schema import FORMATS, DataError
from .reading import PathLike

_KUAIRAND_LOG = re.compile(
    r"^log_(standard|random)_(\d+)_(\d+)_to_(\d+)_(\d+)_(pure|1k|27k)(?:_part(\d+))?\.csv$"
)


_KUAIRAND_FEATURE = re.compile(
    r"^(user_features|video_features_basic|video_features_statistic)_(pure|1k|27k)"
    r"(?:_part(\d+))?\.csv$"
)


_FOURSQUARE_FILE = re.compile(r"^(dataset_TSMC2014_[A-Za-z]+\.txt|foursquare_[A-Za-z0-9]+\.csv)$")


def _file_format(name: str) -> str | None:
    """The format a file name belongs to, if it is one of a format's key files."""
    if _KUAIRAND_LOG.match(name) or _KUAIRAND_FEATURE.match(name):
        return "kuairand"
    if name in ("rec_inter.csv", "src_inter.csv"):
        return "kuaisar"
    if name == "u.data":
        return "ml-100k"
    if name in ("user_taggedartists.dat", "user_taggedartists-timestamps.dat"):
        return "lastfm"
    if _FOURSQUARE_FILE.match(name):
        return "foursquare"
    return None


def _formats_in(directory: Path) -> set[str]:
    found = set()
    for p in directory.iterdir():
        fmt = _file_format(p.name) if p.is_file() else None
        if fmt:
            found.add(fmt)
    return found


def _resolve(path: PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    return p.resolve()


def detect_format(path: PathLike) -> tuple[str, Path]:
    """The format of a dataset directory (or file) and the path to load it from.

    Looks at the file names present; when the directory itself has none, one level of
    sub-directories (as the datasets' archives unpack, e.g. KuaiRand-Pure/data/).
    """
    p = _resolve(path)
    if p.is_file():
        fmt = _file_format(p.name)
        if fmt is None:
            raise DataError(f"not a file of a known dataset format ({', '.join(FORMATS)})", file=p)
        return fmt, (p if fmt == "foursquare" else p.parent)
    found = _formats_in(p)
    if not found:
        subdirs = [d for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        hits = [(d, _formats_in(d)) for d in subdirs]
        hits = [(d, f) for d, f in hits if f]
        if len(hits) == 1:
            p, found = hits[0]
    if not found:
        raise DataError(
            "no recognisable dataset files (expected e.g. log_random_*_pure.csv, rec_inter.csv, "
            "u.data, user_taggedartists.dat, dataset_TSMC2014_NYC.txt or foursquare_nyc.csv)",
            file=p,
        )
    if len(found) > 1:
        raise DataError(
            f"files of several formats ({', '.join(sorted(found))}); pass format=", file=p
        )
    return found.pop(), p


def _directory(path: PathLike) -> Path:
    p = _resolve(path)
    return p.parent if p.is_file() else p
