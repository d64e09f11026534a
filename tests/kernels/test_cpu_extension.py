"""Building the C++ CPU kernels survives a build that was killed halfway."""

import shutil
import subprocess
import sys

import pytest
from completion_kernels.cpu_extension import build_directory, cpu_kernels, library_name

from tests.support.service_process import REPO

pytestmark = pytest.mark.slow  # builds the C++ CPU kernels

ROOT = REPO


def test_a_killed_build_does_not_make_later_loads_wait_forever(tmp_path, monkeypatch):
    """torch's `lock` file, which a killed build leaves, is cleared instead of waited on."""
    assert cpu_kernels() is not None
    name = library_name()
    built = build_directory(name)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    left = build_directory(name)
    # The suite's built library, copied, so the load below finds it up to date and links at once.
    shutil.copytree(built, left, ignore=shutil.ignore_patterns("*lock"))
    (left / "lock").touch()  # what a build killed between torch's lock and unlock leaves

    done = subprocess.run(
        [sys.executable, "-m", "completion_kernels.cpu_extension"], cwd=ROOT, timeout=240
    )
    assert done.returncode == 0
    assert not (left / "lock").exists()
