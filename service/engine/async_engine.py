"""The engine on its own thread, so the HTTP event loop never waits on model work.

Requests and aborts cross to the engine thread through a queue; outputs come back to each
request's asyncio queue. The engine knows request ids only: `abort(request_id, cause)` stops one
(editor sessions, which supersede their older request, live in service/completion/), and a
request whose consumer goes away (client disconnect, cancelled task) is aborted too: the engine
drops it before its next step and frees its blocks, keeping full ones for prefix reuse. An
aborted request's last output says why (`abort_cause`), so the API never passes a cut answer
off as a finished one.

If the engine thread itself dies (a bug outside a step), every request in flight ends at once
with the cause "engine_failed", new ones are refused with EngineUnavailable, and `on_failure` is
called (from the dying thread) so the server can report unhealthy and exit.

Outputs are cumulative (the text so far), so a request's stream is paced: its first output and
its last go out at once, the ones between at most every `stream_interval_ms`, each later one
replacing the one held (as vLLM's `--stream-interval`). Every output handed over wakes the event
loop, whose Python then holds the GIL the engine thread needs between its operators: at one
output a step, a streamed keystroke request took 56-59 ms, against 50-51 ms with only its last.
"""

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

from service.engine import metrics
from service.engine.config import EngineConfig
from service.engine.llm_engine import InvalidRequest, LLMEngine
from service.engine.output_processor import OutputProcessor, RequestOutput
from service.engine.sampling_params import SamplingParams
from service.engine.sequence import Sequence

log = logging.getLogger(__name__)


class EngineOverloaded(RuntimeError):
    """Too many requests in flight; the client should retry after a short wait."""


class EngineUnavailable(RuntimeError):
    """The engine thread has died; this process answers nothing more and is exiting."""


# Why an aborted request ended, on its last output's `abort_cause`.
SUPERSEDED = "superseded"  # a newer request of the same editor session replaced it
DISCONNECTED = "disconnect"  # its consumer went away
STEP_FAILED = "engine_error"  # a step raised: every request in it was aborted
ENGINE_FAILED = "engine_failed"  # the engine thread died
SHUTDOWN = "shutdown"  # the server stopped it while shutting down
REJECTED = "rejected"  # the engine refused it on arrival


@dataclass
class _Add:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    cache_salt: str | None


@dataclass
class _Abort:
    request_id: str
    cause: str


