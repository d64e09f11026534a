"""End to end, a real server with bearer auth, under hostile requests: a request without a
valid token is refused before its body is read (it never sends one here), /v1/health answers
at once while megabyte bodies built to make the secret rules work hard are scrubbed, a body in
UTF-16 is refused, and a revoked token is refused without a restart, after an edit of the
tokens file or a SIGHUP."""

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.service_process import running_server

ALPHA = {"Authorization": "Bearer tok-alpha-0001"}
TOKENS = "tok-alpha-0001 alpha\ntok-beta-0002 beta\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("hostile")
    tokens = workdir / "tokens"
    tokens.write_text(TOKENS)
    model = build_scripted_checkpoint(workdir / "model")
    with running_server(model, "--auth-tokens-file", str(tokens)) as url:
        yield url, tokens


def server_pid(url: str) -> int:
    """The server process listening on the URL's port (from its command line)."""
    port = url.rsplit(":", 1)[1].encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and b"--port" in argv and argv[argv.index(b"--port") + 1] == port:
            return int(proc.name)
    raise LookupError(f"no server process for {url}")


def test_no_token_is_refused_before_the_body_is_read(server):
    """Headers announce a megabyte; no body byte is ever sent. The 401 comes anyway."""
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        start = time.perf_counter()
        reply = connection.recv(65536)
    assert reply.startswith(b"HTTP/1.1 401"), reply[:80]
    assert time.perf_counter() - start < 2


def hostile_body() -> bytes:
    """~900 KB that once took hours to scrub (a run of `KEY` is quadratic for a line-anchored
    rule that backtracks) and still is among the slowest (long `.env` lines)."""
    prefix = "KEY" * 100_000 + "\n" + "A_KEY=" * 50_000 + "\n" + "key " * 50_000
    return json.dumps({"segments": {"prefix": prefix, "suffix": "\n"}}).encode()


def test_health_answers_while_hostile_bodies_are_scrubbed(server):
    url, _ = server
    body = hostile_body()
    statuses: list[int] = []

    def send_hostile() -> None:
        headers = {**ALPHA, "content-type": "application/json"}
        response = httpx.post(f"{url}/v1/completions", content=body, headers=headers, timeout=120)
        statuses.append(response.status_code)

    senders = [threading.Thread(target=send_hostile) for _ in range(4)]
    for sender in senders:
        sender.start()
    latencies = []
    with httpx.Client(timeout=10) as client:
        while any(s.is_alive() for s in senders):
            start = time.perf_counter()
            assert client.get(f"{url}/v1/health").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
    for sender in senders:
        sender.join()
    print(f"\nhealth during hostile scrubs: {len(latencies)} checks, max {max(latencies):.3f} s")
    # Refused for the work it asks (413), or scrubbed and answered: never a 5xx.
    assert sorted(set(statuses)) in ([200], [413], [200, 413]), statuses
    assert max(latencies) < 0.5, latencies


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_body_in_another_encoding_is_refused(server, encoding):
    url, _ = server
    body = {"segments": {"prefix": "import os\n", "suffix": "\n", "filepath": ".env"}}
    response = httpx.post(
        f"{url}/v1/completions",
        content=json.dumps(body).encode(encoding),
        headers={**ALPHA, "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]["message"]


def tabby(url: str, headers: dict) -> int:
    body = {"language": "python", "segments": {"prefix": "x = 1\n", "suffix": "\n"}}
    return httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=30).status_code


def test_a_revoked_token_is_refused_without_a_restart(server):
    url, tokens = server
    assert tabby(url, ALPHA) == 200
    tokens.write_text("tok-beta-0002 beta\n")  # alpha revoked: the file changed
    assert tabby(url, ALPHA) == 401
    tokens.write_text(TOKENS)
    assert tabby(url, ALPHA) == 200

    # An edit that keeps the file's size and time: only SIGHUP makes the server read it.
    before = os.stat(tokens)
    tokens.write_text(TOKENS.replace("tok-alpha-0001", "tok-alpha-0009"))
    os.utime(tokens, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert tabby(url, ALPHA) == 200
    os.kill(server_pid(url), signal.SIGHUP)
    deadline = time.monotonic() + 5
    while tabby(url, ALPHA) != 401:
        assert time.monotonic() < deadline, "SIGHUP did not reload the tokens file"
        time.sleep(0.1)
    assert tabby(url, {"Authorization": "Bearer tok-alpha-0009"}) == 200
