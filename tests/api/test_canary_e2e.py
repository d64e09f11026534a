"""End to end, real processes: the server (`python -m service serve`) with a real redis-server
as its cache, bearer auth for two tenants and prompt logging at debug level.

After a run of requests in every dialect carrying canary secrets (fresh fakes of every family)
in every field, no canary may appear in Redis (keys or values), in the server's logs, in
/metrics, or in any response. Along the way: cache hits, typing-through, tenant isolation,
sensitive files, 401s, and Redis killed and restarted under traffic.
"""

import json
import random
import re
import statistics
import time

import httpx
import pytest

from tests.support.redis_server import running_redis_server
from tests.support.scripted_checkpoint import build_scripted_checkpoint
from tests.support.secret_corpus import planted_secrets
from tests.support.service_process import running_server

PREFIX = "def add(a, b):\n    return a +"
ALPHA = {"Authorization": "Bearer tok-alpha-0001"}
BETA = {"Authorization": "Bearer tok-beta-0002"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("canary")
    redis_dir = workdir / "redis"
    redis_dir.mkdir()
    tokens = workdir / "tokens"
    tokens.write_text("tok-alpha-0001 alpha\ntok-beta-0002 beta\n")
    model = build_scripted_checkpoint(workdir / "model")
    redis_gen = running_redis_server(redis_dir)
    redis = next(redis_gen)
    flags = ["--redis-url", redis.url, "--auth-tokens-file", str(tokens)]
    flags += ["--log-level", "debug", "--log-prompts", "scrubbed"]
    with running_server(model, *flags) as url:
        log_path = model.parent / f"server-{url.rsplit(':', 1)[1]}.log"
        yield url, redis, log_path
    redis_gen.close()


def canaries(seed: int) -> list[str]:
    return [p.line for p in planted_secrets(random.Random(seed))]


def counter(url: str, name: str, **labels) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def tabby(url: str, prefix: str, headers=ALPHA, **segments) -> httpx.Response:
    body = {"language": "python", "segments": {"prefix": prefix, "suffix": "\n", **segments}}
    return httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=30)


