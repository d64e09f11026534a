"""Encoding a prompt from a recent beginning's tokens plus its own end gives exactly the whole
text's encoding (ids and character spans), for the project's byte-level BPEs, on real code cut
at random places, with and without a beginning already kept."""

import inspect
import json
import random
import textwrap

import pytest
from tokenizers import Tokenizer, pre_tokenizers

from service.prompt.prefix_tokens import PrefixTokens, Tokens, splits_at_line_starts
from tests.support.fim_tokenizers import build_tokenizer
from tests.support.service_process import REPO
from tests.support.tiny_checkpoints import train_tokenizer

SHIPPED = REPO / "checkpoints" / "default" / "tokenizer.json"
TOKENIZERS = {
    "trained by the pipeline": train_tokenizer,
    "shipped model": lambda: Tokenizer.from_file(str(SHIPPED)),
    "starcoder-style": lambda: build_tokenizer("starcoder"),
}
# Code with runs of blank lines, indentation (spaces, tabs, both), trailing spaces, a form feed,
# CRLF lines and non-ASCII text.
CODE = "\n".join(inspect.getsource(m)[:2500] for m in (json, textwrap, random)) + (
    "\n\n\n\nclass Ünïcode:\n\tπ = 3.14  \n   \n\nx = '日本語'\n"
    "def f():\n    \tmixed = 1\n\t    other = 2\n    'quoted'\n    's'\n\x0c\n    \x0cx = 1\n"
    "if x:\r\n    y = 2\r\n    z = 3\n        # deeper\n    return ŷ\n"
)


def whole(tokenizer: Tokenizer, text: str):
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return encoding.ids, encoding.offsets


@pytest.mark.parametrize("name", TOKENIZERS)
def test_split_encodings_equal_whole_ones(name):
    tokenizer = TOKENIZERS[name]()
    assert splits_at_line_starts(tokenizer)
    rng = random.Random(name)
    for margin in (0, 64, 512):
        tokens = PrefixTokens(tokenizer, capacity=4, margin=margin)
        end = 600
        while end < len(CODE):
            text = CODE[:end]
            got = tokens.encode(text)
            assert (got.ids, got.offsets) == whole(tokenizer, text), (margin, end)
            end += rng.choice([1, 2, 7, 40, 300])  # keystrokes, then jumps
        assert tokens.beginnings  # beginnings were kept and reused along the way


class Recording:
    """The pipeline's tokenizer, noting the length of every text it encodes."""

    def __init__(self):
        self.tokenizer = train_tokenizer()
        self.encoded: list[int] = []

    def encode(self, text, add_special_tokens):
        self.encoded.append(len(text))
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    def to_str(self):
        return self.tokenizer.to_str()


def next_keystroke(text: str, typed: str) -> tuple[Recording, Tokens]:
    """`text + typed` encoded after `text`: the tokenizer (what it encoded for the keystroke) and
    the keystroke's tokens."""
    recording = Recording()
    tokens = PrefixTokens(recording, margin=512)
    tokens.encode(text)
    recording.encoded.clear()
    got = tokens.encode(text + typed)
    return recording, got


def test_a_keystroke_encodes_only_its_last_lines():
    recording, _ = next_keystroke(CODE[:4000], "ret")
    assert len(recording.encoded) == 1 and 512 <= recording.encoded[0] < 1500


def test_a_keystroke_deep_in_an_indented_block_encodes_only_its_last_lines():
    """A method deep in a long class has no line at column 0 for hundreds of lines; the split
    falls inside indented lines too (before the indentation's last character)."""
    body = "".join(
        f"    def method_{i}(self):\n        return self.value + {i}\n\n" for i in range(400)
    )
    text = "class Long:\n" + body + "    def last(self):\n        ret"
    recording, got = next_keystroke(text, "urn")
    assert len(recording.encoded) == 1 and 512 <= recording.encoded[0] < 1500
    assert (got.ids, got.offsets) == whole(recording.tokenizer, text + "urn")


