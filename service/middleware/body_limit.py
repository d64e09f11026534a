"""Read a request body within bounds, before anything parses it: at most --max-body-bytes
(413), all of it within --body-timeout-s of its headers (408).

A pure ASGI middleware: it reads the body up to the limits and replays it to the app, so a
chunked upload without Content-Length is bounded too. Later `receive()` calls go to the server,
so the app still hears about a client disconnect.

The deadline is here because uvicorn has none: a client that sends its body a byte at a time
holds its connection, a task and its buffered bytes for as long as it keeps trickling.
"""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.middleware.error_envelope import error_response


class BodyLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self.refuse_size(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await self.refuse_slow(scope, receive, send)
                return
            if message["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                await self.refuse_size(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def refuse_size(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body exceeds {self.max_body_bytes} bytes; send less context"
        await error_response(413, message)(scope, receive, send)

    async def refuse_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = (
            f"the request body did not arrive within {self.body_timeout_s:g} s of its headers "
            "(--body-timeout-s); send the whole body at once"
        )
        # The rest of the body may still be on its way: the connection cannot carry another
        # request, so it is closed after this answer.
        response = error_response(408, message, headers={"connection": "close"})
        await response(scope, receive, send)