def test_canaries_never_leak_and_the_cache_works(stack):
    url, redis, log_path = stack
    secrets = [p.secret for p in planted_secrets(random.Random(1))] + [
        p.secret for p in planted_secrets(random.Random(2))
    ]
    lines1, lines2 = canaries(1), canaries(2)
    context = "\n".join(lines1) + "\n"
    responses: list[httpx.Response] = []

    # Auth: nothing without a token, except the public health and metrics.
    assert tabby(url, PREFIX, headers={}).status_code == 401
    assert httpx.get(f"{url}/v1/health").status_code == 200

    hits, typing = (
        counter(url, "completion_cache_lookups_total", outcome="hit"),
        counter(url, "completion_cache_lookups_total", outcome="typing_through"),
    )
    first = tabby(
        url,
        context + PREFIX,
        declarations=[{"filepath": "keys.py", "body": lines2[0]}],
        relevant_snippets_from_changed_files=[{"filepath": "a.py", "body": lines2[1], "score": 1}],
        clipboard=lines2[2],
    )
    again = tabby(
        url,
        context + PREFIX,
        declarations=[{"filepath": "keys.py", "body": lines2[0]}],
        relevant_snippets_from_changed_files=[{"filepath": "a.py", "body": lines2[1], "score": 1}],
        clipboard=lines2[2],
    )
    responses += [first, again]
    assert first.status_code == 200 and again.json()["choices"] == first.json()["choices"]
    assert counter(url, "completion_cache_lookups_total", outcome="hit") == hits + 1

    # Different secrets in the same places scrub to the same prompt: a hit too.
    other = tabby(url, "\n".join(canaries(3)) + "\n" + PREFIX)
    hits = counter(url, "completion_cache_lookups_total", outcome="hit")
    same_place = tabby(url, "\n".join(canaries(4)) + "\n" + PREFIX)
    responses += [other, same_place]
    assert same_place.json()["choices"] == other.json()["choices"]
    assert counter(url, "completion_cache_lookups_total", outcome="hit") == hits + 1

    # Typing-through: type the first character of the suggestion just served.
    base = tabby(url, context + PREFIX)
    assert len(base.json()["choices"][0]["text"]) >= 2
    typed = tabby(url, context + PREFIX + base.json()["choices"][0]["text"][0])
    responses += [base, typed]
    assert typed.json()["choices"][0]["text"] == base.json()["choices"][0]["text"][1:]
    assert counter(url, "completion_cache_lookups_total", outcome="typing_through") >= typing + 1

    # Another tenant never gets alpha's entry.
    misses = counter(url, "completion_cache_lookups_total", outcome="miss")
    responses.append(tabby(url, context + PREFIX, headers=BETA))
    assert counter(url, "completion_cache_lookups_total", outcome="miss") == misses + 1

    # Sensitive file: no completion at all.
    sensitive = tabby(url, context + PREFIX, filepath="deploy/.env")
    responses.append(sensitive)
    assert sensitive.status_code == 200 and sensitive.json()["choices"][0]["text"] == ""

    # Other dialects and events.
    openai = {"prompt": context + PREFIX, "suffix": lines2[3], "max_tokens": 8}
    responses.append(httpx.post(f"{url}/v1/completions", json=openai, headers=ALPHA, timeout=30))
    infill = {
        "input_prefix": context + PREFIX,
        "input_suffix": lines2[4],
        "input_extra": [{"filename": "b.py", "text": lines2[5]}],
    }
    responses.append(httpx.post(f"{url}/infill", json=infill, headers=ALPHA, timeout=30))
    event = {"type": "view", "completion_id": lines2[6], "choice_index": 0}
    responses.append(httpx.post(f"{url}/v1/events", json=event, headers=ALPHA, timeout=30))
    bad = httpx.post(f"{url}/v1/completions", content=lines2[7], headers=ALPHA, timeout=30)
    responses.append(bad)
    assert [r.status_code for r in responses[-4:]] == [200, 200, 200, 400]

    # Where a canary could end up.
    client = redis.client()
    stored = client.keys("*")
    assert stored, "nothing was cached in Redis"
    redis_dump = b"".join(k + (client.get(k) or b"") for k in stored).decode("utf-8", "replace")
    metrics = httpx.get(f"{url}/metrics").text
    time.sleep(0.5)  # let the server flush its last log lines
    logs = log_path.read_text()
    places = {
        "responses": "".join(r.text for r in responses),
        "redis": redis_dump,
        "metrics": metrics,
        "logs": logs,
    }
    for place, text in places.items():
        for secret in secrets:
            for piece in {secret, secret[:16], secret[-16:]}:
                assert piece not in text, f"canary piece found in {place}"
    # The prompt did go to the (debug) log, scrubbed; log lines are JSON with request ids.
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(r.get("msg") == "prompt" and "<SECRET_" in r.get("prefix", "") for r in records)
    access = [
        r for r in records if r.get("msg") == "request" and r.get("path") == "/v1/completions"
    ]
    assert access and all(re.fullmatch(r"[0-9a-f]{32}", r["request_id"]) for r in access)
    assert {r["cache"] for r in access} >= {"hit", "miss", "typing_through", "sensitive"}
    assert {r["tenant"] for r in access} >= {"alpha", "beta"}


def test_redis_killed_and_restarted_under_traffic(stack):
    url, redis, _ = stack
    prefix = "def mul(a, b):\n    return a *"
    assert tabby(url, prefix).status_code == 200
    hits = counter(url, "completion_cache_lookups_total", outcome="hit")
    assert tabby(url, prefix).status_code == 200
    assert counter(url, "completion_cache_lookups_total", outcome="hit") == hits + 1

    redis.kill()
    errors = counter(url, "completion_cache_errors_total")
    for _ in range(5):  # answered by the model, as misses
        assert tabby(url, prefix).status_code == 200
    assert counter(url, "completion_cache_errors_total") > errors

    redis.start()  # same port, empty
    deadline = time.monotonic() + 15
    hits = counter(url, "completion_cache_lookups_total", outcome="hit")
    while counter(url, "completion_cache_lookups_total", outcome="hit") == hits:
        assert time.monotonic() < deadline, "the cache did not heal after Redis came back"
        assert tabby(url, prefix).status_code == 200
        time.sleep(0.2)


