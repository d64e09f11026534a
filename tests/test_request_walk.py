"""A request's walk through `service/` (docs/CONTRACTS.md, "Imports go one way"), traced: every
call made while the server answers completions in each dialect is recorded as an arrow from the
caller's `service` folder to the callee's, for the direct calls between our functions (not the
framework's dispatch to a route or middleware, nor the event loop's to a task). The arrows must
have no cycle: the walk goes down from the route and comes back by returning, never by a call
back up (completion → api would be a callback into the route). The import rules say which
arrows may exist; this says the running request uses them one way.
"""

import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.support.scripted_checkpoint import build_scripted_checkpoint

SERVICE = Path(__import__("service").__file__).resolve().parent


def folder(code_file: str) -> str | None:
    """`api`, `completion`, `engine`, ... (a top-level module is its own name); None outside."""
    path = Path(code_file)
    if not path.is_absolute() or SERVICE not in path.parents:
        return None
    return path.relative_to(SERVICE).parts[0].removesuffix(".py")


def caller_folder(frame) -> str | None:
    """The folder of the function that called `frame`'s directly; None when that is not ours
    (the framework dispatching a route, the event loop running a task)."""
    return folder(frame.f_back.f_code.co_filename) if frame.f_back is not None else None


class Walk:
    """Records the arrows between folders of the calls made while `recording` (not the app's
    start-up, which builds every part)."""

    def __init__(self):
        self.recording = False
        self.arrows: set[tuple[str, str]] = set()

    def __call__(self, frame, event, arg):
        if not self.recording or event != "call":
            return
        callee = folder(frame.f_code.co_filename)
        caller = caller_folder(frame) if callee is not None else None
        if caller is not None and caller != callee:
            self.arrows.add((caller, callee))


def cycles(arrows: set[tuple[str, str]]) -> list[list[str]]:
    """Each folder that can reach itself, with one such path."""
    found = []
    for start in sorted({a for a, _ in arrows}):
        paths = [[start]]
        while paths:
            path = paths.pop()
            for a, b in sorted(arrows):
                if a == path[-1] and b == start:
                    found.append([*path, b])
                    paths = []
                    break
                if a == path[-1] and b not in path:
                    paths.append([*path, b])
    return found


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_scripted_checkpoint(tmp_path_factory.mktemp("scripted") / "model")


BODIES = [
    ("/v1/completions", {"segments": {"prefix": "import os\ndef f(x):\n    os.", "suffix": "\n"}}),
    ("/v1/completions", {"prompt": "def f(x):\n    return ", "suffix": "\n", "max_tokens": 8}),
    ("/v1/completions", {"prompt": "x = 1\n", "suffix": "\n", "n": 2, "num_beams": 2}),
    ("/v1/completions", {"prompt": "x = 1\n", "suffix": "\n", "stream": True}),
    ("/infill", {"input_prefix": "def f(x):\n    ", "input_suffix": "\n", "n_predict": 8}),
]


def test_the_walk_has_no_call_back_up(model):
    walk = Walk()
    # Set before the app starts: its threads (the client's portal, the engine's loop) inherit it.
    threading.setprofile(walk)
    sys.setprofile(walk)
    try:
        with TestClient(create_app(Settings(model=model, device="cpu"))) as client:
            walk.recording = True
            for path, body in BODIES:
                response = client.post(path, json=body)
                assert response.status_code == 200, response.text
            walk.recording = False
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert {("api", "completion"), ("completion", "engine")} <= walk.arrows
    assert cycles(walk.arrows) == []


def test_a_call_back_up_is_a_cycle():
    assert cycles({("api", "completion"), ("completion", "engine")}) == []
    assert cycles({("api", "completion"), ("completion", "api")}) == [
        ["api", "completion", "api"],
        ["completion", "api", "completion"],
    ]