class AsyncEngine:
    def __init__(
        self,
        config: EngineConfig,
        on_failure: Callable[[BaseException], None] | None = None,
    ):
        self.config = config
        self.on_failure = on_failure
        self.failure: BaseException | None = None  # what killed the engine thread, if it died
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        # Engine thread only: the latest output not yet handed over, and when each request's
        # last one was.
        self._held: dict[str, Sequence] = {}
        self._sent_at: dict[str, float] = {}
        self._causes: dict[str, str] = {}  # why each aborted request not yet delivered ended
        self._interval_s = config.stream_interval_ms / 1000
        self._stopped = threading.Event()
        built: Future[LLMEngine] = Future()  # the engine, or what stopped it, from its thread
        self._thread = threading.Thread(target=self._run, args=(built,), name="engine", daemon=True)
        self._thread.start()
        self.engine = built.result()
        self.tokenizer = self.engine.tokenizer

    @property
    def max_positions(self) -> int:
        return self.engine.max_positions

    @property
    def alive(self) -> bool:
        return self.failure is None and self._thread.is_alive()

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def shutdown(self) -> None:
        self._stopped.set()
        self._commands.put(None)
        self._thread.join(timeout=10)

    def generate(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        cache_salt: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream the request's outputs; raises InvalidRequest, EngineOverloaded or
        EngineUnavailable up front. Requests with different `cache_salt`s never share cached
        prefix blocks."""
        request_id = request_id or uuid.uuid4().hex
        self._check_alive()
        self.engine.validate(prompt_token_ids, params)
        if len(self._streams) >= self.config.max_num_seqs + self.config.max_waiting:
            raise EngineOverloaded(f"{len(self._streams)} requests in flight")
        stream: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._streams[request_id] = (asyncio.get_running_loop(), stream)
        try:
            # The dying thread sets `failure` before it ends the streams it finds: a stream
            # registered after that is refused here instead of waiting for an answer forever.
            self._check_alive()
        except EngineUnavailable:
            del self._streams[request_id]
            raise
        self._commands.put(_Add(request_id, prompt_token_ids, params, cache_salt))
        return self._stream(request_id, stream)

    def _check_alive(self) -> None:
        if not self.alive:
            raise EngineUnavailable(f"the engine thread died ({type(self.failure).__name__})")

    async def _stream(self, request_id, stream) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            while not finished:
                output = await stream.get()
                finished = output.finished
                yield output
        finally:
            self._streams.pop(request_id, None)
            if not finished:
                metrics.CANCELLED.labels(DISCONNECTED).inc()
                self._commands.put(_Abort(request_id, DISCONNECTED))

    def abort(self, request_id: str, cause: str = DISCONNECTED) -> None:
        """Stop the request within one engine step; its stream ends with finish_reason 'abort'
        and `abort_cause` set to `cause`."""
        self._commands.put(_Abort(request_id, cause))

    def abort_all(self, cause: str) -> None:
        """Abort every request in flight (shutting down past the drain deadline)."""
        for request_id in list(self._streams):
            metrics.CANCELLED.labels(cause).inc()
            self.abort(request_id, cause)

    # -- engine thread ---------------------------------------------------------------------

    def _run(self, built: Future) -> None:
        # The engine is built here, not by the caller: OpenMP keeps a pool of worker threads for
        # each thread that starts parallel regions, and with a second pool around (the main
        # thread's, had it loaded the model) this thread's small parallel regions ran 2-3x
        # slower (a one-row bf16 projection 26 -> 74 µs; a keystroke request 75 -> 135 ms).
        try:
            self.engine = LLMEngine(self.config)
        except BaseException as error:
            built.set_exception(error)
            return
        built.set_result(self.engine)
        metrics.watch_blocks(self.engine.block_manager)
        try:
            self._loop()
        except BaseException as error:  # outside a step: this thread cannot go on
            self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """Report the failure, then end every request in flight at once; nothing is retried
        here, since the engine's state after an unexpected error cannot be trusted. The owner
        hears first, so a client given its 503 already finds the server reporting unhealthy."""
        self.failure = error
        log.critical("engine thread died; failing all requests", exc_info=error)
        if self.on_failure is not None:
            self.on_failure(error)
        for request_id, (loop, stream) in list(self._streams.items()):
            output = RequestOutput(
                request_id, "", [], True, "abort", 0, 0, abort_cause=ENGINE_FAILED
            )
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody is waiting
                loop.call_soon_threadsafe(stream.put_nowait, output)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._drain_commands(block=not self.engine.has_work())
            if self._stopped.is_set() or not self.engine.has_work():
                continue
            try:
                changed = self.engine.step()
            except Exception:  # a bug must not kill the thread and hang every request
                log.exception("engine step failed; aborting its requests")
                changed = self._abort_all()
                for seq in changed:
                    self._causes[seq.request_id] = STEP_FAILED
            for seq in changed:
                self._held[seq.request_id] = seq
            self._hand_over_due()

    def _hand_over_due(self) -> None:
        """Deliver each held output that is its request's first or last, or whose request's
        previous one went out at least a stream interval ago."""
        now = time.monotonic()
        for request_id, seq in list(self._held.items()):
            sent = self._sent_at.get(request_id)
            if seq.is_finished or sent is None or now - sent >= self._interval_s:
                del self._held[request_id]
                self._sent_at[request_id] = now
                self._deliver(OutputProcessor.to_output(seq))

    def _drain_commands(self, block: bool) -> None:
        try:
            command = self._commands.get(block=block)
            while True:
                self._apply(command)
                command = self._commands.get_nowait()
        except queue.Empty:
            pass

    def _apply(self, command) -> None:
        if isinstance(command, _Add):
            if command.request_id not in self._streams:
                return  # aborted before it arrived
            try:
                self.engine.add_request(
                    command.request_id,
                    command.prompt_token_ids,
                    command.params,
                    cache_salt=command.cache_salt,
                )
            except InvalidRequest:
                log.exception("request %s rejected by the engine", command.request_id)
                self._deliver(_rejected(command))
        elif isinstance(command, _Abort):
            seq = self.engine.abort(command.request_id)
            self._held.pop(command.request_id, None)
            if seq is not None:
                self._causes[seq.request_id] = command.cause
                self._deliver(OutputProcessor.to_output(seq))

    def _abort_all(self):
        seqs = [self.engine.abort(rid) for rid in list(self.engine.seqs)]
        return [seq for seq in seqs if seq is not None]

    def _deliver(self, output: RequestOutput) -> None:
        if output.finished:
            self._sent_at.pop(output.request_id, None)
            cause = self._causes.pop(output.request_id, None)
            if output.finish_reason == "abort" and cause is not None:
                output = replace(output, abort_cause=cause)
        target = self._streams.get(output.request_id)
        if target is not None:
            loop, stream = target
            loop.call_soon_threadsafe(stream.put_nowait, output)


def _rejected(command: _Add) -> RequestOutput:
    return RequestOutput(
        request_id=command.request_id,
        text="",
        token_ids=[],
        finished=True,
        finish_reason="abort",
        num_prompt_tokens=len(command.prompt_token_ids),
        num_cached_tokens=0,
        abort_cause=REJECTED,
    )
