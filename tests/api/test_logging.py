"""Logs: canary secrets at every log level, in the message, its arguments, structured fields
(a request's path, its X-Request-ID), tracebacks and stacks, never reach the log; everything
Python prints on its own (a dying thread, such as the engine's, an uncaught exception, an
unraisable one, a warning) comes out as JSON lines too; a request's unhandled error is logged
with its request id."""

import io
import json
import logging
import sys
import threading
import warnings

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.logging_setup import configure_logging, request_id_var
from service.middleware.request_id import RequestContextMiddleware

AWS = "AKIAQWERTYUIOPASDFGH"
GITHUB = "ghp_" + "aB3dE5fG7h" * 3 + "aB3dE5"
CANARIES = (AWS, GITHUB)


@pytest.fixture
def log_stream(monkeypatch):
    """configure_logging as the server calls it, writing to a buffer; undone afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    for hook in ("excepthook", "unraisablehook", "stderr"):
        monkeypatch.setattr(sys, hook, getattr(sys, hook))
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    sys.stderr = stream
    configure_logging("DEBUG")
    yield stream
    logging.captureWarnings(False)
    root.handlers[:], level = saved
    root.setLevel(level)


def records(stream: io.StringIO) -> list[dict]:
    lines = stream.getvalue().splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is JSON


def assert_no_canary(stream: io.StringIO) -> None:
    text = stream.getvalue()
    for canary in CANARIES:
        for piece in (canary, canary[:12], canary[-12:]):
            assert piece not in text


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
def test_canaries_never_reach_the_log_at_any_level(log_stream, level):
    logger = logging.getLogger("service.test")
    fields = {
        "path": f"/v1/completions/{AWS}",
        "request": {"headers": [f"Bearer {GITHUB}"], "id": AWS},
        "status": 200,
    }
    token = request_id_var.set(f"id-{GITHUB}")
    try:
        try:
            raise ValueError(f"bad key {AWS}")
        except ValueError:
            logger.log(
                getattr(logging, level),
                "message %s with %r",
                AWS,
                {"token": GITHUB},
                exc_info=True,
                stack_info=True,
                extra={"fields": fields},
            )
    finally:
        request_id_var.reset(token)
    (entry,) = records(log_stream)
    assert entry["level"] == level and entry["status"] == 200
    assert "<SECRET_" in entry["msg"] and "<SECRET_" in entry["path"]
    assert "exc" in entry and "stack" in entry
    assert_no_canary(log_stream)


def test_a_dying_thread_is_logged_as_json(log_stream):
    def engine_loop():
        raise RuntimeError(f"engine crashed holding {AWS}")

    thread = threading.Thread(target=engine_loop, name="engine")
    thread.start()
    thread.join()
    (entry,) = records(log_stream)
    assert entry["level"] == "CRITICAL" and entry["thread"] == "engine"
    assert "RuntimeError" in entry["exc"]
    assert_no_canary(log_stream)


def test_uncaught_unraisable_and_warnings_are_logged_as_json(log_stream):
    try:
        raise KeyError(GITHUB)
    except KeyError:
        sys.excepthook(*sys.exc_info())

    class LeaksOnDelete:
        def __del__(self):
            raise ValueError(f"cleanup failed for {AWS}")

    LeaksOnDelete()  # its __del__ raises where nobody can catch it: sys.unraisablehook
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated key {AWS}", stacklevel=1)
    entries = records(log_stream)
    assert [e["logger"] for e in entries] == ["service.crash", "service.crash", "py.warnings"]
    assert_no_canary(log_stream)


def test_an_unhandled_error_is_logged_with_its_request_id(log_stream):
    app = FastAPI()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"handler failed on {AWS}")

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app, raise_server_exceptions=False).get(
        "/boom", headers={"X-Request-ID": "req-7"}
    )
    assert response.status_code == 500 and "X-Request-ID" in response.json()["error"]["message"]
    entries = [e for e in records(log_stream) if e["logger"] == "service.access"]
    assert [e["msg"] for e in entries] == ["unhandled error", "request"]
    assert all(e["request_id"] == "req-7" for e in entries)
    assert "RuntimeError" in entries[0]["exc"] and entries[1]["status"] == 500
    assert_no_canary(log_stream)


def test_a_secret_shaped_request_id_is_replaced(log_stream):
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict:
        return {}

    app.add_middleware(RequestContextMiddleware)
    response = TestClient(app).get("/ok", headers={"X-Request-ID": GITHUB})
    assert response.headers["x-request-id"] != GITHUB
    assert len(response.headers["x-request-id"]) == 32
    assert_no_canary(log_stream)
