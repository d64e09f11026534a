"""Our engine vs `transformers` generate() vs llama.cpp's llama-server, on the same checkpoint.

    .venv/bin/python -m benchmarks.bench_engine [--quick] [--no-llama]

One run builds (or reuses) a random-weight Llama-family checkpoint of ≈15M parameters (f32) in
build/, then measures four workloads on ≈1000-token contexts of standard-library Python with 24
new greedy tokens:

1. cold: a context never seen before, one request after another;
2. keystroke: the same context plus the next few characters of the file, the editor's next request;
3. warm x16: 16 editor sessions at once, each sending a keystroke request on its warm context;
4. cold x16: 16 new contexts at once.

Our engine is measured through its HTTP server (`python -m service serve`, OpenAI
/v1/completions, streamed); llama-server through its /completion endpoint (streamed, prompt sent
as the same token ids); generate() in this process, one request after another. Results are printed
and written between the markers in docs/benchmarks.md; the raw numbers go to build/.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import sysconfig
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import torch
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerFast,
)

from benchmarks import llama_cpp
from benchmarks.load_client import KeepAliveClient, Post
from service.prompt.builder import CompletionInput, PromptBuilder
from service.prompt.window import Budget, StickyWindows, clip_prefix
from service.settings import Settings
from training.data.config import TokenizerConfig
from training.data.tokenizer import EOT, build_bpe, save_pretrained

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
CHECKPOINT = BUILD / "bench_checkpoint"
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"
LONG_START, LONG_END = "<!-- long-files:start -->", "<!-- long-files:end -->"

NEW_TOKENS = 24
CONTEXT_TOKENS = 960  # the prefix; the server's default window keeps up to 1024
SLOT_CONTEXT = 1280  # llama-server context per slot: prompt, keystrokes and new tokens
# ≈15M parameters: 12 layers of width 256 and an 8192-token vocabulary, untied head.
MODEL = dict(
    hidden_size=256,
    intermediate_size=896,
    num_hidden_layers=12,
    num_attention_heads=8,
    num_key_value_heads=4,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)
VOCAB_SIZE = 8192
# The cursor sits after an opening bracket or a dot, where an editor asks for a completion and
# where token healing leaves the prompt alone (so all engines see the same tokens).
CURSOR_AFTER = "(."


# -- checkpoint ------------------------------------------------------------------------------


def stdlib_files() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(
        p for p in stdlib.glob("**/*.py") if p.stat().st_size > 12_000 and "test" not in p.parts
    )


def build_checkpoint(out_dir: Path) -> Path:
    if (out_dir / "model.safetensors").exists():
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # Train on the smaller half of the standard library; the contexts come from its larger files.
    text = "\n".join(p.read_text(errors="replace") for p in stdlib_files()[::2])
    bpe = build_bpe(iter([text[:3_000_000]]), TokenizerConfig(VOCAB_SIZE, min_frequency=0))
    save_pretrained(bpe, out_dir, model_max_length=MODEL["max_position_embeddings"])
    tokenizer = PreTrainedTokenizerFast.from_pretrained(out_dir)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    config = LlamaConfig(**MODEL, vocab_size=len(tokenizer), bos_token_id=eot, eos_token_id=eot)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    return out_dir


# -- contexts --------------------------------------------------------------------------------


@dataclass
class Request:
    key: str  # workload/context, the same across engines
    session: str
    text: str  # the code before the cursor
    token_ids: list[int]  # the prompt our server builds from `text`


@dataclass
class EditorContext:
    cold: Request
    keystroke: Request  # the same file, a few characters further


def prompt_builder(checkpoint: Path) -> PromptBuilder:
    """The prompt builder our server runs with its default settings."""
    defaults = Settings()
    budget = Budget(defaults.prefix_tokens, defaults.suffix_tokens, defaults.snippet_tokens)
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    return PromptBuilder(tokenizer, budget, context_tokens=MODEL["max_position_embeddings"])


def next_cursor(text: str, start: int) -> int | None:
    """The position just after the first cursor character at or after `start`."""
    found = [i for i in (text.find(c, start) for c in CURSOR_AFTER) if i >= 0]
    return min(found) + 1 if found else None


def editor_contexts(builder: PromptBuilder, count: int) -> list[EditorContext]:
    """`count` contexts from different standard-library files, cursor after '(' or '.'."""
    contexts = []
    for path in stdlib_files()[1::2]:
        text = path.read_text(errors="replace")
        offsets = builder.encode(text).offsets
        if len(offsets) < CONTEXT_TOKENS + 200:
            continue
        session = f"editor-{len(contexts)}"
        ctx = first_clean_cursor(builder, text, offsets[CONTEXT_TOKENS][1], path.stem, session)
        if ctx is not None:
            contexts.append(ctx)
        if len(contexts) == count:
            return contexts
    raise RuntimeError(f"only {len(contexts)} usable standard-library files")


def first_clean_cursor(builder, text: str, start: int, name: str, session: str):
    """The first cursor from `start` where neither prompt is healed or clipped."""
    for _ in range(20):
        cut = next_cursor(text, start)
        typed = cut and next_cursor(text, cut + 2)  # the user types a few more characters
        if typed is None:
            return None
        start = cut
        if typed - cut > 24:
            continue
        prompts = [
            builder.build(CompletionInput(prefix=text[:end]), NEW_TOKENS) for end in (cut, typed)
        ]
        if any(
            p.forced_prefix or p.prefix != text[:end]
            for p, end in zip(prompts, (cut, typed), strict=True)
        ):
            continue  # healed or clipped: every engine must get the same tokens
        cold, keystroke = (
            Request(f"{name}/{kind}", session, text[:end], p.token_ids)
            for kind, end, p in zip(("cold", "keystroke"), (cut, typed), prompts, strict=True)
        )
        return EditorContext(cold, keystroke)
    return None


# -- long files: keystrokes that type the file's real next characters ------------------------


class LastTokensWindow(StickyWindows):
    """The window before issue 24: the last `budget` tokens from a line start, every request."""

    def clip_prefix(self, prefix, encoding, budget, session=None, cache_salt=None) -> str:
        return clip_prefix(prefix, encoding, budget)


def typing_script(texts: list[str], events: int, rng: random.Random) -> list[tuple[str, int, int]]:
    """(kind, file, cursor) per request of one user typing in `texts`: the file's real next
    character ("char", or "newline" for a line break), a backspace over 1-4 characters (the
    typing then retypes them), a jump elsewhere in the same file ("jump-in-file", 3%) and to
    another open file where the cursor was left there ("jump-to-file", 3%). The first request
    of a file is "cold"."""
    cursors = [rng.randrange(len(t) // 2, len(t) - events) for t in texts]
    current = 0
    script = [("cold", 0, cursors[0])]
    opened = {0}
    for _ in range(events):
        roll, text = rng.random(), texts[current]
        kind = "char"
        if roll < 0.06 and cursors[current] > 4:
            kind = "backspace"
            cursors[current] -= rng.randint(1, 4)
        elif roll < 0.09:
            kind = "jump-in-file"
            cursors[current] = rng.randrange(len(text) // 4, len(text) - events)
        elif roll < 0.12 and len(texts) > 1:
            current = rng.choice([i for i in range(len(texts)) if i != current])
            kind = "jump-to-file" if current in opened else "cold"
            opened.add(current)
        else:
            kind = "newline" if texts[current][cursors[current]] == "\n" else "char"
            cursors[current] += 1
        script.append((kind, current, cursors[current]))
    return script


# What the long-file workloads send an engine: (editor session, our prompt's token ids, the
# request it was built from); and what it answers: (latency in s, prefix-cache hit tokens, the
# output's token ids, or None where the engine does not say).
Typed = tuple[int, list[int], CompletionInput]
Answer = tuple[float, int, list[int] | None]


class InProcessEngine:
    """Our engine in this process as the server configures it with its defaults (bf16 on a CPU
    with bf16 instructions); a batch of requests arrives at one moment and runs to its end."""

    def __init__(self, checkpoint: Path, threads: int, device: str = "cpu"):
        from service.app import engine_config
        from service.engine import LLMEngine, SamplingParams

        config = engine_config(Settings(model=checkpoint, device=device, num_threads=threads))
        self.name = f"ours (in process, {config.dtype})"
        self.engine = LLMEngine(config)
        self.params = SamplingParams(max_tokens=NEW_TOKENS, ignore_eos=True)
        self.count = 0

    def __call__(self, batch: list[Typed]) -> list[Answer]:
        start = time.perf_counter()
        keys = []
        for _, ids, _ in batch:
            self.count += 1
            keys.append(str(self.count))
            self.engine.add_request(keys[-1], ids, self.params)
        seqs = [self.engine.seqs[key] for key in keys]
        done: dict[str, float] = {}
        while self.engine.has_work():
            self.engine.step()
            for seq in seqs:
                if seq.is_finished and seq.request_id not in done:
                    done[seq.request_id] = time.perf_counter() - start
        now = time.perf_counter() - start
        return [
            (done.get(s.request_id, now), s.num_cached_tokens, s.output_token_ids) for s in seqs
        ]

    def close(self) -> None:
        """Nothing runs beside this process."""


class LlamaSlots:
    """llama-server at its best on a moving window: each editor session pinned to its own slot
    (`id_slot`, so no other session's prompt evicts its KV), the prompt sent as our token ids,
    `cache_prompt` on, and KV shifting after the window moves when started with `--cache-reuse`."""

    def __init__(self, process: subprocess.Popen, port: int, cache_reuse: int):
        self.name = f"llama-server --cache-reuse {cache_reuse}"
        self.process = process
        self.client = KeepAliveClient(port)

    def post(self, slot: int, ids: list[int]) -> Post:
        body = {
            "prompt": ids,
            "n_predict": NEW_TOKENS,
            "temperature": 0,
            "repeat_penalty": 1.0,
            "ignore_eos": True,
            "cache_prompt": True,
            "id_slot": slot,
            "return_tokens": True,
        }
        return Post(f"slot-{slot}", "/completion", body)

    def __call__(self, batch: list[Typed]) -> list[Answer]:
        answers = self.client.post_all([self.post(slot, ids) for slot, ids, _ in batch])
        return [
            # prompt_n: the prompt tokens it computed
            (latency, len(ids) - answer["timings"]["prompt_n"], answer["tokens"])
            for (latency, answer), (_, ids, _) in zip(answers, batch, strict=True)
        ]

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)


class OurServerTyping:
    """Our server as an editor meets it: the request's text over HTTP (`/v1/completions`, the
    editor session in `X-Session-Id`), so its own prompt window, scrubbing, semantic engine and
    suggestion cache are in the time. The server builds the same prompt as our builder here (the
    same defaults, the same session). Hit tokens: `/metrics` before and after a request alone
    (a request the suggestion cache answers computes nothing: all hit); for requests at once,
    the batch's total, shared out in proportion to their prompts."""

    def __init__(self, checkpoint: Path, threads: int, device: str = "cpu"):
        self.process, port = launch_our_server(checkpoint, threads, "auto", device)
        self.name = f"ours (HTTP, {Settings(device=device).resolved_dtype})"
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)  # /metrics
        self.posts = KeepAliveClient(port)

    def engine_counters(self) -> tuple[float, float]:
        """engine_prompt_tokens_total, engine_prefix_cache_hit_tokens_total."""
        values = {}
        for line in self.client.get("/metrics").text.splitlines():
            name, _, value = line.partition(" ")
            values[name] = value
        return (
            float(values["engine_prompt_tokens_total"]),
            float(values["engine_prefix_cache_hit_tokens_total"]),
        )

    def __call__(self, batch: list[Typed]) -> list[Answer]:
        prompt_before, hit_before = self.engine_counters()
        posts = [
            Post(
                request.session,
                "/v1/completions",
                {"prompt": request.prefix, "max_tokens": NEW_TOKENS, "temperature": 0},
                {"X-Session-Id": request.session},
            )
            for _, _, request in batch
        ]
        latencies = [latency for latency, _ in self.posts.post_all(posts)]
        prompt_after, hit_after = self.engine_counters()
        prompts = [len(ids) for _, ids, _ in batch]
        if prompt_after == prompt_before:  # the suggestion cache answered
            return [(latency, n, None) for latency, n in zip(latencies, prompts, strict=True)]
        hit_share = (hit_after - hit_before) / sum(prompts)
        return [
            (latency, round(n * hit_share), None)
            for latency, n in zip(latencies, prompts, strict=True)
        ]

    def close(self) -> None:
        self.client.close()
        self.posts.close()
        self.process.terminate()
        self.process.wait(timeout=30)


