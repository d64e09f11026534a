"""Scrub every JSON request body before routing, so no handler, cache, log or metric ever sees
a secret: all strings of the body (prefix, suffix, snippets, declarations, clipboard, prompt,
input_extra..., and object keys) go through one per-request `Scrubber`, and context items from
sensitive files are dropped. When the request's own file is sensitive,
`scope["state"]["sensitive_file"]` tells the handler to answer without running the model.

The body is decoded once (`json_body`: UTF-8 JSON only) and the scrubbed value is written back
for the handler, so the handler never parses text the scrubber did not read. The code before
and after the cursor is scrubbed as the one text it is in the file (`CURSOR_FIELDS`), so a
secret the cursor cuts in two is still found. Scrubbing a large body runs on a worker thread (one
very large body at a time): the event loop keeps answering other requests (health checks
included) meanwhile; its time is linear in the body's size and capped by a `ScrubBudget`, past
which the body is refused (413).
"""

from typing import Any

import anyio
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.middleware.error_envelope import error_response
from service.middleware.json_body import BodyRefused, decode_json, encode_json
from service.secrets.scrubber import Scrubber, ScrubBudget, ScrubBudgetExceeded
from service.secrets.sensitive_files import SensitiveFiles

SECRETS_SCRUBBED = Counter(
    "secrets_scrubbed_total", "Secrets replaced by placeholders in requests, by rule", ["rule"]
)
SENSITIVE_FILES = Counter(
    "sensitive_files_total", "Requests or context items refused because of a sensitive file path"
)

_PATH_FIELDS = ("filepath", "filename")

# Fields of one object that are one text cut by the cursor, in file order: llama.cpp's
# input_prefix + prompt | input_suffix, OpenAI's prompt | suffix, Tabby's segments.prefix | suffix.
# The first tuple with two or more string fields present applies.
CURSOR_FIELDS = (
    ("input_prefix", "prompt", "input_suffix"),
    ("prompt", "suffix"),
    ("prefix", "suffix"),
)

# Deeper than any body of the API (Tabby's is 4 levels); deeper ones are refused.
MAX_JSON_DEPTH = 32

# Bodies up to this size are scrubbed on the event loop: at worst ~2 ms of hostile text
# (docs/security.md), about what the hop to a worker thread and back costs under load.
INLINE_SCRUB_BYTES = 4096
# Larger ones on a worker thread. Above this size, one at a time: each thread scrubbing holds
# the GIL the event loop needs, and with four 1 MB hostile bodies at once a health check took
# up to 0.27 s, with one 0.08 s. Keystroke-sized bodies never wait behind a large one.
LARGE_BODY_BYTES = 65_536


class _BodyScrubber:
    def __init__(self, sensitive: SensitiveFiles):
        self.scrubber = Scrubber(budget=ScrubBudget())
        self.sensitive = sensitive
        self.findings = 0

    def _is_sensitive_item(self, value: Any) -> bool:
        return isinstance(value, dict) and any(
            isinstance(value.get(f), str) and self.sensitive.matches(value[f]) for f in _PATH_FIELDS
        )

    def _count(self, findings) -> None:
        for finding in findings:
            SECRETS_SCRUBBED.labels(finding.rule).inc()
        self.findings += len(findings)

    def _text(self, value: str) -> str:
        result = self.scrubber.scrub(value)
        self._count(result.findings)
        return result.text

    def _adjacent(self, parts: list[str]) -> list[str]:
        scrubbed, findings = self.scrubber.scrub_adjacent(parts)
        self._count(findings)
        return scrubbed

    def _cursor_texts(self, body: dict) -> dict[str, str]:
        """The scrubbed cursor fields of one object (see CURSOR_FIELDS)."""
        prompts, suffix = body.get("prompt"), body.get("suffix")
        if (
            isinstance(suffix, str)
            and isinstance(prompts, list)
            and prompts  # an empty list is the handler's 400, not a pair to scrub
            and all(isinstance(p, str) for p in prompts)
        ):
            # OpenAI's list of prompts shares one suffix: each prompt is scrubbed with it, and
            # the suffix keeps the version a secret across the cursor cut the most from.
            pairs = [self._adjacent([p, suffix]) for p in prompts]
            return {"prompt": [p for p, _ in pairs], "suffix": min((s for _, s in pairs), key=len)}
        for fields in CURSOR_FIELDS:
            present = [f for f in fields if isinstance(body.get(f), str)]
            if len(present) >= 2:
                return dict(zip(present, self._adjacent([body[f] for f in present]), strict=True))
        return {}

    def clean(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_JSON_DEPTH:
            raise BodyRefused(
                400,
                f"the body nests JSON deeper than {MAX_JSON_DEPTH} levels: send the flat "
                "objects the API documents",
            )
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, list):
            kept = [v for v in value if not self._is_sensitive_item(v)]
            SENSITIVE_FILES.inc(len(value) - len(kept))
            return [self.clean(v, depth + 1) for v in kept]
        if isinstance(value, dict):
            cursor = self._cursor_texts(value)
            return {
                self._text(k): cursor[k] if k in cursor else self.clean(v, depth + 1)
                for k, v in value.items()
            }
        return value


def _own_filepath(body: Any) -> str | None:
    """The file being edited: Tabby's `segments.filepath` (or a top-level `filepath`)."""
    if not isinstance(body, dict):
        return None
    segments = body.get("segments")
    if isinstance(segments, dict) and isinstance(segments.get("filepath"), str):
        return segments["filepath"]
    return body.get("filepath") if isinstance(body.get("filepath"), str) else None


class ScrubRequestBody:
    """Pure ASGI middleware; must sit inside the body size limit (it reads the whole body)."""

    def __init__(self, app: ASGIApp, sensitive_files: SensitiveFiles | None = None):
        self.app = app
        self.sensitive = sensitive_files or SensitiveFiles()
        self._large_body_scrubs: anyio.CapacityLimiter | None = None  # made in the server's loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            if len(raw) <= INLINE_SCRUB_BYTES:
                body = self._scrub(scope, raw)
            else:
                body = await anyio.to_thread.run_sync(
                    self._scrub, scope, raw, limiter=self._limiter(len(raw))
                )
        except BodyRefused as refusal:
            await error_response(refusal.status, refusal.message)(scope, receive, send)
            return
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"content-length"] + [
            (b"content-length", str(len(body)).encode())
        ]
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the disconnect, for handlers that watch for it

        await self.app(scope, replay, send)

    def _limiter(self, size: int) -> anyio.CapacityLimiter | None:
        """One thread for all very large bodies; the default pool for the rest."""
        if size <= LARGE_BODY_BYTES:
            return None
        if self._large_body_scrubs is None:
            self._large_body_scrubs = anyio.CapacityLimiter(1)
        return self._large_body_scrubs

    def _scrub(self, scope: Scope, raw: bytes) -> bytes:
        """The body the handler reads: scrubbed, re-encoded; BodyRefused when it must not pass."""
        if not raw:
            return raw  # nothing to scrub; the handler says what it needed
        body = decode_json(raw)
        state = scope.setdefault("state", {})
        own = _own_filepath(body)
        if own is not None and self.sensitive.matches(own):
            SENSITIVE_FILES.inc()
            state["sensitive_file"] = True
        cleaner = _BodyScrubber(self.sensitive)
        try:
            cleaned = cleaner.clean(body)
        except ScrubBudgetExceeded as error:
            raise BodyRefused(
                413,
                f"the body holds too many secret-like strings to check ({error}): send less context",
            ) from None
        state["secrets_scrubbed"] = cleaner.findings
        return encode_json(cleaned)
