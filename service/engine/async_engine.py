"""The engine on its own thread, so the HTTP event loop never waits on model work.

Requests and aborts cross to the engine thread through a queue; outputs come back to each
request's asyncio queue. A newer request of the same editor session aborts the older one, and a
request whose consumer goes away (client disconnect, cancelled task) is aborted too: the engine
drops it before its next step and frees its blocks, keeping full ones for prefix reuse.

Outputs are cumulative (the text so far), so a request's stream is paced: its first output and
its last go out at once, the ones between at most every `stream_interval_ms`, each later one
replacing the one held (as vLLM's `--stream-interval`). Every output handed over wakes the event
loop, whose Python then holds the GIL the engine thread needs between its operators: at one
output a step, a streamed keystroke request took 56-59 ms, against 50-51 ms with only its last.
"""

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from dataclasses import dataclass

from service.engine import metrics
from service.engine.config import EngineConfig
from service.engine.llm_engine import InvalidRequest, LLMEngine
from service.engine.output_processor import OutputProcessor, RequestOutput
from service.engine.sampling_params import SamplingParams
from service.engine.sequence import Sequence

log = logging.getLogger(__name__)


class EngineOverloaded(RuntimeError):
    """Too many requests in flight; the client should retry after a short wait."""


@dataclass
class _Add:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams


@dataclass
class _Abort:
    request_id: str


class AsyncEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._sessions: dict[str, str] = {}  # session id -> its latest request id
        # Engine thread only: the latest output not yet handed over, and when each request's
        # last one was.
        self._held: dict[str, Sequence] = {}
        self._sent_at: dict[str, float] = {}
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

    def shutdown(self) -> None:
        self._stopped.set()
        self._commands.put(None)
        self._thread.join(timeout=10)

    def generate(
        self,
        prompt_token_ids: list[int],
        params: SamplingParams,
        request_id: str | None = None,
        session_id: str | None = None,
    ) -> AsyncIterator[RequestOutput]:
        """Stream the request's outputs; raises InvalidRequest or EngineOverloaded up front."""
        request_id = request_id or uuid.uuid4().hex
        self.engine.validate(prompt_token_ids, params)
        if len(self._streams) >= self.config.max_num_seqs + self.config.max_waiting:
            raise EngineOverloaded(f"{len(self._streams)} requests in flight")
        if session_id is not None:
            self.supersede(session_id, request_id)
        stream: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._streams[request_id] = (asyncio.get_running_loop(), stream)
        self._commands.put(_Add(request_id, prompt_token_ids, params))
        return self._stream(request_id, stream, session_id)

    async def _stream(self, request_id, stream, session_id) -> AsyncIterator[RequestOutput]:
        finished = False
        try:
            while not finished:
                output = await stream.get()
                finished = output.finished
                yield output
        finally:
            self._streams.pop(request_id, None)
            if session_id is not None and self._sessions.get(session_id) == request_id:
                del self._sessions[session_id]
            if not finished:
                metrics.CANCELLED.labels("disconnect").inc()
                self._commands.put(_Abort(request_id))

    def supersede(self, session_id: str, request_id: str) -> None:
        """Make request_id the session's latest; abort the older request of that session."""
        older = self._sessions.get(session_id)
        self._sessions[session_id] = request_id
        if older is not None and older in self._streams:
            metrics.CANCELLED.labels("superseded").inc()
            self.abort(older)

    def abort(self, request_id: str) -> None:
        """Stop the request within one engine step; its stream ends with finish_reason 'abort'."""
        self._commands.put(_Abort(request_id))

    def stats(self) -> dict:
        blocks = self.engine.block_manager
        return {
            "requests_in_flight": len(self._streams),
            "kv_blocks_total": len(blocks.blocks),
            "kv_blocks_used": blocks.num_used_blocks,
            "preemptions": self.engine.scheduler.num_preemptions,
        }

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
        self._loop()

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
                    command.request_id, command.prompt_token_ids, command.params
                )
            except InvalidRequest:
                log.exception("request %s rejected by the engine", command.request_id)
                self._deliver(_rejected(command))
        elif isinstance(command, _Abort):
            seq = self.engine.abort(command.request_id)
            self._held.pop(command.request_id, None)
            if seq is not None:
                self._deliver(OutputProcessor.to_output(seq))

    def _abort_all(self):
        seqs = [self.engine.abort(rid) for rid in list(self.engine.seqs)]
        return [seq for seq in seqs if seq is not None]

    def _deliver(self, output: RequestOutput) -> None:
        if output.finished:
            self._sent_at.pop(output.request_id, None)
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
    )
