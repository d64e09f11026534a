"""Run untrusted generated code: a subprocess with time, memory and file limits and no network.

Generated programs can loop, allocate without bound, delete files or open connections. Each one
runs in a fresh interpreter (`python -I`: no user site, no PYTHON* variables) in an empty
temporary directory with an empty environment, under rlimits (set by `prlimit`, not a
`preexec_fn`, so that programs can run from several threads at once), in its own process group
(killed whole on timeout), and without network: in a new network namespace where `unshare -rn` is
allowed, and with `socket` disabled in any case.
"""

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

# Runs before the candidate: no sockets even where network namespaces are unavailable.
NO_NETWORK = """\
import socket as _socket
def _refuse(*args, **kwargs):
    raise OSError("network access is disabled in the sandbox")
_socket.socket = _socket.create_connection = _socket.socketpair = _refuse
del _socket, _refuse
"""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 5.0
    memory_mb: int = 512
    file_mb: int = 10


@dataclass(frozen=True)
class Outcome:
    passed: bool
    reason: str  # "passed", "failed", "timeout"
    stderr: str


@functools.cache
def network_namespace_prefix() -> tuple[str, ...]:
    """`unshare -rn` (an unprivileged user + network namespace) if this kernel allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return (unshare, "-rn")
    return ()


def limits_prefix(limits: Limits) -> tuple[str, ...]:
    """`prlimit` with the limits: they hold for the command and everything it starts."""
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        raise RuntimeError("the sandbox needs prlimit (util-linux) on PATH")
    cpu_s = int(limits.timeout_s) + 1
    return (
        prlimit,
        f"--as={limits.memory_mb * 2**20}",
        f"--cpu={cpu_s}",
        f"--fsize={limits.file_mb * 2**20}",
        "--core=0",
        "--",
    )


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Execute program; it passes when it exits with status 0 within the limits."""
    with tempfile.TemporaryDirectory(prefix="sandbox-") as workdir:
        command = [
            *limits_prefix(limits),
            *network_namespace_prefix(),
            *(sys.executable, "-I", "-c", NO_NETWORK + program),
        ]
        proc = subprocess.Popen(
            command,
            cwd=workdir,
            env={"PATH": "/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, so a timeout kills its children too
        )
        try:
            _, stderr = proc.communicate(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Outcome(False, "timeout", "")
    text = stderr.decode(errors="replace")[-2000:]
    return Outcome(proc.returncode == 0, "passed" if proc.returncode == 0 else "failed", text)


def run_programs(
    programs: list[str], limits: Limits = Limits(), workers: int | None = None, desc: str = "run"
) -> list[Outcome]:
    """run_program on each, `workers` at a time (default: one per CPU); outcomes in order.
    Most of the time goes to waiting out the timeouts of programs that loop."""
    with ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        outcomes = pool.map(run_program, programs, [limits] * len(programs))
        return list(tqdm(outcomes, total=len(programs), desc=desc, unit="program"))