def start_llama_slots(gguf: Path, slots: int, threads: int, cache_reuse: int) -> LlamaSlots:
    port = free_port()
    command = llama_cpp.server_command(gguf, port, slots, SLOT_CONTEXT, threads)
    command += ["--cache-reuse", str(cache_reuse)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    llama_cpp.wait_until_healthy(f"http://127.0.0.1:{port}/health", process)
    return LlamaSlots(process, port, cache_reuse)


def long_file_keystrokes(
    engine: InProcessEngine | OurServerTyping | LlamaSlots,
    checkpoint: Path,
    windows: StickyWindows,
    users: int,
    events: int,
    sessions: int = 16,
    rounds: int = 4,
    generate_every: int = 0,
    seed: int = 24,
    device: str = "cpu",
) -> dict:
    """`engine` on standard-library files of 5-50 KB, cursors past the window's budget, prompts
    built by our prompt builder with `windows`. `users` users, one after another, each with one
    editor session over 3 files, type `events` requests of `typing_script` (a request alone,
    NEW_TOKENS greedy tokens): per kind, prompt tokens, prefix-cache hit tokens and latency.
    Then `sessions` users on one file each, warmed by a cold request, type their next character
    at the same moment, `rounds` times: tokens/s and per-request p50. With `generate_every`,
    `transformers` generate() (`generate_model` on `device`, no cache kept) runs the same prompt
    right after the engine on every cold request and every `generate_every`-th keystroke, and
    after each round at once on one of its prompts: the ratios compare requests seconds apart,
    so a shared machine's load drifts out of them. The same `seed` types the same script
    whatever the engine."""
    rng = random.Random(seed)
    defaults = Settings()
    budget = Budget(defaults.prefix_tokens, defaults.suffix_tokens, defaults.snippet_tokens)
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    builder = PromptBuilder(
        tokenizer, budget, context_tokens=MODEL["max_position_embeddings"], windows=windows
    )
    paths = sorted(p for p in stdlib_files() if 5_000 <= p.stat().st_size <= 50_000)
    load = [os.getloadavg()[0]]
    per_kind: dict[str, dict[str, list]] = {}
    outputs = []  # each sequential request's tokens, to compare engines on the same script
    model = generate_model(checkpoint, device) if generate_every else None
    theirs: dict[str, list[float]] = {}  # generate() latencies, paired with the engine's
    ours_paired: dict[str, list[float]] = {}
    count = 0

    for user in range(users):
        texts = [p.read_text(errors="replace") for p in rng.sample(paths, 3)]
        for kind, file, cursor in typing_script(texts, events, rng):
            request = CompletionInput(prefix=texts[file][:cursor], session=f"user-{user}")
            ids = builder.build(request, NEW_TOKENS).token_ids
            count += 1
            ((latency, cached, output),) = engine([(user, ids, request)])
            outputs.append(output)
            row = per_kind.setdefault(kind, {"prompt": [], "cached": [], "latency": []})
            row["prompt"].append(len(ids))
            row["cached"].append(cached)
            row["latency"].append(latency)
            if generate_every and (kind == "cold" or count % generate_every == 0):
                side = "cold" if kind == "cold" else "keystroke"
                theirs.setdefault(side, []).append(generate(model, ids))
                ours_paired.setdefault(side, []).append(latency)

    # sessions typing at once, one file each
    texts = [p.read_text(errors="replace") for p in rng.sample(paths, sessions)]
    cursors = [rng.randrange(len(t) // 2, len(t) - rounds - 1) for t in texts]

    def typed_at(s: int, c: int) -> Typed:
        request = CompletionInput(prefix=texts[s][:c], session=f"concurrent-{s}")
        return s, builder.build(request, NEW_TOKENS).token_ids, request

    for s in range(sessions):
        engine([typed_at(s, cursors[s])])
    batch_latency, batch_walls, batch_prompt, batch_cached = [], [], [], []
    for r in range(1, rounds + 1):
        batch = [typed_at(s, cursors[s] + r) for s in range(sessions)]
        start = time.perf_counter()
        results = engine(batch)
        batch_walls.append(time.perf_counter() - start)
        batch_latency += [latency for latency, _, _ in results]
        batch_prompt += [len(ids) for _, ids, _ in batch]
        batch_cached += [cached for _, cached, _ in results]
        if generate_every:
            theirs.setdefault("round", []).append(generate(model, batch[r % sessions][1]))
    load.append(os.getloadavg()[0])

    def kind_row(row: dict) -> dict:
        return {
            "requests": len(row["prompt"]),
            "prompt_tokens_mean": round(statistics.mean(row["prompt"]), 1),
            "hit_tokens_mean": round(statistics.mean(row["cached"]), 1),
            "recomputed_tokens_mean": round(
                statistics.mean(p - c for p, c in zip(row["prompt"], row["cached"], strict=True)), 1
            ),
            "hit_rate": round(sum(row["cached"]) / sum(row["prompt"]), 4),
            "p50_ms": round(1000 * p50(row["latency"]), 1),
        }

    typed = {k: v for k, v in per_kind.items() if k != "cold"}
    keystrokes = {
        key: sum((v[key] for v in typed.values()), []) for key in ("prompt", "cached", "latency")
    }
    out = {
        "kinds": {k: kind_row(v) for k, v in sorted(per_kind.items())},
        "keystroke": kind_row(keystrokes),
        "sessions_at_once": {
            "sessions": sessions,
            "tokens_per_s": round(sessions * NEW_TOKENS * rounds / sum(batch_walls), 1),
            "p50_ms": round(1000 * p50(batch_latency), 1),
            "hit_rate": round(sum(batch_cached) / sum(batch_prompt), 4),
        },
        "load": load,
        "outputs": outputs,
    }
    if generate_every:
        g = {k: round(1000 * p50(v), 1) for k, v in theirs.items()}
        paired = {k: round(1000 * p50(v), 1) for k, v in ours_paired.items()}
        tokens_per_s = NEW_TOKENS / statistics.mean(theirs["round"])  # one request at a time
        out["generate"] = {
            "requests": {k: len(v) for k, v in theirs.items()},
            "cold_p50_ms": g["cold"],
            "keystroke_p50_ms": g["keystroke"],
            "ours_paired_p50_ms": paired,
            "tokens_per_s": round(tokens_per_s, 1),
        }
        out["ratios_vs_generate"] = {
            "cold": round(g["cold"] / paired["cold"], 2),
            "keystroke": round(g["keystroke"] / paired["keystroke"], 2),
            "sessions_tokens_per_s": round(
                out["sessions_at_once"]["tokens_per_s"] / tokens_per_s, 2
            ),
        }
    return out


def generate_model(checkpoint: Path, device: str = "cpu"):
    """The checkpoint for `generate()` at its best on `device`: f32 on a CPU (its f32 products
    are fast; bf16 is slower there), on a GPU the dtype our server runs (bf16)."""
    from service.engine.model_runner import DTYPES

    dtype = "float32" if device == "cpu" else Settings(device=device).resolved_dtype
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=DTYPES[dtype])
    return model.to(device).eval()


def generate(model, ids: list[int]) -> float:
    """Seconds `transformers` generate() takes for NEW_TOKENS greedy tokens after `ids`."""
    x = torch.tensor([ids], device=model.device)
    synchronize(model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,  # as llama-server's ignore_eos
            do_sample=False,
            pad_token_id=model.config.eos_token_id,
        )
    synchronize(model.device)
    return time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- engines ---------------------------------------------------------------------------------


@dataclass
class Result:
    key: str
    start: float
    first: float  # the first token (streamed) or the end of prefill
    end: float
    text: str
    prompt_evaluated: int | None = None  # prompt tokens computed, when the engine says


class FirstTokenClock(LogitsProcessor):
    """Notes when generate() first asks for logits processing: prefill is then done."""

    def __init__(self):
        self.time: float | None = None

    def __call__(self, input_ids, scores):
        if self.time is None:
            self.time = time.perf_counter()
        return scores


class HFGenerate:
    """`transformers` generate(), one request after another, no cache kept between requests."""

    name = "generate()"
    dtype = "float32"
    concurrent = False

    def __init__(self, checkpoint: Path, threads: int):
        torch.set_num_threads(threads)
        self.model = generate_model(checkpoint)
        self.tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
        self.pid = os.getpid()

    async def complete(self, request: Request) -> Result:
        clock = FirstTokenClock()
        ids = torch.tensor([request.token_ids])
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,  # as llama-server's ignore_eos
                do_sample=False,
                logits_processor=LogitsProcessorList([clock]),
                pad_token_id=self.model.config.eos_token_id,
            )
        end = time.perf_counter()
        text = self.tokenizer.decode(out[0, ids.shape[1] :].tolist())
        return Result(request.key, start, clock.time, end, text, len(request.token_ids))


class StreamingServer:
    """A server answering streamed (server-sent events) completions over HTTP."""

    concurrent = True

    def __init__(self, process: subprocess.Popen, port: int):
        self.process = process
        self.pid = process.pid
        self.base = f"http://127.0.0.1:{port}"
        # A fresh connection per request: llama-server closes idle keep-alive connections after
        # 5 s, and a pooled one it closed would fail the next request.
        no_pool = httpx.Limits(max_keepalive_connections=0)
        self.client = httpx.AsyncClient(base_url=self.base, timeout=600, limits=no_pool)

    async def complete(self, request: Request) -> Result:
        start = time.perf_counter()
        first, pieces, evaluated = None, [], None
        url, body, headers = self.request(request)
        async with self.client.stream("POST", url, json=body, headers=headers) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                piece, evaluated_now = self.parse(json.loads(line[6:]))
                if piece and first is None:
                    first = time.perf_counter()
                pieces.append(piece)
                evaluated = evaluated_now or evaluated
        end = time.perf_counter()
        return Result(request.key, start, first or end, end, "".join(pieces), evaluated)

    async def close(self) -> None:
        await self.client.aclose()
        self.process.terminate()
        self.process.wait(timeout=30)


class OurServer(StreamingServer):
    def __init__(self, process: subprocess.Popen, port: int, dtype: str):
        super().__init__(process, port)
        self.dtype = dtype
        self.name = f"ours (HTTP, {dtype})"

    def request(self, request: Request):
        body = {"prompt": request.text, "max_tokens": NEW_TOKENS, "temperature": 0, "stream": True}
        return "/v1/completions", body, {"X-Session-Id": request.session}

    def parse(self, event: dict) -> tuple[str, int | None]:
        return event["choices"][0]["text"], None


class LlamaServer(StreamingServer):
    name = "llama-server"
    dtype = "float32"  # the f32 GGUF

    def request(self, request: Request):
        body = {
            "prompt": request.token_ids,  # exactly our prompt's tokens
            "n_predict": NEW_TOKENS,
            "temperature": 0,
            "repeat_penalty": 1.0,
            "ignore_eos": True,
            "cache_prompt": True,
            "stream": True,
        }
        return "/completion", body, {}

    def parse(self, event: dict) -> tuple[str, int | None]:
        return event.get("content", ""), event.get("timings", {}).get("prompt_n")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_our_server(
    checkpoint: Path, threads: int, dtype: str, device: str = "cpu"
) -> tuple[subprocess.Popen, int]:
    """`python -m service serve` at its defaults but for the model, threads, dtype and device."""
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--model", str(checkpoint)]
    command += ["--port", str(port), "--num-threads", str(threads), "--log-level", "warning"]
    command += ["--dtype", dtype, "--device", device]
    command += ["--request-timeout-s", "300"]  # a busy machine must not cut the ×16 workloads
    process = subprocess.Popen(command, cwd=ROOT)
    llama_cpp.wait_until_healthy(f"http://127.0.0.1:{port}/v1/health", process)
    return process, port


def start_our_server(checkpoint: Path, threads: int, dtype: str) -> OurServer:
    process, port = launch_our_server(checkpoint, threads, dtype)
    return OurServer(process, port, Settings(dtype=dtype, device="cpu").resolved_dtype)


def start_llama_server(gguf: Path, slots: int, threads: int) -> LlamaServer:
    port = free_port()
    command = llama_cpp.server_command(gguf, port, slots, SLOT_CONTEXT, threads)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    llama_cpp.wait_until_healthy(f"http://127.0.0.1:{port}/health", process)
    return LlamaServer(process, port)


# -- workloads -------------------------------------------------------------------------------


@dataclass
class Workloads:
    warmup: EditorContext
    sequential: list[EditorContext]  # workloads 1 and 2
    warm_sessions: list[EditorContext]  # workload 3
    cold_batch: list[EditorContext]  # workload 4


@dataclass
class EngineRun:
    engine: str
    dtype: str  # what its matrix products run in
    results: dict[str, list[Result]] = field(default_factory=dict)
    batch_wall_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float | None = None
    load: list[float] = field(default_factory=list)  # 1-minute load average, start and end


async def at_once(engine, requests: list[Request]) -> tuple[list[Result], float]:
    """All requests at the same moment (one after another for an engine that serves one)."""
    start = time.perf_counter()
    if engine.concurrent:
        results = await asyncio.gather(*(engine.complete(r) for r in requests))
    else:
        results = [await engine.complete(r) for r in requests]
        for r in results:
            r.start = start  # a request waits for the ones before it
    return list(results), time.perf_counter() - start


async def run_engine(engine, workloads: Workloads) -> EngineRun:
    run = EngineRun(engine.name, engine.dtype, load=[os.getloadavg()[0]])
    await engine.complete(workloads.warmup.cold)
    await engine.complete(workloads.warmup.keystroke)
    cold, keystroke = [], []
    for ctx in tqdm(workloads.sequential, desc=f"{engine.name}: cold + keystroke", unit="ctx"):
        cold.append(await engine.complete(ctx.cold))
        keystroke.append(await engine.complete(ctx.keystroke))
    run.results["cold"], run.results["keystroke"] = cold, keystroke
    if engine.concurrent:  # generate() keeps nothing warm, so there is nothing to warm up
        warming = tqdm(workloads.warm_sessions, desc=f"{engine.name}: warming sessions", unit="ctx")
        run.results["warming"] = [await engine.complete(ctx.cold) for ctx in warming]
    for name, requests in (
        ("warm_batch", [ctx.keystroke for ctx in workloads.warm_sessions]),
        ("cold_batch", [ctx.cold for ctx in workloads.cold_batch]),
    ):
        print(f"{engine.name}: {name} ({len(requests)} at once)", flush=True)
        run.results[name], run.batch_wall_s[name] = await at_once(engine, requests)
    run.peak_rss_mb = peak_rss_mb(engine.pid)
    run.load.append(os.getloadavg()[0])
    return run


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


# -- measurements ----------------------------------------------------------------------------


def matmul_peak_gflops(threads: int, dtype: str, size: int = 2048, repeats: int = 5) -> float:
    """The CPU's matrix throughput as torch reaches it on `threads` cores: best of `repeats`."""
    torch.set_num_threads(threads)
    a, b = (torch.randn(size, size, dtype=getattr(torch, dtype)) for _ in range(2))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / 4)
    return 2 * size**3 / best / 1e9


