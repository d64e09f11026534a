"""The request body as the scrubber reads it: UTF-8 JSON only (other encodings refused with a
400 that says what to send), the decoded strings scrubbed (escapes and byte-order marks cannot
hide a secret or a sensitive file), lone surrogates and deep nesting refused with 400, secrets
cut by the cursor scrubbed in all three dialects, a body asking too much work refused with 413,
and a large body scrubbed off the event loop."""

import asyncio
import json
import time

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from service.middleware import request_scrubbing
from service.middleware.request_scrubbing import ScrubRequestBody
from service.secrets.scrubber import Scrubber

AWS = "AKIAQWERTYUIOPASDFGH"
GITHUB = "ghp_" + "aB3dE5fG7h" * 3 + "aB3dE5"


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        return {
            "body": await request.json(),
            "sensitive": getattr(request.state, "sensitive_file", False),
        }

    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    app.add_middleware(ScrubRequestBody)
    return app


@pytest.fixture(scope="module")
def client():
    return TestClient(make_app())


def post(client, content: bytes):
    return client.post("/echo", content=content, headers={"content-type": "application/json"})


def refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert all(w in message for w in words), message
    return message


BODY = {"segments": {"prefix": f'key = "{AWS}"\n', "suffix": "\n", "filepath": "app/.env"}}


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"])
def test_utf16_and_utf32_bodies_are_refused(client, encoding):
    """Python's JSON parser would read them; the scrubber must not be skipped: 400."""
    response = post(client, json.dumps(BODY).encode(encoding))
    message = refused(response, 400, "UTF-8")
    assert AWS not in response.text and "UTF-16 or UTF-32" in message


def test_bytes_that_are_not_utf8_are_refused(client):
    refused(post(client, b'{"prompt": "\xff\xfe x"}'), 400, "not valid UTF-8", "byte 12")


def test_escapes_after_a_byte_order_mark_are_decoded_then_scrubbed(client):
    """A UTF-8 BOM is accepted (RFC 8259 lets a parser ignore it), and the JSON escapes are
    decoded before scrubbing, so `\\u0041KIA...` is the AWS key it spells, and `.\\u0065nv` the
    sensitive file it names."""
    escaped = json.dumps(BODY, ensure_ascii=True).replace("AKIA", "\\u0041KIA")
    escaped = escaped.replace(".env", ".\\u0065nv")
    assert AWS not in escaped
    response = post(client, b"\xef\xbb\xbf" + escaped.encode())
    assert response.status_code == 200, response.text
    assert AWS not in response.text and "<SECRET_1>" in response.text
    assert response.json()["sensitive"] is True


def test_the_handler_reads_what_was_scrubbed(client):
    """Every string, keys included, reaches the handler scrubbed; numbers and the rest as sent."""
    body = {"prompt": AWS, AWS: [1, 2.5, None, True, {"deep": GITHUB}], "n": 3}
    echoed = post(client, json.dumps(body).encode()).json()["body"]
    assert AWS not in json.dumps(echoed) and GITHUB not in json.dumps(echoed)
    assert echoed == {
        "prompt": "<SECRET_1>",
        "<SECRET_1>": [1, 2.5, None, True, {"deep": "<SECRET_2>"}],
        "n": 3,
    }


def test_a_lone_surrogate_is_refused_with_400(client):
    refused(post(client, b'{"prompt": "x \\ud800 y"}'), 400, "surrogate")
    # A pair is one character, and welcome.
    assert post(client, b'{"prompt": "\\ud83d\\ude00"}').json()["body"] == {"prompt": "\U0001f600"}


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deep_nesting_is_refused_with_400(client, depth):
    body = b'{"prompt": ' + b"[" * depth + b"]" * depth + b"}"
    refused(post(client, body), 400, "nest")


def test_invalid_json_is_refused_with_its_position(client):
    refused(post(client, b'{"prompt": '), 400, "not valid JSON", "line 1")
    refused(post(client, b'{"seed": 1' + b"0" * 5000 + b"}"), 400, "4300 digits")


def cut_in_two(secret: str) -> tuple[str, str]:
    """Code before and after a cursor placed in the middle of `secret`."""
    half = len(secret) // 2
    return f'TOKEN = "{secret[:half]}', f'{secret[half:]}"\nprint(TOKEN)\n'


@pytest.mark.parametrize(
    "dialect, body",
    [
        ("tabby", lambda a, b: {"segments": {"prefix": a, "suffix": b}}),
        ("openai", lambda a, b: {"prompt": a, "suffix": b}),
        ("openai-list", lambda a, b: {"prompt": ["x = 1\n", a], "suffix": b}),
        ("llama.cpp", lambda a, b: {"input_prefix": a, "input_suffix": b}),
        ("llama.cpp-prompt", lambda a, b: {"input_prefix": "", "prompt": a, "input_suffix": b}),
    ],
)
def test_a_secret_cut_by_the_cursor_never_reaches_the_handler(client, dialect, body):
    before, after = cut_in_two(GITHUB)
    echoed = json.dumps(post(client, json.dumps(body(before, after)).encode()).json()["body"])
    for piece in (GITHUB[:12], GITHUB[-12:]):
        assert piece not in echoed, dialect
    assert "<SECRET_1>" in echoed


def test_a_body_asking_too_much_work_is_refused_with_413(client):
    dense = json.dumps({"prompt": "key " * 50_000}).encode()
    refused(post(client, dense), 413, "send less context")


def test_a_large_body_is_scrubbed_off_the_event_loop(monkeypatch):
    """While a large body is scrubbed (made slow here: 0.6 s of Python work), the loop answers
    other requests at once."""

    class SlowScrubber(Scrubber):
        def scrub(self, text):
            if len(text) > 100_000:
                deadline = time.perf_counter() + 0.6
                while time.perf_counter() < deadline:  # CPU work, as a hostile scrub would be
                    pass
            return super().scrub(text)

    monkeypatch.setattr(request_scrubbing, "Scrubber", SlowScrubber)

    async def run() -> tuple[float, float]:
        transport = httpx.ASGITransport(app=make_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            big = http.post("/echo", json={"prompt": "x = 1\n" * 20_000})
            slow = asyncio.create_task(big)
            await asyncio.sleep(0.1)  # the scrub is under way
            start = time.perf_counter()
            assert (await http.get("/v1/health")).status_code == 200
            health_s = time.perf_counter() - start
            assert (await slow).status_code == 200
            return health_s, time.perf_counter() - start

    health_s, scrub_s = asyncio.run(run())
    assert scrub_s > 0.3 and health_s < 0.2, (health_s, scrub_s)
