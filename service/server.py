"""The HTTP server process: uvicorn, with SIGTERM turned into a drain and an exit status that
says whether the process ended cleanly.

Uvicorn on its own stops listening at SIGTERM, gives requests in flight `timeout_graceful_
shutdown` seconds, cancels the rest (500s, streams cut without their end) and re-raises the
signal, so the process dies of it. Here SIGTERM starts `Lifecycle.drain` instead: the server
keeps listening (readiness answers 503), requests in flight finish or are stopped with a clear
503 within --drain-timeout-s, and only then does uvicorn shut down (closing Redis and the
engine in the app's lifespan), and the process exits 0. SIGINT keeps uvicorn's behaviour.
"""

import asyncio
import signal
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.api.lifecycle import Lifecycle, Phase
from service.settings import Settings

# Exit status when the engine died (EX_SOFTWARE): the orchestrator restarts the process.
EXIT_ENGINE_FAILED = 70

# Seconds uvicorn waits, once the drain is over, for responses still being written.
RESPONSES_GRACE_S = 5


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings):
        super().__init__(config)
        self.app = app
        self.settings = settings
        self.lifecycle: Lifecycle = app.state.lifecycle
        self.lifecycle.request_exit = self.stop
        self.loop: asyncio.AbstractEventLoop | None = None

    def stop(self) -> None:
        # A flag uvicorn's main loop reads every 0.1 s: safe to set from any thread.
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        serving = getattr(self.app.state, "serving", None)
        if sig != signal.SIGTERM or self.loop is None or serving is None:
            super().handle_exit(sig, frame)  # SIGINT, or a SIGTERM before start-up finished
            return
        # Not recorded as captured: uvicorn would re-raise it at exit and die of it.
        self.loop.call_soon_threadsafe(
            lambda: self.loop.create_task(
                self.lifecycle.drain(serving.engine, self.settings.drain_timeout_s)
            )
        )


def run_server(app: FastAPI, settings: Settings) -> int:
    """Serve until asked to stop; the process's exit status: 0, or EXIT_ENGINE_FAILED."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep the JSON logging configured by the caller
        timeout_graceful_shutdown=RESPONSES_GRACE_S,
    )
    server = DrainingServer(config, app, settings)
    server.run()
    return EXIT_ENGINE_FAILED if app.state.lifecycle.phase is Phase.FAILED else 0