def prefill_gflop(num_tokens: int) -> float:
    """Matrix work of one prefill: projections and MLP per token, attention, one head row."""
    h, layers, inter = MODEL["hidden_size"], MODEL["num_hidden_layers"], MODEL["intermediate_size"]
    kv = h * MODEL["num_key_value_heads"] // MODEL["num_attention_heads"]
    per_token = layers * 2 * (2 * h * h + 2 * h * kv + 3 * h * inter)
    attention = layers * 2 * num_tokens * num_tokens * h  # QK^T and PV, causal half of 4·T²·h
    return (per_token * num_tokens + attention + 2 * h * VOCAB_SIZE) / 1e9


def p50(values: list[float]) -> float:
    return statistics.median(values)


def summarize(run: EngineRun) -> dict:
    r = run.results
    latency = {k: [x.end - x.start for x in v] for k, v in r.items()}
    first = {k: [x.first - x.start for x in v] for k, v in r.items()}
    batch_tokens = {k: NEW_TOKENS * len(r[k]) / run.batch_wall_s[k] for k in run.batch_wall_s}
    return {
        "dtype": run.dtype,
        "cold_p50_ms": 1000 * p50(latency["cold"]),
        "cold_first_token_p50_ms": 1000 * p50(first["cold"]),
        "keystroke_p50_ms": 1000 * p50(latency["keystroke"]),
        "sequential_tokens_per_s": NEW_TOKENS / p50(latency["keystroke"]),
        "warm_batch_tokens_per_s": batch_tokens["warm_batch"],
        "warm_batch_p50_ms": 1000 * p50(latency["warm_batch"]),
        "cold_batch_tokens_per_s": batch_tokens["cold_batch"],
        "cold_batch_first_answer_s": min(latency["cold_batch"]),
        "cold_batch_first_token_s": min(first["cold_batch"]),
        "cold_batch_last_answer_s": max(latency["cold_batch"]),
        "keystroke_prompt_evaluated": _mean_evaluated(r["keystroke"]),
        "peak_rss_mb": run.peak_rss_mb,
    }


