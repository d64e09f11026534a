"""Structured JSON logs: one object a line, with the request id and tenant of the request that
wrote it. Prompt text is never logged unless `log_prompts` is on, and then only scrubbed; every
message and traceback also goes through the secret scrubber as a last line of defence."""

import json
import logging
import sys
import time
from contextvars import ContextVar

from service.middleware.secrets import scrub

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
tenant_var: ContextVar[str | None] = ContextVar("tenant", default=None)

_log_prompts = False


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(record.getMessage()).text,
            "request_id": request_id_var.get(),
            "tenant": tenant_var.get(),
        }
        # Structured fields: logger.info("...", extra={"fields": {...}}).
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info)).text
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", log_prompts: bool = False) -> None:
    """Route all logging (uvicorn's included) through one JSON handler on stderr."""
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


def prompt_for_log(text: str) -> str | None:
    """The prompt as it may appear in a debug log: None unless prompt logging is on, and
    scrubbed even then."""
    return scrub(text).text if _log_prompts else None
