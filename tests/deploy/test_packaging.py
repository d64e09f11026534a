"""A fresh install works and keeps working: no import name of ours is another distribution's, the
runtime dependencies are exactly what the server imports, and a wheel installed from the runtime
lock alone (no extras, no Triton) serves a completion beside Hugging Face's `kernels`."""

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.service_process import REPO, free_port, started_server

OUR_DISTRIBUTION = "completion-service"
# Import names the wheel installs (setup.py), and the repository's other importable folders.
SHIPPED_IMPORT_NAMES = ("service", "training", "completion_kernels")
REPOSITORY_IMPORT_NAMES = ("benchmarks", "loadtests", "tests")
SERVER_SOURCES = ("service", "kernels")  # what `python -m service serve` may import
CUDA_ONLY = {"triton"}  # the `cuda` extra: imported only where Triton runs


def declared(extra: str | None = None) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Top-level names of the absolute imports in a module (at module level only, if asked)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def server_modules() -> list[Path]:
    return [p for folder in SERVER_SOURCES for p in sorted((REPO / folder).rglob("*.py"))]


def test_no_other_installed_distribution_claims_our_import_names():
    """Two distributions with one import name cannot share an environment: transformers 5.25
    imports Hugging Face's `kernels`, which a top-level `kernels` package of ours shadowed."""
    owners = importlib.metadata.packages_distributions()
    for name in SHIPPED_IMPORT_NAMES + REPOSITORY_IMPORT_NAMES:
        others = {d for d in owners.get(name, []) if canonicalize_name(d) != OUR_DISTRIBUTION}
        assert not others, f"import name {name!r} is also installed by {sorted(others)}"


def test_hugging_face_kernels_and_ours_both_import_from_the_repository_root():
    assert importlib.metadata.version("kernels"), "transformers 5.25+ brings Hugging Face's kernels"
    probe = (
        "import json, kernels, completion_kernels.paged_attention as ours\n"
        "from transformers.integrations import hub_kernels\n"
        "from transformers import AutoConfig\n"
        "AutoConfig.from_pretrained('checkpoints/default')\n"
        "print(json.dumps([kernels.__file__, ours.__file__]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    theirs, ours = json.loads(done.stdout.splitlines()[-1])
    hugging_face = importlib.metadata.distribution("kernels")
    assert Path(theirs) == Path(hugging_face.locate_file("kernels/__init__.py")), theirs
    assert Path(ours) == REPO / "kernels" / "paged_attention.py"


def test_runtime_dependencies_are_exactly_what_the_server_imports():
    owners = importlib.metadata.packages_distributions()
    ours = set(SHIPPED_IMPORT_NAMES)
    third_party = {
        name
        for path in server_modules()
        for name in imports(path)
        if name not in sys.stdlib_module_names and name not in ours
    }
    needed = {canonicalize_name(d) for name in third_party - CUDA_ONLY for d in owners[name]}
    assert needed == declared(), (
        f"imported but not declared: {sorted(needed - declared())}; "
        f"declared but never imported by the server: {sorted(declared() - needed)}"
    )
    assert {canonicalize_name(n) for n in CUDA_ONLY} <= declared("cuda")


def test_triton_is_imported_only_by_the_modules_that_run_it_and_only_lazily():
    """The CPU torch wheel does not bring Triton, and `pip install .` must serve on a CPU."""
    triton_modules = {p.stem for p in server_modules() if "triton" in imports(p)}
    assert triton_modules == {"triton_paged_attention", "triton_beam_step"}
    for path in server_modules():
        tree = ast.parse(path.read_text())
        eager = {
            node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module
        } | {
            alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names
        }
        assert not {m for m in eager if m.split(".")[-1] in triton_modules}, path


def test_docker_images_and_the_makefile_install_through_the_one_script():
    """The install commands of the images are the ones this file's wheel test runs."""
    assert (
        "requirements/install.sh $(BIN)/pip requirements/dev.txt -e ."
        in (REPO / "Makefile").read_text()
    )
    for dockerfile in ("docker/Dockerfile", "docker/Dockerfile.cuda"):
        text = (REPO / dockerfile).read_text()
        assert "requirements/install.sh /venv/bin/pip requirements/runtime.txt ." in text
        pip_lines = [line for line in text.splitlines() if re.search(r"\bpip3? install\b", line)]
        assert not pip_lines, f"{dockerfile} installs around the lock: {pip_lines}"


def test_a_wheel_from_the_runtime_lock_alone_serves_beside_hugging_face_kernels(tmp_path):
    """`pip install .` without extras, from the lock, as the images do; run outside the repo."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    subprocess.run(
        ["requirements/install.sh", str(env_dir / "bin" / "pip"), "requirements/runtime.txt", "."],
        cwd=REPO,
        check=True,
        timeout=900,
    )
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    )
    versions = {canonicalize_name(p["name"]): p["version"] for p in json.loads(installed.stdout)}
    assert "triton" not in versions and "pytest" not in versions and "datasets" not in versions
    assert "kernels" in versions and int(versions["transformers"].split(".")[1]) >= 25

    port = free_port()
    command = [python, "-m", "service", "serve", "--port", str(port)]
    command += ["--model", str(REPO / "checkpoints" / "default")]
    # No PYTHONPATH and a cwd outside the repository: the installed wheel serves.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "TRITON_INTERPRET"}}
    with started_server(
        command, port=port, log_path=tmp_path / "server.log", env=env, cwd=tmp_path
    ) as server:
        body = {
            "language": "python",
            "segments": {"prefix": "def add(a, b):\n    ", "suffix": "\n"},
        }
        reply = httpx.post(f"{server.url}/v1/completions", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["text"].strip()
    where = subprocess.run(
        [
            python,
            "-c",
            "import service, completion_kernels.cpu_extension as k; print(service.__file__, k.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(Path(f).is_relative_to(env_dir) for f in where.stdout.split()), where.stdout
