"""Typing into a file longer than the prompt window, through the prompt builder and the real
engine: every keystroke after the first finds all of its prompt in the prefix cache but the
tokens it changed (and the partly filled block before them), because the window's start stays
put. The last-N-tokens window this replaced misses from the first block on whenever its start
crosses a line boundary, which the same run checks, so the test tells the two apart."""

import textwrap
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from service.completion.sessions import EditorSession
from service.engine import EngineConfig, LLMEngine, SamplingParams
from service.prompt.builder import CompletionInput, PromptBuilder
from service.prompt.window import Budget, StickyWindows, clip_prefix
from tests.support.tiny_checkpoints import build_checkpoint

BLOCK_SIZE = 16
CONTEXT = 512
BUDGET = Budget(prefix=200, suffix=0, snippets=0)
# A keystroke changes, besides what it types: the previous last token (the typed character
# may merge with it), the token healing takes back, and the sentinels after the prefix.
SEAM_TOKENS = 4
FILE = Path(textwrap.__file__).read_text()  # ≈ 19 KB, thousands of tokens
CURSOR = FILE.index("    def _split(self, text):")  # the user types the file's next characters
# Three lines and a half: fewer tokens than the window's step (a quarter of its budget), so
# it has no reason to move while they are typed.
TYPED = FILE[CURSOR : CURSOR + 90]


class LastTokensWindow(StickyWindows):
    """The window before issue 24: the last `budget` tokens, from a line start."""

    def clip_prefix(self, prefix, encoding, budget, session=None, cache_salt=None) -> str:
        return clip_prefix(prefix, encoding, budget)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("gpt2"), "gpt2", n_positions=CONTEXT)


def type_keystrokes(checkpoint, windows: StickyWindows) -> list[tuple[int, int, int]]:
    """(prompt tokens, tokens new to the keystroke, tokens found cached) of each keystroke
    after the first."""
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    builder = PromptBuilder(tokenizer, BUDGET, context_tokens=CONTEXT, windows=windows)
    engine = LLMEngine(
        EngineConfig(model_path=checkpoint, num_threads=1, block_size=BLOCK_SIZE, kv_cache_mb=8)
    )
    session = EditorSession("tenant", "editor")
    results = []
    for i in range(len(TYPED) + 1):
        request = CompletionInput(prefix=FILE[:CURSOR] + TYPED[:i], session=session)
        prompt = builder.build(request, max_new_tokens=2)
        engine.add_request(f"k{i}", prompt.token_ids, SamplingParams(max_tokens=2))
        seq = engine.seqs[f"k{i}"]
        while engine.has_work():
            engine.step()
        typed = len(tokenizer.encode(TYPED[i - 1 : i], add_special_tokens=False).ids)
        if i > 0:
            results.append((len(prompt.token_ids), typed + SEAM_TOKENS, seq.num_cached_tokens))
    return results


def test_keystrokes_in_a_long_file_reuse_all_but_their_new_tokens(checkpoint):
    results = type_keystrokes(checkpoint, StickyWindows())
    # The file is cut: every prompt holds a window of half its budget at least.
    assert all(prompt_tokens >= BUDGET.prefix // 2 for prompt_tokens, _, _ in results)
    for i, (prompt_tokens, new_tokens, cached) in enumerate(results):
        assert cached >= prompt_tokens - (new_tokens + BLOCK_SIZE), (i, TYPED[: i + 2])
    # The same keystrokes with the last-N-tokens window miss once per line typed at least.
    missed_before = [
        i
        for i, (prompt_tokens, new_tokens, cached) in enumerate(
            type_keystrokes(checkpoint, LastTokensWindow())
        )
        if cached < prompt_tokens - (new_tokens + BLOCK_SIZE)
    ]
    assert len(missed_before) >= TYPED.count("\n")
