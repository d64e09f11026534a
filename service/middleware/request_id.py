"""Request context: a request id for every request (the client's `X-Request-ID` when it is
sane and not secret-shaped), echoed in the response, and one structured access-log line when
the request ends with its status, timings, sizes, tenant and cache outcome. An exception no
handler caught is logged here, with the request's id, and answered with a 500."""

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logging_setup import request_id_var, tenant_var
from service.middleware.error_envelope import error_response
from service.secrets.scrubber import contains_secret

logger = logging.getLogger("service.access")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _CLIENT_ID.fullmatch(candidate) and not contains_secret(candidate):
                return candidate
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Plain ASGI middleware (not BaseHTTPMiddleware) so streamed responses are not buffered.
    Handlers add to the access line through `request.state` (`tenant`, `cache`)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        id_token = request_id_var.set(rid)
        start = time.perf_counter()
        sizes = {"request_bytes": 0, "response_bytes": 0}
        status = 500
        started = False

        async def counting_receive() -> Message:
            message = await receive()
            sizes["request_bytes"] += len(message.get("body", b""))
            return message

        async def tagging_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body":
                sizes["response_bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, tagging_send)
        except Exception:
            # Logged here, where the request id is known (the server would log it without).
            logger.exception("unhandled error", extra={"fields": {"path": scope["path"]}})
            if not started:
                message = "internal error: retry, and report the X-Request-ID if it persists"
                await error_response(500, message)(scope, counting_receive, tagging_send)
        finally:
            tenant_token = tenant_var.set(state.get("tenant"))
            logger.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - start) * 1e3, 3),
                        "cache": state.get("cache"),
                        **sizes,
                    }
                },
            )
            tenant_var.reset(tenant_token)
            request_id_var.reset(id_token)
