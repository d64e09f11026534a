"""Where this server stands: serving, draining (asked to stop) or failed (the engine died).

Readiness (`/v1/health`) and the admission of completion requests follow the phase, so a load
balancer or orchestrator stops sending work the moment this process can no longer do it:

- draining (SIGTERM): readiness 503 and new completions 503 + Retry-After at once; requests in
  flight finish, or at the drain deadline are stopped with a 503 + Retry-After (a stream ends
  with an error event and its `[DONE]`); then the server exits 0, closing Redis on the way.
- failed (the engine thread died outside a step): requests in flight end at once with 503 +
  Retry-After, readiness 503, and the process exits non-zero for the orchestrator to restart.
  The engine is not restarted in-process: after an error nobody foresaw, its KV cache,
  scheduler and model state cannot be trusted, a fresh process costs a few seconds of model
  loading, and the orchestrator (compose `restart`, Kubernetes) already restarts what exits.
"""

import asyncio
import enum
import logging
from collections.abc import Callable

from fastapi import Request

from service.api.errors import RETRY_AFTER_S, ApiError
from service.engine import AsyncEngine, async_engine

logger = logging.getLogger("service.lifecycle")

# Seconds between looks at the requests still in flight while draining.
POLL_S = 0.05
# Seconds the requests stopped at the drain deadline get to deliver their 503s.
STOPPED_REQUESTS_GRACE_S = 2.0


class Phase(enum.Enum):
    SERVING = "serving"
    DRAINING = "draining"
    FAILED = "failed"


class Lifecycle:
    def __init__(self) -> None:
        self.phase = Phase.SERVING
        # Set by the server process (service/server.py): makes it stop serving and exit.
        # Without one (an app under a test client) the phases only refuse requests.
        self.request_exit: Callable[[], None] | None = None

    @property
    def ready(self) -> bool:
        return self.phase is Phase.SERVING

    def refusal(self) -> ApiError | None:
        """Why a new completion request is refused now, if it is."""
        if self.phase is Phase.SERVING:
            return None
        reason = (
            "the server is shutting down"
            if self.phase is Phase.DRAINING
            else "the inference engine failed and this server is restarting"
        )
        return ApiError(503, f"{reason}; retry in {RETRY_AFTER_S} s", retry_after_s=RETRY_AFTER_S)

    def engine_failed(self, error: BaseException) -> None:
        """The engine's `on_failure`: called on the engine thread as it dies."""
        self.phase = Phase.FAILED
        if self.request_exit is not None:
            self.request_exit()  # sets a flag the server's loop reads: safe from any thread

    async def drain(self, engine: AsyncEngine, deadline_s: float) -> None:
        """Stop taking work, let what is in flight finish within `deadline_s`, stop the rest,
        then ask the server to exit."""
        if self.phase is not Phase.SERVING:
            return
        self.phase = Phase.DRAINING
        logger.info(
            "draining",
            extra={"fields": {"in_flight": engine.num_in_flight, "deadline_s": deadline_s}},
        )
        if not await all_finished(engine, deadline_s):
            logger.warning(
                "drain deadline passed: stopping the requests still in flight",
                extra={"fields": {"in_flight": engine.num_in_flight}},
            )
            engine.abort_all(async_engine.SHUTDOWN)
            await all_finished(engine, STOPPED_REQUESTS_GRACE_S)
        if self.request_exit is not None:
            self.request_exit()


async def all_finished(engine: AsyncEngine, within_s: float) -> bool:
    """Wait until no request is in flight on the engine; False if some still are after
    `within_s` seconds."""
    try:
        async with asyncio.timeout(within_s):
            while engine.num_in_flight:
                await asyncio.sleep(POLL_S)
    except TimeoutError:
        return False
    return True


def get_lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle


async def admit(request: Request) -> None:
    """Dependency of the completion routes: 503 + Retry-After unless the server is serving."""
    if (refusal := get_lifecycle(request).refusal()) is not None:
        raise refusal
