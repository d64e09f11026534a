"""Rate limits: token buckets, 429 with Retry-After when one is empty.

Requests are limited per tenant (the caller `Authenticate` resolved, so the spelling of the
`Authorization` header cannot open a fresh bucket), or per client address when auth is off.
Failed token checks have their own buckets per client address (see service/middleware/auth.py).
Buckets live in this process; with several replicas each enforces its own share.
"""

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import HTTPException, Request


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # bucket size
    tokens: float
    updated: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_s(self) -> float:
        """0.0 when a token is there, else the seconds until one is."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate

    def take(self, now: float) -> float:
        """Take one token; 0.0 when allowed, else the seconds until one is available."""
        self.refill(now)
        wait = self.wait_s()
        if wait == 0.0:
            self.tokens -= 1.0
        return wait


class RateLimiter:
    """Token buckets keyed by caller; the least recently seen are dropped past `max_callers`
    (a dropped bucket comes back full, which only errs towards allowing)."""

    def __init__(self, rate_per_s: float, burst: float, max_callers: int = 10_000):
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def _bucket(self, caller: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst, self.burst, now)
            self._buckets[caller] = bucket
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
            bucket.refill(now)
        return bucket

    def retry_after(self, caller: str, now: float | None = None) -> float:
        """Take one request's token: 0.0 when it may go on, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        return self._bucket(caller, now).take(now)

    def wait_s(self, caller: str, now: float | None = None) -> float:
        """Like retry_after, without taking anything: 0.0 while the caller has budget left."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(caller)
        if bucket is None:
            return 0.0
        bucket.refill(now)
        return bucket.wait_s()


def caller_key(request: Request) -> str:
    """Whom a request is counted against: its tenant when auth is on, else its address."""
    if getattr(request.app.state, "auth", None) is not None:
        return "tenant:" + request.state.tenant
    return "client:" + (request.client.host if request.client else "unknown")


async def enforce_rate_limit(request: Request) -> None:
    """FastAPI dependency: 429 + Retry-After when the caller has no budget left."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or request.url.path in getattr(request.app.state, "public_paths", ()):
        return
    wait = limiter.retry_after(caller_key(request))
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail=f"rate limit exceeded: retry after {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
