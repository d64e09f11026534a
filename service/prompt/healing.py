"""Token healing at the cursor.

A prefix that stops mid-token ("    " before a keyword, half an identifier) ends the prompt on a
token the model rarely saw followed by what the user is about to type: in training, "    return"
is "   " + " return", so a prompt ending in the single token "    " makes the model start its
line with something odd. We drop that last token from the prompt and let the engine constrain
the first generated token(s) to spell the dropped characters (`SamplingParams.forced_prefix`),
which it then strips from the returned text.
"""

import re
from dataclasses import dataclass

from service.prompt.prefix_tokens import Encoded

# A last token that the next characters could have merged into: whitespace then word characters.
MERGEABLE = re.compile(r"\s*\w*")


@dataclass(frozen=True)
class HealedPrefix:
    token_ids: list[int]
    forced_prefix: str  # the characters the dropped token spelled


def heal_prefix(text: str, encoding: Encoded) -> HealedPrefix:
    """Back `text` (encoded as `encoding`) up to its last clean token boundary."""
    ids = encoding.ids
    if not ids:
        return HealedPrefix(ids, "")
    start, end = encoding.offsets[-1]
    tail = text[start:]
    # Only a token that ends the text exactly (not a byte fallback inside a character).
    if end != len(text) or not tail or not MERGEABLE.fullmatch(tail):
        return HealedPrefix(ids, "")
    # A character spelled by several byte tokens: drop all of them, not only the last byte.
    keep = len(ids) - 1
    while keep > 0 and encoding.offsets[keep - 1][1] > start:
        keep -= 1
    return HealedPrefix(ids[:keep], tail)
