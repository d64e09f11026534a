"""llama.cpp's `llama-server`, built from the llama-cpp-python source distribution, as a baseline.

The sdist on PyPI vendors llama.cpp with `tools/server` and `convert_hf_to_gguf.py`. Everything
lands in the git-ignored `build/`: the unpacked sources, the CMake build, the GGUF files.
"""

import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SERVER_BINARY = BUILD / "llama.cpp" / "build" / "bin" / "llama-server"

# Only the server; its web UI would be downloaded at configure time, so it is switched off.
CMAKE_FLAGS = [
    "-G",
    "Ninja",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
]

# The converter hashes how the tokenizer splits a test string to name its pre-tokenizer, and
# refuses a hash it does not know; and for a Llama it tries a SentencePiece vocabulary first.
# Ours is a freshly trained byte-level BPE, which splits like GPT-2: we say so. The patches live
# in this subprocess only, the sources stay untouched.
CONVERT_SCRIPT = """
import sys
sys.path[:0] = [{llama_dir!r}, {llama_dir!r} + "/gguf-py"]
import conversion.base, conversion.llama
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
conversion.llama.LlamaModel.set_vocab = lambda self: self._set_vocab_gpt2()
import convert_hf_to_gguf
sys.argv = ["convert_hf_to_gguf.py", *{args!r}]
convert_hf_to_gguf.main()
"""


def llama_dir() -> Path:
    return BUILD / "llama.cpp"


def fetch_sources() -> Path:
    """Download and unpack the llama-cpp-python sdist; `build/llama.cpp` links to its vendor dir."""
    if llama_dir().exists():
        return llama_dir()
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, "llama-cpp-python", "-d", str(BUILD)], check=True)
    (sdist,) = BUILD.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(BUILD, filter="data")
    vendored = BUILD / sdist.name.removesuffix(".tar.gz") / "vendor" / "llama.cpp"
    llama_dir().symlink_to(vendored.relative_to(BUILD))
    return llama_dir()


def build_server(jobs: int = 2) -> Path:
    """Configure and build the `llama-server` target only (≈10 minutes on 2 cores)."""
    if SERVER_BINARY.exists():
        return SERVER_BINARY
    source = fetch_sources()
    # The sdist keeps the submodule's `.git` link to a git dir it does not ship; CMake makes that
    # dir's missing `index` a configure dependency, so Ninja re-ran CMake forever ("manifest
    # 'build.ninja' still dirty after 100 tries"). Without the link it configures once.
    (source / ".git").unlink(missing_ok=True)
    nice = ["nice", "-n", "10"]
    subprocess.run([*nice, "cmake", "-S", source, "-B", source / "build", *CMAKE_FLAGS], check=True)
    build = ["cmake", "--build", source / "build", "--target", "llama-server", f"-j{jobs}"]
    subprocess.run([*nice, *build], check=True)
    return SERVER_BINARY


def convert_to_gguf(checkpoint: Path, out_file: Path) -> Path:
    """The Hugging Face checkpoint as an f32 GGUF file (kept f32 to compare like with like)."""
    if out_file.exists():
        return out_file
    args = [str(checkpoint), "--outfile", str(out_file), "--outtype", "f32"]
    script = CONVERT_SCRIPT.format(llama_dir=str(fetch_sources()), args=args)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=llama_dir())
    return out_file


def wait_until_healthy(url: str, process: subprocess.Popen, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not healthy after {timeout_s:.0f} s")


def server_command(gguf: Path, port: int, slots: int, slot_context: int, threads: int) -> list[str]:
    return [
        str(SERVER_BINARY),
        "-m",
        str(gguf),
        "--port",
        str(port),
        "-np",
        str(slots),
        "-c",
        str(slots * slot_context),  # -c is shared by the slots
        "-t",
        str(threads),
        "-fa",
        "off",  # flash attention changed greedy outputs on some prompts
        "--no-webui",
        "--log-disable",
    ]
