"""The `recgym` command: generate worlds, inspect data, train simulators, run demos and benchmarks.

Every sub-command imports its heavy dependencies lazily, so `recgym --help` is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence


def _world_generate(args: argparse.Namespace) -> int:
    from recgym.simulators.generate import generate
    from recgym.simulators.logs import LogConfig
    from recgym.simulators.world import WorldConfig

    world = WorldConfig(
        n_users=args.users,
        n_items=args.items,
        n_authors=args.authors,
        seed=args.seed,
        real_features=args.real_features,
    )
    logs = LogConfig(days=args.days, seed=args.seed)
    if args.format == "kuaisar":
        logs.start_date = "2023-05-22"  # KuaiSAR's first day
    from recgym.data import DataError
    from recgym.outdir import ensure_writable_dir
    from recgym.simulators.world_state import dynamics_from_pairs

    try:
        dynamics = dynamics_from_pairs(args.dynamics)
    except ValueError as exc:
        print(f"error: --dynamics: {exc}", file=sys.stderr)
        return 2
    ensure_writable_dir(args.out)  # an unwritable --out fails here, before the world is built
    try:
        summary = generate(
            args.out, world, logs, args.format, progress=not args.quiet, dynamics=dynamics
        )
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def _world_calibrate(args: argparse.Namespace) -> int:
    from recgym.data import DataError
    from recgym.outdir import ensure_writable_dir
    from recgym.simulators.calibrate import (
        CalibrationConfig,
        calibrate,
        failures,
        table,
        write_report,
    )
    from recgym.simulators.world import WorldConfig

    world = WorldConfig(
        n_users=args.users, n_items=args.items, n_authors=args.authors, seed=args.seed
    )
    config = CalibrationConfig(days=args.days, n_boot=args.n_boot)
    out = ensure_writable_dir(args.out)  # fails before the minute of simulation (OutputError)
    try:
        result, info = calibrate(args.real, world, config)
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    try:
        written = write_report(out, result, info)
    except OSError:
        print(f"error: cannot write to {out}", file=sys.stderr)
        return 2
    failed = failures(result)
    if failed:
        print(f"FAIL: outside the real 95% interval: {', '.join(failed)}")
    else:
        print("PASS: every required statistic is within the real 95% interval")
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if failed else 0


def _data_inspect(args: argparse.Namespace) -> int:
    from recgym.data import inspect

    return inspect(args.path, args.format)


EXPORT_POLICIES = ("random", "longest-first", "duration+diversity")
"""Policies `recgym data export` can log sessions with (no fitted model or hidden truth)."""


def _data_export(args: argparse.Namespace) -> int:
    """Sessions of --policy in --env-id, a Tianshou HDF5 buffer or ASA samples -> Minari."""
    from recgym.agents import references
    from recgym.agents.baselines import RandomPolicy
    from recgym.data import minari as mn
    from recgym.envs import make_env
    from recgym.envs.contract import with_action_space

    try:
        kwargs = json.loads(args.env_kwargs)
        env_id = args.env_id or (None if args.buffer else "recgym/Session-v0")
        env = make_env(env_id, **kwargs) if env_id else None
        if args.buffer:  # a Tianshou HDF5 buffer, or ASA samples (an HDF5 buffer + sidecar)
            from tianshou.data import ReplayBuffer

            from recgym.data.asa import load_asa, sidecar_path

            asa = sidecar_path(args.buffer).exists()
            buf = load_asa(args.buffer).buffer if asa else ReplayBuffer.load_hdf5(args.buffer)
            episodes, source = mn.buffer_to_episodes(buf), "asa" if asa else "buffer"
        else:
            policies = {"random": RandomPolicy(seed=args.seed),
                        "longest-first": references.LongestFirst(),
                        "duration+diversity": references.DurationDiversity()}  # fmt: skip
            policy = with_action_space(policies[args.policy], env.action_space)
            episodes = mn.collect_episodes(env, policy.act, args.episodes, args.seed)
            source = args.policy
        dataset_id = args.dataset_id or mn.default_dataset_id(source, env and env.spec.id)
        path = mn.export_minari(
            episodes,
            dataset_id,
            root=args.root,
            env=env,
            algorithm_name=source,
            description=f"recgym {source} data" + (f" from {args.buffer}" if args.buffer else ""),
            overwrite=args.overwrite,
        )
    except (ValueError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote Minari dataset {dataset_id} ({len(episodes)} episodes) to {path}")
    return 0


BENCH_SUITES = {
    "throughput": (
        "recgym.benchmarks.throughput",
        "world, learned-simulator and env speed, log generation/loading, simulator training "
        "(`recgym bench throughput --help`)",
    ),
    "ruie": (
        "recgym.benchmarks.ruie",
        "the RUIE paper's Tables 1-2 on KuaiSAR-schema logs (world or --data DIR), online results "
        "in MultiScenario-v0 and Q vs the true scenario switch (`recgym bench ruie --help`)",
    ),
    "mtf": (
        "recgym.benchmarks.mtf",
        "the Enhanced-State RL-MTF paper's Tables 1-4 on MTFSession-v0: ES, DDPG, CQL+SAC, BCQ, "
        "IQL, IntegratedRL-MTF, Enhanced-State RL-MTF (`recgym bench mtf --help`)",
    ),
    "rliv-ua": (
        "recgym.benchmarks.rliv_ua",
        "the RLIV-UA paper's Tables 2-3 on UserAuthor-v0: every baseline vs RLIV-UA and its "
        "ablations, on the learned simulator and the world (`recgym bench rliv-ua --help`)",
    ),
    "gpu": (
        "recgym.benchmarks.gpu_check",
        "simulator fit, the learned backend's vector env (N = 4,096) and DQN training on CUDA "
        "and on the CPU, with the ratios (`recgym bench gpu --help`)",
    ),
    "fidelity": (
        "recgym.benchmarks.fidelity",
        "simulator acceptance by policy ranking: a fixed panel of policies on the world and on "
        "the simulator learned from its logs; Kendall tau per metric (`recgym bench fidelity "
        "--help`)",
    ),
    "fidelity-compare": (
        "recgym.benchmarks.fidelity_compare",
        "two configurations of `recgym bench fidelity` run on the same worlds (--seed): the "
        "Kendall tau differences paired by world, with 95%% intervals and verdicts",
    ),
    "rdrsr": (
        "recgym.benchmarks.rdrsr",
        "the RDRSR paper's Tables 2 and 4 on ML-100k, Last.fm, Foursquare and the world, and "
        "allocation vs the world's true interests (`recgym bench rdrsr --help`)",
    ),
    "sweep": (
        "recgym.benchmarks.sweep_bench",
        "job fan-out wall time: serial vs process pool vs local Ray",
    ),
}
"""`recgym bench SUITE ...` -> SUITE's module `main(argv)`, which parses its own options."""