def _mean_evaluated(results: list[Result]) -> float | None:
    values = [x.prompt_evaluated for x in results if x.prompt_evaluated is not None]
    return statistics.mean(values) if values else None


def greedy_agreement(runs: list[EngineRun]) -> dict[str, str]:
    """For each engine, the share of requests whose text equals generate()'s."""
    reference = {x.key: x.text for xs in runs[0].results.values() for x in xs}
    shares = {}
    for run in runs[1:]:
        texts = {x.key: x.text for xs in run.results.values() for x in xs}
        keys = [k for k in texts if k in reference]
        same = sum(texts[k] == reference[k] for k in keys)
        shares[run.engine] = f"{same}/{len(keys)}"
    return shares


# -- report ----------------------------------------------------------------------------------


def machine(device: str = "cpu") -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    gpu = f", {torch.cuda.get_device_name()}" if device == "cuda" else ""
    return (
        f"{os.cpu_count()} CPUs ({cpu}){gpu}, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def code_version() -> str:
    """The commit measured, and whether the engine's sources differed from it."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "service", "kernels"], capture_output=True, text=True
    )
    changes = " with uncommitted engine changes" if dirty.stdout.strip() else ""
    return f"commit {commit.stdout.strip()}{changes}"


def report(summaries: dict[str, dict], extra: dict) -> str:
    engines = list(summaries)
    rows = [
        ("1 cold: p50 latency (ms)", "cold_p50_ms", "{:.0f}"),
        ("1 cold: p50 first token (ms)", "cold_first_token_p50_ms", "{:.0f}"),
        ("2 keystroke: p50 latency (ms)", "keystroke_p50_ms", "{:.0f}"),
        ("2 keystroke: prompt tokens evaluated", "keystroke_prompt_evaluated", "{:.0f}"),
        ("one after another: tokens/s", "sequential_tokens_per_s", "{:.0f}"),
        ("3 warm x16: tokens/s", "warm_batch_tokens_per_s", "{:.0f}"),
        ("3 warm x16: per-request p50 (ms)", "warm_batch_p50_ms", "{:.0f}"),
        ("4 cold x16: tokens/s", "cold_batch_tokens_per_s", "{:.0f}"),
        ("4 cold x16: first token (s)", "cold_batch_first_token_s", "{:.2f}"),
        ("4 cold x16: first answer (s)", "cold_batch_first_answer_s", "{:.2f}"),
        ("4 cold x16: last answer (s)", "cold_batch_last_answer_s", "{:.2f}"),
        ("process peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
    ]
    lines = ["| workload | " + " | ".join(engines) + " |", "|---" * (len(engines) + 1) + "|"]
    for label, key, fmt in rows:
        cells = [fmt.format(s[key]) if s.get(key) is not None else "–" for s in summaries.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + ratios(summaries, extra)


def ratios(summaries: dict[str, dict], extra: dict) -> str:
    hf = summaries["generate()"]
    lines = ["| target | " + " | ".join(e for e in summaries if e != "generate()") + " |"]
    lines.append("|---" * len(summaries) + "|")
    others = [e for e in summaries if e != "generate()"]

    def row(label: str, value) -> None:
        lines.append(f"| {label} | " + " | ".join(value(summaries[e]) for e in others) + " |")

    row(
        "cold ≥ 1.5x faster than generate()",
        lambda s: f"{hf['cold_p50_ms'] / s['cold_p50_ms']:.2f}x",
    )
    row(
        "keystroke ≥ 10x faster than generate()",
        lambda s: f"{hf['cold_p50_ms'] / s['keystroke_p50_ms']:.1f}x",
    )
    row(
        "warm x16 ≥ 15x generate()'s tokens/s",
        lambda s: f"{s['warm_batch_tokens_per_s'] / hf['sequential_tokens_per_s']:.1f}x",
    )
    row("warm x16 per-request p50 ≤ 300 ms", lambda s: f"{s['warm_batch_p50_ms']:.0f} ms")
    row("cold x16 first answer ≤ 1 s", lambda s: f"{s['cold_batch_first_answer_s']:.2f} s")
    row("peak RSS ≤ 1.5 GB", lambda s: f"{s['peak_rss_mb'] / 1024:.2f} GB")
    peaks = extra["matmul_peak_gflops"]
    gflop = prefill_gflop(extra["cold_prompt_tokens"])
    row(
        "cold prefill, share of the matmul peak in its dtype",
        lambda s: f"{gflop / (s['cold_first_token_p50_ms'] / 1000) / peaks[s['dtype']]:.0%}",
    )
    llama = summaries.get("llama-server")
    for engine in (e for e in summaries if e.startswith("ours") and llama):
        ours = summaries[engine]
        lines.append("")
        lines.append(
            f"{engine} vs llama-server: cold {llama['cold_p50_ms'] / ours['cold_p50_ms']:.2f}x, "
            f"keystroke {llama['keystroke_p50_ms'] / ours['keystroke_p50_ms']:.2f}x, "
            f"warm x16 tokens/s {ours['warm_batch_tokens_per_s'] / llama['warm_batch_tokens_per_s']:.2f}x, "
            f"cold x16 tokens/s {ours['cold_batch_tokens_per_s'] / llama['cold_batch_tokens_per_s']:.2f}x "
            "(>1 = ours faster)."
        )
    return "\n".join(lines)


def write_doc(text: str, start: str = RESULTS_START, end: str = RESULTS_END) -> None:
    """`text` in docs/benchmarks.md between the `start` and `end` markers."""
    doc = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    head, rest = doc.split(start)
    _, tail = rest.split(end)
    DOC.write_text(f"{head}{start}\n{text}\n{end}{tail}")


# -- main ------------------------------------------------------------------------------------


async def measure(args, checkpoint: Path, workloads: Workloads) -> list[EngineRun]:
    runs = [await run_engine(HFGenerate(checkpoint, args.threads), workloads)]
    for dtype in args.our_dtypes:
        server = start_our_server(checkpoint, args.threads, dtype)
        try:
            runs.append(await run_engine(server, workloads))
        finally:
            await server.close()
    if args.llama:
        llama_cpp.build_server()
        gguf = llama_cpp.convert_to_gguf(checkpoint, BUILD / "bench_checkpoint-f32.gguf")
        server = start_llama_server(gguf, len(workloads.warm_sessions), args.threads)
        try:
            runs.append(await run_engine(server, workloads))
        finally:
            await server.close()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2 contexts, 4 sessions")
    parser.add_argument("--no-llama", dest="llama", action="store_false", help="skip llama-server")
    parser.add_argument("--no-doc", dest="doc", action="store_false", help="do not write the docs")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads of every engine (default: all cores; 1 is fairer on a busy machine)",
    )
    parser.add_argument(
        "--our-dtypes",
        type=lambda text: text.split(","),
        default=["auto", "float32"],
        help="our server's --dtype, one run each (default: auto,float32: the server's default, "
        "bfloat16 on CPUs with bf16 instructions, and float32 as generate() runs)",
    )
    parser.add_argument(
        "--long-files-only",
        action="store_true",
        help="only the long-file keystroke rows (in process, old and sticky window)",
    )
    parser.add_argument(
        "--sticky-only", action="store_true", help="with --long-files-only: not the old window"
    )
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="with --long-files-only: where our engine and generate() run (cuda: a lent GPU, "
        "ours over HTTP and in process against generate() on the same GPU; no llama-server)",
    )
    parser.add_argument(
        "--cache-reuse",
        type=int,
        nargs="+",
        default=[0, 256],
        help="llama-server's --cache-reuse values on the long files, each a column (KV shifting: "
        "the smallest chunk it moves, 0 off; 256 is what llama.vscode recommends)",
    )
    args = parser.parse_args()
    sequential, sessions = (2, 4) if args.quick else (8, 16)
    if args.long_files_only:
        long_files(args)
        return

    checkpoint = build_checkpoint(CHECKPOINT)
    builder = prompt_builder(checkpoint)
    contexts = editor_contexts(builder, 1 + sequential + 2 * sessions)
    workloads = Workloads(
        warmup=contexts[0],
        sequential=contexts[1 : 1 + sequential],
        warm_sessions=contexts[1 + sequential : 1 + sequential + sessions],
        cold_batch=contexts[1 + sequential + sessions :],
    )
    prompt_tokens = statistics.mean(len(c.cold.token_ids) for c in contexts)
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(checkpoint).parameters())
    extra = {
        "machine": machine(),
        "code": code_version(),
        "parameters": params,
        "cold_prompt_tokens": prompt_tokens,
        "threads": args.threads,
        "matmul_peak_gflops": {
            dtype: matmul_peak_gflops(args.threads, dtype) for dtype in ("float32", "bfloat16")
        },
    }
    runs = asyncio.run(measure(args, checkpoint, workloads))
    summaries = {run.engine: summarize(run) for run in runs}
    extra["greedy_outputs_equal_to_generate"] = greedy_agreement(runs)
    extra["load_average"] = {run.engine: run.load for run in runs}

    text = describe(extra, args, sessions) + "\n\n" + report(summaries, extra)
    print(text)
    raw = {"extra": extra, "summaries": summaries, "runs": [asdict(r) for r in runs]}
    (BUILD / "bench_results.json").write_text(json.dumps(raw, indent=1))
    if args.doc:
        write_doc(text)


def long_files(args) -> None:
    """The long-file rows: ours with the old and the sticky window, then (unless --no-llama, and
    only on a CPU: our llama.cpp build is one) llama-server with --cache-reuse on both windows'
    prompts; a JSON row each in build/, and the table in docs/benchmarks.md (unless --no-doc).
    Both of our sticky-window columns are paired with generate() on the same device."""
    checkpoint = build_checkpoint(CHECKPOINT)
    users, events, rounds = (2, 60, 3) if args.quick else (6, 120, 6)
    load = os.getloadavg()[0]
    print(f"machine: {machine(args.device)}; load at start: {load}", flush=True)
    torch.set_num_threads(args.threads)
    windows = {"last-N": LastTokensWindow, "sticky": StickyWindows}  # fresh per run: they remember
    if args.sticky_only:
        del windows["last-N"]
    engines = [
        ("ours", lambda: InProcessEngine(checkpoint, args.threads, args.device)),
        ("ours_http", lambda: OurServerTyping(checkpoint, args.threads, args.device)),
    ]
    if args.llama and args.device == "cpu":
        llama_cpp.build_server()
        gguf = llama_cpp.convert_to_gguf(checkpoint, BUILD / "bench_checkpoint.f32.gguf")
        for reuse in args.cache_reuse:
            engines.append(
                (
                    f"llama_reuse{reuse}",
                    lambda reuse=reuse: start_llama_slots(gguf, 16, args.threads, reuse),
                )
            )
    rows = {}
    for engine_name, start in engines:
        for window_name, window in windows.items():
            if engine_name == "ours_http" and window_name != "sticky":
                continue  # the server's own window is the sticky one
            engine = start()
            every = 10 if engine_name.startswith("ours") and window_name == "sticky" else 0
            row = long_file_keystrokes(
                engine,
                checkpoint,
                window(),
                users,
                events,
                rounds=rounds,
                generate_every=every,
                device=args.device,
            )
            rows[f"{engine.name}, {window_name} window"] = row
            print(engine.name, window_name, json.dumps(row, indent=1), flush=True)
            out = BUILD / f"bench_long_files_{engine_name}_{window_name}.json"
            out.write_text(json.dumps(row))
            engine.close()
    about = (
        f"Machine: {machine(args.device)}. Code: {code_version()}. {users} users × {events} requests, then "
        f"16 sessions × {rounds} rounds at once; {NEW_TOKENS} new tokens, greedy; "
        f"{args.threads} CPU thread(s) per engine. 1-minute load average: {load:.1f} at the start, "
        + ", ".join(
            f"{name} {row['load'][0]:.1f}→{row['load'][1]:.1f}" for name, row in rows.items()
        )
        + "."
    )
    text = about + "\n\n" + long_file_table(rows)
    print(text)
    if args.doc:
        write_doc(text, LONG_START, LONG_END)


def long_file_table(rows: dict[str, dict]) -> str:
    """Markdown: per kind of request and for 16 sessions at once, one column per engine and
    window; then ours (sticky) against generate() and the best llama-server column."""
    kinds = ["char", "newline", "backspace", "jump-to-file", "jump-in-file", "cold"]
    lines = [
        "| requests | " + " | ".join(rows) + " |",
        "|---" * (len(rows) + 1) + "|",
    ]

    def cell(row: dict) -> str:
        return (
            f"{100 * row['hit_rate']:.1f}%, {row['recomputed_tokens_mean']:.0f} of "
            f"{row['prompt_tokens_mean']:.0f}, {row['p50_ms']:.0f} ms"
        )

    for kind in kinds:
        some = next(iter(rows.values()))["kinds"].get(kind)
        if some is not None:
            label = f"{kind} ({some['requests']}): hit, recomputed, p50"
            lines.append(
                f"| {label} | " + " | ".join(cell(r["kinds"][kind]) for r in rows.values()) + " |"
            )
    lines.append(
        "| all keystrokes | " + " | ".join(cell(r["keystroke"]) for r in rows.values()) + " |"
    )
    at_once = [r["sessions_at_once"] for r in rows.values()]
    lines.append(
        "| 16 sessions at once: tokens/s, p50, hit | "
        + " | ".join(
            f"{a['tokens_per_s']:.0f}, {a['p50_ms']:.0f} ms, {100 * a['hit_rate']:.1f}%"
            for a in at_once
        )
        + " |"
    )
    notes = []
    for name, row in rows.items():
        if "ratios_vs_generate" in row:
            ratio, g = row["ratios_vs_generate"], row["generate"]
            notes.append(
                f"{name} against `generate()` on the same prompts seconds apart "
                f"({', '.join(f'{n} {kind}' for kind, n in g['requests'].items())} requests): "
                f"cold {ratio['cold']}×, keystroke "
                f"{ratio['keystroke']}× ({g['keystroke_p50_ms']:.0f} vs "
                f"{g['ours_paired_p50_ms']['keystroke']:.0f} ms), 16 sessions "
                f"{ratio['sessions_tokens_per_s']}× its tokens/s."
            )
    theirs = {n: r for n, r in rows.items() if n.startswith("llama-server")}
    for name, row in theirs.items():  # against ours in process, which says its output tokens
        window = name.rsplit(", ", 1)[1]
        ours = next(
            r for n, r in rows.items() if n.startswith("ours (in process") and n.endswith(window)
        )
        notes.append(f"{name}: greedy outputs equal to ours: {output_agreement(ours, row)}.")
    sticky = {n: r for n, r in rows.items() if n.startswith("ours") and n.endswith("sticky window")}
    for our_name, our_row in sticky.items() if theirs else ():
        best = min(theirs, key=lambda n: theirs[n]["keystroke"]["p50_ms"])
        keystroke = theirs[best]["keystroke"]["p50_ms"] / our_row["keystroke"]["p50_ms"]
        at_once = our_row["sessions_at_once"]["tokens_per_s"] / max(
            r["sessions_at_once"]["tokens_per_s"] for r in theirs.values()
        )
        notes.append(
            f"{our_name} against llama-server at its best (keystroke: {best}): keystroke "
            f"{keystroke:.2f}×, 16 sessions {at_once:.2f}× its best tokens/s."
        )
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)


def output_agreement(ours: dict, theirs: dict) -> str:
    """How often two engines' greedy answers to the same prompts agree: whole answers, and the
    mean number of leading tokens they share (bf16 against f32 parts ways at near-ties)."""
    pairs = list(zip(ours["outputs"], theirs["outputs"], strict=True))
    same = sum(a == b for a, b in pairs)
    leading = [
        next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        for a, b in pairs
    ]
    return (
        f"{same}/{len(pairs)} whole, {statistics.mean(leading):.1f} of {NEW_TOKENS} leading tokens"
    )


def describe(extra: dict, args, sessions: int) -> str:
    peaks = ", ".join(f"{d} {g:.0f}" for d, g in extra["matmul_peak_gflops"].items())
    loads = ", ".join(f"{e} {a:.1f}→{b:.1f}" for e, (a, b) in extra["load_average"].items())
    return (
        f"Machine: {extra['machine']}. Code: {extra['code']}. Model: random-weight Llama, {extra['parameters'] / 1e6:.1f}M "
        f"parameters, f32; prompts {extra['cold_prompt_tokens']:.0f} tokens on average, "
        f"{NEW_TOKENS} new tokens, greedy; {sessions} sessions{' (--quick)' if args.quick else ''}; "
        f"{args.threads} CPU thread(s) per engine. "
        f"Matmul peak (torch, 2048², same threads), GFLOP/s: {peaks}. "
        f"Greedy outputs equal to generate()'s: {extra['greedy_outputs_equal_to_generate']}. "
        f"1-minute load average during each engine's run (start→end; the CPU is shared): {loads}."
    )


if __name__ == "__main__":
    main()
