"""Server-sent events: one `data: <json>` line per chunk, and OpenAI's closing `data: [DONE]`.

A stream the server has to end early (its request superseded, the engine failed, the server
shutting down) ends with an error event, `data: {"error": {...}}` (what the `openai` client
raises on, and llama.cpp's server sends), then `[DONE]` where the dialect has it: never a
stream cut without an end, nor one that looks finished.
"""

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from service.api.errors import ApiError, from_completion_error
from service.completion.errors import CompletionError


def sse_response(chunks: AsyncIterator[dict], done_marker: bool) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield event(chunk)
        except ApiError as error:
            yield event(error.body())
        except CompletionError as error:
            yield event(from_completion_error(error).body())
        if done_marker:
            yield "data: [DONE]\n\n"

    # Starlette cancels `lines` when the client disconnects, which closes the engine streams.
    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


# The OpenAPI declaration of a 200 that is a stream when the body asks for one ("stream": true):
# without it the schema promised JSON only, and a client generated from it refused the stream.
STREAMED_200 = {"content": {"text/event-stream": {}}}
