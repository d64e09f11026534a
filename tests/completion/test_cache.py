"""Suggestion cache: keys, LRU, typing-through, tenant isolation, and a real redis-server that
gets slow, full, killed and restarted while requests keep being answered."""

import asyncio
import re
import time

import pytest

from service.cache import LRUCache, RedisCache, SuggestionCache
from service.cache.keys import suggestion_key, typing_key
from service.cache.metrics import CORRUPT_ENTRIES, ERRORS, LOOKUPS
from service.cache.suggestions import CacheQuery
from service.cache.typing_through import make_record, trim
from tests.support.redis_server import RedisServer, running_redis_server

DECODING = {"max_tokens": 16, "temperature": 0.0, "stop": ["\n\n"]}
PREFIX = "import os\n\ndef load_config(path):\n    with open(path) as f:\n        "
SUFFIX = "\n\nprint(load_config('x'))\n"


def query(tenant: str = "acme", prefix: str = PREFIX, **overrides) -> CacheQuery:
    fields = dict(
        tenant=tenant,
        model="tiny-gpt2@rev1",
        decoding=DECODING,
        prompt_window="<fim_prefix>" + prefix + "<fim_suffix>" + SUFFIX + "<fim_middle>",
        prefix=prefix,
        suffix=SUFFIX,
        filepath="src/config.py",
    )
    return CacheQuery(**(fields | overrides))


def counter(metric, **labels) -> float:
    return metric.labels(**labels)._value.get()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def redis_server(tmp_path):
    yield from running_redis_server(tmp_path)


# --- keys -------------------------------------------------------------------------------------


def test_keys_hold_nothing_readable_and_separate_what_matters():
    key = suggestion_key("acme-corp", "tiny-gpt2@rev1", DECODING, "def secret_function(): pass")
    assert re.fullmatch(r"cc:[0-9a-f]{24}:s:[0-9a-f]{64}", key)
    assert "acme" not in key and "secret_function" not in key and "gpt2" not in key
    tkey = typing_key("acme-corp", "tiny-gpt2@rev1", DECODING, "src/config.py", SUFFIX)
    assert re.fullmatch(r"cc:[0-9a-f]{24}:t:[0-9a-f]{64}", tkey) and "config" not in tkey

    base = ("acme", "m@1", DECODING, "prompt")
    assert suggestion_key(*base) == suggestion_key(
        "acme", "m@1", dict(reversed(DECODING.items())), "prompt"
    )
    others = [
        ("other", "m@1", DECODING, "prompt"),
        ("acme", "m@2", DECODING, "prompt"),
        ("acme", "m@1", DECODING | {"temperature": 0.2}, "prompt"),
        ("acme", "m@1", DECODING, "prompt "),
    ]
    assert len({suggestion_key(*base)} | {suggestion_key(*o) for o in others}) == 5
    # Field boundaries are part of the hash.
    assert suggestion_key("ab", "c", {}, "") != suggestion_key("a", "bc", {}, "")


# --- LRU --------------------------------------------------------------------------------------


def test_lru_ttl_and_bounds():
    now = [0.0]
    lru = LRUCache(max_entries=3, max_bytes=10_000, clock=lambda: now[0])
    run(lru.set_many({"a": b"1", "b": b"2", "c": b"3"}, ttl_s=10))
    assert run(lru.get_many(["a"])) == [b"1"]  # a is now the most recently used
    run(lru.set_many({"d": b"4"}, ttl_s=10))
    assert run(lru.get_many(["a", "b", "c", "d"])) == [b"1", None, b"3", b"4"]
    now[0] = 10.0
    assert run(lru.get_many(["a", "c", "d"])) == [None, None, None]
    assert len(lru) == 0 and lru.nbytes == 0

    small = LRUCache(max_entries=100, max_bytes=50, clock=lambda: now[0])
    run(small.set_many({f"k{i}": b"x" * 10 for i in range(10)}, ttl_s=10))
    assert small.nbytes <= 50 and run(small.get_many(["k9"])) == [b"x" * 10]
    run(small.set_many({"huge": b"x" * 100}, ttl_s=10))  # larger than the whole cache
    assert run(small.get_many(["huge"])) == [None]


# --- typing-through ---------------------------------------------------------------------------


def test_trim_answers_only_a_continuation_of_the_served_suggestion():
    record = make_record("x = fo", ["o(bar)\n", "obar\n"])
    assert trim(record, "x = foo(") == ["bar)\n"]
    assert trim(record, "x = foo") == ["(bar)\n", "bar\n"]
    assert trim(record, "x = fox") is None  # typed something else
    assert trim(record, "x = fo") is None  # nothing typed: that is the exact entry's job
    assert trim(record, "y = foo(") is None  # same length, different earlier text
    assert trim(record, "x = foo(bar)\n") is None  # typed the whole suggestion
    # The prompt window slid forward at its start while the user typed: still a continuation.
    long_record = make_record("#" * 100 + "\nx = fo", ["o(bar)\n"])
    assert trim(long_record, "#" * 90 + "\nx = foo(b") == ["ar)\n"]
    assert trim(long_record, "#" * 90 + "\ny = foo(b") is None


# --- the cache on both backends ---------------------------------------------------------------


@pytest.fixture(params=["lru", "redis"])
def cache(request, tmp_path):
    if request.param == "lru":
        backend = LRUCache()
    else:
        server = RedisServer(tmp_path)
        server.start()
        request.addfinalizer(server.kill)
        backend = RedisCache(server.url)
    return SuggestionCache(backend, ttl_s=60)


