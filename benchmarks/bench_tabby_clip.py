"""What the prefix cache can reuse under tabby-agent's own prompt window (issue 24).

    .venv/bin/python -m benchmarks.bench_tabby_clip

tabby-agent sends `completion.prompt.maxPrefixLines` (default 20) lines above the cursor and
`maxSuffixLines` (20) below; the server then clips the prefix to 1,536 characters (Tabby's
dialect) and to its token window. For each setting this types the real next characters of
standard-library files of 5-50 KB from a cursor in their second half (the
file after the typed text is the suffix) and counts, per
keystroke, the prompt tokens the previous keystroke's prompt shares in whole 16-token KV
blocks: what the paged prefix cache can reuse at best (no model runs, so a busy machine does
not change it).
"""

import random
import statistics

from tokenizers import Tokenizer

from benchmarks.bench_engine import CHECKPOINT, MODEL, NEW_TOKENS, build_checkpoint, stdlib_files
from service.prompt.builder import CompletionInput, PromptBuilder
from service.prompt.window import Budget, StickyWindows, clip_prefix_chars
from service.settings import Settings

MAX_PREFIX_CHARS = Settings().tabby_prefix_chars  # the server's default clip
BLOCK = 16


def agent_window(text: str, cursor: int, end: int, lines: int | None) -> tuple[str, str]:
    """The prefix and suffix tabby-agent sends while the user writes `text[cursor:end]` anew:
    `lines` lines above and below the cursor."""
    prefix, suffix = text[:cursor], text[end:]
    if lines is not None:
        head = prefix.split("\n")
        prefix = "\n".join(head[-(lines + 1) :])
        suffix = "\n".join(suffix.split("\n")[: lines + 1])
    return prefix, suffix


def shared_blocks(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n // BLOCK * BLOCK


def run(lines: int | None, sticky_clip: bool, files: int = 12, keystrokes: int = 120) -> dict:
    rng = random.Random(24)
    s = Settings()
    tokenizer = Tokenizer.from_file(str(build_checkpoint(CHECKPOINT) / "tokenizer.json"))
    windows = StickyWindows()
    builder = PromptBuilder(
        tokenizer,
        Budget(s.prefix_tokens, s.suffix_tokens, s.snippet_tokens),
        context_tokens=MODEL["max_position_embeddings"],
        windows=windows,
    )
    paths = sorted(p for p in stdlib_files() if 5_000 <= p.stat().st_size <= 50_000)
    hits, totals = [], []
    for n, path in enumerate(rng.sample(paths, files)):
        text = path.read_text(errors="replace")
        cursor = rng.randrange(len(text) // 2, len(text) - keystrokes)
        previous = None
        for k in range(keystrokes):
            prefix, suffix = agent_window(text, cursor + k, cursor + keystrokes, lines)
            if sticky_clip:
                prefix = windows.clip_prefix_chars(prefix, MAX_PREFIX_CHARS, f"user-{n}")
            else:
                prefix = clip_prefix_chars(prefix, MAX_PREFIX_CHARS)
            request = CompletionInput(prefix=prefix, suffix=suffix, session=f"user-{n}")
            ids = builder.build(request, NEW_TOKENS).token_ids
            if previous is not None:
                hits.append(shared_blocks(previous, ids))
                totals.append(len(ids))
            previous = ids
    return {
        "prompt_tokens": round(statistics.mean(totals), 1),
        "reusable_tokens": round(statistics.mean(hits), 1),
        "recomputed_per_keystroke": round(
            statistics.mean(t - h for t, h in zip(totals, hits, strict=True)), 1
        ),
        "reusable_share": round(sum(hits) / sum(totals), 4),
    }


def main() -> None:
    for lines, label in ((20, "maxPrefixLines 20 (agent default)"), (200, "maxPrefixLines 200")):
        for sticky in (False, True):
            clip = "sticky 1,536-char clip" if sticky else "plain 1,536-char clip"
            print(f"{label}, {clip}: {run(lines, sticky)}", flush=True)


if __name__ == "__main__":
    main()
