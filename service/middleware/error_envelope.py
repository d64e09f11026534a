"""The JSON body of every error the server answers, in OpenAI's shape: the middleware's refusals
(401, 408, 413, ...) and the API's error handlers (service/api/errors.py) alike.

`{"error": {"message", "type", "param", "code"}}` is what the `openai` client reads; Tabby's
agent only looks at the status.
"""

from starlette.responses import JSONResponse


def error_body(status: int, message: str, param: str | None = None) -> dict:
    """The error object, as the JSON body and as a stream's last event."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


def error_response(
    status: int, message: str, param: str | None = None, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(status, message, param), status_code=status, headers=headers or None
    )
