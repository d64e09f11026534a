"""What routes need, as FastAPI dependencies: the serving state built at startup, the caller."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, cast

from fastapi import Depends, Header, Request

from service.completion.finishing import UnsafePolicy
from service.completion.runner import CompletionRunner
from service.completion.sessions import EditorSession
from service.engine import AsyncEngine
from service.middleware.auth import require_tenant
from service.prompt.builder import PromptBuilder
from service.settings import Settings


@dataclass
class Serving:
    """Everything built once at startup (see app.lifespan) and shared by all requests."""

    settings: Settings
    model_id: str
    device: str
    engine: AsyncEngine
    builder: PromptBuilder
    runner: CompletionRunner
    special_token_ids: frozenset[int]  # end-of-text and FIM sentinels: a text ending in one hit EOS

    def cache_salt(self, tenant: str) -> str | None:
        """The salt of a tenant's cached prompt work (KV prefix blocks, prompt beginnings):
        its own under --isolate-tenants, else shared by all (None)."""
        return tenant if self.settings.isolate_tenants else None

    def semantic(self, requested: bool | None) -> bool:
        """Whether a request gets the semantic engine: its own `semantic` field, when sent,
        else the server's --semantic / --no-semantic."""
        return self.settings.semantic if requested is None else requested

    @property
    def unsafe_suggestions(self) -> UnsafePolicy:
        """--unsafe-suggestions (its flag parser admits only the policies)."""
        return cast(UnsafePolicy, self.settings.unsafe_suggestions)


# The dependencies are `async def` though they never wait: FastAPI runs a plain `def` one on its
# thread pool, a hop between threads per request that a keystroke's handling cannot afford.
async def get_serving(request: Request) -> Serving:
    return request.app.state.serving


@dataclass(frozen=True)
class Caller:
    """Who sent the request: the tenant its token names, the editor session it named, whether
    the file it edits is marked sensitive, and how to wait for it to go away."""

    tenant: str
    session_id: str | None  # X-Session-Id
    sensitive_file: bool  # set by middleware/request_scrubbing.py from the body's path
    disconnected: Callable[[], Awaitable[None]]  # returns when the client has gone

    def session(self, body_session_id: str | None = None) -> EditorSession | None:
        """The editor session, scoped by the tenant: the header's id, else the body's."""
        session_id = self.session_id or body_session_id
        return None if session_id is None else EditorSession(self.tenant, session_id)


async def get_caller(
    request: Request,
    tenant: Annotated[str, Depends(require_tenant)],
    x_session_id: Annotated[str | None, Header(max_length=256)] = None,
) -> Caller:
    sensitive = getattr(request.state, "sensitive_file", False)
    return Caller(tenant, x_session_id, sensitive, partial(wait_for_disconnect, request))


async def wait_for_disconnect(request: Request) -> None:
    # The body has been read: the next message the server gives is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


ServingDep = Annotated[Serving, Depends(get_serving)]
CallerDep = Annotated[Caller, Depends(get_caller)]
