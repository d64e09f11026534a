"""Auth, rate limits, request ids, request scrubbing and JSON access logs, on a small app
built from the same middleware and dependencies the service uses."""

import asyncio
import io
import json
import logging
import os
import random
import signal

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from service.logging_setup import JsonFormatter
from service.middleware.auth import Authenticate, TokenAuth, load_tokens, require_tenant
from service.middleware.rate_limit import RateLimiter, enforce_rate_limit
from service.middleware.request_id import RequestContextMiddleware
from service.middleware.request_scrubbing import ScrubRequestBody
from tests.support.secret_corpus import planted_secrets


def make_app(
    auth: TokenAuth | None,
    limiter: RateLimiter | None = None,
    failure_limiter: RateLimiter | None = None,
) -> FastAPI:
    app = FastAPI()
    app.state.auth = auth
    app.state.rate_limiter = limiter

    @app.post("/echo", dependencies=[Depends(enforce_rate_limit)])
    async def echo(request: Request, tenant: str = Depends(require_tenant)) -> dict:
        request.state.cache = "miss"
        return {
            "tenant": tenant,
            "body": await request.json(),
            "sensitive": getattr(request.state, "sensitive_file", False),
        }

    app.add_middleware(ScrubRequestBody)
    app.add_middleware(Authenticate, auth=auth, failure_limiter=failure_limiter)
    app.add_middleware(RequestContextMiddleware)
    return app


@pytest.fixture
def tokens_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# token tenant\ntok-alpha-123 alpha\n\n  tok-beta-456   beta  \n")
    return path


@pytest.fixture
def logs():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def test_tokens_file(tokens_file, tmp_path):
    assert load_tokens(tokens_file) == {"tok-alpha-123": "alpha", "tok-beta-456": "beta"}
    bad = tmp_path / "bad"
    bad.write_text("tok-only-no-tenant\n")
    with pytest.raises(ValueError, match="bad:1") as error:
        load_tokens(bad)
    assert "tok-only" not in str(error.value)


