"""Every error as a 4xx/5xx JSON body a client can act on, in OpenAI's shape.

`{"error": {"message", "type", "param", "code"}}` is what the `openai` client reads; Tabby's
agent only looks at the status. Bad input is always a 4xx with a message that says what to
change, never a 500.
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.engine import EngineOverloaded, InvalidRequest
from service.prompt.builder import PromptTooLong

# Seconds a client should wait before retrying when the engine's queue is full.
RETRY_AFTER_S = 1


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and the reason."""

    def __init__(self, status: int, message: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


def error_response(
    status: int, message: str, param: str | None = None, headers: dict | None = None
) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation_errors(errors: list) -> tuple[str, str | None]:
    """A one-line message naming each bad field, and the first field's name."""
    parts, params = [], []
    for error in errors:
        location = ".".join(str(p) for p in error["loc"] if p != "body")
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
    return error_response(exc.status, exc.message, exc.param)


async def on_invalid_request(request: Request, exc: InvalidRequest | PromptTooLong):
    return error_response(400, str(exc))


async def on_overloaded(request: Request, exc: EngineOverloaded):
    return error_response(
        503,
        f"the server is at capacity ({exc}); retry in {RETRY_AFTER_S} s",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(InvalidRequest, on_invalid_request)
    app.add_exception_handler(PromptTooLong, on_invalid_request)
    app.add_exception_handler(EngineOverloaded, on_overloaded)
