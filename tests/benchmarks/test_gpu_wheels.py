"""The wheels a lent GPU carries to serve (benchmarks/gpu_wheels.sh): every one pinned by the
runtime lock, and every runtime dependency the GPU image lacks among them, so a lock change is
caught here and not on a GPU machine whose minutes are counted."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# In the GPU image (torch's build is the platform's; /work/.library/device/KINDS.md lists the rest).
IN_THE_IMAGE = {"torch", "prometheus-client", "ninja"}


def carried() -> set[str]:
    script = (REPO / "benchmarks" / "gpu_wheels.sh").read_text()
    names = re.search(r'^names="([^"]*)"', script, re.MULTILINE)
    assert names is not None, 'gpu_wheels.sh lists its wheels in names="..."'
    return set(names.group(1).split())


def normalized(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def test_every_carried_wheel_is_pinned_by_the_runtime_lock():
    lock = (REPO / "requirements" / "runtime.txt").read_text()
    pinned = {normalized(m) for m in re.findall(r"^([A-Za-z0-9_.-]+)==", lock, re.MULTILINE)}
    assert carried() <= pinned, carried() - pinned


def test_every_runtime_dependency_the_image_lacks_is_carried():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    needed = {normalized(r) for r in project["dependencies"]} - IN_THE_IMAGE
    assert needed <= carried(), needed - carried()
