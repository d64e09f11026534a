"""Slow bodies against the real server: a client that sends its body a byte at a time (slowloris)
gets 408 once --body-timeout-s has passed since its headers, and its connection is closed;
dozens of them at once stall no one else. Uvicorn has no such deadline: without it a trickling
client holds its connection for as long as it likes."""

import json
import socket
import threading
import time

import httpx
import pytest

from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.service_process import running_server

BODY_TIMEOUT_S = 1.0
BODY = json.dumps({"prompt": "def add(a, b):\n    return a +", "max_tokens": 4}).encode()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    model = build_scripted_checkpoint(tmp_path_factory.mktemp("slow-body") / "model")
    with running_server(model, "--body-timeout-s", str(BODY_TIMEOUT_S)) as base_url:
        yield base_url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def trickle(connection: socket.socket, head: bytes, body: bytes, every_s: float) -> bytes:
    """Send the head, then the body a byte at a time, until the server answers; its answer."""
    connection.sendall(head)
    connection.settimeout(every_s)
    for byte in body:
        try:
            connection.sendall(bytes([byte]))
            reply = connection.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        return reply + read_until_closed(connection)
    return read_until_closed(connection)


def read_until_closed(connection: socket.socket) -> bytes:
    """What the server sends until it closes the connection. A reset (the client's bytes still
    arriving after the server closed) ends it too, and may drop the unread answer."""
    connection.settimeout(5)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def head(length_header: bytes) -> bytes:
    return (
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + length_header
        + b"\r\n\r\n"
    )


def assert_408(reply: bytes) -> None:
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 408 Request Timeout", reply[:200]
    message = json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    assert "--body-timeout-s" in message and f"{BODY_TIMEOUT_S:g} s" in message, message


def test_a_body_sent_a_byte_at_a_time_gets_408_and_a_closed_connection(url):
    with connect(url) as connection:
        start = time.monotonic()
        # 0.1 s a byte: the body would take seconds, well past the deadline.
        reply = trickle(connection, head(b"Content-Length: %d" % len(BODY)), BODY, every_s=0.1)
        took = time.monotonic() - start
    assert_408(reply)  # read_until_closed returned: the server closed the connection
    assert BODY_TIMEOUT_S <= took < BODY_TIMEOUT_S + 2, took


def test_a_chunked_body_trickled_gets_408(url):
    chunks = b"".join(b"1\r\n" + bytes([byte]) + b"\r\n" for byte in BODY) + b"0\r\n\r\n"
    with connect(url) as connection:
        reply = trickle(connection, head(b"Transfer-Encoding: chunked"), chunks, every_s=0.05)
    assert_408(reply)


def test_many_slow_bodies_stall_no_one_else(url):
    replies: list[tuple[bytes, float]] = []

    def slow_client() -> None:
        with connect(url) as connection:
            start = time.monotonic()
            length = b"Content-Length: %d" % len(BODY)
            reply = trickle(connection, head(length), BODY, every_s=0.2)
            replies.append((reply, time.monotonic() - start))

    slow_clients = [threading.Thread(target=slow_client) for _ in range(40)]
    for thread in slow_clients:
        thread.start()
    try:
        time.sleep(0.3)  # every slow client is connected and trickling
        start = time.monotonic()
        response = httpx.post(f"{url}/v1/completions", json=json.loads(BODY), timeout=10)
        assert response.status_code == 200, response.text
        assert time.monotonic() - start < 0.5 * BODY_TIMEOUT_S
    finally:
        for thread in slow_clients:
            thread.join(timeout=30)
    assert len(replies) == 40
    for reply, took in replies:
        # Ended by the server at the deadline: a 408, or a reset that dropped it unread.
        assert took < BODY_TIMEOUT_S + 2, took
        if reply:
            assert_408(reply)
    assert sum(1 for reply, _ in replies if reply) >= 20
