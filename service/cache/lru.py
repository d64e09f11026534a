"""In-process LRU with per-entry TTL and bounds on entries and bytes: the cache backend when
no Redis is configured (one replica, nothing to share)."""

import time
from collections import OrderedDict
from collections.abc import Callable


class LRUCache:
    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._bytes -= len(key) + len(value)

    def _get(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        now = self._clock()
        return [self._get(k, now) for k in keys]

    async def set_many(self, items: dict[str, bytes], ttl_s: float) -> None:
        expires = self._clock() + ttl_s
        for key, value in items.items():
            if key in self._entries:
                self._drop(key)
            size = len(key) + len(value)
            if size > self.max_bytes:
                continue
            self._entries[key] = (expires, value)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0
