"""The completion runner's promise: a complete answer or a clear error, never an empty 200 that
looks like a completion. An engine that gives no token before the deadline (a request queued
behind others the whole time) is a 503 + Retry-After, for a whole answer and for a stream."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from service.api.errors import from_completion_error
from service.cache import LRUCache, SuggestionCache
from service.completion.errors import Aborted, Disconnected, NoOutput
from service.completion.runner import CompletionRunner, Job, decoding_key
from service.completion.sessions import EditorSession
from service.engine import RequestOutput, SamplingParams, async_engine
from service.prompt.builder import Prompt
from service.semantic.stopping import BlockEnd, LineEnd

DEADLINE_S = 0.2


class QueuedForever:
    """An engine whose requests wait in its queue past any deadline."""

    def generate(self, prompt_token_ids, params, request_id, cache_salt=None):
        return self.never_scheduled()

    async def never_scheduled(self) -> AsyncIterator[RequestOutput]:
        await asyncio.Event().wait()
        yield  # an async generator that never gets here

    def abort(self, request_id: str) -> None:
        pass


async def never_disconnected() -> None:
    await asyncio.Event().wait()


def job() -> Job:
    prompt = Prompt([1, 2, 3], forced_prefix="", prefix="x = ", suffix="", newline="\n")
    params = SamplingParams(max_tokens=8)
    return Job("r", "acme", None, prompt, params, None, drop_overlap=False)


def assert_no_output_error(error: NoOutput) -> None:
    assert error.timeout_s == DEADLINE_S


def test_no_token_by_the_deadline_is_a_retryable_503():
    runner = CompletionRunner(QueuedForever())
    with pytest.raises(NoOutput) as raised:
        asyncio.run(runner.generate([job()], DEADLINE_S, never_disconnected))
    assert_no_output_error(raised.value)


def test_a_stream_with_nothing_by_the_deadline_ends_with_a_retryable_error():
    runner = CompletionRunner(QueuedForever())

    async def consume() -> list:
        jobs = [job()]
        return [delta async for delta in runner.stream(jobs, runner.start(jobs), DEADLINE_S)]

    with pytest.raises(NoOutput) as raised:
        asyncio.run(consume())
    assert_no_output_error(raised.value)


class AnswersAtOnce:
    """An engine that answers every request with one finished output, and records aborts."""

    def __init__(self):
        self.aborted: list[tuple[str, str]] = []

    def generate(self, prompt_token_ids, params, request_id, cache_salt=None):
        return self.answer(request_id)

    async def answer(self, request_id: str) -> AsyncIterator[RequestOutput]:
        yield RequestOutput(request_id, "1", [7], True, "stop", 3, 0)

    def abort(self, request_id: str, cause: str = "disconnected") -> None:
        self.aborted.append((request_id, cause))


def test_a_session_keeps_no_entry_for_a_finished_request_or_a_cache_hit():
    """The session map holds requests in flight only: a request answered from the cache never
    runs on the engine, and before sessions left the engine its entry leaked there forever."""
    engine = AnswersAtOnce()
    runner = CompletionRunner(engine, SuggestionCache(LRUCache()), "model@1")
    session = EditorSession("acme", "editor")

    async def keystroke(request_id: str) -> str:
        served = dataclasses.replace(job(), request_id=request_id, session=session)
        _, cache = await runner.complete([served], DEADLINE_S * 10, never_disconnected)
        return cache

    assert asyncio.run(keystroke("first")) == "miss"
    assert asyncio.run(keystroke("second")) == "hit"
    assert runner.sessions.in_flight == {}
    assert getattr(engine, "_sessions", {}) == {}
    assert engine.aborted == []  # nothing was in flight to supersede


def test_typing_through_is_per_file():
    """Typing the start of a cached suggestion reuses its rest in the same file only: the
    typing-through key includes the file's path (before, it was never set)."""
    engine = AnswersAtOnce()
    runner = CompletionRunner(engine, SuggestionCache(LRUCache()), "model@1")
    engine.answer = lambda request_id: answer(request_id, "123")

    async def keystroke(prefix: str, filepath: str) -> str:
        prompt = Prompt(
            [1, len(filepath), len(prefix)],
            forced_prefix="",
            prefix=prefix,
            suffix="",
            newline="\n",
        )
        typed = dataclasses.replace(job(), prompt=prompt, filepath=filepath)
        _, cache = await runner.complete([typed], DEADLINE_S * 10, never_disconnected)
        return cache

    assert asyncio.run(keystroke("x = ", "a.py")) == "miss"
    assert asyncio.run(keystroke("x = 1", "b/b.py")) == "miss"
    assert asyncio.run(keystroke("x = 1", "a.py")) == "typing_through"


async def answer(request_id: str, text: str) -> AsyncIterator[RequestOutput]:
    yield RequestOutput(request_id, text, [7] * len(text), True, "stop", 3, 0)


def test_the_api_maps_each_completion_error_to_its_status():
    no_output = from_completion_error(NoOutput(DEADLINE_S))
    assert no_output.status == 503 and no_output.retry_after_s >= 1
    assert "no output" in no_output.message and "retry" in no_output.message
    superseded = from_completion_error(Aborted(async_engine.SUPERSEDED))
    assert superseded.status == 499 and "superseded" in superseded.message
    assert from_completion_error(Disconnected()).status == 499
    assert from_completion_error(Aborted(async_engine.SHUTDOWN)).status == 503


def test_the_cache_key_tells_every_stop_rule_apart():
    """A stop rule is data and its fields are its key: two rules that cut differently never
    share a cache entry. While typing, the cursor's line (which the fields come from) changes,
    so rules of one kind share the typing-through key."""

    def key(rule, while_typing: bool = False) -> dict[str, object]:
        params = SamplingParams(max_tokens=8, stop_rule=rule)
        return decoding_key(dataclasses.replace(job(), params=params), while_typing)

    rules = [None, LineEnd(), BlockEnd(0), BlockEnd(4), BlockEnd(5)]
    for i, rule in enumerate(rules):
        assert all(key(rule) != key(other) for other in rules[i + 1 :]), rule
    assert key(BlockEnd(4)) == key(BlockEnd(4))  # equal values, one entry
    assert key(BlockEnd(4), while_typing=True) == key(BlockEnd(8), while_typing=True)
    assert key(BlockEnd(4), while_typing=True) != key(LineEnd(), while_typing=True)
