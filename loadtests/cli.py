"""`python -m loadtests run|sweep`: the two commands share how the server is reached (a running
one, or one started with the given flags) and what the users do."""

import argparse
from pathlib import Path

from loadtests import runner, sweep

TARGETS = runner.HERE / "targets.toml"


def user_counts(text: str) -> list[int]:
    counts = [int(n) for n in text.split(",")]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"user counts must be positive: {text!r}")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--host", help="a running server; without it one is started (CPU)")
    server.add_argument("--server-flag", action="append", default=[], help="for the started server")
    server.add_argument(
        "--spawn-rate", type=float, help="users started a second (default: all in 2 s)"
    )
    server.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="only this user class of loadtests/scenarios.py (repeatable; default: all, weighted)",
    )
    server.add_argument("--targets", type=Path, default=TARGETS)

    parser = argparse.ArgumentParser(prog="python -m loadtests")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[server], help="run the load test and check the targets")
    run.add_argument("--profile", default="ci", help="a table of --targets (ci, long)")
    run.add_argument("--users", type=int, help="concurrent users (default: the profile's)")
    run.add_argument("--duration", type=float, help="seconds (default: the profile's)")
    run.add_argument("--csv", type=Path, help="keep locust's CSV files under this prefix")

    knee = sub.add_parser(
        "sweep",
        parents=[server],
        help="one server, one run per user count: a table and a plot of where latency turns",
    )
    knee.add_argument("--users", type=user_counts, default=[5, 10, 20, 40, 80])
    knee.add_argument("--step-duration", type=float, default=60, help="seconds per user count")
    knee.add_argument("--out", type=Path, required=True, help="the plot (PNG); the table: .md")
    knee.add_argument("--profile", default="long", help="whose latency targets the plot draws")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return runner.run(args) if args.command == "run" else sweep.sweep(args)
