"""One load run: locust headless (loadtests/scenarios.py) against a server, with the server's
/metrics read around it, as a `Step`; `python -m loadtests run` checks one against the targets of
a profile in loadtests/targets.toml (exits 1 when a target is missed, 2 when the run could not be
made), `python -m loadtests sweep` (loadtests/sweep.py) makes one per user count.

    python -m loadtests run --profile ci                      # starts a CPU server itself
    python -m loadtests run --users 20 --duration 600 --profile long --host http://127.0.0.1:8000
"""

import argparse
import contextlib
import csv
import math
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TYPING = "completion"  # the typing users' completions: what the latency targets are about
ANSWERS = (TYPING, "manual n=3", "stream", "openai client")
REFUSED = "refused"
Samples = dict[tuple[str, str], float]  # a /metrics scrape: (name, labels) -> value


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(host: str | None, flags: list[str], log_dir: Path):
    if host:
        yield host.rstrip("/"), None
        return
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--port", str(port), *flags]
    log = open(log_dir / "server.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited:\n{log.read()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("the server was not healthy after 180 s")
            time.sleep(0.3)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([-+\d.eEinfNa]+)$")


def scrape(url: str) -> Samples:
    samples = {}
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if match := SAMPLE.match(line):
            samples[(match.group(1), match.group(2) or "")] = float(match.group(3))
    return samples


def histogram_quantile(
    before: dict, after: dict, name: str, q: float, where: str = ""
) -> float | None:
    """The q-quantile (seconds) of a histogram's observations between two scrapes, summed over
    the label sets containing `where`, interpolated within a bucket as Prometheus does."""
    buckets: dict[float, float] = defaultdict(float)
    for (metric, labels), value in after.items():
        if metric == f"{name}_bucket" and where in labels:
            le = re.search(r'le="([^"]+)"', labels).group(1)
            buckets[float(le)] += value - before.get((metric, labels), 0.0)
    if not buckets or buckets[math.inf] <= 0:
        return None
    bounds = sorted(buckets)
    rank, lower, below = q * buckets[math.inf], 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == math.inf:
                return lower
            return lower + (bound - lower) * (rank - below) / max(buckets[bound] - below, 1e-9)
        lower, below = bound, buckets[bound]
    return None


def counter_delta(before: dict, after: dict, name: str) -> float:
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k[0] == name)


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def warm_up(url: str) -> None:
    """A few completions first: the first ones compile kernels and fill caches."""
    for i in range(4):
        body = {
            "language": "python",
            "segments": {"prefix": f"def warm_{i}(x):\n    ", "suffix": ""},
        }
        httpx.post(f"{url}/v1/completions", json=body, timeout=120)


def read_stats(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def read_failures(prefix: Path) -> list[str]:
    """Locust's failure table as lines: how often, which request, what the error said."""
    with contextlib.suppress(FileNotFoundError), open(f"{prefix}_failures.csv") as f:
        return [
            f"{row['Occurrences']}x {row['Method']} {row['Name']}: {row['Error']}"
            for row in csv.DictReader(f)
        ]
    return []


@dataclass
class Step:
    """One locust run against a server: what the users saw, and the server's /metrics around it."""

    users: int
    duration_s: float
    wall_s: float
    stats: dict[str, dict[str, str]]  # locust's statistics by request name (its _stats.csv)
    before: Samples = field(default_factory=dict)
    after: Samples = field(default_factory=dict)
    rss_mb: tuple[float | None, float | None] = (None, None)  # the started server's, start/end
    waiting: list[float] = field(default_factory=list)  # engine_requests_waiting, every second
    failures: list[str] = field(default_factory=list)  # locust's failure table, the log's tail

    def count(self, name: str, column: str = "Request Count") -> int:
        return int(self.stats[name][column]) if name in self.stats else 0

    @property
    def answered(self) -> int:
        return sum(self.count(n) - self.count(n, "Failure Count") for n in ANSWERS)

    @property
    def refused(self) -> int:
        return self.count(REFUSED)

    @property
    def refusal_ratio(self) -> float:
        return self.refused / max(1, self.answered + self.refused)

    @property
    def num_failed(self) -> int:
        return self.count("Aggregated", "Failure Count")

    @property
    def throughput(self) -> float:
        """Answered completions a second."""
        return self.answered / max(self.duration_s, 1e-9)

    def typing_ms(self, percentile: str) -> float:
        """The typing users' latency at one of locust's percentile columns ("50%", "95%")."""
        return float(self.stats.get(TYPING, {}).get(percentile) or "nan")

    def server_quantile(self, name: str, q: float, where: str = "") -> float | None:
        return histogram_quantile(self.before, self.after, name, q, where)


class LocustFailed(RuntimeError):
    """Locust wrote no statistics; the message is the end of its output."""


def watch_waiting(url: str, stop: threading.Event, into: list[float]) -> None:
    """Scrape the server's queue gauge every second until `stop` (the autoscaler's signal under
    this load); a server without the gauge leaves `into` empty."""
    while not stop.wait(1.0):
        with contextlib.suppress(httpx.HTTPError):
            waiting = scrape(url).get(("engine_requests_waiting", ""))
            if waiting is not None:
                into.append(waiting)


def load(
    url: str,
    pid: int | None,
    users: int,
    duration_s: float,
    work_dir: Path,
    spawn_rate: float | None = None,
    scenarios: list[str] | None = None,
    csv_prefix: Path | None = None,
) -> Step:
    """Run locust headless against `url` (a server that `server()` started in `work_dir`, or
    another) for `duration_s`; raises LocustFailed when it wrote no statistics."""
    prefix = csv_prefix or work_dir / f"locust-{users}"
    rss_start = rss_mb(pid)
    before = scrape(url)
    waiting: list[float] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_waiting, args=(url, stop, waiting), daemon=True)
    watcher.start()
    started = time.monotonic()
    locust = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(HERE / "scenarios.py"),
            "--headless",
            "--only-summary",
            "--users",
            str(users),
            "--spawn-rate",
            str(spawn_rate or max(1.0, users / 2)),
            "--run-time",
            f"{math.ceil(duration_s)}s",
            "--stop-timeout",
            "10",
            "--host",
            url,
            "--csv",
            str(prefix),
            "--loglevel",
            "WARNING",
            *(scenarios or []),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    wall_s = time.monotonic() - started
    stop.set()
    watcher.join()
    after = scrape(url)
    rss_end = rss_mb(pid)
    try:
        stats = read_stats(prefix)
    except FileNotFoundError:
        raise LocustFailed(locust.stdout[-3000:] + locust.stderr[-3000:]) from None
    failures = read_failures(prefix)
    server_log = work_dir / "server.log"
    if failures and server_log.exists():  # what the server said about them
        failures += ["server log: " + line for line in server_log.read_text().splitlines()[-40:]]
    return Step(
        users, duration_s, wall_s, stats, before, after, (rss_start, rss_end), waiting, failures
    )


