"""Editor sessions: a newer request of a session aborts the session's older one.

The engine knows request ids only; this is the one place that maps a session to its request in
flight. An entry lives from the request's start on the engine to its stream's end, so a request
answered without the engine (a cache hit) or one that ended leaves nothing behind.
"""

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from service.engine import AsyncEngine, RequestOutput, metrics
from service.engine.async_engine import SUPERSEDED


@dataclass(frozen=True)
class EditorSession:
    """An editor session, scoped by its tenant: a newer request of the session aborts the older
    one, and the same session id sent by another tenant is another session."""

    tenant: str
    id: str

    def choice(self, index: int) -> "EditorSession":
        """The session of one of a request's several choices (each supersedes its own)."""
        return EditorSession(self.tenant, f"{self.id}/{index}")


class Sessions:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.in_flight: dict[EditorSession, str] = {}  # session -> its request on the engine

    def supersede(self, session: EditorSession) -> None:
        """A newer request of `session` arrived: abort the one it has on the engine, if any."""
        older = self.in_flight.pop(session, None)
        if older is not None:
            metrics.CANCELLED.labels(SUPERSEDED).inc()
            self.engine.abort(older, SUPERSEDED)

    def track(
        self, session: EditorSession, request_id: str, stream: AsyncIterator[RequestOutput]
    ) -> AsyncIterator[RequestOutput]:
        """`stream` (request_id's, just started on the engine) as the session's request in
        flight, until the stream ends or is closed."""
        self.supersede(session)
        self.in_flight[session] = request_id
        return self._until_done(session, request_id, stream)

    async def _until_done(
        self, session: EditorSession, request_id: str, stream: AsyncIterator[RequestOutput]
    ) -> AsyncIterator[RequestOutput]:
        try:
            async with aclosing(stream):
                async for output in stream:
                    yield output
        finally:
            if self.in_flight.get(session) == request_id:
                del self.in_flight[session]