def test_hit_typing_through_and_tenant_isolation(cache):
    async def scenario():
        misses = counter(LOOKUPS, outcome="miss")
        assert await cache.lookup(query()) is None
        await cache.store(query(), ["data = f.read()\n        return data"])

        hit = await cache.lookup(query())
        assert hit.outcome == "hit" and hit.choices == ["data = f.read()\n        return data"]

        typed = await cache.lookup(query(prefix=PREFIX + "data = f."))
        assert typed.outcome == "typing_through" and typed.choices == [
            "read()\n        return data"
        ]
        assert await cache.lookup(query(prefix=PREFIX + "data = g")) is None

        # Same request from another tenant: never served the first tenant's suggestion.
        assert await cache.lookup(query(tenant="globex")) is None
        assert await cache.lookup(query(tenant="globex", prefix=PREFIX + "data = f.")) is None
        assert counter(LOOKUPS, outcome="miss") - misses == 4
        await cache.close()

    run(scenario())


def test_redis_stores_nothing_readable(redis_server):
    async def scenario():
        cache = SuggestionCache(RedisCache(redis_server.url), ttl_s=60)
        await cache.store(query(), ["data = f.read()"])
        await cache.close()

    run(scenario())
    client = redis_server.client()
    stored = client.keys("*")
    assert len(stored) == 2
    for key in stored:
        assert re.fullmatch(rb"cc:[0-9a-f]{24}:[st]:[0-9a-f]{64}", key)
        value = client.get(key)
        assert b"load_config" not in value and b"acme" not in value and b"config.py" not in value
        assert 0 < client.pttl(key) <= 60_000


def test_redis_killed_slow_and_full_means_misses_then_heals(redis_server):
    async def scenario():
        backend = RedisCache(
            redis_server.url, timeout_s=0.05, min_backoff_s=0.05, max_backoff_s=0.2
        )
        cache = SuggestionCache(backend, ttl_s=60)
        await cache.store(query(), ["data = f.read()"])
        assert (await cache.lookup(query())).outcome == "hit"

        errors = counter(ERRORS, op="get")
        redis_server.kill()
        for _ in range(20):  # requests keep being answered, as fast misses
            start = time.perf_counter()
            assert await cache.lookup(query()) is None
            await cache.store(query(), ["data = f.read()"])
            assert time.perf_counter() - start < 0.5
            await asyncio.sleep(0.02)
        assert counter(ERRORS, op="get") > errors

        redis_server.start()  # same port, empty: data died with the process
        deadline = time.monotonic() + 5
        while (await cache.lookup(query())) is None:
            assert time.monotonic() < deadline, "cache did not heal after Redis came back"
            await cache.store(query(), ["data = f.read()"])
            await asyncio.sleep(0.05)

        # Slow Redis: every client paused for 1 s; the lookup times out as a miss.
        redis_server.client().execute_command("CLIENT", "PAUSE", "1000", "ALL")
        start = time.perf_counter()
        assert await cache.lookup(query()) is None
        assert time.perf_counter() - start < 0.5
        await asyncio.sleep(1.1)

        # Full Redis: stores fail with OOM, nothing raises; lookups still work.
        admin = redis_server.client()
        admin.flushall()
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        set_errors = counter(ERRORS, op="set")
        await cache.store(query(), ["data = f.read()"])
        assert counter(ERRORS, op="set") == set_errors + 1
        await asyncio.sleep(0.25)  # past the back-off
        assert await cache.lookup(query()) is None
        await cache.close()

    run(scenario())


# Values another program, a bit flip or an older format could leave under our keys.
FOREIGN_VALUES = [
    b"\xff\xfe not utf-8",
    b"not json",
    b"[" * 100_000,  # deeper than the JSON parser goes
    b"[1, 2]",
    b'{"choices": "text", "finish_reasons": ["stop"]}',
    b'{"choices": [1], "finish_reasons": ["stop"]}',
    b'{"choices": ["a", "b"], "finish_reasons": ["stop"]}',
    b'{"choices": ["a"], "finish_reasons": ["exploded"]}',
    b'{"choices": [], "finish_reasons": []}',
    b'{"n": "x", "d": 5, "c": 7}',
    b'{"n": 3, "d": "abc", "c": [null]}',
]


@pytest.mark.parametrize("backend_kind", ["lru", "redis"])
def test_corrupt_or_foreign_values_are_counted_misses(backend_kind, tmp_path):
    async def scenario(backend):
        cache = SuggestionCache(backend, ttl_s=60)
        typed = query(prefix=PREFIX + "data = f.")
        for value in FOREIGN_VALUES:
            before = counter(CORRUPT_ENTRIES, kind="exact") + counter(
                CORRUPT_ENTRIES, kind="typing"
            )
            await backend.set_many({query().exact_key: value, query().typing_key: value}, 60)
            assert await cache.lookup(query()) is None, value
            assert await cache.lookup(typed) is None, value
            after = counter(CORRUPT_ENTRIES, kind="exact") + counter(CORRUPT_ENTRIES, kind="typing")
            assert after - before == 3, value  # both keys on the first lookup, typing on the next
        # A good store replaces the bad value and is served again.
        await cache.store(query(), ["data = f.read()"])
        assert (await cache.lookup(query())).choices == ["data = f.read()"]
        await cache.close()

    if backend_kind == "lru":
        run(scenario(LRUCache()))
        return
    server = RedisServer(tmp_path)
    server.start()
    try:
        run(scenario(RedisCache(server.url)))
    finally:
        server.kill()