def read_profile(targets: Path, name: str) -> dict | None:
    return tomllib.loads(targets.read_text()).get(name)


def run(args: argparse.Namespace) -> int:
    target = read_profile(args.targets, args.profile)
    if target is None:
        print(f"no profile {args.profile!r} in {args.targets}", file=sys.stderr)
        return 2
    users = args.users or target["users"]
    duration = args.duration or target["duration_s"]
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        with server(args.host, args.server_flag, work_dir) as (url, pid):
            warm_up(url)
            try:
                step = load(
                    url, pid, users, duration, work_dir, args.spawn_rate, args.scenario, args.csv
                )
            except LocustFailed as error:
                print(error, file=sys.stderr)
                return 2
    code = report(step, target)
    for line in step.failures:
        print("failure: " + line)
    return code


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(step: Step, target: dict) -> int:
    p50, p95, p99 = (step.typing_ms(p) for p in ("50%", "95%", "99%"))
    route = 'route="/v1/completions"'
    server_p50 = step.server_quantile("http_request_duration_seconds", 0.5, route)
    server_p95 = step.server_quantile("http_request_duration_seconds", 0.95, route)
    ttft = step.server_quantile("engine_time_to_first_token_seconds", 0.5)
    queue = step.server_quantile("engine_queue_time_seconds", 0.95)
    before, after = step.before, step.after
    cancelled = counter_delta(before, after, "engine_cancellations_total")
    hits = sum(
        v - before.get(k, 0.0)
        for k, v in after.items()
        if k[0] == "completion_cache_lookups_total" and 'outcome="miss"' not in k[1]
    )
    lookups = counter_delta(before, after, "completion_cache_lookups_total")

    checks = [
        (
            "failed requests",
            step.num_failed,
            f"<= {target['max_failures']}",
            step.num_failed <= target["max_failures"],
        ),
        ("typing p50", f"{p50:.0f} ms", f"<= {target['p50_ms']} ms", p50 <= target["p50_ms"]),
        ("typing p95", f"{p95:.0f} ms", f"<= {target['p95_ms']} ms", p95 <= target["p95_ms"]),
        (
            "refusals",
            f"{step.refused} ({step.refusal_ratio:.2%})",
            f"<= {target['max_refusal_ratio']:.0%}",
            step.refusal_ratio <= target["max_refusal_ratio"],
        ),
        (
            "answered completions",
            step.answered,
            f">= {target['min_completions']}",
            step.answered >= target["min_completions"],
        ),
    ]
    info = [
        (
            "users / duration",
            f"{step.users} users, {step.duration_s:.0f} s (wall {step.wall_s:.0f} s)",
        ),
        ("typing p99", f"{p99:.0f} ms"),
        ("throughput", f"{step.throughput:.1f} completions/s"),
        *[
            (
                f"{name} p50/p95",
                f"{step.stats[name]['50%']} / {step.stats[name]['95%']} ms, n={step.count(name)}",
            )
            for name in ANSWERS[1:]
            if step.count(name)
        ],
        ("server http p50/p95", f"{ms(server_p50)} / {ms(server_p95)}"),
        ("server first token p50", ms(ttft)),
        ("server queue time p95", ms(queue)),
        ("server waiting mean/max", waiting_summary(step.waiting)),
        ("cancellations (server)", f"{cancelled:.0f}"),
        ("cache hits / lookups", f"{hits:.0f} / {lookups:.0f}"),
        (
            "server RSS start/end",
            " / ".join("-" if r is None else f"{r:.0f} MB" for r in step.rss_mb),
        ),
        ("load average", " ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]
    width = max(len(row[0]) for row in [*checks, *info])
    print(f"{'check':<{width}}  {'value':>22}  {'target':>12}  verdict")
    for name, value, goal, ok in checks:
        print(f"{name:<{width}}  {value!s:>22}  {goal:>12}  {'ok' if ok else 'MISSED'}")
    for name, value in info:
        print(f"{name:<{width}}  {value}")
    missed = [name for name, _, _, ok in checks if not ok]
    print("targets " + ("MISSED: " + ", ".join(missed) if missed else "met"))
    return 1 if missed else 0


def waiting_summary(waiting: list[float]) -> str:
    """Mean and max of the queue gauge's samples ("-" from a server without it)."""
    if not waiting:
        return "-"
    return f"{sum(waiting) / len(waiting):.1f} / {max(waiting):.0f}"
