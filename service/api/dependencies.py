"""What routes need, as FastAPI dependencies: the serving state built at startup, the caller."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from service.api.completion_runner import CompletionRunner, EditorSession
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


def get_serving(request: Request) -> Serving:
    return request.app.state.serving


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


@dataclass(frozen=True)
class Caller:
    """Who sent the request: the tenant its token names, and the editor session it named."""

    tenant: str
    session_id: str | None  # X-Session-Id

    def session(self, body_session_id: str | None = None) -> EditorSession | None:
        """The editor session, scoped by the tenant: the header's id, else the body's."""
        session_id = self.session_id or body_session_id
        return None if session_id is None else EditorSession(self.tenant, session_id)


def get_caller(
    tenant: Annotated[str, Depends(require_tenant)],
    x_session_id: Annotated[str | None, Header(max_length=256)] = None,
) -> Caller:
    return Caller(tenant, x_session_id)


ServingDep = Annotated[Serving, Depends(get_serving)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Caller, Depends(get_caller)]
