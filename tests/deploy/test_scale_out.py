"""Two replicas as processes, the way docker-compose.yml runs them: two servers sharing one real
redis-server behind nginx (Debian's package) with the routing rule of docker/nginx.conf, hashing
X-Session-Id consistently. Suggestions cached by one replica are hits on the other, tenants stay
apart across replicas, and a replica killed mid-load loses only the requests it had in flight,
whose client retry lands on the survivor."""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.redis_server import RedisServer
from tests.support.service_process import REPO, ServerProcess, free_port, started_server

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = [
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (.ci/run installs it)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server missing"),
]
TOKENS = {"alpha": "tok-alpha-123", "beta": "tok-beta-456"}


def nginx_conf(tmp: Path, port: int, upstreams: list[str]) -> Path:
    """docker/nginx.conf with the test's addresses; the routing rule itself is kept verbatim."""
    conf = (REPO / "docker" / "nginx.conf").read_text()
    servers = "".join(f"server {u} max_fails=1 fail_timeout=30s;\n" for u in upstreams)
    conf, n = re.subn(r"server completion:8000[^;]*;\n", servers, conf)
    assert n == 1
    conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{port};")
    temp = "".join(
        f"{kind}_temp_path {tmp}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = conf.replace(
        "http {",
        f"http {{\naccess_log off;\n{temp}add_header X-Served-By $upstream_addr always;\n",
    )
    conf = conf.replace("worker_processes auto;", "worker_processes 1;")
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path


@contextlib.contextmanager
def running_nginx(tmp: Path, upstreams: list[str]):
    port = free_port()
    conf = nginx_conf(tmp, port, upstreams)
    settings = f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx-error.log;"
    process = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf), "-g", settings])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{url}/v1/health", timeout=1)
                break
            assert process.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    tokens = tmp / "tokens"
    tokens.write_text("".join(f"{t} {tenant}\n" for tenant, t in TOKENS.items()))
    redis = RedisServer(tmp)
    redis.start()
    replicas: list[ServerProcess] = []
    try:
        with contextlib.ExitStack() as stack:
            for i in range(2):
                port = free_port()
                command = [
                    sys.executable,
                    "-m",
                    "service",
                    "serve",
                    "--port",
                    str(port),
                    "--device",
                    "cpu",
                    "--num-threads",
                    "1",
                    "--redis-url",
                    redis.url,
                    "--auth-tokens-file",
                    str(tokens),
                    "--drain-timeout-s",
                    "2",
                ]
                replicas.append(
                    stack.enter_context(
                        started_server(
                            command,
                            port=port,
                            log_path=tmp / f"replica-{i}.log",
                            env={**os.environ, "SERVICE_LOG_LEVEL": "warning"},
                        )
                    )
                )
            upstreams = [r.url.removeprefix("http://") for r in replicas]
            url = stack.enter_context(running_nginx(tmp, upstreams))
            yield url, replicas, redis
    finally:
        redis.kill()


def complete(url: str, prefix: str, session: str, tenant: str = "alpha", timeout: float = 60):
    body = {
        "language": "python",
        "segments": {"prefix": prefix, "suffix": "\n"},
        "max_tokens": 24,
    }
    headers = {"X-Session-Id": session, "Authorization": f"Bearer {TOKENS[tenant]}"}
    return httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=timeout)


def cache_counts(replica: ServerProcess) -> dict[str, float]:
    text = httpx.get(f"{replica.url}/metrics").text
    found = re.findall(r'completion_cache_lookups_total\{outcome="(\w+)"\} ([\d.]+)', text)
    return {outcome: float(n) for outcome, n in found}


def sessions_by_replica(url: str, per_replica: int = 1) -> dict[str, list[str]]:
    """Session ids nginx routes to each replica (address -> sessions), by asking it."""
    found: dict[str, list[str]] = {}
    for i in range(400):
        session = f"editor-{i}"
        served_by = httpx.get(f"{url}/v1/health", headers={"X-Session-Id": session}).headers[
            "X-Served-By"
        ]
        found.setdefault(served_by, [])
        if len(found[served_by]) < per_replica:
            found[served_by].append(session)
        if len(found) == 2 and all(len(v) == per_replica for v in found.values()):
            return found
    raise AssertionError(f"400 sessions did not spread over two replicas: {found}")


