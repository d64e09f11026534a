"""Optional bearer-token auth: a tokens file maps each token to its tenant.

`Authenticate` is ASGI middleware outside the body's size limit and scrubbing, so a request
without a valid token gets its 401 before a byte of its body is read or scrubbed (a body can
cost work; a header costs a hash); on a public path (health, metrics) it is served, and its
body is not read either. It puts the tenant in `scope["state"]["tenant"]` and in the
logging context; `require_tenant` hands it to routes. Failed token checks are limited per
client address (429 + Retry-After once its budget is spent, whatever token it sends next), so
tokens cannot be guessed at speed.

The tokens file is read again when it changes (checked on each request: one stat) and on
SIGHUP, so revoking a token needs no restart. A file that no longer parses keeps the tokens
read before, with an error in the log.
"""

import asyncio
import hashlib
import hmac
import logging
import math
import signal
from pathlib import Path

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.logging_setup import tenant_var
from service.middleware.error_envelope import error_response
from service.middleware.rate_limit import RateLimiter

ANONYMOUS_TENANT = "anonymous"

logger = logging.getLogger("service.auth")


def load_tokens(path: str | Path) -> dict[str, str]:
    """Parse `TOKEN TENANT` lines; blank lines and `#` comments are skipped."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            # Never echo the line: it holds a token.
            raise ValueError(f"{path}:{number}: expected 'TOKEN TENANT'")
        tokens[parts[0]] = parts[1]
    return tokens


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` value: the scheme in any case, any blanks
    around it, as RFC 7235 allows; None for any other value."""
    parts = (authorization or "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


def _file_version(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class TokenAuth:
    """Looks tokens up by their SHA-256, so the comparison time does not depend on how much
    of a guessed token is right, and plain tokens are not kept in memory."""

    def __init__(self, tokens: dict[str, str], path: Path | None = None):
        self._tenants = self._by_digest(tokens)
        self.path = path
        self._version = _file_version(path) if path is not None else None

    @staticmethod
    def _by_digest(tokens: dict[str, str]) -> dict[bytes, str]:
        return {_digest(t): tenant for t, tenant in tokens.items()}

    @classmethod
    def from_file(cls, path: str | Path) -> "TokenAuth":
        return cls(load_tokens(path), Path(path))

    def reload(self) -> None:
        """Read the tokens file again; on an error keep the tokens read before."""
        if self.path is None:
            return
        self._version = _file_version(self.path)
        try:
            self._tenants = self._by_digest(load_tokens(self.path))
        except (OSError, ValueError) as error:
            logger.error("tokens file not reloaded, the previous tokens stay valid: %s", error)
            return
        logger.info(
            "tokens file reloaded", extra={"fields": {"tenants": len(set(self._tenants.values()))}}
        )

    def reload_if_changed(self) -> None:
        if self.path is not None and _file_version(self.path) != self._version:
            self.reload()

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant for an `Authorization` header value, or None when it is not valid."""
        token = bearer_token(authorization)
        if token is None:
            return None
        self.reload_if_changed()
        digest = _digest(token)
        for known, tenant in self._tenants.items():
            if hmac.compare_digest(known, digest):
                return tenant
        return None

    def reload_on_sighup(self) -> None:
        """Reload on SIGHUP, from the running event loop (only the main thread's loop can)."""
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread, or Windows
            logger.info("tokens file reloads on change only: no SIGHUP handler in this thread")


def _without_body(receive: Receive) -> Receive:
    """A receive that reports an empty body, then passes on what the server says next."""
    answered = False

    async def empty_body() -> Message:
        nonlocal answered
        if not answered:
            answered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return empty_body


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class Authenticate:
    """Pure ASGI middleware: tenant or refusal from the headers alone (see the module's doc)."""

    def __init__(
        self,
        app: ASGIApp,
        auth: TokenAuth | None,
        public_paths: frozenset[str] = frozenset(),
        failure_limiter: RateLimiter | None = None,
    ):
        self.app = app
        self.auth = auth
        self.public_paths = public_paths
        self.failure_limiter = failure_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.auth is not None:
            self.auth.reload_on_sighup()
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tenant = ANONYMOUS_TENANT
        if self.auth is not None:
            public = scope["path"] in self.public_paths
            client = (scope.get("client") or ("unknown", 0))[0]
            if not public and self.failure_limiter is not None:
                wait = self.failure_limiter.wait_s(client)
                if wait > 0:
                    await self._refuse(scope, receive, send, 429, wait)
                    return
            resolved = self.auth.tenant(_header(scope, b"authorization"))
            if resolved is None and not public:
                if self.failure_limiter is not None:
                    self.failure_limiter.retry_after(client)  # spend one of its failures
                await self._refuse(scope, receive, send, 401)
                return
            if resolved is None:  # public path, no valid token: no body is read for it either
                receive = _without_body(receive)
            tenant = resolved or ANONYMOUS_TENANT
        scope.setdefault("state", {})["tenant"] = tenant
        tenant_var.set(tenant)  # the same task runs the handler: its log lines carry the tenant
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, wait_s: float = 0):
        if status == 401:
            message = "missing or invalid bearer token: send 'Authorization: Bearer TOKEN'"
            headers = {"WWW-Authenticate": "Bearer"}
        else:
            message = (
                "too many requests with an invalid token from this address: fix the token, "
                "then retry after the Retry-After seconds"
            )
            headers = {"Retry-After": str(math.ceil(wait_s))}
        await error_response(status, message, headers=headers)(scope, receive, send)


async def require_tenant(request: Request) -> str:
    """FastAPI dependency: the tenant `Authenticate` resolved for this request."""
    return request.state.tenant