def test_other_pre_tokenizers_encode_whole_texts():
    tokenizer = train_tokenizer()
    tokenizer = Tokenizer.from_str(tokenizer.to_str())
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    assert not splits_at_line_starts(tokenizer)
    tokens = PrefixTokens(tokenizer)
    text = textwrap.dedent(CODE[:3000])
    got = tokens.encode(text)
    assert (got.ids, got.offsets) == whole(tokenizer, text) and not tokens.beginnings


def test_beginnings_are_kept_per_salt():
    """A tenant's prefix is never encoded from another tenant's kept beginning (with
    --isolate-tenants the salt is the tenant): it encodes its whole text, then its own
    beginning serves its next keystroke."""
    tokenizer = train_tokenizer()
    encoded = []

    class Recording:
        def encode(self, text, add_special_tokens):
            encoded.append(len(text))
            return tokenizer.encode(text, add_special_tokens=add_special_tokens)

        def to_str(self):
            return tokenizer.to_str()

    tokens = PrefixTokens(Recording(), margin=512)
    text = CODE[:4000]
    expected = whole(tokenizer, text + "ret")
    tokens.encode(text, cache_salt="alpha")
    encoded.clear()
    got = tokens.encode(text + "ret", cache_salt="beta")
    assert sum(encoded) >= len(text)  # nothing of alpha's beginning was reused
    assert (got.ids, got.offsets) == expected
    encoded.clear()
    got = tokens.encode(text + "ret", cache_salt="alpha")
    assert len(encoded) == 1 and encoded[0] < 1500  # alpha's own beginning was
    assert (got.ids, got.offsets) == expected


@pytest.mark.parametrize("name", TOKENIZERS)
def test_a_window_from_any_offset_equals_its_own_encoding(name):
    """A prompt window that drops the text's beginning keeps the whole text's tokens after its
    first lines; ids and spans equal the window's own encoding, wherever it starts."""
    tokenizer = TOKENIZERS[name]()
    tokens = PrefixTokens(tokenizer)
    encoding = tokens.plain(CODE)
    rng = random.Random(name)
    line_starts = [i + 1 for i, c in enumerate(CODE) if c == "\n"]
    for start in rng.sample(line_starts, 60) + rng.sample(range(len(CODE)), 60):
        got = tokens.from_offset(CODE, encoding, start)
        assert (got.ids, got.offsets) == whole(tokenizer, CODE[start:]), start


def test_a_window_encodes_only_its_first_lines_again():
    recording = Recording()
    tokens = PrefixTokens(recording)
    text = CODE[:6000]
    encoding = tokens.plain(text)
    start = text.index("\n", 2000) + 1
    recording.encoded.clear()
    got = tokens.from_offset(text, encoding, start)
    assert len(recording.encoded) == 1 and recording.encoded[0] < 200
    assert (got.ids, got.offsets) == whole(recording.tokenizer, text[start:])


def test_a_split_that_moves_down_encodes_only_the_lines_it_passed():
    """Typing moves the split down a line every few dozen characters: the new beginning grows
    from the kept one instead of encoding the file from its first line again."""
    recording = Recording()
    tokens = PrefixTokens(recording, margin=512)
    text = CODE[:5000]
    tokens.encode(text)
    recording.encoded.clear()
    longer = CODE[:5600]
    got = tokens.encode(longer)
    assert sum(recording.encoded) < 2000  # the lines between the two splits, and the tail
    assert (got.ids, got.offsets) == whole(recording.tokenizer, longer)


def test_a_beginning_grows_only_from_a_kept_one_that_ends_at_a_split():
    """The same beginning, but the line after it now indented: the kept beginning's end is no
    piece boundary of the new text, so its tokens must not be reused as they are."""
    tokenizer = train_tokenizer()
    tokens = PrefixTokens(tokenizer, margin=512)
    text = "".join(f"value_{i} = {i}\n" for i in range(300))
    tokens.encode(text)
    ((_, kept),) = tokens.beginnings
    edited = kept + "    " + text[len(kept) :] + "".join(f"more_{i} = {i}\n" for i in range(60))
    got = tokens.encode(edited)
    assert (got.ids, got.offsets) == whole(tokenizer, edited)
