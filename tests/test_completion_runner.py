"""The completion runner's promise: a complete answer or a clear error, never an empty 200 that
looks like a completion. An engine that gives no token before the deadline (a request queued
behind others the whole time) is a 503 + Retry-After, for a whole answer and for a stream."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.api.completion_runner import CompletionRunner, Job
from service.api.errors import ApiError
from service.engine import RequestOutput, SamplingParams
from service.prompt.builder import Prompt

DEADLINE_S = 0.2


class QueuedForever:
    """An engine whose requests wait in its queue past any deadline."""

    def generate(self, prompt_token_ids, params, request_id, session_id, cache_salt=None):
        return self.never_scheduled()

    async def never_scheduled(self) -> AsyncIterator[RequestOutput]:
        await asyncio.Event().wait()
        yield  # an async generator that never gets here

    def abort(self, request_id: str) -> None:
        pass


class NotDisconnected:
    async def receive(self) -> dict:
        await asyncio.Event().wait()
        return {}


def job() -> Job:
    prompt = Prompt([1, 2, 3], forced_prefix="", prefix="x = ", suffix="", newline="\n")
    params = SamplingParams(max_tokens=8)
    return Job("r", "acme", None, prompt, params, None, drop_overlap=False)


def assert_no_output_error(error: ApiError) -> None:
    assert error.status == 503 and error.retry_after_s >= 1
    assert "no output" in error.message and "retry" in error.message


def test_no_token_by_the_deadline_is_a_retryable_503():
    runner = CompletionRunner(QueuedForever())
    with pytest.raises(ApiError) as raised:
        asyncio.run(runner.generate(NotDisconnected(), [job()], DEADLINE_S))
    assert_no_output_error(raised.value)


def test_a_stream_with_nothing_by_the_deadline_ends_with_a_retryable_error():
    runner = CompletionRunner(QueuedForever())

    async def consume() -> list:
        jobs = [job()]
        return [delta async for delta in runner.stream(jobs, runner.start(jobs), DEADLINE_S)]

    with pytest.raises(ApiError) as raised:
        asyncio.run(consume())
    assert_no_output_error(raised.value)
