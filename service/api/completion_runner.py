"""Run completion jobs on the engine: all choices at once, under a deadline, cancellable.

Every engine stream is consumed inside `aclosing`, so whatever ends the consumer (client
disconnect, deadline, error) closes the stream and the engine aborts the request within a step.
A request the engine aborted (superseded by its session's newer one, engine failure, shutdown)
raises the ApiError that says so: a cut answer is never passed off as a finished one.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace

from starlette.requests import Request

from service.api.errors import ApiError, aborted, no_output
from service.cache import CacheQuery, SuggestionCache
from service.engine import AsyncEngine, RequestOutput, SamplingParams
from service.logging_setup import prompt_for_log
from service.middleware.secrets import contains_secret, scrub, settled_length
from service.prompt.builder import Prompt
from service.prompt.newlines import from_lf
from service.semantic.stopping import drop_suffix_overlap

logger = logging.getLogger("service.completions")


@dataclass(frozen=True)
class EditorSession:
    """An editor session, scoped by its tenant: a newer request of the session aborts the older
    one, and the same session id sent by another tenant is another session."""

    tenant: str
    id: str

    def choice(self, index: int) -> "EditorSession":
        """The session of one of a request's several choices (each supersedes its own)."""
        return EditorSession(self.tenant, f"{self.id}/{index}")


@dataclass(frozen=True)
class Job:
    """One engine request: one choice, or with beam search up to `num_choices` of its ranked
    distinct candidates (fewer when fewer distinct texts were found)."""

    request_id: str
    tenant: str
    cache_salt: str | None  # Serving.cache_salt: whose cached prefix blocks it may reuse
    prompt: Prompt
    params: SamplingParams
    session: EditorSession | None
    drop_overlap: bool  # code-aware dialects: remove what the code after the cursor repeats
    num_choices: int = 1


@dataclass(frozen=True)
class Completion:
    index: int
    text: str  # final, in the client's newline convention
    finish_reason: str  # "stop" or "length" (an aborted job raises instead)
    num_prompt_tokens: int
    num_cached_tokens: int
    num_tokens: int
    last_token_id: int | None
    first_output_s: float  # request start to the engine's first output
    elapsed_s: float


@dataclass(frozen=True)
class Delta:
    """A piece of streamed text for one choice; `finish_reason` set on its last piece."""

    index: int
    text: str
    finish_reason: str | None


def redact(text: str) -> str:
    """A suggestion never carries a secret-shaped string: it is replaced by a placeholder."""
    return scrub(text).text if contains_secret(text) else text


def final_text(job: Job, text: str) -> str:
    if job.drop_overlap:
        text = drop_suffix_overlap(text, job.prompt.prefix, job.prompt.suffix)
    return redact(from_lf(text, job.prompt.newline))


def stop_rule_key(rule, while_typing: bool) -> list | None:
    """A stop rule is a closure: its name, and the plain values it closed over (those come
    from the cursor's line, so they are left out of the typing-through key)."""
    if rule is None:
        return None
    cells = [] if while_typing else [c.cell_contents for c in rule.__closure__ or ()]
    return [rule.__qualname__, *(c for c in cells if isinstance(c, str | int))]


def decoding_key(job: Job, while_typing: bool = False) -> dict[str, object]:
    """Everything besides the prompt that decides a choice's text."""
    params = job.params
    return {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "stop": params.stop,
        "ignore_eos": params.ignore_eos,
        # Token healing's forced characters follow the cursor, as the stop rule's line does.
        "forced_prefix": None if while_typing else params.forced_prefix,
        "stop_rule": stop_rule_key(params.stop_rule, while_typing),
        "drop_overlap": job.drop_overlap,
        "newline": job.prompt.newline,
        # A beam request must never be answered with a greedy request's entry, nor the reverse.
        "num_beams": params.num_beams,
        "length_penalty": params.length_penalty,
        "early_stopping": params.early_stopping,
        "num_beam_groups": params.num_beam_groups,
        "diversity_penalty": params.diversity_penalty,
        "num_choices": job.num_choices,
    }


def cache_query(jobs: list[Job], model: str) -> CacheQuery:
    prompt = jobs[0].prompt
    return CacheQuery(
        tenant=jobs[0].tenant,
        model=model,
        decoding={"choices": [decoding_key(job) for job in jobs]},
        prompt_window=",".join(map(str, prompt.token_ids)),
        prefix=prompt.prefix,
        suffix=prompt.suffix,
        typing_decoding={"choices": [decoding_key(job, while_typing=True) for job in jobs]},
    )


def choice_jobs(jobs: list[Job]) -> list[Job]:
    """The job each choice comes from, in choice order (a beam job gives up to num_choices)."""
    return [job for job in jobs for _ in range(job.num_choices)]


