"""Redis cache backend: shared by all replicas. Redis trouble never fails a request.

A down, slow or full Redis turns into misses (and skipped stores), one error metric each and at
most one warning every `warn_every_s`. After a failure the backend rests for a back-off that
doubles up to `max_backoff_s`, so a dead Redis costs requests nothing; then it tries again and
heals by itself when Redis is back.
"""

import asyncio
import logging
import time

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.cache.metrics import ERRORS

logger = logging.getLogger("service.cache")

_FAILURES = (redis.RedisError, OSError, asyncio.TimeoutError)


class RedisCache:
    def __init__(
        self,
        url: str,
        timeout_s: float = 0.05,
        max_connections: int = 64,
        min_backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        warn_every_s: float = 30.0,
    ):
        self.timeout_s = timeout_s
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=max_connections,
            # No retries inside redis-py: a retry would spend the latency budget we protect.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=30,
        )
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.warn_every_s = warn_every_s
        self._backoff_s = 0.0
        self._resting_until = 0.0
        self._last_warning = float("-inf")

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._resting_until

    def _failed(self, op: str, error: BaseException) -> None:
        ERRORS.labels(op=op).inc()
        now = time.monotonic()
        self._backoff_s = min(self.max_backoff_s, max(self.min_backoff_s, 2 * self._backoff_s))
        self._resting_until = now + self._backoff_s
        if now - self._last_warning >= self.warn_every_s:
            self._last_warning = now
            # The error's type only: its text can quote the command, i.e. our keys and values.
            logger.warning(
                "redis cache unavailable, serving misses",
                extra={
                    "fields": {
                        "op": op,
                        "error": type(error).__name__,
                        "backoff_s": self._backoff_s,
                    }
                },
            )

    def _succeeded(self) -> None:
        if self._backoff_s:
            logger.info("redis cache available again")
        self._backoff_s = 0.0

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        if not self.available:
            return [None] * len(keys)
        try:
            values = await asyncio.wait_for(self._redis.mget(keys), 2 * self.timeout_s)
        except _FAILURES as error:
            self._failed("get", error)
            return [None] * len(keys)
        self._succeeded()
        return values

    async def set_many(self, items: dict[str, bytes], ttl_s: float) -> None:
        if not self.available:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(key, value, px=max(1, int(ttl_s * 1000)))
            await asyncio.wait_for(pipe.execute(), 2 * self.timeout_s)
        except _FAILURES as error:
            self._failed("set", error)
            return
        self._succeeded()

    async def close(self) -> None:
        await self._redis.aclose()