def test_sessions_stick_and_cache_hits_cross_replicas_but_not_tenants(fleet):
    url, replicas, _redis = fleet
    (first, [first_session]), (second, [second_session]) = sessions_by_replica(url).items()
    by_address = {r.url.removeprefix("http://"): r for r in replicas}
    for _ in range(5):  # a session's requests all reach its replica
        response = httpx.get(f"{url}/v1/health", headers={"X-Session-Id": first_session})
        assert response.headers["X-Served-By"] == first

    prefix = "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return "
    computed = complete(url, prefix, first_session)
    assert computed.status_code == 200, computed.text
    assert computed.headers["X-Served-By"] == first

    other = by_address[second]
    before = cache_counts(other)
    foreign = complete(url, prefix, second_session, tenant="beta")
    after_foreign = cache_counts(other)
    hit = complete(url, prefix, second_session, tenant="alpha")
    after_hit = cache_counts(other)
    assert foreign.status_code == hit.status_code == 200
    assert foreign.headers["X-Served-By"] == hit.headers["X-Served-By"] == second
    # Tenant beta's identical request on the other replica is not served alpha's entry...
    assert after_foreign.get("hit", 0) == before.get("hit", 0)
    assert after_foreign.get("miss", 0) == before.get("miss", 0) + 1
    # ...while alpha's is, from the entry the first replica stored in the shared Redis.
    assert after_hit.get("hit", 0) == after_foreign.get("hit", 0) + 1
    assert hit.json()["choices"] == computed.json()["choices"]


def test_a_killed_replica_loses_only_its_in_flight_requests_and_retries_land(fleet):
    url, replicas, _redis = fleet
    victim = replicas[1]
    routes = sessions_by_replica(url, per_replica=3)
    sessions = [*routes[victim.url.removeprefix("http://")]] + [
        s
        for address, group in routes.items()
        if address != victim.url.removeprefix("http://")
        for s in group
    ]
    stop = threading.Event()
    lock = threading.Lock()
    outcomes: list[tuple[float, int, int | None]] = []  # (start, first status, retry status)
    killed_at: list[float] = []

    def user(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            prefix = f"def user_{n}_function_{i}(value):\n    result = value * {i}\n    return "
            session = sessions[n]
            start = time.monotonic()
            try:
                status = complete(url, prefix, session, timeout=30).status_code
            except httpx.TransportError:
                status = 0
            retry = None
            if status != 200:
                try:
                    retry = complete(url, prefix, session, timeout=30).status_code
                except httpx.TransportError:
                    retry = 0
            with lock:
                outcomes.append((start, status, retry))

    users = [threading.Thread(target=user, args=(n,)) for n in range(6)]
    for thread in users:
        thread.start()
    time.sleep(4)
    victim.process.kill()  # SIGKILL: no drain, the requests in flight there are lost
    victim.process.wait()
    killed_at.append(time.monotonic())
    time.sleep(5)
    stop.set()
    for thread in users:
        thread.join(timeout=60)

    (kill_time,) = killed_at
    failed = [o for o in outcomes if o[1] != 200]
    after_kill = [o for o in outcomes if o[0] > kill_time]
    assert after_kill and all(o[1] == 200 for o in after_kill), after_kill
    # Only requests that were in flight when the replica died failed: at most one per user.
    assert all(start < kill_time for start, _, _ in failed), failed
    assert len(failed) <= len(users)
    assert all(retry == 200 for _, _, retry in failed), failed
    assert sum(o[1] == 200 for o in outcomes if o[0] < kill_time) > 0
    print(f"{len(outcomes)} requests, {len(failed)} lost in flight and retried")
