"""A real `redis-server` for the tests: started on a free port in a temp dir, stoppable and
restartable on the same port (to test a Redis that dies mid-run). Missing redis-server is a
failure, not a skip: `.ci/run` installs it."""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server not found: install it (apt-get install redis-server; .ci/run does)"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0, options: Sequence[str] = ()) -> None:
        """`options` come first, so the test's port, address and files win over them."""
        self.process = subprocess.Popen(
            [
                self.binary,
                *options,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.2, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start: see {self.workdir / 'redis.log'}"
                    ) from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """SIGKILL: the abrupt death of a real outage, no clean shutdown."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1.0)


def running_redis_server(workdir: Path) -> Iterator[RedisServer]:
    """Body of a test module's fixture: `yield from running_redis_server(tmp_path)`."""
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
