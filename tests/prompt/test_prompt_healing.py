"""Token healing: the prompt backs up to a clean token boundary, the cut characters are forced."""

import pytest

from service.prompt.healing import heal_prefix
from tests.support.fim_tokenizers import build_tokenizer

TOKENIZER = build_tokenizer("starcoder")


def heal(text: str):
    encoding = TOKENIZER.encode(text)
    return encoding, heal_prefix(text, encoding, TOKENIZER.encode)


@pytest.mark.parametrize(
    "text",
    ["def main():\n    ret", "x = compute(val", "for item in ite", "a = 1\n"],
)
def test_mid_token_prefix_is_backed_up(text):
    encoding, healed = heal(text)
    assert healed.forced_prefix and text.endswith(healed.forced_prefix)
    assert len(healed.token_ids) < len(encoding.ids)
    # The kept tokens spell exactly the text before the forced characters.
    assert TOKENIZER.decode(healed.token_ids) == text[: -len(healed.forced_prefix)]


@pytest.mark.parametrize(
    "text", ["def main():\n    ", "if x:\n        pass\n\n        ", "class A:\n\t"]
)
def test_indentation_is_split_as_before_code(text):
    """The prompt ends on the tokens that code typed after the indentation would follow, so the
    forced characters are only those that code's first token takes with it."""
    encoding, healed = heal(text)
    assert text.endswith(healed.forced_prefix)
    # Spaces: the last one goes with the code (" return"); a tab stays a token of its own.
    assert (healed.token_ids != encoding.ids) == text.endswith(" ")
    assert TOKENIZER.decode(healed.token_ids) == text[: len(text) - len(healed.forced_prefix)]
    with_code = TOKENIZER.encode(text + "return x").ids
    assert with_code[: len(healed.token_ids)] == healed.token_ids


@pytest.mark.parametrize("text", ["print(", "x = [1, 2,", "def add(a, b):", ""])
def test_clean_boundary_is_left_alone(text):
    encoding, healed = heal(text)
    assert healed.forced_prefix == "" and healed.token_ids == encoding.ids


def test_multibyte_character_is_dropped_whole():
    text = "name = café"
    _, healed = heal(text)
    assert text.endswith(healed.forced_prefix) and "é" in healed.forced_prefix
    assert TOKENIZER.decode(healed.token_ids) + healed.forced_prefix == text
