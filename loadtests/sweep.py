"""`python -m loadtests sweep`: where the knee is. One server (started once, or --host), one
locust run per user count (loadtests/runner.py's `load`, the same users as `run`), then a table
(markdown, printed and written next to the plot) and a plot of the typing users' p50/p95 against
users on a log axis, with the profile's latency targets and the refusal ratio.

    python -m loadtests sweep --users 5,10,20,40,80 --step-duration 60 \\
        --out docs/img/load_knee.png --server-flag=--device=cpu

The server keeps its caches from step to step, as a server does whose load grows through a day.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from loadtests.runner import (  # noqa: E402
    LocustFailed,
    Step,
    load,
    ms,
    read_profile,
    server,
    waiting_summary,
    warm_up,
)

COLUMNS = (
    "users",
    "completions/s",
    "typing p50",
    "typing p95",
    "typing p99",
    "refusals",
    "failures",
    "server queue wait p95",
    "waiting mean / max",
)


def row(step: Step) -> list[str]:
    return [
        str(step.users),
        f"{step.throughput:.1f}",
        *(f"{step.typing_ms(p):.0f} ms" for p in ("50%", "95%", "99%")),
        f"{step.refusal_ratio:.2%}",
        str(step.num_failed),
        ms(step.server_quantile("engine_queue_time_seconds", 0.95)),
        waiting_summary(step.waiting),
    ]


def table(steps: list[Step]) -> str:
    """A markdown table, one row per user count."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---:|" * len(COLUMNS),
        *("| " + " | ".join(row(step)) + " |" for step in steps),
    ]
    return "\n".join(lines) + "\n"


def progress(step: Step) -> str:
    p50, p95, p99 = (step.typing_ms(p) for p in ("50%", "95%", "99%"))
    return (
        f"{step.users} users: {step.throughput:.1f} completions/s, typing p50/p95/p99 "
        f"{p50:.0f}/{p95:.0f}/{p99:.0f} ms, refusals {step.refusal_ratio:.2%}, "
        f"failures {step.num_failed}"
    )


def plot(steps: list[Step], target: dict, path: Path) -> None:
    users = [step.users for step in steps]
    figure, latency = plt.subplots(figsize=(7.5, 4.5))
    for percentile, color, goal in (("50%", "C0", "p50_ms"), ("95%", "C1", "p95_ms")):
        name = "p" + percentile.rstrip("%")
        latency.plot(
            users,
            [s.typing_ms(percentile) for s in steps],
            "o-",
            color=color,
            label=f"typing {name}",
        )
        latency.axhline(
            target[goal], color=color, linestyle=":", label=f"{name} target {target[goal]} ms"
        )
    latency.set_xscale("log")
    latency.set_yscale("log")  # the knee's tail runs to seconds, the targets sit at 150/500 ms
    latency.set_xticks(users, [str(u) for u in users])
    latency.minorticks_off()
    latency.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    latency.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    latency.set_xlabel("concurrent users")
    latency.set_ylabel("completion latency (ms)")
    refusals = latency.twinx()
    ratios = [100 * s.refusal_ratio for s in steps]
    refusals.plot(users, ratios, "^--", color="C3", label="refusals (%)")
    refusals.set_ylim(0, max(5.0, 1.2 * max(ratios)))
    refusals.set_ylabel("refused (%)")
    handles = [h for axis in (latency, refusals) for h in axis.get_legend_handles_labels()[0]]
    latency.legend(handles=handles, loc="upper left", fontsize="small")
    latency.set_title(f"Typing users' completions, {steps[0].duration_s:.0f} s per user count")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def sweep(args: argparse.Namespace) -> int:
    target = read_profile(args.targets, args.profile)
    if target is None:
        print(f"no profile {args.profile!r} in {args.targets}", file=sys.stderr)
        return 2
    print(f"load average before: {load_average()}", flush=True)
    steps: list[Step] = []
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        with server(args.host, args.server_flag, work_dir) as (url, pid):
            warm_up(url)
            for users in args.users:
                try:
                    step = load(
                        url,
                        pid,
                        users,
                        args.step_duration,
                        work_dir,
                        args.spawn_rate,
                        args.scenario,
                    )
                except LocustFailed as error:
                    print(f"{users} users: locust failed\n{error}", file=sys.stderr)
                    break
                steps.append(step)
                print(progress(step), flush=True)
    if not steps:
        return 2
    markdown = table(steps)
    print(markdown, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown)
    plot(steps, target, args.out)
    for step in steps:
        for line in step.failures:
            print(f"failure at {step.users} users: {line}")
    print(f"load average after: {load_average()}")
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0 if len(steps) == len(args.users) else 2
