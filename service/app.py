"""The FastAPI application: `create_app(settings)`; the lifespan starts and stops the engine."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service.api import completions, events, health, infill, metrics, models
from service.api.dependencies import Serving
from service.api.errors import install_error_handlers
from service.api.lifecycle import Lifecycle
from service.cache import make_suggestion_cache
from service.cache.keys import model_revision
from service.completion.runner import CompletionRunner
from service.engine import AsyncEngine, EngineConfig
from service.middleware.auth import Authenticate, TokenAuth, require_tenant
from service.middleware.body_limit import BodyLimits
from service.middleware.http_latency import HttpLatency
from service.middleware.rate_limit import RateLimiter, enforce_rate_limit
from service.middleware.request_id import RequestContextMiddleware
from service.middleware.request_scrubbing import ScrubRequestBody
from service.prompt.builder import PromptBuilder
from service.prompt.fim import read_fim_order
from service.prompt.window import Budget, StickyWindows
from service.secrets.sensitive_files import SensitiveFiles
from service.settings import Settings

ROUTERS = [
    completions.router,
    infill.router,
    models.router,
    health.router,
    events.router,
    metrics.router,
]


def engine_config(settings: Settings) -> EngineConfig:
    """The engine the server runs for `settings` (benchmarks measure this one too)."""
    return EngineConfig(
        model_path=settings.model,
        device=settings.resolved_device,
        dtype=settings.resolved_dtype,
        kv_cache_mb=settings.kv_cache_mb,
        max_num_seqs=settings.max_num_seqs,
        max_waiting=settings.max_waiting,
        max_prefill_tokens_while_decoding=settings.prefill_while_decoding,
        speculative_tokens=settings.speculative_tokens,
        stream_interval_ms=settings.stream_interval_ms,
        num_threads=settings.num_threads,
    )


def start_serving(settings: Settings, lifecycle: Lifecycle) -> Serving:
    device = settings.resolved_device
    engine = AsyncEngine(engine_config(settings), on_failure=lifecycle.engine_failed)
    budget = Budget(settings.prefix_tokens, settings.suffix_tokens, settings.snippet_tokens)
    builder = PromptBuilder(
        engine.tokenizer,
        budget,
        context_tokens=engine.max_positions,
        fim_order=read_fim_order(settings.model),
        windows=StickyWindows(
            step_fraction=settings.window_step, max_sessions=settings.window_sessions
        ),
    )
    return Serving(
        settings=settings,
        model_id=settings.model.resolve().name,
        device=device,
        engine=engine,
        builder=builder,
        runner=CompletionRunner(
            engine,
            make_suggestion_cache(
                settings.redis_url, settings.cache_ttl_s, settings.cache_max_entries
            ),
            model=f"{settings.model.resolve().name}@{model_revision(settings.model)}",
        ),
        special_token_ids=frozenset(
            i for i, token in engine.tokenizer.get_added_tokens_decoder().items() if token.special
        ),
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.serving = start_serving(app.state.settings, app.state.lifecycle)
    # What start-up made (the model's modules, tokenizer, tables) lives as long as the process:
    # frozen out of the collector's reach, its full passes stop walking it again and again
    # while requests allocate (on the event loop, which the engine thread waits on for the GIL).
    gc.freeze()
    try:
        yield
    finally:
        app.state.serving.engine.shutdown()
        await app.state.serving.runner.cache.close()


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(
        title="completion-service",
        description="Low-latency code completion: Tabby, OpenAI and llama.cpp dialects.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.lifecycle = Lifecycle()
    app.state.auth = (
        TokenAuth.from_file(settings.auth_tokens_file) if settings.auth_tokens_file else None
    )
    app.state.public_paths = frozenset(p for p in settings.public_paths.split(",") if p)
    app.state.rate_limiter = (
        RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        if settings.rate_limit_per_s > 0
        else None
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(
            router, dependencies=[Depends(require_tenant), Depends(enforce_rate_limit)]
        )
    # Outermost last: latency covers everything, including refusals of oversized bodies.
    # Secrets are scrubbed right after the body limits (size, time), before routing and handlers.
    sensitive = SensitiveFiles(tuple(g for g in settings.sensitive_files.split(",") if g))
    app.add_middleware(ScrubRequestBody, sensitive_files=sensitive)
    app.add_middleware(
        BodyLimits,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
    )
    # Outside the body limits and scrubbing: no body is read before its token is checked.
    app.add_middleware(
        Authenticate,
        auth=app.state.auth,
        public_paths=app.state.public_paths,
        failure_limiter=RateLimiter(
            settings.auth_failures_per_minute / 60, settings.auth_failures_per_minute
        )
        if settings.auth_failures_per_minute > 0
        else None,
    )
    app.add_middleware(HttpLatency, histogram=metrics.HTTP_LATENCY)
    app.add_middleware(RequestContextMiddleware)
    return app
