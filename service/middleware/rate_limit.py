"""Per-token rate limits: one token bucket per caller, 429 with Retry-After when empty.

Buckets live in this process; with several replicas each enforces its own share.
"""

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from fastapi import HTTPException, Request

from service.middleware.auth import is_public, token_id


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # bucket size
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 when allowed, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """Token buckets keyed by caller; the least recently seen are dropped past `max_callers`
    (a dropped bucket comes back full, which only errs towards allowing)."""

    def __init__(self, rate_per_s: float, burst: float, max_callers: int = 10_000):
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_callers = max_callers
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def retry_after(self, caller: str, now: float | None = None) -> float:
        """0.0 when the request may go on, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = TokenBucket(self.rate_per_s, self.burst, self.burst, now)
            self._buckets[caller] = bucket
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(caller)
        return bucket.take(now)


async def enforce_rate_limit(request: Request) -> None:
    """FastAPI dependency: 429 + Retry-After when the caller's token has no budget left."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None or is_public(request):
        return
    wait = limiter.retry_after(token_id(request.headers.get("authorization")))
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail="rate limit exceeded",
            headers={"Retry-After": str(math.ceil(wait))},
        )
