"""Encoding a prompt from a recent beginning's tokens plus its own end gives exactly the whole
text's encoding (ids and character spans), for the project's byte-level BPEs, on real code cut
at random places, with and without a beginning already kept."""

import inspect
import json
import random
import textwrap

import pytest
from tokenizers import Tokenizer, pre_tokenizers

from service.prompt.prefix_tokens import PrefixTokens, splits_at_line_starts
from tests.support.fim_tokenizers import build_tokenizer
from tests.support.service_process import REPO
from tests.support.tiny_checkpoints import train_tokenizer

SHIPPED = REPO / "checkpoints" / "default" / "tokenizer.json"
TOKENIZERS = {
    "trained by the pipeline": train_tokenizer,
    "shipped model": lambda: Tokenizer.from_file(str(SHIPPED)),
    "starcoder-style": lambda: build_tokenizer("starcoder"),
}
# Code with runs of blank lines, indentation, tabs, trailing spaces and non-ASCII text.
CODE = "\n".join(inspect.getsource(m)[:2500] for m in (json, textwrap, random)) + (
    "\n\n\n\nclass Ünïcode:\n\tπ = 3.14  \n   \n\nx = '日本語'\n"
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


def test_a_keystroke_encodes_only_its_last_lines():
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
    tokens.encode(text)
    encoded.clear()
    tokens.encode(text + "ret")
    assert len(encoded) == 1 and 512 <= encoded[0] < 1500


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
