"""Structured JSON logs: one object a line, with the request id and tenant of the request that
wrote it. Prompt text is never logged unless `log_prompts` is on, and then only scrubbed; every
message, every structured field and every traceback also goes through the secret scrubber as a
last line of defence (a path or a client's request id can carry a secret too).

Whatever Python would print on its own (an uncaught exception, a thread that dies, such as the
engine's, an exception nobody could raise, a warning) is routed through the same JSON handler.
"""

import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from service.secrets.scrubber import scrub

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
tenant_var: ContextVar[str | None] = ContextVar("tenant", default=None)

crash_logger = logging.getLogger("service.crash")

_log_prompts = False


def scrubbed_field(value: Any) -> Any:
    """A structured field as it may be logged: strings scrubbed, containers walked, numbers
    kept, anything else as its scrubbed `str`."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return scrub(value).text
    if isinstance(value, dict):
        return {scrub(str(k)).text: scrubbed_field(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrubbed_field(v) for v in value]
    return scrub(str(value)).text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": scrubbed_field(record.getMessage()),
            "request_id": scrubbed_field(request_id_var.get()),
            "tenant": scrubbed_field(tenant_var.get()),
        }
        # Structured fields: logger.info("...", extra={"fields": {...}}).
        entry.update(scrubbed_field(getattr(record, "fields", {})))
        if record.exc_info:
            entry["exc"] = scrubbed_field(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = scrubbed_field(self.formatStack(record.stack_info))
        return json.dumps(entry)


def _log_uncaught(
    exc_type: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    crash_logger.critical("uncaught exception", exc_info=(exc_type, exc, traceback))


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "unknown"
    crash_logger.critical(
        "thread died: %s",
        name,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        extra={"fields": {"thread": name}},
    )


def _log_unraisable(args: Any) -> None:  # sys.UnraisableHookArgs, not importable by name
    crash_logger.error(
        "%s: %r",
        args.err_msg or "exception ignored",
        args.object,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def configure_logging(level: str = "INFO", log_prompts: bool = False) -> None:
    """Route all logging (uvicorn's included) and all of Python's own error output through one
    JSON handler on stderr."""
    global _log_prompts
    _log_prompts = log_prompts
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our access log line replaces uvicorn's, which would repeat the path without the context.
    logging.getLogger("uvicorn.access").disabled = True
    logging.Formatter.converter = time.gmtime
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_crash
    sys.unraisablehook = _log_unraisable


def prompt_for_log(text: str) -> str | None:
    """The prompt as it may appear in a debug log: None unless prompt logging is on, and
    scrubbed even then."""
    return scrub(text).text if _log_prompts else None
