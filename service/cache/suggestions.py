"""The suggestion cache the API uses: exact hits and typing-through, on Redis or the LRU.

A lookup is one backend round trip (both keys in one MGET); a store writes both entries in one
pipeline. Everything given here must already be scrubbed.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from service.cache import keys
from service.cache.metrics import LOOKUP_SECONDS, LOOKUPS
from service.cache.typing_through import TypingRecord, make_record, trim


class CacheBackend(Protocol):
    async def get_many(self, keys: list[str]) -> list[bytes | None]: ...
    async def set_many(self, items: dict[str, bytes], ttl_s: float) -> None: ...
    async def close(self) -> None: ...


@dataclass(frozen=True)
class CacheQuery:
    """What decides a suggestion. `model` is "model-id@revision"; `prompt_window` the scrubbed
    text sent to the model; `prefix`/`suffix`/`filepath` the scrubbed request segments;
    `typing_decoding` the decoding parameters less those that change as the user types (such
    as a stop rule made from the cursor's line), for the typing-through key."""

    tenant: str
    model: str
    decoding: Mapping[str, object]
    prompt_window: str
    prefix: str
    suffix: str = ""
    filepath: str = ""
    typing_decoding: Mapping[str, object] | None = None
    exact_key: str = field(init=False)
    typing_key: str = field(init=False)

    def __post_init__(self) -> None:
        exact = keys.suggestion_key(self.tenant, self.model, self.decoding, self.prompt_window)
        typing_decoding = self.decoding if self.typing_decoding is None else self.typing_decoding
        typing = keys.typing_key(
            self.tenant, self.model, typing_decoding, self.filepath, self.suffix
        )
        object.__setattr__(self, "exact_key", exact)
        object.__setattr__(self, "typing_key", typing)


@dataclass(frozen=True)
class CachedSuggestion:
    choices: list[str]
    finish_reasons: list[str]
    outcome: Literal["hit", "typing_through"]


class SuggestionCache:
    def __init__(
        self, backend: CacheBackend, ttl_s: float = 300.0, max_value_bytes: int = 64 << 10
    ):
        self.backend = backend
        self.ttl_s = ttl_s
        self.max_value_bytes = max_value_bytes

    async def lookup(self, query: CacheQuery) -> CachedSuggestion | None:
        start = time.perf_counter()
        exact, typing = await self.backend.get_many([query.exact_key, query.typing_key])
        result = None
        if exact is not None:
            entry = json.loads(exact)
            result = CachedSuggestion(entry["choices"], entry["finish_reasons"], "hit")
        elif typing is not None:
            rest = trim(TypingRecord.decode(typing), query.prefix)
            if rest is not None:
                result = CachedSuggestion(rest, ["stop"] * len(rest), "typing_through")
        LOOKUP_SECONDS.observe(time.perf_counter() - start)
        LOOKUPS.labels(outcome=result.outcome if result else "miss").inc()
        return result

    async def store(
        self, query: CacheQuery, choices: list[str], finish_reasons: list[str] | None = None
    ) -> None:
        if not any(choices):
            return
        entry = json.dumps(
            {
                "choices": choices,
                "finish_reasons": finish_reasons or ["stop"] * len(choices),
                "model": query.model,
                "stored_at": time.time(),
            }
        )
        items = {
            query.exact_key: entry.encode(),
            query.typing_key: make_record(query.prefix, choices).encode(),
        }
        items = {k: v for k, v in items.items() if len(v) <= self.max_value_bytes}
        await self.backend.set_many(items, self.ttl_s)

    async def close(self) -> None:
        await self.backend.close()
