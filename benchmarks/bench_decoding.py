"""Keystroke latency of the decodings an editor request can ask for: greedy vs beam search.

    .venv/bin/python -m benchmarks.bench_decoding [--model checkpoints/default] [--contexts 30]
        [--kv-cache-mb 1024]

The engine in this process as the server runs it (its default dtype, prompt window and stop
rules), one request at a time, on held-out-like code: standard-library files, the cursor at the
start of a code line (after its indentation, as in `python -m training evaluate`), the rest of the
file as suffix. Each file's context is cached first, as an editor session's is after its first
keystroke (the KV cache is sized to keep all of them: an evicted
context would be a cold prefill, not a keystroke); each decoding then completes the file one character further along the line than the
decoding before it, so no request finds another's answer cached. Two stop modes: "line" (the rest
of the line, what the single-line evaluation scores) and "auto" (Tabby's default: a block).
Prints median and p90 ms and the ratio of medians to greedy, and writes the table into
docs/benchmarks.md. Quality is the evaluation's: `evaluate.line_completion.num_beams` /
`length_penalty` (docs/training.md).
"""

import argparse
import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_engine import stdlib_files, write_doc
from service.completion.plan import sampling_params
from service.engine import EngineConfig, LLMEngine
from service.prompt.builder import CompletionInput, PromptBuilder
from service.prompt.fim import read_fim_order
from service.prompt.window import Budget
from service.settings import DEFAULT_MODEL_DIR, Settings
from training.evaluation.line_completion import Example, make_examples

START, END = "<!-- decoding:start -->", "<!-- decoding:end -->"
MAX_TOKENS = 64  # Tabby's
DECODINGS = ((1, 1.0), (2, 0.0), (4, 0.5), (4, 1.0))  # (num_beams, length_penalty)


def cursors(count: int, min_target_chars: int) -> list[Example]:
    """One cursor in each of `count` large standard-library files."""
    rng = np.random.default_rng(0)
    examples = []
    for path in stdlib_files()[1::2]:
        text = path.read_text(errors="replace")
        examples += [e for e in make_examples(text, 1, 1, rng) if len(e.target) >= min_target_chars]
        if len(examples) == count:
            return examples
    raise ValueError(f"only {len(examples)} standard-library cursors")


class Keystrokes:
    def __init__(self, model: Path, threads: int, settings: Settings, kv_cache_mb: int):
        config = EngineConfig(
            model, dtype=settings.resolved_dtype, num_threads=threads, kv_cache_mb=kv_cache_mb
        )
        self.engine = LLMEngine(config)
        budget = Budget(settings.prefix_tokens, settings.suffix_tokens, 0)
        self.builder = PromptBuilder(
            self.engine.tokenizer, budget, self.engine.max_positions, read_fim_order(model)
        )

    def complete(self, prefix: str, suffix: str, mode: str, beams: int, penalty: float):
        """(seconds, completion) for one request, alone in the engine."""
        prompt = self.builder.build(CompletionInput(prefix, suffix), MAX_TOKENS)
        params = sampling_params(prompt, max_tokens=MAX_TOKENS, stop_mode=mode)
        params = dataclasses.replace(params, num_beams=beams, length_penalty=penalty)
        request_id = f"r{time.perf_counter_ns()}"
        start = time.perf_counter()
        self.engine.add_request(request_id, prompt.token_ids, params)
        seq = self.engine.seqs[request_id]
        while self.engine.has_work():
            self.engine.step()
        return time.perf_counter() - start, seq.text


def measure(keystrokes: Keystrokes, examples: list[Example]) -> list[dict]:
    for e in examples:  # cache every context
        keystrokes.complete(e.prefix, e.suffix, "line", 1, 1.0)
    rows, typed = [], 0
    for mode in ("line", "auto"):
        for beams, penalty in DECODINGS:
            typed += 1
            runs = [
                keystrokes.complete(e.prefix + e.target[:typed], e.suffix, mode, beams, penalty)
                for e in examples
            ]
            seconds = [s for s, _ in runs]
            rows.append(
                {
                    "mode": mode,
                    "decoding": "greedy" if beams == 1 else f"{beams} beams, lp {penalty}",
                    "median_ms": 1e3 * statistics.median(seconds),
                    "p90_ms": 1e3 * float(np.percentile(seconds, 90)),
                    "chars": float(np.mean([len(text) for _, text in runs])),
                }
            )
    return rows


def table(rows: list[dict], model: Path, dtype: str, threads: int, count: int) -> str:
    lines = [
        f"{model.name}, {count} standard-library cursors, one request at a time, "
        f"{dtype}, {threads} thread(s), {platform.machine()}:",
        "",
        "| stop mode | decoding | median ms | p90 ms | × greedy | mean chars |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    greedy = {r["mode"]: r["median_ms"] for r in rows if r["decoding"] == "greedy"}
    for r in rows:
        ratio = r["median_ms"] / greedy[r["mode"]]
        lines.append(
            f"| {r['mode']} | {r['decoding']} | {r['median_ms']:.0f} | {r['p90_ms']:.0f} "
            f"| {ratio:.2f} | {r['chars']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--contexts", type=int, default=30)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--kv-cache-mb",
        type=int,
        default=1024,
        help="room for every context (the server's default 256 MB holds about 17 of the shipped "
        "model's 1,280-token windows, 30 of them would evict each other)",
    )
    parser.add_argument("--no-doc", dest="doc", action="store_false", help="do not write the docs")
    args = parser.parse_args()
    settings = Settings()
    keystrokes = Keystrokes(args.model, args.threads, settings, args.kv_cache_mb)
    examples = cursors(args.contexts, min_target_chars=2 * len(DECODINGS))
    rows = measure(keystrokes, examples)
    text = table(rows, args.model, settings.resolved_dtype, args.threads, args.contexts)
    print(text)
    if args.doc:
        write_doc(text, START, END)


if __name__ == "__main__":
    main()
