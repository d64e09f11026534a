"""The prompt builder: window, snippets, healing and template together."""

import pytest

from service.prompt.builder import CompletionInput, PromptBuilder, PromptTooLong
from service.prompt.window import Budget, Snippet
from tests.support.fim_tokenizers import build_tokenizer

STARCODER = build_tokenizer("starcoder")
DEFAULT_BUDGET = Budget(200, 50, 50)


def builder(tokenizer=STARCODER, budget=DEFAULT_BUDGET, context=512) -> PromptBuilder:
    return PromptBuilder(tokenizer, budget, context_tokens=context)


def text_of(token_ids: list[int], tokenizer=STARCODER) -> str:
    return tokenizer.decode(token_ids, skip_special_tokens=False)


def test_fim_prompt_with_snippets_and_healing():
    prompt = builder().build(
        CompletionInput(
            prefix="def total(items):\n    ret",
            suffix="\n\nprint(total([1]))\n",
            language="python",
            snippets=(Snippet("lib.py", "def add(a, b):\n    return a + b"),),
        ),
        max_new_tokens=16,
    )
    assert prompt.forced_prefix and "ret".endswith(prompt.forced_prefix[-3:])
    assert text_of(prompt.token_ids) == (
        "<fim_prefix># Path: lib.py\n# def add(a, b):\n#     return a + b\n"
        "def total(items):\n"
        + "    ret"[: -len(prompt.forced_prefix)]
        + "<fim_suffix>\n\nprint(total([1]))\n<fim_middle>"
    )


def test_special_token_names_in_code_are_plain_text():
    prompt = builder().build(CompletionInput(prefix="s = '<fim_middle>'\n", suffix="t = 1\n"), 16)
    middle = STARCODER.token_to_id("<fim_middle>")
    assert prompt.token_ids.count(middle) == 1 and prompt.token_ids[-1] == middle
    left_to_right = builder().build(CompletionInput(prefix="s = '<fim_middle>'\n"), 16)
    assert middle not in left_to_right.token_ids


def test_crlf_is_lf_for_the_model_and_remembered():
    prompt = builder().build(CompletionInput(prefix="a = 1\r\nb = (", suffix=")\r\n"), 16)
    assert "\r" not in text_of(prompt.token_ids)
    assert prompt.newline == "\r\n" and prompt.prefix == "a = 1\nb = ("


def test_plain_tokenizer_gets_prefix_only_but_keeps_the_suffix_for_stopping():
    plain = build_tokenizer("plain")
    prompt = builder(plain).build(CompletionInput(prefix="x = compute(", suffix=")\n"), 16)
    assert text_of(prompt.token_ids, plain) == "x = compute("
    assert prompt.suffix == ")\n"


def test_prompt_fits_the_model_context():
    long_prefix = "".join(f"value_{i} = compute({i})\n" for i in range(300))
    b = builder(budget=Budget(10_000, 10_000, 10_000), context=256)
    prompt = b.build(CompletionInput(prefix=long_prefix, suffix=long_prefix), max_new_tokens=64)
    assert len(prompt.token_ids) + 64 <= 256
    assert prompt.prefix.endswith("value_299 = compute(299)\n")
    assert prompt.suffix.startswith("value_0 = compute(0)\n")
    with pytest.raises(PromptTooLong):
        b.build(CompletionInput(prefix="x"), max_new_tokens=250)
