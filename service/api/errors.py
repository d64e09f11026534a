"""Every error as a 4xx/5xx JSON body a client can act on, in OpenAI's shape (the envelope is
service/middleware/error_envelope.py, shared with the middleware's refusals). Bad input is
always a 4xx with a message that says what to change, never a 500.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.completion.errors import Aborted, CompletionError, Disconnected, NoOutput
from service.engine import EngineOverloaded, EngineUnavailable, InvalidRequest, async_engine
from service.middleware.error_envelope import error_body, error_response
from service.prompt.builder import PromptTooLong

# Seconds a client should wait before retrying when the engine's queue is full, or when this
# server is going away (another replica, or this one restarted, answers the retry).
RETRY_AFTER_S = 1

# Status of a request that a newer request of its editor session replaced (nginx's "client
# closed request"): its answer is worthless, and the newer one's is on its way. Not a 5xx or 409,
# which HTTP clients retry on their own: a retry would in turn supersede the newer request.
SUPERSEDED_STATUS = 499


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and the reason; `retry_after_s` when
    the same request may succeed if sent again after that many seconds."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        retry_after_s: int | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}

    def body(self) -> dict:
        """The error object, as the JSON body and as a stream's last event."""
        return error_body(self.status, self.message, self.param)


def no_output(timeout_s: float) -> ApiError:
    """A request that got no token before its deadline (queued behind others the whole time):
    an empty 200 would look like a completion that found nothing to say."""
    return ApiError(
        503,
        f"no output within the {timeout_s:g} s deadline: the server is busy; retry in "
        f"{RETRY_AFTER_S} s",
        retry_after_s=RETRY_AFTER_S,
    )


def aborted(cause: str | None) -> ApiError:
    """The error for a request the engine aborted before it finished, by the abort's cause."""
    if cause == async_engine.SUPERSEDED:
        return ApiError(
            SUPERSEDED_STATUS,
            "superseded: a newer request of the same editor session (X-Session-Id, or Tabby's "
            "`user`) replaced this one; show the newer request's answer, or send this one again "
            "with another session id to have both",
        )
    if cause == async_engine.DISCONNECTED:
        return ApiError(499, "the client closed the request")
    if cause == async_engine.SHUTDOWN:
        message = "the server is shutting down and stopped this request"
    elif cause == async_engine.ENGINE_FAILED:
        message = "the inference engine failed and this server is restarting"
    else:  # a failed step, or refused on arrival: nothing wrong with the request itself
        message = "the inference engine failed on this request's batch"
    return ApiError(503, f"{message}; retry in {RETRY_AFTER_S} s", retry_after_s=RETRY_AFTER_S)


def from_completion_error(error: CompletionError) -> ApiError:
    """The status and message of a job that ended without a complete answer."""
    if isinstance(error, NoOutput):
        return no_output(error.timeout_s)
    if isinstance(error, Aborted):
        return aborted(error.cause)
    if isinstance(error, Disconnected):
        return aborted(async_engine.DISCONNECTED)
    raise TypeError(f"no status for {type(error).__name__}")


def api_error_response(error: ApiError, headers: dict | None = None) -> JSONResponse:
    headers = {**(error.headers or {}), **(headers or {})}
    return error_response(error.status, error.message, error.param, headers)


def describe_validation_errors(errors: list) -> tuple[str, str | None]:
    """A one-line message naming each bad field, and the first field's name."""
    parts, params = [], []
    for error in errors:
        loc = list(error["loc"])
        if loc[:1] == ["body"] and loc[1:2] in (["tabby"], ["openai"]):  # /v1/completions' tag
            del loc[1]
        if error["type"] == "no_dialect":
            return error["msg"], "prompt"
        location = ".".join(str(p) for p in loc if p != "body")
        if error["type"] == "json_invalid":
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', '')})")
            continue
        if not location and error["type"] in ("dict_type", "model_attributes_type"):
            parts.append("the body must be a JSON object, sent with Content-Type: application/json")
            continue
        if location:
            params.append(location)
        parts.append(f"{location or 'body'}: {error['msg']}")
    return "; ".join(parts), (params[0] if params else None)


async def on_validation_error(request: Request, exc: RequestValidationError | ValidationError):
    message, param = describe_validation_errors(exc.errors())
    return error_response(400, message, param)


async def on_http_exception(request: Request, exc: HTTPException):
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 400 and message == "There was an error parsing the body":
        message = "the body could not be read as JSON: send UTF-8 encoded JSON"
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


async def on_api_error(request: Request, exc: ApiError):
    return api_error_response(exc)


async def on_completion_error(request: Request, exc: CompletionError):
    return api_error_response(from_completion_error(exc))


async def on_invalid_request(request: Request, exc: InvalidRequest | PromptTooLong):
    return error_response(400, str(exc))


async def on_overloaded(request: Request, exc: EngineOverloaded):
    return error_response(
        503,
        f"the server is at capacity ({exc}); retry in {RETRY_AFTER_S} s",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def on_engine_unavailable(request: Request, exc: EngineUnavailable):
    return api_error_response(aborted(async_engine.ENGINE_FAILED))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(CompletionError, on_completion_error)
    app.add_exception_handler(InvalidRequest, on_invalid_request)
    app.add_exception_handler(PromptTooLong, on_invalid_request)
    app.add_exception_handler(EngineOverloaded, on_overloaded)
    app.add_exception_handler(EngineUnavailable, on_engine_unavailable)
