"""The semantic engine's input side through the real server (`python -m service serve`): after
`expr.` on a known type the completion starts with one of the type's real members; with the
request's `semantic` false it is the model's raw output; the analysis's counters reach /metrics.

The checkpoint is scripted (tests/support/scripted_checkpoint.py): after any FIM prompt, greedy
decoding spells RAW, whose first identifier `zork` is no member of anything here. Where token
healing rules RAW's first token out (a prompt ending in a space), the runner-up HEALED_RAW stands in
for it: a token that starts with a space and no name (without it, the random rows' noise). The
OpenAI dialect's default stop mode ("none") returns the decoded text as it is (no
post-processing), so what is asserted is what decoding produced.
"""

import re

import httpx
import pytest

from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.service_process import running_server

RAW = "zork()"
HEALED_RAW = "Ġ("  # " (" in the tokenizer's byte-level spelling
IDENTIFIER = re.compile(r"\w*")
POINT = "class Point:\n    def norm(self):\n        return 0\n\np = Point()\n"


def point_members() -> set[str]:
    """What POINT's instance really has: norm, object's members and what every class adds to them
    (__dict__, __module__, __weakref__)."""
    scope: dict[str, object] = {}
    exec(POINT, scope)
    return set(dir(scope["p"]))


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    model = build_scripted_checkpoint(
        tmp_path_factory.mktemp("scripted") / "model", RAW, runner_up=(0, HEALED_RAW)
    )
    # A small prompt window: a file a few hundred lines long reaches past it.
    flags = ("--device", "cpu", "--num-threads", "1", "--prefix-tokens", "128")
    with running_server(model, *flags) as url:
        yield url


def complete(base_url: str, prompt: str, **fields) -> str:
    body = {"prompt": prompt, "suffix": "\n", "max_tokens": 8, **fields}
    response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def metric(base_url: str, name: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def first_identifier(text: str) -> str:
    return IDENTIFIER.match(text).group()


def starts_with_member(text: str, members: set[str]) -> bool:
    """The text's first identifier is a member, or the start of one that max_tokens cut."""
    name = first_identifier(text)
    cut = name == text and any(member.startswith(name) for member in members)
    return bool(name) and (name in members or cut)


def test_after_a_string_literals_dot_the_completion_starts_with_a_str_member(base_url):
    typed = metric(base_url, "semantic_receivers_typed_total")
    text = complete(base_url, 'x = "a"\nx.')
    assert starts_with_member(text, set(dir(str))), text
    assert metric(base_url, "semantic_receivers_typed_total") == typed + 1
    # Switched off for the request: the model's own text.
    assert complete(base_url, 'x = "a"\nx.', semantic=False) == RAW


def test_after_a_known_class_instances_dot_the_completion_starts_with_its_member(base_url):
    prefix = POINT + "p."
    text = complete(base_url, prefix, semantic=True)
    assert starts_with_member(text, point_members()), text
    assert complete(base_url, prefix, semantic=False) == RAW


def test_after_from_a_standard_library_module_import_the_name_is_one_of_its_own(base_url):
    import os

    text = complete(base_url, "from os import ")
    assert starts_with_member(text, set(dir(os))), text
    # Token healing takes the prompt's last space back: the first token must start with one.
    raw = complete(base_url, "from os import ", semantic=False)
    assert raw == "(ork()" and not starts_with_member(raw, set(dir(os))), raw


def test_what_the_user_typed_of_the_member_is_continued(base_url):
    # `x.jo|`: the only str member starting "jo" is join, so the completion spells "in".
    assert complete(base_url, 'x = "a"\nx.jo').startswith("in")


def test_no_constraint_where_the_type_is_unknown(base_url):
    assert complete(base_url, "x = unknown()\nx.") == RAW


def test_a_class_above_the_prompts_window_still_types_its_instance(base_url):
    """The analysis reads the whole file the client sent: the class is defined further up than
    the prompt's --prefix-tokens window reaches."""
    text = complete(base_url, POINT + "y = 0\n" * 200 + "p.")  # ~800 tokens: past the window
    assert starts_with_member(text, point_members()), text
