"""What routes need, as FastAPI dependencies: the serving state built at startup, the session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from service.api.completion_runner import CompletionRunner
from service.engine import AsyncEngine
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


def get_serving(request: Request) -> Serving:
    return request.app.state.serving


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session_header(
    x_session_id: Annotated[str | None, Header(max_length=256)] = None,
) -> str | None:
    """The editor session: a newer request of the same session aborts the older one."""
    return x_session_id


ServingDep = Annotated[Serving, Depends(get_serving)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[str | None, Depends(get_session_header)]
