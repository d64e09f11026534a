"""The semantic engine's output side through the real server (`python -m service serve`): a
cleaned, a repaired and a dropped unsafe suggestion, the metrics moving on /metrics, the switch.

The checkpoint is scripted (tests/support/scripted_checkpoint.py): after any FIM prompt, greedy
decoding spells SCRIPT. Token healing forces the indentation's last space, which the server
strips, so the model's text at the cursor is RAW. The contexts decide what becomes of it.
"""

import re

import httpx
import pytest

from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.service_process import running_server

SCRIPT = ' print("hi")\n    eval(data)'
RAW = 'print("hi")\n    eval(data)'


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model", SCRIPT)
    flags = ("--device", "cpu", "--num-threads", "1", "--stream-interval-ms", "0")
    with running_server(model, *flags) as url:
        yield url


def tabby(base_url: str, prefix: str, suffix: str = "\n", **fields) -> str:
    body = {"language": "python", "segments": {"prefix": prefix, "suffix": suffix}, **fields}
    response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def metric(base_url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}{{{re.escape(selector)}}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def outcome(base_url: str, name: str) -> float:
    return metric(base_url, "semantic_suggestions_total", outcome=name)


# `data` is a parameter: the whole script is valid code, and `eval(data)` evaluates input.
WITH_DATA = 'def f(data):\n    x = "a"\n    '
# No `data` in scope: the script's second line reads an undefined name.
WITHOUT_DATA = 'def f():\n    x = "a"\n    '


def test_a_suggestion_is_cleaned_to_the_files_quotes(base_url):
    before = outcome(base_url, "cleaned")
    # Code after the cursor on its line: one line, in the file's single quotes.
    single_quoted = WITH_DATA.replace('"a"', "'a'")
    assert tabby(base_url, single_quoted, "  # greet\n") == "print('hi')"
    assert outcome(base_url, "cleaned") == before + 1


def test_a_failing_suggestion_is_repaired_to_its_valid_part(base_url):
    before = outcome(base_url, "repaired")
    assert tabby(base_url, WITHOUT_DATA) == 'print("hi")'
    assert outcome(base_url, "repaired") == before + 1


def test_an_unsafe_suggestion_is_dropped_and_counted_by_rule(base_url):
    dropped = metric(
        base_url, "semantic_unsafe_suggestions_total", action="dropped", rule="eval_exec"
    )
    assert tabby(base_url, WITH_DATA) == ""
    assert metric(
        base_url, "semantic_unsafe_suggestions_total", action="dropped", rule="eval_exec"
    ) == (dropped + 1)


def test_the_switch_off_returns_the_raw_text(base_url):
    assert tabby(base_url, WITH_DATA, semantic=False) == RAW
    assert tabby(base_url, WITHOUT_DATA, semantic=False) == RAW


def test_the_share_of_served_suggestions_that_parse(base_url):
    served = metric(base_url, "semantic_served_suggestions_total", semantic="on")
    parsed = metric(base_url, "semantic_served_parsed_total", semantic="on")
    fresh = WITHOUT_DATA.replace("x =", "y =")  # another file: not a cache hit
    assert tabby(base_url, fresh) == 'print("hi")'
    assert metric(base_url, "semantic_served_suggestions_total", semantic="on") == served + 1
    assert metric(base_url, "semantic_served_parsed_total", semantic="on") == parsed + 1
    raw_served = metric(base_url, "semantic_served_suggestions_total", semantic="off")
    raw_parsed = metric(base_url, "semantic_served_parsed_total", semantic="off")
    assert tabby(base_url, fresh, semantic=False) == RAW  # `data` is undefined, yet it parses
    assert metric(base_url, "semantic_served_suggestions_total", semantic="off") == raw_served + 1
    assert metric(base_url, "semantic_served_parsed_total", semantic="off") == raw_parsed + 1


def test_a_checked_stream_sends_the_final_text(base_url):
    body = {
        "input_prefix": WITHOUT_DATA.replace("f()", "g()"),
        "input_suffix": "\n",
        "stream": True,
    }
    with httpx.stream("POST", f"{base_url}/infill", json=body, timeout=60) as response:
        chunks = [line for line in response.iter_lines() if line]
    contents = [re.search(r'"content":\s*"((?:[^"\\]|\\.)*)"', c).group(1) for c in chunks]
    assert [c for c in contents if c] == ['print(\\"hi\\")']