def _simulator_train(args: argparse.Namespace) -> int:
    from recgym.data import DataError
    from recgym.simulators.learned import SimulatorConfig
    from recgym.simulators.train import summary_text, train_simulator

    config = SimulatorConfig(
        seed=args.seed,
        leave_view_seconds=args.leave_view_seconds,
        calibrate_click_on_random=args.calibrate_click_on_random,
    )
    if args.epochs is not None:
        config.epochs = args.epochs
    try:
        report = train_simulator(
            args.data, args.out, config, progress=not args.quiet, device=args.device
        )
    except (DataError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from recgym import __version__

    parser = argparse.ArgumentParser(
        prog="recgym",
        description="recgym: an offline-RL recommendation gym (Gymnasium envs on user simulators).",
    )
    parser.add_argument("--version", action="version", version=f"recgym {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "demo",
        add_help=False,  # `recgym demo --help` is answered by the demo's own parser
        help="the main job: world -> logs -> simulator -> DQN vs baselines, table + plots "
        "(`recgym demo --help` for options)",
    )

    world = sub.add_parser("world", help="the ground-truth synthetic world")
    world_sub = world.add_subparsers(dest="world_command", required=True, metavar="ACTION")
    gen = world_sub.add_parser(
        "generate",
        help="build a seeded world, log it with a biased behaviour policy, write real-schema files",
        description=(
            "Build a seeded ground-truth world, serve it for DAYS days with a click-biased "
            "production policy (plus random exposures), and write the logs in the exact file "
            "names and columns of KuaiRand or KuaiSAR. Also writes world.json (configs), "
            "world_state.npz (the world as it stands after the logs: envs made with "
            "backend='world', world_dir=OUT start there, as a simulator trained on the logs does) "
            "and world_truth.parquet (true probabilities per logged exposure)."
        ),
    )
    gen.add_argument("--out", required=True, help="output directory (created if missing)")
    gen.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    gen.add_argument("--items", type=int, default=3000, help="number of items (default 3000)")
    gen.add_argument("--authors", type=int, default=300, help="number of authors (default 300)")
    gen.add_argument("--days", type=int, default=14, help="days of logs (default 14)")
    gen.add_argument("--seed", type=int, default=0, help="seed of world and logs (default 0)")
    gen.add_argument(
        "--real-features",
        metavar="DIR",
        default=None,
        help="KuaiRand-Pure directory with user_features_pure.csv and "
        "video_features_basic_pure.csv: bootstrap users' static features, video durations and "
        "author productivity from those real rows (default: all synthetic)",
    )
    gen.add_argument(
        "--format",
        choices=("kuairand", "kuaisar"),
        default="kuairand",
        help="file schema to write (default kuairand)",
    )
    gen.add_argument(
        "--dynamics",
        nargs="+",
        metavar="NAME=VALUE",
        default=[],
        help="change behavioural constants of the world (simulators.world.Dynamics), e.g. "
        "--dynamics patience_per_minute=0.18 for the time-pressed world of the MTF learning "
        "tests; recorded in world.json and used wherever the world is rebuilt (default: the "
        "calibrated constants)",
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=_world_generate)
    cal = world_sub.add_parser(
        "calibrate",
        help="compare the world's random exposures with a real KuaiRand random log",
        description=(
            "Build the world, simulate its logs, and compare its uniformly random exposures "
            "(is_rand = 1) with a KuaiRand random log (log_random_*.csv, any number of users) on "
            "click, long-view, like, follow, comment and hate rates, mean play time, median "
            "duration, the rank correlations of duration with watched fraction and with play "
            "time (clicked rows) and the 90th percentile of user CTR. Real side: user-bootstrap "
            "95%% intervals, or exact Clopper-Pearson ones for rates with under 10 events. "
            "Writes calibration.json and calibration.md. Exit 0 when every required statistic "
            "is within, 1 when one is not, 2 on bad data or an unwritable --out."
        ),
    )
    cal.add_argument("--real", required=True, metavar="DIR", help="KuaiRand directory")
    cal.add_argument(
        "--out", default="calibration", help="output directory (default ./calibration)"
    )
    cal.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    cal.add_argument("--items", type=int, default=3000, help="number of items (default 3000)")
    cal.add_argument("--authors", type=int, default=300, help="number of authors (default 300)")
    cal.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    cal.add_argument("--days", type=int, default=14, help="days of world logs (default 14)")
    cal.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    cal.set_defaults(func=_world_calibrate)

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
    exp = data_sub.add_parser(
        "export",
        help="write logged sessions, a Tianshou HDF5 buffer or ASA samples as a Minari dataset",
        description="Without --buffer: log --episodes sessions of --policy in --env-id. With "
        "--buffer: a Tianshou HDF5 buffer (ASA samples when its .json sidecar exists); "
        "--env-id then records the env it came from. Needs `pip install recgym[minari]`.",
    )
    exp.add_argument("--format", choices=("minari",), default="minari", help="(default minari)")
    exp.add_argument("--env-id", default=None, help="env id (default recgym/Session-v0)")
    exp.add_argument("--env-kwargs", default="{}", help="JSON kwargs of the env (default {})")
    exp.add_argument("--policy", choices=EXPORT_POLICIES, default="random", help="(default random)")
    exp.add_argument("--episodes", type=int, default=100, help="sessions to log (default 100)")
    exp.add_argument("--seed", type=int, default=0, help="seed of the first reset (default 0)")
    exp.add_argument("--buffer", default=None, help="a Tianshou HDF5 buffer to export instead")
    exp.add_argument("--dataset-id", default=None, help="default recgym/<env>/<source>-v0")
    exp.add_argument("--root", default=None, help="datasets directory (default Minari's own)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    exp.set_defaults(func=_data_export)

    simulator = sub.add_parser("simulator", help="user simulators learned from logs")
    sim_sub = simulator.add_subparsers(dest="simulator_command", required=True, metavar="ACTION")
    train = sim_sub.add_parser(
        "train",
        help="fit response + leave models on KuaiRand or KuaiSAR logs; save checkpoint + fidelity",
        description=(
            "Fit the multi-behaviour response model and the leave model on the KuaiRand-format "
            "logs in DATA (real, or written by `recgym world generate`), evaluate fidelity on "
            "held-out users and days, and save checkpoint, config JSON and fidelity report to OUT. "
            "A KuaiSAR directory (rec_inter.csv, src_inter.csv, item_features.csv) is read through "
            "`simulators.learned.kuaisar` and also gets the scenario-switch model (scenario.json), "
            "so recgym/MultiScenario-v0 runs on OUT with backend='learned'."
        ),
    )
    train.add_argument(
        "--data", required=True, help="directory of KuaiRand-format logs or KuaiSAR files"
    )
    train.add_argument("--out", required=True, help="checkpoint directory to write")
    train.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: SimulatorConfig)"
    )
    train.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    train.add_argument(
        "--leave-view-seconds",
        action="store_true",
        help="the leave model also reads each exposure's seconds watched up to 18 s "
        "(SimulatorConfig.leave_view_seconds; off by default)",
    )
    train.add_argument(
        "--calibrate-click-on-random",
        action="store_true",
        help="calibrate the click intercept to the logged random exposures after fitting "
        "(SimulatorConfig.calibrate_click_on_random; off by default)",
    )
    train.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA when available, else CPU; the default), cpu, cuda, cuda:N",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_simulator_train)

    bench = sub.add_parser("bench", help="benchmarks (write JSONL rows + a markdown table)")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="SUITE")
    for name, (_, text) in BENCH_SUITES.items():
        # each suite parses its own options: `recgym bench SUITE --help`
        bench_sub.add_parser(name, add_help=False, help=text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from recgym.outdir import OutputError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except OutputError as exc:  # an unwritable --out: one line naming the path, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if argv[:1] == ["demo"]:  # the demo parses its own options (and its own --help)
        from recgym.benchmarks import demo

        return _with_sweep(demo.main, argv[1:], default_workers=DEMO_WORKERS)
    if argv[:1] == ["bench"] and len(argv) > 1 and argv[1] in BENCH_SUITES:
        import importlib

        module = importlib.import_module(BENCH_SUITES[argv[1]][0])
        return int(_with_sweep(module.main, argv[2:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


DEMO_WORKERS = max(1, min(os.cpu_count() or 1, 5))
"""`recgym demo`'s worker processes unless ``--workers``/``--ray`` say otherwise: one per core,
at most one per default training seed (its five DQN seeds train side by side; the rows are
those of a serial run, every stage being seeded and single-threaded)."""


def _with_sweep(main_fn, argv: list[str], default_workers: int = 1) -> int:
    """Run a bench's `main` with the sweep options every engine bench takes (--workers N,
    --ray [ADDRESS], --retries N) taken out of `argv` and applied to its engine;
    `default_workers` when `argv` names neither ``--workers`` nor ``--ray``."""
    from dataclasses import replace

    from recgym.benchmarks.engine_cli import split_sweep_args, sweep_parser
    from recgym.benchmarks.sweep import SweepError, use_sweep

    sweep, rest = split_sweep_args(argv)
    named = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    if default_workers > 1 and not named & {"--workers", "--ray"}:
        sweep = replace(sweep, workers=default_workers)
    if "-h" in rest or "--help" in rest:
        text = sweep_parser().format_help().replace("usage: ", "sweep options: ", 1)
        if default_workers > 1:
            text += f"  (here --workers defaults to {default_workers}: one per core, at most 5)\n"
        print(text)
    try:
        with use_sweep(sweep):
            return main_fn(rest)
    except SweepError as exc:  # every other job finished; a re-run retries the failed ones
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
