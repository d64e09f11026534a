"""Start the real server, `python -m service serve`, on a free port for end-to-end tests."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model_dir: Path, *flags: str, startup_s: float = 120) -> Iterator[str]:
    """Yield the base URL of a server process serving `model_dir`; stop it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--model", str(model_dir)]
    with open(model_dir.parent / f"server-{port}.log", "w+") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port), *flags],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SERVICE_LOG_LEVEL": "warning"},
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, log, startup_s)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_healthy(base_url: str, process: subprocess.Popen, log, startup_s: float) -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/v1/health", timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"server at {base_url} not healthy after {startup_s} s")
