"""The suggestion cache the API uses: exact hits and typing-through, on Redis or the LRU.

A lookup is one backend round trip (both keys in one MGET); a store writes both entries in one
pipeline. Everything given here must already be scrubbed.

A value read back is checked to be an entry of the shape this server writes: a corrupt,
truncated or foreign value (another program sharing the Redis, an older format) is a miss,
counted in completion_cache_corrupt_entries_total, never an error for the request. (Its TTL, or
the next store of the same key, replaces it.)
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from service.cache import keys
from service.cache.metrics import CORRUPT_ENTRIES, LOOKUP_SECONDS, LOOKUPS
from service.cache.typing_through import TypingRecord, make_record, trim

FINISH_REASONS = ("stop", "length")


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
            result = decode_entry(exact)
        if result is None and typing is not None and (record := decode_record(typing)):
            rest = trim(record, query.prefix)
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


def is_string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def decode_entry(data: bytes) -> CachedSuggestion | None:
    """An exact entry, or None (counted) when the value is not one this server wrote."""
    try:
        entry = json.loads(data)
        choices, reasons = entry["choices"], entry["finish_reasons"]
    except (ValueError, TypeError, KeyError, RecursionError):
        # Not UTF-8, not JSON, nested past the parser's depth, not an object, a field missing.
        CORRUPT_ENTRIES.labels(kind="exact").inc()
        return None
    valid = (
        is_string_list(choices)
        and is_string_list(reasons)
        and len(choices) == len(reasons) > 0
        and all(reason in FINISH_REASONS for reason in reasons)
    )
    if not valid:
        CORRUPT_ENTRIES.labels(kind="exact").inc()
        return None
    return CachedSuggestion(choices, reasons, "hit")


def decode_record(data: bytes) -> TypingRecord | None:
    """A typing-through record, or None (counted) when the value is not one this server wrote."""
    try:
        record = TypingRecord.decode(data)
    except (ValueError, TypeError, KeyError, RecursionError):
        CORRUPT_ENTRIES.labels(kind="typing").inc()
        return None
    valid = (
        isinstance(record.tail_len, int)
        and not isinstance(record.tail_len, bool)
        and record.tail_len >= 0
        and isinstance(record.tail_digest, str)
        and all(isinstance(choice, str) for choice in record.choices)
    )
    if not valid:
        CORRUPT_ENTRIES.labels(kind="typing").inc()
        return None
    return record
