"""Token healing at the cursor.

A prefix that stops mid-token (half an identifier, indentation before a keyword) ends the prompt
on a token the model rarely saw followed by what the user is about to type. The prompt is backed
up to a clean token boundary, and the engine constrains the first generated token(s) to spell the
cut characters (`SamplingParams.forced_prefix`), which it then strips from the returned text:

- a last token with word characters ("    ret", "val") is dropped and forced whole;
- indentation is split as the tokenizer splits it when code follows: in training
  "\n        return" is "\n       " + " return", so the prompt keeps "\n       " and only " " is
  forced. Forcing all of "\n        " let the model spell it "\n" and then spaces one token at a
  time, a tokenization it never saw, after which it often wrote nothing but spaces.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from service.prompt.prefix_tokens import Encoded

# A last token that the next characters could have merged into: whitespace then word characters.
MERGEABLE = re.compile(r"\s*\w*")
# Stands for the code that follows typed indentation when splitting it: a word every code
# vocabulary has merged with the space before it.
CODE = "return"


@dataclass(frozen=True)
class HealedPrefix:
    token_ids: list[int]
    forced_prefix: str  # the characters the dropped token spelled


def heal_prefix(text: str, encoding: Encoded, encode: Callable[[str], Encoded]) -> HealedPrefix:
    """Back `text` (encoded as `encoding`; `encode` encodes any text) up to its last clean token
    boundary."""
    ids = encoding.ids
    if not ids:
        return HealedPrefix(ids, "")
    start, end = encoding.offsets[-1]
    tail = text[start:]
    # Only a token that ends the text exactly (not a byte fallback inside a character).
    if end != len(text) or not tail or not MERGEABLE.fullmatch(tail):
        return HealedPrefix(ids, "")
    if tail.isspace() and not tail.endswith("\n"):
        return split_as_before_code(text, encoding, encode)
    # A character spelled by several byte tokens: drop all of them, not only the last byte.
    keep = len(ids) - 1
    while keep > 0 and encoding.offsets[keep - 1][1] > start:
        keep -= 1
    return HealedPrefix(ids[:keep], tail)


def split_as_before_code(
    text: str, encoding: Encoded, encode: Callable[[str], Encoded]
) -> HealedPrefix:
    """`text` ending in indentation: its trailing whitespace tokens replaced by those the
    whitespace splits into when code follows, but for the part the code's first token takes."""
    first = len(encoding.ids)  # the first of the trailing whitespace tokens
    while first > 0 and text[slice(*encoding.offsets[first - 1])].isspace():
        first -= 1
    run = text[encoding.offsets[first][0] :]
    before_code = encode(run + CODE)
    code_token = next(i for i, (_, end) in enumerate(before_code.offsets) if end > len(run))
    cut = before_code.offsets[code_token][0]
    return HealedPrefix(encoding.ids[:first] + before_code.ids[:code_token], run[cut:])
