"""Server-sent events: one `data: <json>` line per chunk, and OpenAI's closing `data: [DONE]`."""

import json
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse


def sse_response(chunks: AsyncIterator[dict], done_marker: bool) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        if done_marker:
            yield "data: [DONE]\n\n"

    # Starlette cancels `lines` when the client disconnects, which closes the engine streams.
    return StreamingResponse(
        lines(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
