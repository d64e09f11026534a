"""Builds and loads the C++ CPU kernels (`kernels/csrc`), once per machine.

torch's `cpp_extension` compiles them with the machine's C++ compiler on first use (≈12 s on 2
cores; needs g++ and ninja) and caches the library under `TORCH_EXTENSIONS_DIR` (default
`~/.cache/torch_extensions`), so later loads take milliseconds. They are compiled for the CPU at
hand (`-march=native`), so the cache name carries a hash of the CPU's model and flags. Where they
cannot be built, the CPU attention uses torch's own operators instead (slower at decode, same
results) and the log says so once.
"""

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import platform
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

SOURCES = [
    Path(__file__).parent / "csrc" / name
    for name in (
        "cpu_paged_attention.cpp",
        "rotary_embedding.cpp",
        "rms_norm.cpp",
        "cpu_linear.cpp",
        "cpu_decode_layers.cpp",
    )
]
# -ffast-math at compile time only (linking it would set flush-to-zero for the whole process):
# it lets the softmax call glibc's vectorised expf.
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]

log = logging.getLogger(__name__)


def cpu_fingerprint() -> str:
    """A short hash of what -march=native compiles for: the machine, CPU model and flags."""
    described = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        described += "".join(
            next((line for line in lines if line.startswith(key)), "")
            for key in ("model name", "flags")
        )
    return hashlib.sha256(described.encode()).hexdigest()[:12]


def library_name() -> str:
    """The kernels' library name: one per CPU it was compiled for."""
    return f"completion_kernels_{cpu_fingerprint()}"


def build_directory(name: str) -> Path:
    """Where the library named NAME is built and cached: one per Python and torch version."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return Path(root) / f"{python}_torch{torch.__version__}" / name


@contextlib.contextmanager
def only_builder(directory: Path) -> Iterator[None]:
    """Be the one process building in DIRECTORY, and clear what a killed build left behind.

    torch marks a build in progress with a `lock` file that a killed build never removes, and
    every later load then waits on it forever. An flock is dropped by the kernel when its holder
    dies, so while we hold one no other build is running and a `lock` file found is stale.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "build.flock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (directory / "lock").unlink(missing_ok=True)
        yield


@functools.cache
def cpu_kernels():
    """`torch.ops.completion_kernels`, built first if needed; None where it cannot be built."""
    from torch.utils.cpp_extension import load

    if shutil.which("ninja") is None:  # a venv's ninja, when the venv is not on PATH
        import ninja

        os.environ["PATH"] = f"{ninja.BIN_DIR}{os.pathsep}{os.environ['PATH']}"
    name = library_name()
    try:
        with only_builder(directory := build_directory(name)):
            load(
                name=name,
                sources=[str(path) for path in SOURCES],
                extra_cflags=CFLAGS,
                extra_ldflags=["-fopenmp"],
                build_directory=str(directory),
                is_python_module=False,
            )
    except (OSError, RuntimeError) as error:
        log.warning("C++ CPU kernels unavailable, using torch operators instead: %s", error)
        return None
    return torch.ops.completion_kernels


@functools.cache
def bf16_kernels():
    """The compiled kernels where they were built for AVX512-BF16 (our bf16 products and bf16
    attention path), else None. Asked once: the model runner plans every step with it."""
    kernels = cpu_kernels()
    return kernels if kernels is not None and kernels.linear_kernel_available() else None


if __name__ == "__main__":  # `python -m completion_kernels.cpu_extension`: build now (images, CI)
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(0 if cpu_kernels() is not None else 1)
