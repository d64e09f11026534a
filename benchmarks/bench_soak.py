"""Soak: minutes of mixed traffic against the real server and a real redis-server, with the
server process's RSS and open file descriptors sampled every few seconds. They must stay flat.

    .venv/bin/python -m benchmarks.bench_soak --minutes 10

Traffic, from a few concurrent clients: all three dialects (Tabby, OpenAI, llama.cpp /infill),
streaming and not, repeated prompts (suggestion-cache hits in Redis), editor sessions that
supersede their own request (X-Session-Id: the older one gets 499), streams dropped after their
first event, and bad bodies (broken JSON, UTF-16, lone surrogates, deep nesting, wrong types).

Flat means: after the warm-up, the mean RSS of the last third of the samples is within
--rss-tolerance of the first third's, and the open descriptors' mean grew by at most
--fd-tolerance. The process exits 1 when either is not flat or a request got a 5xx.
"""

import argparse
import asyncio
import collections
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from service.settings import DEFAULT_MODEL_DIR
from tests.support.redis_server import RedisServer
from tests.support.service_process import server_process

REPO = Path(__file__).resolve().parent.parent

# A few function heads the prompts are built from: some repeat (cache hits), some are unique.
HEADS = [
    "def add(a, b):\n    return a +",
    "def read_lines(path):\n    with open(path) as f:\n        return",
    "class Point:\n    def __init__(self, x, y):\n        self.x =",
    "import os\n\ndef list_python_files(root):\n    return [",
    "def fibonacci(n):\n    if n < 2:\n        return",
]


@dataclass
class Sample:
    elapsed_s: float
    rss_mb: float
    open_fds: int
    requests_done: int


@dataclass
class Tally:
    """Responses by traffic kind and status; 5xx and transport errors are the failures."""

    statuses: dict[str, collections.Counter] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    done: int = 0

    def record(self, kind: str, status: int | str) -> None:
        self.statuses[kind][status] += 1
        self.done += 1

    def failures(self) -> int:
        return sum(
            count
            for counter in self.statuses.values()
            for status, count in counter.items()
            if isinstance(status, str) or status >= 500
        )


def prompt_head(rng: random.Random, repeat: bool) -> str:
    head = rng.choice(HEADS)
    # A unique comment line makes a prompt the cache has never seen.
    return head if repeat else f"# request {rng.getrandbits(48):x}\n{head}"


def bad_body(rng: random.Random) -> tuple[bytes, str]:
    """A body the server must refuse with a 4xx, and its content type."""
    choices = [
        (b'{"prompt": "def f(', "application/json"),
        (json.dumps({"prompt": "x = 1"}).encode("utf-16"), "application/json"),
        (b'{"prompt": "\\ud800 lone surrogate"}', "application/json"),
        (b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),
        (json.dumps({"prompt": 42, "max_tokens": "many"}).encode(), "application/json"),
        (json.dumps({"neither": "shape"}).encode(), "application/json"),
    ]
    return rng.choice(choices)