def test_cache_hit_latency_over_http(stack):
    url, _, _ = stack
    prefix = "def sub(a, b):\n    return a -"
    with httpx.Client(headers=ALPHA, timeout=30) as client:
        body = {"language": "python", "segments": {"prefix": prefix, "suffix": "\n"}}
        client.post(f"{url}/v1/completions", json=body)  # fill the cache
        samples = []
        for _ in range(100):
            start = time.perf_counter()
            assert client.post(f"{url}/v1/completions", json=body).status_code == 200
            samples.append(time.perf_counter() - start)
    p50 = statistics.median(samples) * 1e3
    p90 = statistics.quantiles(samples, n=10)[8] * 1e3
    print(f"\ncache hit over HTTP (Redis, keep-alive): p50 {p50:.2f} ms, p90 {p90:.2f} ms")
    assert p50 < 50  # the target is 5 ms; a loose bound keeps a busy CI from flaking


def test_a_suggestion_that_is_a_secret_is_redacted(tmp_path):
    """A model that always answers with a token-shaped secret (as a model trained on leaked code
    might): the client gets a placeholder, the cache and logs never the secret."""
    leaked = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    model = build_scripted_checkpoint(tmp_path / "model", script=leaked)
    # --no-semantic: the checks would drop the secret as an undefined name before redaction
    with running_server(model, "--log-level", "debug", "--no-semantic") as url:
        for _ in range(2):  # a miss, then a hit from the cache
            response = tabby(url, PREFIX, headers={})
            assert response.status_code == 200
            text = response.json()["choices"][0]["text"]
            assert leaked not in text and "<SECRET_1>" in text
        openai = {"prompt": PREFIX, "suffix": "\n", "max_tokens": 40, "stream": True}
        events = httpx.post(f"{url}/v1/completions", json=openai, timeout=30).text.split("\n\n")
        assert events[-2] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
        streamed = "".join(c["choices"][0]["text"] for c in chunks)
        assert chunks and leaked[:8] not in streamed and "<SECRET_1>" in streamed
        log = (model.parent / f"server-{url.rsplit(':', 1)[1]}.log").read_text()
        assert leaked[:16] not in log


def cut_at_the_cursor(line: str, secret: str) -> tuple[str, str]:
    """The code before and after a cursor placed in the middle of the secret."""
    at = line.index(secret) + len(secret) // 2
    return "import os\n" + line[:at], line[at:] + "\nprint(1)\n"


def test_secrets_cut_by_the_cursor_never_reach_the_model(stack):
    """Every family, cut in two by the cursor, in every dialect (streamed too): neither half
    is in the prompt the model saw (Tabby's return_prompt), the log or Redis."""
    url, redis, log_path = stack
    planted = planted_secrets(random.Random(5))
    halves = [
        h for p in planted for h in (p.secret[: len(p.secret) // 2], p.secret[len(p.secret) // 2 :])
    ]
    seen = []
    for p in planted:
        before, after = cut_at_the_cursor(p.line, p.secret)
        tabby_body = {
            "language": "python",
            "segments": {"prefix": before, "suffix": after},
            "debug_options": {"return_prompt": True},
        }
        response = httpx.post(f"{url}/v1/completions", json=tabby_body, headers=ALPHA, timeout=30)
        assert response.status_code == 200, response.text
        seen.append(response.json()["debug_data"]["prompt"])
        for body, path in (
            ({"prompt": before, "suffix": after, "max_tokens": 4}, "/v1/completions"),
            (
                {"prompt": before, "suffix": after, "max_tokens": 4, "stream": True},
                "/v1/completions",
            ),
            ({"input_prefix": before, "input_suffix": after, "n_predict": 4}, "/infill"),
        ):
            response = httpx.post(f"{url}{path}", json=body, headers=ALPHA, timeout=30)
            assert response.status_code == 200, response.text
            seen.append(response.text)
    assert all("<SECRET_1>" in prompt for prompt in seen[::4])
    client = redis.client()
    seen += [(k + (client.get(k) or b"")).decode("utf-8", "replace") for k in client.keys("*")]
    time.sleep(0.5)  # let the server flush its last log lines
    seen.append(log_path.read_text())
    text = "\n".join(seen)
    for half in halves:
        assert half not in text, (
            "half a secret cut by the cursor reached the model, Redis or the log"
        )
