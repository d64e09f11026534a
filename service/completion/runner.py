"""Run completion jobs on the engine: all choices at once, under a deadline, cancellable.

Every engine stream is consumed inside `aclosing`, so whatever ends the consumer (client
disconnect, deadline, error) closes the stream and the engine aborts the request within a step.
A request the engine aborted (superseded by its session's newer one, engine failure, shutdown)
raises the CompletionError that says so: a cut answer is never passed off as a finished one.
Nothing here knows HTTP: the caller says whether the file is sensitive and how to wait for its
client to go away, and maps the errors to its own statuses.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, replace
from itertools import groupby

from service.cache import CacheQuery, SuggestionCache
from service.completion.errors import Aborted, CompletionError, Disconnected, NoOutput
from service.completion.finishing import (
    SourceFile,
    UnsafePolicy,
    count_parse,
    finish_code,
    ranks_last,
)
from service.completion.semantics import (
    SessionTrees,
    after_dot,
    distinct_members_first,
    legal_members,
    open_brackets,
)
from service.completion.sessions import EditorSession, Sessions
from service.engine import AsyncEngine, RequestOutput, SamplingParams
from service.engine.output_processor import Candidate
from service.engine.sampling_params import StopRule
from service.logging_setup import prompt_for_log
from service.prompt.builder import Prompt
from service.prompt.newlines import from_lf
from service.secrets.scrubber import contains_secret, scrub, settled_length
from service.semantic.stopping import drop_suffix_overlap

logger = logging.getLogger("service.completions")


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
    filepath: str = ""  # the file being edited, when the client names it (typing-through key)
    # The semantic engine on or off (the request's `semantic`, else --semantic): constrained
    # first member after `expr.`, suggestions checked and cleaned against the code.
    semantic: bool = True
    unsafe_suggestions: UnsafePolicy = "drop"  # --unsafe-suggestions (finishing.py)
    # The whole file as the client sent it (LF), which the checks read; None: the prompt's.
    source: SourceFile | None = None

    @property
    def checked(self) -> bool:
        """Its suggestions go through the semantic output side (finishing.py): code-aware and
        semantic. OpenAI's "none" stop mode asks for the model's text as it is."""
        return self.semantic and self.drop_overlap

    @property
    def file(self) -> SourceFile:
        return self.source or SourceFile(self.prompt.prefix, self.prompt.suffix)


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


def finish(job: Job, text: str, finished: bool = True) -> str:
    """What the client may see of a choice's text so far, for whole answers and streams alike:
    once finished, without what the code after the cursor repeats, and for a checked job
    post-processed, checked and filtered ("" when dropped); before, without a last word that
    could still become a secret, and nothing of a checked job (its stream is buffered: the
    checks judge the whole text, and a streamed piece cannot be taken back); in the client's
    newline convention, secrets redacted."""
    if finished and job.drop_overlap:
        text = drop_suffix_overlap(text, job.prompt.prefix, job.prompt.suffix)
        if job.checked:
            text = finish_code(text, job.file, job.unsafe_suggestions)
        else:
            count_parse(text, job.file)
    if not finished:
        text = "" if job.checked else text[: settled_length(text)]
    return redact(from_lf(text, job.prompt.newline))


def ranked(jobs: list[Job], choices: list["Completion"]) -> list["Completion"]:
    """Each prompt's choices (`jobs`: the job of each choice) with the dropped (empty) ones last
    and, under "last", the unsafe ones just before them: with n > 1 the next candidate moves
    up. Checked jobs only."""
    if not any(job.checked for job in jobs):
        return choices

    def rank(pair: tuple[Job, Completion]) -> tuple[bool, bool]:
        job, choice = pair
        if not job.checked:
            return (False, False)
        return (not choice.text, ranks_last(choice.text, job.file, job.unsafe_suggestions))

    # A prompt's choices are consecutive and share its Prompt; the sort is stable.
    groups = groupby(zip(jobs, choices, strict=True), key=lambda pair: id(pair[0].prompt))
    return [choice for _, group in groups for _, choice in sorted(group, key=rank)]


def stop_rule_key(rule: StopRule | None, while_typing: bool) -> str | None:
    """A stop rule is a frozen dataclass: its repr, its kind and fields, is its key. The fields
    come from the cursor's line, so the typing-through key has the kind only."""
    if rule is None:
        return None
    return type(rule).__name__ if while_typing else repr(rule)


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
        "semantic": job.semantic,
        "unsafe_suggestions": job.unsafe_suggestions,
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
        filepath=jobs[0].filepath,
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
        self.sessions = Sessions(engine)
        self.trees = SessionTrees()  # each editor session's syntax tree, for the analysis

    def start(self, jobs: list[Job]) -> list[AsyncIterator[RequestOutput]]:
        """Submit every job; raises (InvalidRequest, EngineOverloaded, EngineUnavailable) before
        any is left running."""
        streams = []
        # The analysis runs here, once the cache has missed (a hit needs none), and once per
        # file: a request's n choices share its cursor.
        members: dict[SourceFile, frozenset[str] | None] = {}
        try:
            for job in jobs:
                params = job.params
                if job.semantic:
                    if job.file not in members:
                        members[job.file] = legal_members(job.file, job.session, self.trees)
                    if members[job.file]:
                        params = replace(params, allowed_continuations=members[job.file])
                    if params.beam_search:
                        params = replace(params, open_brackets=open_brackets(job.file))
                stream = self.engine.generate(
                    job.prompt.token_ids, params, job.request_id, cache_salt=job.cache_salt
                )
                if job.session is not None:
                    stream = self.sessions.track(job.session, job.request_id, stream)
                streams.append(stream)
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
        self,
        jobs: list[Job],
        timeout_s: float,
        disconnected: Callable[[], Awaitable[None]],
        sensitive: bool = False,
    ) -> tuple[list[Completion], str | None]:
        """Every choice's final text, from the cache when it can, and the cache's outcome ("hit",
        "typing_through", "miss", "sensitive"; None without a cache); a sensitive file gets empty
        choices without the model seeing it. `disconnected` returns when the caller has gone."""
        if sensitive:
            return [cached_completion(i, job, "") for i, job in enumerate(jobs)], "sensitive"
        if (prompt := prompt_for_log(jobs[0].prompt.prefix)) is not None:
            logger.info("prompt", extra={"fields": {"prefix": prompt}})
        if self.cache is None:
            return await self.generate(jobs, timeout_s, disconnected), None
        query = cache_query(jobs, self.model)
        cached = await self.cache.lookup(query)
        if cached is not None and fits(jobs, len(cached.choices)):
            for job in jobs:  # a newer keystroke answered from the cache still supersedes
                if job.session is not None:
                    self.sessions.supersede(job.session)
            return [
                cached_completion(i, job, text, reason)
                for i, (job, text, reason) in enumerate(
                    zip(choice_jobs(jobs), cached.choices, cached.finish_reasons, strict=False)
                )
            ], cached.outcome
        completions = await self.generate(jobs, timeout_s, disconnected)
        if all(
            finished_on_its_own(c, job)
            for c, job in zip(completions, choice_jobs(jobs), strict=False)
        ):
            texts, reasons = [c.text for c in completions], [c.finish_reason for c in completions]
            await self.cache.store(query, texts, reasons)
        return completions, "miss"

    async def generate(
        self, jobs: list[Job], timeout_s: float, disconnected: Callable[[], Awaitable[None]]
    ) -> list[Completion]:
        """Run every job on the engine; aborts everything if the caller disconnects first, or if
        one of its jobs was aborted (that job's CompletionError is raised)."""
        streams = self.start(jobs)
        started = time.perf_counter()
        collecting = [
            asyncio.ensure_future(collect(job, stream, started, timeout_s))
            for job, stream in zip(jobs, streams, strict=True)
        ]
        work = asyncio.ensure_future(asyncio.gather(*collecting))
        disconnect = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({work, disconnect}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnect.cancel()
        if not work.done() or work.exception() is not None:
            for task in collecting:  # closing their streams aborts the jobs still running
                task.cancel()
            await asyncio.gather(*collecting, return_exceptions=True)
            if not work.done():
                raise Disconnected()
        per_job = work.result()
        owners = [job for job, found in zip(jobs, per_job, strict=True) for _ in found]
        choices = ranked(owners, [c for found in per_job for c in found])
        return [replace(c, index=i) for i, c in enumerate(choices)]

    async def stream(
        self, jobs: list[Job], streams: list[AsyncIterator[RequestOutput]], timeout_s: float
    ) -> AsyncIterator[Delta]:
        """Interleaved text deltas of every choice (from `start`), each ending with a reason;
        raises the CompletionError of a choice the engine aborted (what was streamed stays sent)."""
        deltas: asyncio.Queue[Delta | CompletionError | None] = asyncio.Queue()
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
                        raise NoOutput(timeout_s) from None
                    break
                if delta is None:
                    running -= 1
                    continue
                if isinstance(delta, CompletionError):
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
                            raise Aborted(output.abort_cause)
        except TimeoutError:
            if last is None:  # not a token by the deadline: nothing to answer with
                raise NoOutput(timeout_s) from None
            # Else return what there is, as if max_tokens had been reached.
    elapsed_s = time.perf_counter() - started
    if last is not None and last.candidates:
        return beam_completions(job, last, first_output_s, elapsed_s)
    return [
        Completion(
            index=0,
            text=finish(job, last.text if last else ""),
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
    conversion can make two engine candidates the same suggestion); a checked job's dropped
    candidates are skipped, so the next one moves up (all dropped: one empty choice)."""

    def choice(candidate, text: str) -> Completion:
        return Completion(
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

    # Finished lazily: each is post-processed and checked (parses), and the first few that pass
    # are usually all a request needs; reordering by member needs them all.
    finished: Iterable[tuple[Candidate, str]] = (
        (candidate, finish(job, candidate.text)) for candidate in output.candidates
    )
    if job.checked and job.num_choices > 1 and after_dot(job.file):
        finished = distinct_members_first(list(finished))
    choices: dict[str, Completion] = {}
    for candidate, text in finished:
        if text in choices or (job.checked and not text):
            continue
        choices[text] = choice(candidate, text)
        if len(choices) == job.num_choices:
            break
    return list(choices.values()) or [choice(output.candidates[0], "")]


async def pump(
    index: int, job: Job, stream: AsyncIterator[RequestOutput], deltas: asyncio.Queue
) -> None:
    """Put the new text of each output on `deltas`, then None when the choice is done."""
    sent = ""
    try:
        async with aclosing(stream):
            async for output in stream:
                if output.finished and output.finish_reason == "abort":
                    deltas.put_nowait(Aborted(output.abort_cause))
                    break
                text = finish(job, output.text, output.finished)
                # Text may only grow; a final cut below what was streamed is dropped, not unsent.
                new = text[len(sent) :] if text.startswith(sent) else ""
                sent += new
                if new or output.finished:
                    reason = output.finish_reason if output.finished else None
                    deltas.put_nowait(Delta(index, new, reason))
    finally:
        deltas.put_nowait(None)


async def drain(stream: AsyncIterator[RequestOutput]) -> None:
    async with aclosing(stream):
        async for _ in stream:
            pass
