"""Optional bearer-token auth: a tokens file maps each token to its tenant.

The app keeps one `TokenAuth` in `app.state.auth` (None when auth is off); `require_tenant` is
the FastAPI dependency that turns the `Authorization: Bearer` header into the tenant name. It
is async so it runs in the request's task: no thread hop, and the tenant it puts in the logging
context is seen by the handler's log lines.
"""

import hashlib
import hmac
from pathlib import Path

from fastapi import HTTPException, Request

from service.logging_setup import tenant_var

ANONYMOUS_TENANT = "anonymous"


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


class TokenAuth:
    """Looks tokens up by their SHA-256, so the comparison time does not depend on how much
    of a guessed token is right, and plain tokens are not kept in memory."""

    def __init__(self, tokens: dict[str, str]):
        self._tenants = {_digest(t): tenant for t, tenant in tokens.items()}

    @classmethod
    def from_file(cls, path: str | Path) -> "TokenAuth":
        return cls(load_tokens(path))

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant for an `Authorization` header value, or None when it is not valid."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = _digest(token.strip())
        for known, tenant in self._tenants.items():
            if hmac.compare_digest(known, digest):
                return tenant
        return None


def token_id(authorization: str | None) -> str:
    """A short, non-reversible name for the caller's token (for rate limits and logs)."""
    return hashlib.sha256((authorization or "").encode()).hexdigest()[:16]


def is_public(request: Request) -> bool:
    """Paths that need no token (health, metrics: configurable)."""
    return request.url.path in getattr(request.app.state, "public_paths", frozenset())


async def require_tenant(request: Request) -> str:
    """FastAPI dependency: the caller's tenant, or 401 when auth is on and the token is bad
    (on a public path a caller without a valid token is the anonymous tenant)."""
    auth: TokenAuth | None = getattr(request.app.state, "auth", None)
    tenant = ANONYMOUS_TENANT
    if auth is not None:
        tenant = auth.tenant(request.headers.get("authorization"))
        if tenant is None and is_public(request):
            tenant = ANONYMOUS_TENANT
        elif tenant is None:
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
    request.state.tenant = tenant
    tenant_var.set(
        tenant
    )  # async dependency: runs in the request's task, so the handler's logs see it
    return tenant
