"""Bad input: every malformed, mistyped, empty, oversized or absurd request gets a 4xx with a
message, never a 500 and never a hang."""

import json
import random

import pytest
from fastapi.testclient import TestClient

from service.api import schemas
from service.app import create_app
from service.settings import Settings
from tests.support.scripted_checkpoint import build_scripted_checkpoint

MAX_BODY = 4096


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model")
    settings = Settings(
        model=model, device="cpu", max_body_bytes=MAX_BODY, max_tokens_limit=300, max_n=4
    )
    with TestClient(create_app(settings)) as client:
        yield client


def post(client, path: str, content: bytes | str, **headers):
    headers = {"content-type": "application/json", **headers}
    return client.post(path, content=content, headers=headers)


def assert_refused(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert all(w in message for w in words), message


BAD_BODIES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('"text"', "JSON object"),
    ("{}", "segments.prefix"),
    ('{"prompt": 5}', "prompt"),
    ('{"prompt": ""}', "empty"),
    ('{"prompt": "   ", "suffix": ""}', "empty"),
    ('{"prompt": []}', "empty"),
    ('{"prompt": "x", "max_tokens": "many"}', "max_tokens"),
    ('{"prompt": "x", "max_tokens": 0}', "max_tokens"),
    ('{"prompt": "x", "max_tokens": -5}', "max_tokens"),
    ('{"prompt": "x", "max_tokens": 1000000000000}', "max_tokens"),
    ('{"prompt": "x", "max_tokens": 250}', "no room for a prompt"),
    ('{"prompt": "x", "n": 0}', "n"),
    ('{"prompt": "x", "n": 100000}', "at most 4"),
    ('{"prompt": "x", "temperature": 1e9}', "temperature"),
    ('{"prompt": "x", "temperature": -1}', "temperature"),
    ('{"prompt": "x", "temperature": NaN}', "finite"),
    ('{"prompt": "x", "temperature": Infinity}', "finite"),
    ('{"prompt": "x", "top_p": 0}', "top_p"),
    ('{"prompt": "x", "top_p": 2}', "top_p"),
    ('{"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}', "stop"),
    ('{"prompt": "x", "stop": 7}', "stop"),
    ('{"prompt": "x", "seed": -1}', "seed"),
    ('{"prompt": "x", "seed": 1e400}', "seed"),
    ('{"prompt": "x", "stream": "yes"}', "stream"),
    ('{"prompt": "x", "logprobs": 5}', "logprobs"),
    ('{"prompt": "x", "echo": true}', "echo"),
    ('{"prompt": "x", "best_of": 3}', "best_of"),
    ('{"prompt": "x", "stop_mode": "sometimes"}', "stop_mode"),
    ('{"segments": {}}', "segments.prefix"),
    ('{"segments": {"prefix": ""}}', "empty"),
    ('{"segments": {"prefix": 3}}', "segments.prefix"),
    ('{"segments": "def f():"}', "segments"),
    ('{"segments": {"prefix": "x", "declarations": [{"body": "y"}]}}', "filepath"),
    ('{"segments": {"prefix": "x"}, "temperature": "hot"}', "temperature"),
]


@pytest.mark.parametrize("body, words", BAD_BODIES)
def test_bad_completion_bodies_get_400_with_a_message(client, body, words):
    assert_refused(post(client, "/v1/completions", body), 400, words)


@pytest.mark.parametrize(
    "body, words",
    [
        ('{"input_prefix": "", "input_suffix": ""}', "nothing to complete"),
        ('{"input_prefix": "x", "n_predict": 0}', "n_predict"),
        ('{"input_prefix": "x", "n_predict": 999999}', "n_predict"),
        ('{"input_prefix": "x", "n_predict": -7}', "n_predict"),
        ('{"input_prefix": "x", "t_max_predict_ms": -1}', "t_max_predict_ms"),
        ('{"input_prefix": "x", "input_extra": [{"filename": 1}]}', "input_extra"),
    ],
)
def test_bad_infill_bodies_get_400(client, body, words):
    assert_refused(post(client, "/infill", body), 400, words)


def over(cap: int, item) -> list:
    return [item] * (cap + 1)


DECLARATION = {"filepath": "a.py", "body": "f()"}
SNIPPET = {"filepath": "a.py", "body": "f()"}
TABBY = {"language": "python", "segments": {"prefix": "def f(", "suffix": ")"}}

