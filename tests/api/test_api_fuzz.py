"""Property-based fuzzing of every endpoint in our OpenAPI schema (schemathesis) against the
real server: no 5xx, every 4xx a JSON error whose message names the problem, responses that
conform to the schema where it declares them. FUZZ_EXAMPLES sets the examples per operation
(the CI default keeps the run near a minute on 2 cores; the long profile raises it)."""

import json
import os
import typing

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st

from service.api.schemas import (
    InfillRequest,
    LogEventRequest,
    OpenAICompletionRequest,
    Request,
    TabbyCompletionRequest,
)
from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.service_process import running_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("fuzz") / "model")
    with running_server(model) as url:
        yield url, schemathesis.openapi.from_url(f"{url}/openapi.json")


def assert_actionable(response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        message = response.json()["error"]["message"]
        assert isinstance(message, str) and len(message) >= 10, response.text


def test_every_endpoint_generated_cases(api_schema):
    _, schema = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6, [operation.label for operation in operations]
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def fuzz(case) -> None:
            response = case.call(timeout=30)
            assert_actionable(response)
            if response.status_code < 400:
                case.validate_response(response)

        fuzz()


# /v1/completions takes an untyped body (a dict told apart by its fields), so the schema says
# little about it: these strategies generate its two shapes, valid and not.
text = st.text(max_size=200)
numbers = st.one_of(
    st.none(), st.integers(-5, 5000), st.floats(allow_nan=False, allow_infinity=False)
)
tabby_bodies = st.fixed_dictionaries(
    {"segments": st.fixed_dictionaries({"prefix": text}, optional={"suffix": text})},
    optional={
        "language": st.one_of(st.none(), text),
        "temperature": numbers,
        "num_beams": numbers,
        "stop_mode": st.sampled_from(["auto", "line", "block", "none", "bogus"]),
        "user": text,
    },
)
openai_bodies = st.fixed_dictionaries(
    {"prompt": st.one_of(text, st.lists(text, max_size=5), numbers)},
    optional={
        "suffix": text,
        "max_tokens": numbers,
        "n": numbers,
        "temperature": numbers,
        "top_p": numbers,
        "stop": st.one_of(text, st.lists(text, max_size=6)),
        "stream": st.booleans(),
        "num_beams": numbers,
        "logit_bias": st.dictionaries(text, numbers, max_size=4),
    },
)


def test_completions_generated_tabby_and_openai_bodies(api_schema):
    url, _ = api_schema

    @hypothesis.given(body=st.one_of(tabby_bodies, openai_bodies))
    @hypothesis.settings(
        max_examples=4 * EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def fuzz(body: dict) -> None:
        response = httpx.post(f"{url}/v1/completions", json=body, timeout=30)
        assert_actionable(response)
        if response.status_code == 200 and not body.get("stream"):
            assert response.json()["choices"], response.text

    fuzz()


MEGABYTE_PROMPT = {"prompt": "x = 1\n" * 160_000}  # ~960 KB: within the 1 MB body limit
HOSTILE_BODIES: dict[str, bytes] = {
    "utf-16": json.dumps({"prompt": "x = 1"}).encode("utf-16"),
    "utf-32": json.dumps({"prompt": "x = 1"}).encode("utf-32"),
    "utf-16-le without a mark": json.dumps({"prompt": "x = 1"}).encode("utf-16-le"),
    "lone surrogate": b'{"prompt": "\\ud800"}',
    "deep nesting": b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "huge stop list": json.dumps({"prompt": "x", "stop": ["a"] * 100_000}).encode(),
    "huge prompt list": json.dumps({"prompt": ["x"] * 100_000}).encode(),
    "megabyte prompt": json.dumps(MEGABYTE_PROMPT).encode(),
    "over the body limit": json.dumps({"prompt": "x" * 1_100_000}).encode(),
    "huge number": b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}",
    "not json": b"\xff\xfe\x00garbage",
    # Found by the fuzzing: an empty list of prompts with a suffix was a 500 in the scrubber.
    "empty prompt list with a suffix": json.dumps({"prompt": [], "suffix": "x"}).encode(),
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
@pytest.mark.parametrize("path", ["/v1/completions", "/infill"])
def test_hostile_bodies(api_schema, path: str, name: str):
    """Each is refused with an actionable 4xx, or (the megabyte prompt, cut to the window)
    answered. A body sent a byte at a time: tests/api/test_api_slow_body.py."""
    body = HOSTILE_BODIES[name]
    if path == "/infill":
        body = body.replace(b'"prompt"', b'"input_prefix"', 1)
    url, _ = api_schema
    response = httpx.post(
        f"{url}{path}",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_actionable(response)
    if name != "megabyte prompt":
        assert 400 <= response.status_code < 500, response.text[:300]


def integer_fields(model: type[Request]) -> list[str]:
    return [
        name
        for name, field in model.model_fields.items()
        if field.annotation is int or int in typing.get_args(field.annotation)
    ]


# Each request body, smallest valid form, and the route that takes it.
SMALLEST_BODIES = [
    ("/v1/completions", TabbyCompletionRequest, {"segments": {"prefix": "def f("}}),
    ("/v1/completions", OpenAICompletionRequest, {"prompt": "def f("}),
    ("/infill", InfillRequest, {"input_prefix": "def f("}),
    ("/v1/events", LogEventRequest, {"type": "view", "completion_id": "c", "choice_index": 0}),
]
INTEGER_CASES = [
    (path, body, name, value)
    for path, model, body in SMALLEST_BODIES
    for name in integer_fields(model)
    for value in (2**34, 2**63, 10**30, -(2**63))
]


@pytest.mark.parametrize(("path", "body", "name", "value"), INTEGER_CASES)
def test_every_integer_field_at_any_size(api_schema, path: str, body: dict, name: str, value: int):
    """Found by the fuzzing: an n_indent of 2**34 asked for 16 GiB of spaces and killed the server.
    Every integer a body carries is refused with a 4xx or bounded by a setting, at any size."""
    url, _ = api_schema
    response = httpx.post(f"{url}{path}", json={**body, name: value}, timeout=30)
    assert_actionable(response)
    assert httpx.get(f"{url}/v1/health", timeout=10).status_code == 200


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_deadline_with_no_output_is_a_limit_stop(api_schema, stream: bool):
    """Found by the fuzzing: `t_max_predict_ms: 2` ran out before a first token and came back
    503 "server busy". The client chose the limit: llama.cpp's answer is what there is."""
    url, _ = api_schema
    body = {"input_prefix": "def f(", "t_max_predict_ms": 1, "stream": stream}
    response = httpx.post(f"{url}/infill", json=body, timeout=30)
    assert response.status_code == 200, response.text
    if not stream:
        answer = response.json()
        assert answer["stop_type"] == "limit" or answer["content"], answer
    else:
        last = [line for line in response.text.splitlines() if line.startswith("data: ")][-1]
        assert json.loads(last.removeprefix("data: "))["stop"] is True, response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/infill", {"input_prefix": "def f(", "input_suffix": "\n", "stream": True}),
        ("/v1/completions", {"prompt": "def f(", "max_tokens": 4, "stream": True}),
    ],
)
def test_a_stream_is_what_the_schema_declares(api_schema, path: str, body: dict):
    """Found by the fuzzing: a streamed 200 (text/event-stream) was undeclared in the schema."""
    _, schema = api_schema
    case = schema[path]["POST"].Case(body=body, media_type="application/json")
    response = case.call(timeout=30)
    (content_type,) = response.headers["content-type"]  # schemathesis lists each header's values
    assert content_type.startswith("text/event-stream"), content_type
    case.validate_response(response)