def fits(jobs: list[Job], num_choices: int) -> bool:
    """A cached entry's choice count is one these jobs could have produced."""
    return len(jobs) <= num_choices <= len(choice_jobs(jobs))


def finished_on_its_own(completion: Completion, job: Job) -> bool:
    """Cacheable: not aborted, and not cut short by the deadline (a cut choice ends with
    "length" before max_tokens)."""
    if completion.finish_reason == "length":
        return completion.num_tokens >= job.params.max_tokens
    return completion.finish_reason == "stop"


def cached_completion(index: int, job: Job, text: str, finish_reason: str = "stop") -> Completion:
    return Completion(
        index=index,
        text=text,
        finish_reason=finish_reason,
        num_prompt_tokens=len(job.prompt.token_ids),
        num_cached_tokens=len(job.prompt.token_ids),
        num_tokens=0,
        last_token_id=None,
        first_output_s=0.0,
        elapsed_s=0.0,
    )


class CompletionRunner:
    def __init__(
        self,
        engine: AsyncEngine,
        cache: SuggestionCache | None = None,
        model: str = "",
    ):
        self.engine = engine
        self.cache = cache
        self.model = model  # "model-id@revision", part of every cache key

    def start(self, jobs: list[Job]) -> list[AsyncIterator[RequestOutput]]:
        """Submit every job; raises (InvalidRequest, EngineOverloaded, EngineUnavailable) before
        any is left running."""
        streams = []
        try:
            for job in jobs:
                streams.append(
                    self.engine.generate(
                        job.prompt.token_ids,
                        job.params,
                        job.request_id,
                        job.session,
                        cache_salt=job.cache_salt,
                    )
                )
        except Exception:
            for job, stream in zip(jobs, streams, strict=False):
                self.abort_unstarted(job.request_id, stream)
            raise
        return streams

    def abort_unstarted(self, request_id: str, stream: AsyncIterator[RequestOutput]) -> None:
        # A stream never iterated cannot clean up on close: abort it and let it run out.
        self.engine.abort(request_id)
        asyncio.get_running_loop().create_task(drain(stream))

    async def complete(
        self, request: Request, jobs: list[Job], timeout_s: float
    ) -> list[Completion]:
        """Every choice's final text, from the cache when it can; a file marked sensitive gets
        empty choices without the model seeing it."""
        if getattr(request.state, "sensitive_file", False):
            request.state.cache = "sensitive"
            return [cached_completion(i, job, "") for i, job in enumerate(jobs)]
        if (prompt := prompt_for_log(jobs[0].prompt.prefix)) is not None:
            logger.info("prompt", extra={"fields": {"prefix": prompt}})
        if self.cache is None:
            return await self.generate(request, jobs, timeout_s)
        query = cache_query(jobs, self.model)
        cached = await self.cache.lookup(query)
        if cached is not None and fits(jobs, len(cached.choices)):
            request.state.cache = cached.outcome
            for job in jobs:  # a newer keystroke answered from the cache still supersedes
                if job.session is not None:
                    self.engine.supersede(job.session, job.request_id)
            return [
                cached_completion(i, job, text, reason)
                for i, (job, text, reason) in enumerate(
                    zip(choice_jobs(jobs), cached.choices, cached.finish_reasons, strict=False)
                )
            ]
        request.state.cache = "miss"
        completions = await self.generate(request, jobs, timeout_s)
        if all(
            finished_on_its_own(c, job)
            for c, job in zip(completions, choice_jobs(jobs), strict=False)
        ):
            texts, reasons = [c.text for c in completions], [c.finish_reason for c in completions]
            await self.cache.store(query, texts, reasons)
        return completions

    async def generate(
        self, request: Request, jobs: list[Job], timeout_s: float
    ) -> list[Completion]:
        """Run every job on the engine; aborts everything if the client disconnects first, or if
        one of its jobs was aborted (that job's ApiError is raised)."""
        streams = self.start(jobs)
        started = time.perf_counter()
        collecting = [
            asyncio.ensure_future(collect(job, stream, started, timeout_s))
            for job, stream in zip(jobs, streams, strict=True)
        ]
        work = asyncio.ensure_future(asyncio.gather(*collecting))
        disconnect = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            await asyncio.wait({work, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnect.cancel()
        if not work.done() or work.exception() is not None:
            for task in collecting:  # closing their streams aborts the jobs still running
                task.cancel()
            await asyncio.gather(*collecting, return_exceptions=True)
            if not work.done():
                raise ApiError(499, "the client closed the request")
        choices = [c for per_job in work.result() for c in per_job]
        return [replace(c, index=i) for i, c in enumerate(choices)]

    async def stream(
        self, jobs: list[Job], streams: list[AsyncIterator[RequestOutput]], timeout_s: float
    ) -> AsyncIterator[Delta]:
        """Interleaved text deltas of every choice (from `start`), each ending with a reason;
        raises the ApiError of a choice the engine aborted (what was streamed stays sent)."""
        deltas: asyncio.Queue[Delta | ApiError | None] = asyncio.Queue()
        pumps = [
            asyncio.create_task(pump(i, job, stream, deltas))
            for i, (job, stream) in enumerate(zip(jobs, streams, strict=True))
        ]
        unfinished = set(range(len(jobs)))
        answered = False  # a delta went out: past the deadline, the stream ends as cut short
        running = len(pumps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            while running:
                # A deadline per wait, not asyncio.timeout around the loop: that would also
                # cancel the consumer's own awaits while this generator is suspended at `yield`.
                left = deadline - asyncio.get_running_loop().time()
                try:
                    delta = await asyncio.wait_for(deltas.get(), max(left, 0))
                except TimeoutError:
                    if not answered:
                        raise no_output(timeout_s) from None
                    break
                if delta is None:
                    running -= 1
                    continue
                if isinstance(delta, ApiError):
                    raise delta
                if delta.finish_reason is not None:
                    unfinished.discard(delta.index)
                answered = True
                yield delta
            for index in sorted(unfinished):  # past the deadline: end them as if out of tokens
                yield Delta(index, "", "length")
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


async def collect(
    job: Job, stream: AsyncIterator[RequestOutput], started: float, timeout_s: float
) -> list[Completion]:
    """The job's choices: its one output, or its best distinct beam candidates (by final text);
    indexes are the caller's to set."""
    last, first_output_s, finish_reason = None, 0.0, "length"
    async with aclosing(stream):
        try:
            async with asyncio.timeout(timeout_s):
                async for output in stream:
                    if last is None:
                        first_output_s = time.perf_counter() - started
                    last = output
                    if output.finished:
                        finish_reason = output.finish_reason
                        if finish_reason == "abort":
                            raise aborted(output.abort_cause)
        except TimeoutError:
            if last is None:  # not a token by the deadline: nothing to answer with
                raise no_output(timeout_s) from None
            # Else return what there is, as if max_tokens had been reached.
    elapsed_s = time.perf_counter() - started
    if last is not None and last.candidates:
        return beam_completions(job, last, first_output_s, elapsed_s)
    return [
        Completion(
            index=0,
            text=final_text(job, last.text if last else ""),
            finish_reason=finish_reason,
            num_prompt_tokens=last.num_prompt_tokens if last else len(job.prompt.token_ids),
            num_cached_tokens=last.num_cached_tokens if last else 0,
            num_tokens=len(last.token_ids) if last else 0,
            last_token_id=last.token_ids[-1] if last and last.token_ids else None,
            first_output_s=first_output_s,
            elapsed_s=elapsed_s,
        )
    ]


def beam_completions(
    job: Job, output: RequestOutput, first_output_s: float, elapsed_s: float
) -> list[Completion]:
    """The best `num_choices` candidates whose final texts differ (overlap removal and newline
    conversion can make two engine candidates the same suggestion)."""
    choices: dict[str, Completion] = {}
    for candidate in output.candidates:
        text = final_text(job, candidate.text)
        if text in choices:
            continue
        choices[text] = Completion(
            index=0,
            text=text,
            finish_reason=candidate.finish_reason,
            num_prompt_tokens=output.num_prompt_tokens,
            num_cached_tokens=output.num_cached_tokens,
            num_tokens=len(candidate.token_ids),
            last_token_id=candidate.token_ids[-1] if candidate.token_ids else None,
            first_output_s=first_output_s,
            elapsed_s=elapsed_s,
        )
        if len(choices) == job.num_choices:
            break
    return list(choices.values())


async def pump(
    index: int, job: Job, stream: AsyncIterator[RequestOutput], deltas: asyncio.Queue
) -> None:
    """Put the new text of each output on `deltas`, then None when the choice is done."""
    sent = ""
    try:
        async with aclosing(stream):
            async for output in stream:
                if output.finished and output.finish_reason == "abort":
                    deltas.put_nowait(aborted(output.abort_cause))
                    break
                text = output.text
                if output.finished and job.drop_overlap:
                    text = drop_suffix_overlap(text, job.prompt.prefix, job.prompt.suffix)
                if not output.finished:  # hold back a word that could still become a secret
                    text = text[: settled_length(text)]
                text = redact(text)
                # Text may only grow; a final cut below what was streamed is dropped, not unsent.
                new = text[len(sent) :] if text.startswith(sent) else ""
                sent += new
                if new or output.finished:
                    reason = output.finish_reason if output.finished else None
                    deltas.put_nowait(Delta(index, from_lf(new, job.prompt.newline), reason))
    finally:
        deltas.put_nowait(None)


async def drain(stream: AsyncIterator[RequestOutput]) -> None:
    async with aclosing(stream):
        async for _ in stream:
            pass


async def wait_for_disconnect(request: Request) -> None:
    # The body has been read: the next message the server gives is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