async def one_request(client: httpx.AsyncClient, rng: random.Random, tally: Tally) -> None:
    """One request of a random kind, its outcome recorded under that kind."""
    kind = rng.choices(
        ["tabby", "tabby_cached", "openai", "openai_stream", "infill", "infill_stream",
         "superseded", "dropped_stream", "bad_body"],
        weights=[3, 3, 2, 2, 2, 2, 1, 1, 2],
    )[0]  # fmt: skip
    try:
        if kind in ("tabby", "tabby_cached"):
            body = {
                "language": "python",
                "segments": {"prefix": prompt_head(rng, kind == "tabby_cached"), "suffix": "\n"},
            }
            response = await client.post("/v1/completions", json=body)
            tally.record(kind, response.status_code)
        elif kind == "openai":
            body = {"prompt": prompt_head(rng, False), "max_tokens": 16, "temperature": 0}
            response = await client.post("/v1/completions", json=body)
            tally.record(kind, response.status_code)
        elif kind == "infill":
            body = {"input_prefix": prompt_head(rng, False), "input_suffix": "\n", "n_predict": 16}
            response = await client.post("/infill", json=body)
            tally.record(kind, response.status_code)
        elif kind in ("openai_stream", "infill_stream"):
            path, body = (
                ("/v1/completions", {"prompt": prompt_head(rng, False), "max_tokens": 16})
                if kind == "openai_stream"
                else ("/infill", {"input_prefix": prompt_head(rng, False), "n_predict": 16})
            )
            async with client.stream("POST", path, json={**body, "stream": True}) as response:
                text = "".join([chunk async for chunk in response.aiter_text()])
            # A stream that ends with an error event is a failure even under a 200.
            ok = response.status_code == 200 and '"error"' not in text
            tally.record(kind, response.status_code if ok else "error event")
        elif kind == "dropped_stream":
            body = {"prompt": prompt_head(rng, False), "max_tokens": 64, "stream": True}
            async with client.stream("POST", "/v1/completions", json=body) as response:
                async for _ in response.aiter_bytes():
                    break  # the editor moved on: the connection closes mid-stream
            tally.record(kind, response.status_code)
        elif kind == "superseded":
            session = {"X-Session-Id": f"soak-{rng.getrandbits(48):x}"}
            older = {"prompt": prompt_head(rng, False), "max_tokens": 256, "temperature": 0}
            newer = {"prompt": prompt_head(rng, False), "max_tokens": 8, "temperature": 0}
            first = asyncio.create_task(client.post("/v1/completions", json=older, headers=session))
            await asyncio.sleep(0.05)
            second = await client.post("/v1/completions", json=newer, headers=session)
            # The older one gets 499 when it was superseded, 200 when it finished first.
            tally.record("superseded (older)", (await first).status_code)
            tally.record("superseded (newer)", second.status_code)
        else:
            content, content_type = bad_body(rng)
            headers = {"content-type": content_type}
            response = await client.post("/v1/completions", content=content, headers=headers)
            tally.record(kind, response.status_code)
    except httpx.HTTPError as error:
        tally.record(kind, type(error).__name__)


async def client_loop(url: str, seed: int, stop_at: float, tally: Tally) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while time.monotonic() < stop_at:
            await one_request(client, rng, tally)


def sample(pid: int, started: float, tally: Tally) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    open_fds = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return Sample(time.monotonic() - started, rss_kb / 1024, open_fds, tally.done)


async def soak(url: str, pid: int, args: argparse.Namespace) -> tuple[list[Sample], Tally]:
    tally = Tally()
    started = time.monotonic()
    stop_at = started + args.minutes * 60
    clients = [
        asyncio.create_task(client_loop(url, seed, stop_at, tally)) for seed in range(args.clients)
    ]
    samples = [sample(pid, started, tally)]
    with tqdm(total=round(args.minutes * 60), unit="s", desc="soak") as progress:
        while time.monotonic() < stop_at:
            await asyncio.sleep(min(args.sample_s, max(0.0, stop_at - time.monotonic())))
            samples.append(sample(pid, started, tally))
            progress.n = min(progress.total, round(samples[-1].elapsed_s))
            progress.set_postfix(
                rss_mb=f"{samples[-1].rss_mb:.0f}", fds=samples[-1].open_fds, requests=tally.done
            )
    await asyncio.gather(*clients)
    samples.append(sample(pid, started, tally))
    return samples, tally


@dataclass
class Verdict:
    rss_first_mb: float
    rss_last_mb: float
    fds_first: float
    fds_last: float
    rss_flat: bool
    fds_flat: bool


