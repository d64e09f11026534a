"""Scrub every JSON request body before routing, so no handler, cache, log or metric ever sees
a secret: all strings of the body (prefix, suffix, snippets, declarations, clipboard, prompt,
input_extra...) go through one per-request `Scrubber`, and context items from sensitive files
are dropped. When the request's own file is sensitive, `scope["state"]["sensitive_file"]` tells
the handler to answer without running the model."""

import json
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.middleware.secrets import Scrubber
from service.middleware.sensitive_files import SensitiveFiles

SECRETS_SCRUBBED = Counter(
    "secrets_scrubbed_total", "Secrets replaced by placeholders in requests, by rule", ["rule"]
)
SENSITIVE_FILES = Counter(
    "sensitive_files_total", "Requests or context items refused because of a sensitive file path"
)

_PATH_FIELDS = ("filepath", "filename")


class _BodyScrubber:
    def __init__(self, sensitive: SensitiveFiles):
        self.scrubber = Scrubber()
        self.sensitive = sensitive
        self.findings = 0

    def _is_sensitive_item(self, value: Any) -> bool:
        return isinstance(value, dict) and any(
            isinstance(value.get(f), str) and self.sensitive.matches(value[f]) for f in _PATH_FIELDS
        )

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            result = self.scrubber.scrub(value)
            for finding in result.findings:
                SECRETS_SCRUBBED.labels(finding.rule).inc()
            self.findings += len(result.findings)
            return result.text
        if isinstance(value, list):
            kept = [v for v in value if not self._is_sensitive_item(v)]
            SENSITIVE_FILES.inc(len(value) - len(kept))
            return [self.clean(v) for v in kept]
        if isinstance(value, dict):
            return {k: self.clean(v) for k, v in value.items()}
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
        body = self._scrub(scope, b"".join(chunks))
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

    def _scrub(self, scope: Scope, raw: bytes) -> bytes:
        cleaner = _BodyScrubber(self.sensitive)
        state = scope.setdefault("state", {})
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw  # refused with 400 as it is; no handler reads it
        try:
            body = json.loads(text)
        except ValueError:
            # Not JSON: the handler answers 400, and nothing may quote a secret from it either.
            scrubbed = cleaner.clean(text)
            state["secrets_scrubbed"] = cleaner.findings
            return scrubbed.encode()
        own = _own_filepath(body)
        if own is not None and self.sensitive.matches(own):
            SENSITIVE_FILES.inc()
            state["sensitive_file"] = True
        cleaned = cleaner.clean(body)
        state["secrets_scrubbed"] = cleaner.findings
        return json.dumps(cleaned).encode() if cleaner.findings or cleaned != body else raw
