"""Prometheus metrics of the suggestion cache (default registry, so /metrics shows them)."""

from prometheus_client import Counter, Histogram

LOOKUPS = Counter(
    "completion_cache_lookups_total",
    "Suggestion cache lookups by outcome: hit, typing_through (a trimmed earlier suggestion), miss.",
    ["outcome"],
)
ERRORS = Counter(
    "completion_cache_errors_total",
    "Cache backend operations that failed (and were served as misses / not stored).",
    ["op"],
)
CORRUPT_ENTRIES = Counter(
    "completion_cache_corrupt_entries_total",
    "Cache values that were not an entry this server writes (corrupt, truncated, foreign), "
    "served as misses.",
    ["kind"],
)
LOOKUP_SECONDS = Histogram(
    "completion_cache_lookup_seconds",
    "Time of one suggestion cache lookup, backend round trip included.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5),
)