def test_bearer_auth(tokens_file):
    client = TestClient(make_app(TokenAuth.from_file(tokens_file)))
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "tok-alpha-123"},
        {"Authorization": "Basic tok-alpha-123"},
        {"Authorization": "Bearer "},
    ):
        response = client.post("/echo", json={}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    for token, tenant in (("tok-alpha-123", "alpha"), ("tok-beta-456", "beta")):
        response = client.post("/echo", json={}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json()["tenant"] == tenant
    # The scheme in any case, any blanks around the parts (RFC 7235).
    for header in ("bearer tok-alpha-123", "BEARER  tok-alpha-123 ", "Bearer\ttok-alpha-123"):
        response = client.post("/echo", json={}, headers={"Authorization": header})
        assert response.status_code == 200 and response.json()["tenant"] == "alpha", header
    # Auth off: everyone is the anonymous tenant.
    assert TestClient(make_app(None)).post("/echo", json={}).json()["tenant"] == "anonymous"


def test_rate_limit_per_token(tokens_file):
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.retry_after("a", now[0]) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert limiter.retry_after("b", now[0]) == 0.0  # another caller has its own bucket
    assert limiter.retry_after("a", 0.5) == 0.0  # refilled at 2/s

    client = TestClient(make_app(TokenAuth.from_file(tokens_file), RateLimiter(1.0, burst=2)))
    alpha = {"Authorization": "Bearer tok-alpha-123"}
    codes = [client.post("/echo", json={}, headers=alpha).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    limited = client.post("/echo", json={}, headers=alpha)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 2
    beta = {"Authorization": "Bearer tok-beta-456"}
    assert client.post("/echo", json={}, headers=beta).status_code == 200


def test_rate_limit_is_per_tenant_however_the_header_is_spelled(tokens_file):
    client = TestClient(make_app(TokenAuth.from_file(tokens_file), RateLimiter(0.01, burst=3)))
    spellings = ["Bearer tok-alpha-123", "bearer tok-alpha-123", "BEARER tok-alpha-123"]
    spellings += ["Bearer  tok-alpha-123", "Bearer tok-alpha-123 "]
    codes = [
        client.post("/echo", json={}, headers={"Authorization": h}).status_code for h in spellings
    ]
    assert codes == [200, 200, 200, 429, 429]


def test_failed_token_checks_are_limited_per_client_address(tokens_file):
    """Past its failures' budget an address gets 429 whatever token it sends, so guessing is
    slow; the budget refills with time."""
    failures = RateLimiter(rate_per_s=0.01, burst=3)
    client = TestClient(make_app(TokenAuth.from_file(tokens_file), failure_limiter=failures))
    guesses = [f"Bearer guess-{i}" for i in range(5)]
    codes = [
        client.post("/echo", json={}, headers={"Authorization": g}).status_code for g in guesses
    ]
    assert codes == [401, 401, 401, 429, 429]
    locked = client.post("/echo", json={}, headers={"Authorization": "Bearer tok-alpha-123"})
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
    assert "invalid token" in locked.json()["error"]["message"]
    assert failures.wait_s("testclient", now=10**9) == 0.0  # refilled, later


def test_an_unauthenticated_body_is_never_read(tokens_file):
    """401 from the headers alone: the app never asks the server for the body."""
    app = make_app(TokenAuth.from_file(tokens_file))
    sent: list[dict] = []
    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b'{"a": 1}', "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"1000000")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401 and reads == 0


def test_a_public_path_never_reads_an_unauthenticated_body(tokens_file):
    """Health and metrics answer anyone, but a caller without a token cannot make the server
    read (and scrub) a body there either; with a token, the body is there."""
    bodies = []

    async def app(scope, receive, send):
        bodies.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        return {"type": "http.request", "body": b"x" * 1000, "more_body": False}

    async def send(message):
        pass

    guarded = Authenticate(app, TokenAuth.from_file(tokens_file), frozenset({"/v1/health"}))
    for headers in ([], [(b"authorization", b"Bearer tok-alpha-123")]):
        scope = {"type": "http", "method": "POST", "path": "/v1/health", "headers": headers}
        asyncio.run(guarded(scope, receive, send))
    assert bodies == [b"", b"x" * 1000]


def test_a_revoked_token_is_refused_without_a_restart(tokens_file):
    client = TestClient(make_app(TokenAuth.from_file(tokens_file)))
    alpha = {"Authorization": "Bearer tok-alpha-123"}
    assert client.post("/echo", json={}, headers=alpha).status_code == 200
    tokens_file.write_text("tok-beta-456 beta\n")  # alpha revoked
    assert client.post("/echo", json={}, headers=alpha).status_code == 401
    tokens_file.write_text("tok-beta-456 beta\nbroken line with three\n")
    beta = {"Authorization": "Bearer tok-beta-456"}
    assert client.post("/echo", json={}, headers=beta).status_code == 200  # kept, logged


def test_sighup_reloads_the_tokens_file(tokens_file):
    """SIGHUP alone (the file's size, time and inode unchanged) reloads it."""
    auth = TokenAuth.from_file(tokens_file)
    before = os.stat(tokens_file)
    tokens_file.write_text(tokens_file.read_text().replace("tok-alpha-123", "tok-gamma-123"))
    os.utime(tokens_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert auth.tenant("Bearer tok-alpha-123") == "alpha"  # no change seen by stat

    async def hang_up() -> None:
        auth.reload_on_sighup()
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.1)
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    asyncio.run(hang_up())
    assert auth.tenant("Bearer tok-alpha-123") is None
    assert auth.tenant("Bearer tok-gamma-123") == "alpha"


def test_body_scrubbed_before_the_handler_and_logs_are_json(logs):
    client = TestClient(make_app(None))
    planted = planted_secrets(random.Random(4))
    body = {
        "language": "python",
        "segments": {
            "prefix": "\n".join(p.line for p in planted[:10]),
            "suffix": planted[10].line,
            "declarations": [
                {"filepath": "app/keys.py", "body": planted[11].line},
                {"filepath": "deploy/.env", "body": "NOTHING_SECRET_BUT_SENSITIVE=1"},
            ],
            "clipboard": planted[12].line,
        },
    }
    response = client.post("/echo", json=body, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "req-42"
    echoed = response.json()["body"]
    text = json.dumps(echoed)
    for p in planted[:13]:
        assert p.secret not in text, p.family
    assert "<SECRET_" in echoed["segments"]["clipboard"]
    assert [d["filepath"] for d in echoed["segments"]["declarations"]] == ["app/keys.py"]
    assert response.json()["sensitive"] is False

    own_sensitive = {"segments": {"prefix": "A=1\n", "filepath": "config/.env.production"}}
    assert client.post("/echo", json=own_sensitive).json()["sensitive"] is True

    # A generated id for a client without one, or with a malformed one.
    generated = client.post("/echo", json={}, headers={"X-Request-ID": "bad id\n"})
    assert len(generated.headers["x-request-id"]) == 32

    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    assert len(lines) == 3
    first = lines[0]
    assert first["request_id"] == "req-42" and first["tenant"] == "anonymous"
    assert first["status"] == 200 and first["cache"] == "miss" and first["duration_ms"] > 0
    assert first["request_bytes"] > 0 and first["response_bytes"] > 0
    assert "prefix" not in logs.getvalue()


def test_log_messages_are_scrubbed(logs):
    secret = planted_secrets(random.Random(9))[0]
    logging.getLogger("service.access").warning("oops: %s", secret.line)
    assert secret.secret not in logs.getvalue() and "<SECRET_1>" in logs.getvalue()