def judge(samples: list[Sample], args: argparse.Namespace) -> Verdict:
    """First third against last third of the samples taken after the warm-up."""
    settled = [s for s in samples if s.elapsed_s >= args.warmup_s]
    third = max(1, len(settled) // 3)
    first, last = settled[:third], settled[-third:]
    rss_first = statistics.mean(s.rss_mb for s in first)
    rss_last = statistics.mean(s.rss_mb for s in last)
    fds_first = statistics.mean(s.open_fds for s in first)
    fds_last = statistics.mean(s.open_fds for s in last)
    return Verdict(
        rss_first,
        rss_last,
        fds_first,
        fds_last,
        rss_flat=rss_last <= rss_first * (1 + args.rss_tolerance),
        fds_flat=fds_last <= fds_first + args.fd_tolerance,
    )


def report(samples: list[Sample], tally: Tally, verdict: Verdict, args) -> str:
    lines = ["| elapsed | RSS (MB) | open fds | requests done |", "|---:|---:|---:|---:|"]
    step = max(1, len(samples) // args.table_rows)
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        lines.append(f"| {s.elapsed_s:.0f} s | {s.rss_mb:.1f} | {s.open_fds} | {s.requests_done} |")
    lines += ["", "| traffic | responses by status |", "|---|---|"]
    for kind, counter in sorted(tally.statuses.items()):
        by_status = ", ".join(
            f"{status}: {count}" for status, count in sorted(counter.items(), key=str)
        )
        lines.append(f"| {kind} | {by_status} |")
    lines += [
        "",
        f"requests: {tally.done} in {samples[-1].elapsed_s:.0f} s, failures (5xx, transport, "
        f"error events): {tally.failures()}",
        f"RSS after warm-up: first third {verdict.rss_first_mb:.1f} MB, last third "
        f"{verdict.rss_last_mb:.1f} MB ({(verdict.rss_last_mb / verdict.rss_first_mb - 1):+.1%}): "
        f"{'flat' if verdict.rss_flat else 'GROWING'}",
        f"open fds after warm-up: first third {verdict.fds_first:.1f}, last third "
        f"{verdict.fds_last:.1f}: {'flat' if verdict.fds_flat else 'GROWING'}",
    ]
    return "\n".join(lines)


def plot(samples: list[Sample], path: Path, warmup_s: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.elapsed_s / 60 for s in samples]
    figure, (rss_axis, fd_axis) = plt.subplots(2, 1, sharex=True, figsize=(8, 5))
    rss_axis.plot(minutes, [s.rss_mb for s in samples])
    rss_axis.set_ylabel("RSS (MB)")
    fd_axis.plot(minutes, [s.open_fds for s in samples], color="tab:orange")
    fd_axis.set_ylabel("open fds")
    fd_axis.set_xlabel("minutes of mixed traffic")
    for axis in (rss_axis, fd_axis):
        axis.axvline(warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
        axis.set_ylim(bottom=0)
    rss_axis.legend(loc="lower right")
    figure.suptitle("Server process under the soak (benchmarks/bench_soak.py)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client loops")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="samples before are ignored")
    parser.add_argument("--rss-tolerance", type=float, default=0.05, help="allowed RSS growth")
    parser.add_argument("--fd-tolerance", type=float, default=2.0, help="allowed fd growth")
    parser.add_argument("--table-rows", type=int, default=12)
    parser.add_argument("--plot", type=Path, default=REPO / "docs/img/soak_rss_fds.png")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        redis_server = RedisServer(Path(workdir))
        redis_server.start()
        # server_process writes its log next to the model's folder: a link keeps it out of the repo.
        model = Path(workdir) / "model"
        model.symlink_to(args.model.resolve())
        try:
            with server_process(model, "--redis-url", redis_server.url) as server:
                samples, tally = asyncio.run(soak(server.url, server.process.pid, args))
        finally:
            redis_server.kill()
    verdict = judge(samples, args)
    print(report(samples, tally, verdict, args))
    try:
        plot(samples, args.plot, args.warmup_s)
        print(f"plot: {args.plot}")
    except ImportError:
        print("matplotlib is not installed: no plot")
    flat = verdict.rss_flat and verdict.fds_flat and tally.failures() == 0
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
