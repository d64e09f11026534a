"""Secret scrubbing: latency per 8 KB of context, time per KB of hostile text, and quality
against detect-secrets.

    .venv/bin/python -m benchmarks.bench_secrets [--contexts 2000] [--oracle-mb 2]

Table 1: p50/p90/p99 of scrubbing one 8 KB context of real code (the standard library), clean
and with three planted secrets, with the keyword prefilter and without it; detect-secrets'
`scan_file` on the same contexts for scale.
Table 2: per rule, the slowest of its hostile texts (tests/support/secret_corpus.py HOSTILE_UNITS) at
1 MB: time per KB without a budget, and what a request's ScrubBudget makes of it.
Table 3: recall on planted secrets of every family and findings on clean code (false
positives), ours and detect-secrets', over the standard library.
"""

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from detect_secrets.core.scan import scan_file
from detect_secrets.settings import default_settings
from tqdm import tqdm

from service.secrets.scrubber import Scrubber, ScrubBudget, ScrubBudgetExceeded, SecretDetector
from tests.support.secret_corpus import HOSTILE_UNITS, plant, planted_secrets, stdlib_files

CONTEXT_CHARS = 8192


def contexts(n: int, rng: random.Random) -> list[str]:
    corpus = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in stdlib_files())
    starts = [rng.randrange(len(corpus) - CONTEXT_CHARS) for _ in range(n)]
    return [corpus[s : s + CONTEXT_CHARS] for s in starts]


def with_secrets(texts: list[str], rng: random.Random) -> list[str]:
    out = []
    for text in texts:
        for planted in rng.sample(planted_secrets(rng), 3):
            text, _ = plant(text, planted, rng)
        out.append(text)
    return out


def percentiles_ms(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49] * 1e3, q[89] * 1e3, q[98] * 1e3


def time_scrub(texts: list[str], detector: SecretDetector, label: str) -> list[float]:
    samples = []
    for text in tqdm(texts, desc=label, unit="ctx", leave=False):
        start = time.perf_counter()
        Scrubber(detector).scrub(text)
        samples.append(time.perf_counter() - start)
    return samples


def time_detect_secrets(texts: list[str], workdir: Path) -> list[float]:
    samples = []
    path = workdir / "context.py"
    with default_settings():
        for text in tqdm(texts, desc="detect-secrets", unit="ctx", leave=False):
            path.write_text(text)
            start = time.perf_counter()
            list(scan_file(str(path)))
            samples.append(time.perf_counter() - start)
    return samples


def latency_table(n: int, rng: random.Random, workdir: Path) -> None:
    clean = contexts(n, rng)
    planted = with_secrets(clean, rng)
    fast, full = SecretDetector(prefilter=True), SecretDetector(prefilter=False)
    few = max(50, n // 10)
    rows = [
        ("ours, prefilter, clean code", time_scrub(clean, fast, "clean")),
        ("ours, prefilter, 3 planted secrets", time_scrub(planted, fast, "planted")),
        ("ours, no prefilter, clean code", time_scrub(clean[:few], full, "no prefilter")),
        ("detect-secrets scan_file, clean code", time_detect_secrets(clean[:20], workdir)),
    ]
    print(f"\nScrubbing one {CONTEXT_CHARS // 1024} KB context (ms)")
    print(f"| {'case':<40} | {'n':>5} | {'p50':>7} | {'p90':>7} | {'p99':>7} |")
    print(f"|{'-' * 42}|{'-' * 7}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    for name, samples in rows:
        p50, p90, p99 = percentiles_ms(samples)
        print(f"| {name:<40} | {len(samples):>5} | {p50:>7.3f} | {p90:>7.3f} | {p99:>7.3f} |")


def hostile_table(megabytes: float = 1.0) -> None:
    chars = int(megabytes * 1_000_000)
    detector = SecretDetector()
    print(f"\nHostile text, {megabytes:g} MB of the slowest unit per rule (least of 3 runs)")
    print(f"| {'rule':<20} | {'slowest unit':<24} | {'us/KB':>7} | {'budgeted':>22} |")
    print(f"|{'-' * 22}|{'-' * 26}|{'-' * 9}|{'-' * 24}|")
    for rule, units in tqdm(HOSTILE_UNITS.items(), desc="hostile", leave=False):
        timed = []
        for unit in units:
            text = (unit * (chars // len(unit) + 1))[:chars]
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                detector.spans(text)
                best = min(best, time.perf_counter() - start)
            timed.append((best, unit, text))
        best, unit, text = max(timed)
        start = time.perf_counter()
        try:
            Scrubber(budget=ScrubBudget()).scrub(text)
            outcome = "scrubbed"
        except ScrubBudgetExceeded:
            outcome = "refused"
        budgeted = f"{outcome} in {(time.perf_counter() - start) * 1e3:.0f} ms"
        shown = repr(unit if len(unit) <= 20 else unit[:17] + "...")
        print(
            f"| {rule:<20} | {shown:<24} | {best * 1e6 / (chars / 1000):>7.1f} | {budgeted:>22} |"
        )


def quality_table(oracle_mb: float, rng: random.Random, workdir: Path) -> None:
    files = stdlib_files()
    rng.shuffle(files)
    detector = SecretDetector()
    # Recall: 10 fresh secrets of every family, each planted into a different real module.
    found = total = oracle_found = 0
    missed: list[str] = []
    path = workdir / "module.py"
    with default_settings():
        for i in tqdm(range(10), desc="planted rounds", unit="round", leave=False):
            for j, planted in enumerate(planted_secrets(rng)):
                source = files[(i * 31 + j) % len(files)]
                text, lines = plant(
                    source.read_text(encoding="utf-8", errors="replace"), planted, rng
                )
                total += 1
                if planted.secret not in Scrubber(detector).scrub(text).text:
                    found += 1
                else:
                    missed.append(planted.family)
                path.write_text(text)
                oracle_found += any(s.line_number in lines for s in scan_file(str(path)))
        # False positives: findings on unmodified modules (which hold no real secrets).
        ours_fp = oracle_fp = size = 0
        oracle_files = 0
        for source in tqdm(files, desc="clean stdlib", unit="file", leave=False):
            text = source.read_text(encoding="utf-8", errors="replace")
            ours_fp += len(detector.spans(text))
            if oracle_files_size := size < oracle_mb * 1e6:
                oracle_fp += len(list(scan_file(str(source))))
                oracle_files += 1
            size += len(text) if oracle_files_size else 0
    stdlib_mb = sum(p.stat().st_size for p in files) / 1e6
    print("\nQuality on the standard library")
    print(f"| {'measure':<52} | {'ours':>10} | {'detect-secrets':>14} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 16}|")
    print(
        f"| {'recall on planted secrets (22 families x 10)':<52} | {found:>4}/{total:<5} | {oracle_found:>8}/{total:<5} |"
    )
    print(
        f"| {f'findings on clean code, ours: {len(files)} modules {stdlib_mb:.1f} MB':<52} | {ours_fp:>10} | {'':>14} |"
    )
    print(
        f"| {f'findings on clean code, first {oracle_files} modules ({oracle_mb} MB)':<52} | {'(in row above)':>10} | {oracle_fp:>14} |"
    )
    if missed:
        print("missed families:", sorted(set(missed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contexts", type=int, default=2000)
    parser.add_argument("--oracle-mb", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as workdir:
        latency_table(args.contexts, rng, Path(workdir))
        hostile_table()
        quality_table(args.oracle_mb, rng, Path(workdir))


if __name__ == "__main__":
    main()
