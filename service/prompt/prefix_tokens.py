r"""Tokens of recent prompt beginnings, so an editor's next keystroke encodes only its last lines.

Every request carries the whole code before the cursor, and encoding a 4 KB prefix took ≈1 ms of
the event loop while holding the GIL the engine thread needs: a third of a request's handling
before it reaches the engine. The next keystroke's prefix begins with the same text. With a
byte-level BPE that splits text by GPT-2's regex (no normalizer, no prefix space), merges stay
inside the regex's pieces, and a piece boundary falls at a fixed place of every line that
follows a line ending in a non-space character and starts (after its indentation) with one: the
newline and the indentation form one whitespace run, which `\s+(?!\S)` takes less its last
character (that one starts the next piece: ` def`, or a tab alone); a line at column 0 has a run
of the newline alone, and the boundary is the line start. So the encoding of the text up to that
boundary is the start of the whole text's encoding, and the rest can be encoded alone and
shifted. Other tokenizers encode whole texts.

The same boundaries let a window that drops the text's beginning keep the whole text's tokens:
only its first lines, up to the first boundary, are encoded again.

Beginnings are kept per `cache_salt` (the tenant, when the server isolates tenants): a request
is never encoded faster because another tenant's text began the same way.
"""

import json
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from tokenizers import Tokenizer

# Line starts looked at for a split before giving up (a stretch of lines with no boundary).
MAX_LINES_SCANNED = 256


class Encoded(Protocol):
    """What the prompt window needs of an encoding (`Tokens`, or `tokenizers.Encoding`): token
    ids and their character spans."""

    ids: list[int]
    offsets: list[tuple[int, int]]


@dataclass(frozen=True)
class Tokens:
    ids: list[int]
    offsets: list[tuple[int, int]]


def splits_at_line_starts(tokenizer: Tokenizer) -> bool:
    """A byte-level BPE with GPT-2's split and nothing around it (see the module's docstring)."""
    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer") or {}
    return (
        spec.get("normalizer") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
    )


def piece_boundary(text: str, newline: int) -> int | None:
    """Where GPT-2's split starts a piece on the line after the newline at `newline`, whatever
    text comes before the line above: a line after one ending in a non-space character, whose
    first character past its indentation is not a space either (see the module's docstring)."""
    first = newline + 1  # the line's first character past its indentation
    while first < len(text) and text[first] in " \t":
        first += 1
    if newline < 1 or first >= len(text) or text[newline - 1].isspace() or text[first].isspace():
        return None
    return max(first - 1, newline + 1)


class PrefixTokens:
    def __init__(
        self,
        tokenizer: Tokenizer,
        capacity: int = 32,  # beginnings kept, the least recently used dropped first
        margin: int = 512,  # characters before the end where a beginning may stop: typing
        # within the last lines keeps hitting the same one
        max_chars: int = 1 << 16,  # longer beginnings are not kept
    ):
        self.tokenizer = tokenizer
        self.splits_at_lines = splits_at_line_starts(tokenizer)
        self.capacity, self.margin, self.max_chars = capacity, margin, max_chars
        # (salt, beginning) -> its tokens
        self.beginnings: OrderedDict[tuple[str | None, str], Tokens] = OrderedDict()

    def encode(self, text: str, cache_salt: str | None = None) -> Tokens:
        cut = self.cut(text) if self.splits_at_lines else 0
        if cut == 0:
            return self.plain(text)
        return self.joined(self.beginning(text[:cut], cache_salt), text, cut)

    def joined(self, head: Tokens, text: str, cut: int) -> Tokens:
        """`text` encoded from `head`, the tokens of `text[:cut]`, where `cut` is a boundary."""
        tail = self.tokenizer.encode(text[cut:], add_special_tokens=False)
        shifted = [(start + cut, end + cut) for start, end in tail.offsets]
        return Tokens(head.ids + tail.ids, head.offsets + shifted)

    def plain(self, text: str) -> Tokens:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return Tokens(encoding.ids, encoding.offsets)

    def from_offset(self, text: str, encoding: Tokens, start: int) -> Tokens:
        """The encoding of `text[start:]`, given `encoding`, `text`'s own: the lines up to the
        first boundary past `start` are encoded again, the tokens after it are `encoding`'s.
        A prompt window's clip keeps ~1,000 tokens of a long file, which took ≈1 ms to encode
        again on the event loop at every keystroke."""
        newline = text.find("\n", start + 1) if self.splits_at_lines else -1
        for _ in range(MAX_LINES_SCANNED):
            if newline < 0:
                break
            boundary = piece_boundary(text, newline)
            if boundary is not None:
                index = bisect_left(encoding.offsets, (boundary, boundary))  # its first token
                head = self.plain(text[start:boundary])
                tail = [(a - start, b - start) for a, b in encoding.offsets[index:]]
                return Tokens(head.ids + encoding.ids[index:], head.offsets + tail)
            newline = text.find("\n", newline + 1)
        return self.plain(text[start:])

    def cut(self, text: str) -> int:
        """The last place at least `margin` characters before the end where the encoding may be
        split (a line's piece boundary, see the module's docstring), or 0."""
        newline = text.rfind("\n", 0, len(text) - self.margin)
        for _ in range(MAX_LINES_SCANNED):
            if newline < 1:
                break
            boundary = piece_boundary(text, newline)
            if boundary is not None:
                return boundary if boundary <= self.max_chars else 0
            newline = text.rfind("\n", 0, newline)
        return 0

    def beginning(self, head: str, cache_salt: str | None) -> Tokens:
        key = (cache_salt, head)
        tokens = self.beginnings.get(key)
        if tokens is None:
            tokens = self.beginnings[key] = self.grown(head, cache_salt)
            if len(self.beginnings) > self.capacity:
                self.beginnings.popitem(last=False)
        self.beginnings.move_to_end(key)
        return tokens

    def grown(self, head: str, cache_salt: str | None) -> Tokens:
        """`head`'s tokens from the longest kept beginning (of the same salt) it goes on from at
        a boundary: typing moves a file's split down a line every few dozen characters, and
        encoding the whole beginning again took ≈10 ms for a 30 KB file."""
        kept = max(
            (
                beginning
                for salt, beginning in self.beginnings
                if salt == cache_salt
                and len(beginning) < len(head)
                and head.startswith(beginning)
                and piece_boundary(head, head.rfind("\n", 0, len(beginning))) == len(beginning)
            ),
            key=len,
            default="",
        )
        if not kept:
            return self.plain(head)
        return self.joined(self.beginnings[(cache_salt, kept)], head, len(kept))
