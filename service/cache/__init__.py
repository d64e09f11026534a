"""Suggestion cache: Redis for deployments, an in-process LRU otherwise."""

from service.cache.lru import LRUCache
from service.cache.redis_cache import RedisCache
from service.cache.suggestions import CachedSuggestion, CacheQuery, SuggestionCache


def make_suggestion_cache(
    redis_url: str | None, ttl_s: float = 300.0, max_entries: int = 10_000
) -> SuggestionCache:
    backend = RedisCache(redis_url) if redis_url else LRUCache(max_entries=max_entries)
    return SuggestionCache(backend, ttl_s=ttl_s)


__all__ = [
    "CacheQuery",
    "CachedSuggestion",
    "LRUCache",
    "RedisCache",
    "SuggestionCache",
    "make_suggestion_cache",
]
