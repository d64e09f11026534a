"""Suite-wide setup. Without CUDA, Triton kernels run in its interpreter; triton reads the
switch when first imported, so it must be set before any test module imports a kernel.

Tests marked `slow` are left out of `make test-fast` (`pytest -m "not slow"`): a module that can
start the server or redis-server is marked here, from the helpers it imports; builds, training
runs, subprocesses of the CLI and timing measurements carry the mark in their own files.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session", autouse=True)
def cpu_kernels_built():
    """Build the C++ CPU kernels once up front (≈12 s the first time on a machine), not inside
    the start-up of the first test server that needs them."""
    from completion_kernels.cpu_extension import cpu_kernels

    cpu_kernels()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Packed training shards of a few Python sources, for the training tests."""
    # Imported here, not above: nothing may import a kernel before TRITON_INTERPRET is set.
    from tests.support.training_data import python_sources, write_shards

    out = tmp_path_factory.mktemp("data")
    sources = python_sources()
    write_shards(out, sources[1:], sources[:1])
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Imported here: the helpers must not load before TRITON_INTERPRET is set above.
    from tests.support.redis_server import RedisServer, running_redis_server
    from tests.support.service_process import running_server, server_process, started_server

    process_starters = {running_server, server_process, started_server, RedisServer}
    starts_a_process = {id(helper) for helper in process_starters | {running_redis_server}}
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(id(v) in starts_a_process for v in vars(module).values()):
            item.add_marker(pytest.mark.slow)
