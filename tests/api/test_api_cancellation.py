"""Cancellation, overload and deadlines against the real server process over real HTTP.

The long request runs on tests/support/slow_checkpoint.py's model for many times the 3 s deadline, so a
test can act while it runs.
"""

import asyncio
import json
import time

import httpx
import pytest

from tests.support.service_process import running_server
from tests.support.slow_checkpoint import LONG, SLOW_SERVER_FLAGS, build_slow_checkpoint

TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    model = build_slow_checkpoint(tmp_path_factory.mktemp("slow") / "model")
    flags = ["--max-num-seqs", "2", "--max-waiting", "0", "--max-n", "3", *SLOW_SERVER_FLAGS]
    with running_server(model, *flags, "--request-timeout-s", str(TIMEOUT_S)) as url:
        yield url


def counter(base_url: str, name: str, **labels) -> float:
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_for_counter(base_url: str, name: str, above: float, within_s: float, **labels) -> float:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = counter(base_url, name, **labels)
        if value > above:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name}{labels} stayed at {above} for {within_s} s")


def both_slots_free(base_url: str) -> None:
    """Two short requests at once are admitted: nothing cancelled still holds a slot."""

    async def two():
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            body = {**LONG, "max_tokens": 4}
            return await asyncio.gather(*(client.post("/v1/completions", json=body) for _ in "ab"))

    assert [r.status_code for r in asyncio.run(two())] == [200, 200]


def test_stream_disconnect_aborts_the_request(base_url):
    before = counter(base_url, "engine_cancellations_total", cause="disconnect")
    with httpx.Client(base_url=base_url, timeout=30) as client:
        with client.stream("POST", "/v1/completions", json={**LONG, "stream": True}) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        started = time.monotonic()
    wait_for_counter(base_url, "engine_cancellations_total", before, 2.0, cause="disconnect")
    assert time.monotonic() - started < 2.0
    both_slots_free(base_url)


def test_non_stream_disconnect_aborts_the_request(base_url):
    before = counter(base_url, "engine_cancellations_total", cause="disconnect")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base_url}/v1/completions", json=LONG, timeout=0.5)
    wait_for_counter(base_url, "engine_cancellations_total", before, 2.0, cause="disconnect")
    both_slots_free(base_url)


def test_newer_request_of_the_session_aborts_the_older(base_url):
    before = counter(base_url, "engine_cancellations_total", cause="superseded")
    headers = {"X-Session-Id": "editor-1"}

    async def keystrokes():
        async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as client:
            older = asyncio.create_task(client.post("/v1/completions", json=LONG))
            await asyncio.sleep(0.5)
            started = time.monotonic()
            newer = await client.post("/v1/completions", json={**LONG, "max_tokens": 4})
            return await older, newer, time.monotonic() - started

    older, newer, elapsed = asyncio.run(keystrokes())
    assert newer.status_code == 200 and newer.json()["choices"][0]["finish_reason"] == "length"
    # The older one came back early and says it was superseded: never a 200 with a cut answer.
    assert older.status_code == 499
    assert "superseded" in older.json()["error"]["message"]
    assert elapsed < 2.0
    assert counter(base_url, "engine_cancellations_total", cause="superseded") == before + 1


def test_superseded_stream_ends_with_an_error_event_not_a_finish(base_url):
    headers = {"X-Session-Id": "editor-2"}

    async def keystrokes():
        async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as client:
            async with client.stream(
                "POST", "/v1/completions", json={**LONG, "stream": True}
            ) as older:
                lines = older.aiter_lines()
                assert (await anext(lines)).startswith("data: ")
                newer = await client.post("/v1/completions", json={**LONG, "max_tokens": 4})
                events = [line async for line in lines if line]
            return events, newer

    events, newer = asyncio.run(keystrokes())
    assert newer.status_code == 200
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] == 499 and "superseded" in error["message"]
    assert not any('"finish_reason": "stop"' in event for event in events)


def test_full_queue_gets_503_with_retry_after(base_url):
    response = httpx.post(f"{base_url}/v1/completions", json={**LONG, "n": 3}, timeout=30)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert "retry" in response.json()["error"]["message"]
    both_slots_free(base_url)  # the two choices admitted before the refusal were released


def test_deadline_returns_what_there_is(base_url):
    started = time.monotonic()
    response = httpx.post(f"{base_url}/v1/completions", json=LONG, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert TIMEOUT_S - 0.1 < elapsed < TIMEOUT_S + 1.5
    both_slots_free(base_url)


def test_stream_deadline_ends_the_stream(base_url):
    started = time.monotonic()
    with httpx.stream(
        "POST", f"{base_url}/v1/completions", json={**LONG, "stream": True}, timeout=30
    ) as response:
        events = [line for line in response.iter_lines() if line]
    elapsed = time.monotonic() - started
    assert events[-1] == "data: [DONE]"
    assert '"finish_reason": "length"' in events[-2]
    assert len(events) > 10  # text streamed until the deadline
    assert TIMEOUT_S - 0.1 < elapsed < TIMEOUT_S + 1.5
    both_slots_free(base_url)