# Every list or map a body can carry, one past its cap: (path, body, field, cap).
OVER_THE_CAP = [
    ("/v1/completions", {"prompt": over(schemas.MAX_PROMPTS, "x")}, "prompt", schemas.MAX_PROMPTS),
    (
        "/v1/completions",
        {"prompt": "x", "stop": over(schemas.MAX_OPENAI_STOPS, "a")},
        "stop",
        schemas.MAX_OPENAI_STOPS,
    ),
    (
        "/v1/completions",
        {"prompt": "x", "stop": "a" * (schemas.MAX_STOP_CHARS + 1)},
        "stop",
        schemas.MAX_STOP_CHARS,
    ),
    (
        "/v1/completions",
        {"prompt": "x", "logit_bias": {str(i): 1.0 for i in range(schemas.MAX_LOGIT_BIAS + 1)}},
        "logit_bias",
        schemas.MAX_LOGIT_BIAS,
    ),
    *(
        (
            "/v1/completions",
            {**TABBY, "segments": {**TABBY["segments"], name: over(schemas.MAX_SNIPPETS, item)}},
            f"segments.{name}",
            schemas.MAX_SNIPPETS,
        )
        for name, item in [
            ("declarations", DECLARATION),
            ("relevant_snippets_from_changed_files", SNIPPET),
            ("relevant_snippets_from_recently_opened_files", SNIPPET),
        ]
    ),
    (
        "/infill",
        {
            "input_prefix": "x",
            "input_extra": over(schemas.MAX_SNIPPETS, {"filename": "a", "text": "b"}),
        },
        "input_extra",
        schemas.MAX_SNIPPETS,
    ),
    (
        "/infill",
        {"input_prefix": "x", "stop": over(schemas.MAX_INFILL_STOPS, "a")},
        "stop",
        schemas.MAX_INFILL_STOPS,
    ),
    (
        "/infill",
        {"input_prefix": "x", "stop": ["a" * (schemas.MAX_STOP_CHARS + 1)]},
        "stop",
        schemas.MAX_STOP_CHARS,
    ),
]


@pytest.mark.parametrize("path, body, field, cap", OVER_THE_CAP, ids=lambda v: str(v)[:40])
def test_every_list_in_a_body_is_capped(client, path, body, field, cap):
    """A list one past its cap gets a 400 that names the field and the cap."""
    response = post(client, path, json.dumps(body))
    assert_refused(response, 400, field, str(cap))
    assert response.json()["error"]["param"].startswith(field)


@pytest.mark.parametrize(
    "path, body",
    [
        ("/infill", {"input_prefix": "x = ", "stop": ["zz"] * schemas.MAX_INFILL_STOPS}),
        (
            "/infill",
            {"input_prefix": "x = ", "input_extra": [{"filename": "a", "text": "b"}] * 64},
        ),
        (
            "/v1/completions",
            {**TABBY, "segments": {**TABBY["segments"], "declarations": [DECLARATION] * 64}},
        ),
    ],
)
def test_lists_at_their_cap_are_served(client, path, body):
    assert post(client, path, json.dumps(body)).status_code == 200


def test_bad_events_get_400(client):
    assert_refused(post(client, "/v1/events", '{"type": "explode"}'), 400, "type")


def test_invalid_utf8_gets_400(client):
    assert_refused(post(client, "/v1/completions", b'{"prompt": "\xff\xfe x"}'), 400, "UTF-8")


def test_wrong_content_type_gets_400(client):
    response = client.post(
        "/v1/completions", content=b'{"prompt": "x"}', headers={"content-type": "text/plain"}
    )
    assert_refused(response, 400, "Content-Type: application/json")


def test_oversized_body_gets_413(client):
    body = json.dumps({"prompt": "x" * MAX_BODY})
    assert_refused(post(client, "/v1/completions", body), 413, str(MAX_BODY))


def test_oversized_chunked_body_gets_413(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000

    response = client.post(
        "/v1/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_refused(response, 413, str(MAX_BODY))


def test_body_just_under_the_limit_is_served(client):
    body = json.dumps({"prompt": "x = 1\n" * 500 + "y = a +", "suffix": "\n", "max_tokens": 2})
    assert len(body) < MAX_BODY
    response = post(client, "/v1/completions", body)
    assert response.status_code == 200 and response.json()["choices"][0]["text"] == " b\n"


def mutate(value, rng: random.Random):
    """A random wrong value: wrong types, huge or negative numbers, deep nesting, odd strings."""
    return rng.choice(
        [
            None,
            True,
            -1,
            0,
            2**70,
            1e308,
            -1e-9,
            "",
            "\x00",
            "x" * 500,
            [],
            {},
            [[[]]],
            {"a": 1},
            value,
        ]
    )


def test_fuzzed_bodies_never_get_a_5xx(client):
    rng = random.Random(0)
    base = {
        "prompt": "def f(",
        "suffix": ")",
        "max_tokens": 4,
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 1,
        "stop": ["\n"],
        "seed": 1,
        "stream": False,
    }
    tabby_base = {"language": "python", "segments": {"prefix": "def f(", "suffix": ")"}, "seed": 1}
    for i in range(60):
        body = dict(base if i % 2 else tabby_base)
        for key in rng.sample(sorted(body), k=rng.randint(1, 3)):
            body[key] = mutate(body[key], rng)
        response = post(client, "/v1/completions", json.dumps(body))
        assert response.status_code in (200, 400), (body, response.text)
        if response.status_code == 400:
            assert response.json()["error"]["message"]
