"""The `recgym` command: generate worlds, inspect data, train simulators, run demos and benchmarks.

Every sub-command imports its heavy dependencies lazily, so `recgym --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _world_generate(args: argparse.Namespace) -> int:
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    world = WorldConfig(
        n_users=args.users, n_items=args.items, n_authors=args.authors, seed=args.seed
    )
    logs = LogConfig(days=args.days, seed=args.seed)
    if args.format == "kuaisar":
        logs.start_date = "2023-05-22"  # KuaiSAR's first day
    summary = generate(args.out, world, logs, args.format, progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def _data_inspect(args: argparse.Namespace) -> int:
    from recgym.data import inspect

    return inspect(args.path, args.format)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recgym",
        description="recgym: an offline-RL recommendation gym (Gymnasium envs on user simulators).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    world = sub.add_parser("world", help="the ground-truth synthetic world")
    world_sub = world.add_subparsers(dest="world_command", required=True, metavar="ACTION")
    gen = world_sub.add_parser(
        "generate",
        help="build a seeded world, log it with a biased behaviour policy, write real-schema files",
        description=(
            "Build a seeded ground-truth world, serve it for DAYS days with a click-biased "
            "production policy (plus random exposures), and write the logs in the exact file "
            "names and columns of KuaiRand or KuaiSAR. Also writes world.json (configs) and "
            "world_truth.parquet (true probabilities per logged exposure)."
        ),
    )
    gen.add_argument("--out", required=True, help="output directory (created if missing)")
    gen.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    gen.add_argument("--items", type=int, default=3000, help="number of items (default 3000)")
    gen.add_argument("--authors", type=int, default=300, help="number of authors (default 300)")
    gen.add_argument("--days", type=int, default=14, help="days of logs (default 14)")
    gen.add_argument("--seed", type=int, default=0, help="seed of world and logs (default 0)")
    gen.add_argument(
        "--format",
        choices=("kuairand", "kuaisar"),
        default="kuairand",
        help="file schema to write (default kuairand)",
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_world_generate)

    data = sub.add_parser("data", help="datasets on disk")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    insp = data_sub.add_parser(
        "inspect",
        help="load a dataset directory and print format, rows, users, items, time range",
        description=(
            "Load PATH (KuaiRand, KuaiSAR, MovieLens-100k, Last.fm hetrec2011-2k or Foursquare), "
            "validate it and print a summary. Exits 2 with a one-line error on bad input."
        ),
    )
    insp.add_argument("path", help="dataset directory (or file)")
    insp.add_argument(
        "--format",
        default=None,
        choices=("kuairand", "kuaisar", "ml-100k", "lastfm", "foursquare"),
        help="skip format detection",
    )
    insp.set_defaults(func=_data_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
