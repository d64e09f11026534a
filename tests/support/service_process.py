"""Start the real server, `python -m service serve`, on a free port for end-to-end tests."""

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


@contextlib.contextmanager
def server_process(
    model_dir: Path, *flags: str, module: str = "service", startup_s: float = 120
) -> Iterator[ServerProcess]:
    """A server process (`python -m <module> serve`) serving `model_dir`, healthy; stopped
    afterwards if the test has not ended it. `module` may be a test's wrapper of the server."""
    port = free_port()
    command = [sys.executable, "-m", module, "serve", "--model", str(model_dir)]
    with started_server(
        [*command, "--port", str(port), *flags],
        port=port,
        log_path=model_dir.parent / f"server-{port}.log",
        env={**os.environ, "SERVICE_LOG_LEVEL": "warning"},
        startup_s=startup_s,
    ) as server:
        yield server


@contextlib.contextmanager
def started_server(
    command: list[str],
    *,
    port: int,
    log_path: Path,
    env: dict[str, str],
    cwd: Path = REPO,
    startup_s: float = 120,
) -> Iterator[ServerProcess]:
    """Run `command`, a server that listens on `port`; yield it once healthy, stop it afterwards."""
    with open(log_path, "w+") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(base_url, process, log, startup_s)
            yield ServerProcess(base_url, process, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def running_server(model_dir: Path, *flags: str, startup_s: float = 120) -> Iterator[str]:
    """Yield the base URL of a server process serving `model_dir`; stop it afterwards."""
    with server_process(model_dir, *flags, startup_s=startup_s) as server:
        yield server.url


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
