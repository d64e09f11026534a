"""Faults under load, against the real server process and a real redis-server: the engine
thread killed, Redis killed, hung (SIGSTOP) and fed garbage, a burst of clients walking away
mid-stream, SIGTERM. Whatever happens, nothing promised is lost: every request gets a complete
answer or a clear retryable error (503 + Retry-After), never a silent empty or cut 200.
"""

import asyncio
import json
import os
import signal
import subprocess
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.faulty_service import KILL_ENGINE_SIGNAL
from tests.support.redis_server import RedisServer
from tests.support.scripted_checkpoint import SCRIPT, build_scripted_checkpoint
from tests.support.service_process import server_process
from tests.support.slow_checkpoint import LONG, SLOW_SERVER_FLAGS, build_slow_checkpoint

# Generous backstops, far below the 30 s request timeout a stuck request would wait out.
FAIL_FAST_S = 8.0
EXIT_S = 15.0


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    return build_slow_checkpoint(tmp_path_factory.mktemp("slow") / "model")


@pytest.fixture(scope="module")
def scripted_model(tmp_path_factory):
    return build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model")


def metric(url: str, name: str, **labels) -> float:
    """The sum of the samples of `name` with these labels (0 when there are none)."""
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_metric(url: str, name: str, at_least: float) -> float:
    """The metric once it reaches `at_least`, or its last value after FAIL_FAST_S."""
    deadline = time.monotonic() + FAIL_FAST_S
    while (value := metric(url, name)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def assert_retryable(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    message = response.json()["error"]["message"]
    assert all(w in message for w in words), message


def assert_complete(response: httpx.Response, max_tokens: int) -> None:
    """A 200 that is the whole answer: every token asked for (the slow model never stops)."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"]["completion_tokens"] == max_tokens, body
    assert body["choices"][0]["finish_reason"] == "length" and body["choices"][0]["text"]


async def stream_events(client: httpx.AsyncClient, body: dict, started: asyncio.Event) -> list:
    """The stream's data events, in order; `started` is set at the first."""
    events = []
    async with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                started.set()
    return events


def assert_ended_with_retryable_error(events: list, *words: str) -> None:
    """A stream the server had to stop: its text so far, an error event saying so, [DONE]."""
    assert events[-1] == "[DONE]", events[-3:]
    error = json.loads(events[-2])["error"]
    assert error["code"] == 503 and all(w in error["message"] for w in words), error
    assert not any('"finish_reason": "stop"' in e for e in events)  # never passed off as done


def wait_exit(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {EXIT_S} s")


# --- the engine thread dies ---------------------------------------------------------------------


def test_engine_thread_killed_mid_load(slow_model):
    """Requests in flight get 503 + Retry-After at once, not 200s with nothing after the 30 s
    timeout; health says 503 while the process lives; it exits 70 for the orchestrator."""
    flags = [*SLOW_SERVER_FLAGS, "--max-num-seqs", "4", "--max-waiting", "8"]
    with server_process(slow_model, *flags, module="tests.support.faulty_service") as server:

        async def load():
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                done = await client.post("/v1/completions", json={**LONG, "max_tokens": 8})
                started = asyncio.Event()
                stream = asyncio.create_task(stream_events(client, LONG, started))
                posts = [asyncio.create_task(client.post("/v1/completions", json=LONG))]
                posts += [asyncio.create_task(client.post("/infill", json={"input_prefix": "x"}))]
                await started.wait()
                await asyncio.sleep(0.3)
                server.process.send_signal(KILL_ENGINE_SIGNAL)
                killed = time.monotonic()
                responses = await asyncio.gather(*posts)
                events = await stream
                return done, responses, events, time.monotonic() - killed

        done, (long_post, infill), events, elapsed = asyncio.run(load())
        assert_complete(done, 8)
        assert_retryable(long_post, "engine failed")
        # The short infill either finished before the kill or was failed with it.
        if infill.status_code == 200:
            assert infill.json()["stop_type"] in ("eos", "word", "limit")
        else:
            assert_retryable(infill)
        assert_ended_with_retryable_error(events, "engine failed")
        assert elapsed < FAIL_FAST_S
        try:  # until the process is gone, it says it is not ready and refuses work
            health = httpx.get(f"{server.url}/v1/health", timeout=5)
            assert_retryable(health, "engine failed")
            assert_retryable(httpx.post(f"{server.url}/v1/completions", json=LONG, timeout=5))
        except httpx.TransportError:
            pass  # already exited
        assert wait_exit(server.process) == 70
        assert "engine thread died" in server.log()


def test_a_dead_engine_makes_health_and_completions_503(scripted_model):
    """In-process, so the server cannot have exited before the checks: once the engine thread
    dies, readiness and every completion route say 503 + Retry-After."""
    with TestClient(create_app(Settings(model=scripted_model, device="cpu"))) as client:
        body = {"input_prefix": "def add(a, b):\n    return a +", "input_suffix": "\n"}
        assert client.post("/infill", json=body).status_code == 200
        engine = client.app.state.serving.engine

        def dies(block: bool) -> None:
            raise RuntimeError("a bug in the engine's loop")

        engine._drain_commands = dies
        engine.abort("wake-up")  # the idle thread wakes, loops and dies
        deadline = time.monotonic() + FAIL_FAST_S
        while engine.alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert_retryable(client.get("/v1/health"), "engine failed")
        assert_retryable(client.post("/infill", json=body), "engine failed")
        assert_retryable(client.post("/v1/completions", json={"prompt": "x"}), "engine failed")


# --- Redis --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def cached_server(scripted_model, redis_server):
    with server_process(scripted_model, "--redis-url", redis_server.url) as server:
        yield server


def prompts(n: int) -> list[dict]:
    """Tabby requests whose answer is the scripted text; each distinct, so some hit the cache
    and some do not."""
    return [
        {
            "language": "python",
            "segments": {"prefix": f"def add_{i}(a, b):\n    return a +", "suffix": "\n"},
            "stop_mode": "none",
        }
        for i in range(n)
    ]


def load_during(url: str, seconds: float, fault) -> list[tuple[httpx.Response, float]]:
    """Eight clients sending requests for `seconds`, `fault()` called a quarter of the way in;
    every (response, seconds it took)."""

    async def client_loop(client, bodies, stop_at, results):
        i = 0
        while time.monotonic() < stop_at:
            started = time.monotonic()
            response = await client.post("/v1/completions", json=bodies[i % len(bodies)])
            results.append((response, time.monotonic() - started))
            i += 1

    async def run():
        results: list = []
        bodies = prompts(12)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            stop_at = time.monotonic() + seconds
            clients = [
                asyncio.create_task(client_loop(client, bodies[k:] + bodies[:k], stop_at, results))
                for k in range(8)
            ]
            await asyncio.sleep(seconds / 4)
            await asyncio.to_thread(fault)
            await asyncio.gather(*clients)
        return results

    return asyncio.run(run())


def wait_until_cache_hits(url: str) -> None:
    hits = metric(url, "completion_cache_lookups_total", outcome="hit")
    deadline = time.monotonic() + FAIL_FAST_S
    while metric(url, "completion_cache_lookups_total", outcome="hit") == hits:
        assert time.monotonic() < deadline, "the Redis cache never served a hit"
        assert httpx.post(f"{url}/v1/completions", json=prompts(1)[0]).status_code == 200
        time.sleep(0.1)


def assert_all_answered(results: list) -> None:
    assert len(results) > 8
    for response, seconds in results:
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["text"] == SCRIPT
        assert seconds < FAIL_FAST_S


def test_redis_killed_mid_load(cached_server, redis_server):
    try:
        assert_all_answered(load_during(cached_server.url, 2.0, redis_server.kill))
    finally:
        redis_server.start()


def test_redis_hung_mid_load(cached_server, redis_server):
    """A Redis that stops answering (SIGSTOP) costs each request at most its short timeout."""
    pid = redis_server.process.pid
    try:
        assert_all_answered(
            load_during(cached_server.url, 2.0, lambda: os.kill(pid, signal.SIGSTOP))
        )
    finally:
        os.kill(pid, signal.SIGCONT)


def test_redis_fed_garbage_mid_load(cached_server, redis_server):
    """Every value overwritten with garbage mid-load: misses, counted, then healed by stores."""
    url = cached_server.url
    wait_until_cache_hits(url)  # Redis may be back from an earlier test only after a back-off
    assert_all_answered(load_during(url, 1.0, lambda: None))  # fills the cache
    corrupt_before = metric(url, "completion_cache_corrupt_entries_total")
    admin = redis_server.client()
    garbage = [b"\xff\xfe", b"{", b"[" * 50_000, b'{"choices": [1], "finish_reasons": 2}']

    def overwrite_everything():
        keys = admin.keys("*")
        assert keys
        for n, key in enumerate(keys):
            admin.set(key, garbage[n % len(garbage)], px=60_000)

    assert_all_answered(load_during(url, 2.0, overwrite_everything))
    assert metric(url, "completion_cache_corrupt_entries_total") > corrupt_before


# --- clients walking away -----------------------------------------------------------------------


def test_burst_of_disconnects_mid_stream_returns_every_kv_block(slow_model):
    """Eight streams dropped at once: every request is aborted and the KV-blocks metric on
    /metrics falls back to 0 without another request to run a step."""
    flags = [*SLOW_SERVER_FLAGS, "--max-num-seqs", "8", "--max-waiting", "0"]
    with server_process(slow_model, *flags) as server:
        url = server.url
        disconnects = metric(url, "engine_cancellations_total", cause="disconnect")

        async def burst():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                streams = [
                    await client.send(
                        client.build_request(
                            "POST", "/v1/completions", json={**LONG, "stream": True}
                        ),
                        stream=True,
                    )
                    for _ in range(8)
                ]
                # Each line iterator is kept: a dropped one closes its response.
                lines = [response.aiter_lines() for response in streams]
                for response, stream_lines in zip(streams, lines, strict=True):
                    assert response.status_code == 200
                    await anext(stream_lines)  # every one is streaming
                used = await asyncio.to_thread(wait_for_metric, url, "engine_kv_blocks_used", 8)
                for response in streams:
                    await response.aclose()
                return used

        assert asyncio.run(burst()) >= 8  # a block at least for each stream
        deadline = time.monotonic() + FAIL_FAST_S
        while metric(url, "engine_kv_blocks_used") > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(url, "engine_kv_blocks_used") == 0
        assert metric(url, "engine_cancellations_total", cause="disconnect") == disconnects + 8
        assert_complete(httpx.post(f"{url}/v1/completions", json={**LONG, "max_tokens": 4}), 4)


# --- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_mid_load_drains(slow_model, redis_server):
    """Readiness 503 at once, new work 503 + Retry-After; requests that finish within the drain
    deadline are answered whole, the rest get 503 + Retry-After (a stream its error event and
    [DONE]); then the process exits 0."""
    drain_s = 3.0
    flags = [*SLOW_SERVER_FLAGS, "--max-num-seqs", "4", "--drain-timeout-s", str(drain_s)]
    flags += ["--redis-url", redis_server.url]
    with server_process(slow_model, *flags) as server:

        async def load():
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                started = asyncio.Event()
                stream = asyncio.create_task(stream_events(client, LONG, started))
                long_post = asyncio.create_task(client.post("/v1/completions", json=LONG))
                await started.wait()
                short = asyncio.create_task(
                    client.post("/v1/completions", json={**LONG, "max_tokens": 32})
                )
                await asyncio.sleep(0.2)
                server.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                await asyncio.sleep(0.3)
                health = await client.get("/v1/health")
                refused = await client.post("/v1/completions", json={**LONG, "max_tokens": 4})
                answers = await asyncio.gather(short, long_post, stream)
                return health, refused, answers, time.monotonic() - signalled

        health, refused, (short, long_post, events), elapsed = asyncio.run(load())
        assert_retryable(health, "shutting down")
        assert_retryable(refused, "shutting down")
        assert_complete(short, 32)
        assert_retryable(long_post, "shutting down")
        assert_ended_with_retryable_error(events, "shutting down")
        assert drain_s - 0.5 < elapsed < drain_s + FAIL_FAST_S
        assert wait_exit(server.process) == 0
        assert "Traceback" not in server.log()
