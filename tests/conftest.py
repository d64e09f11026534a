"""Suite-wide setup. Without CUDA, Triton kernels run in its interpreter; triton reads the
switch when first imported, so it must be set before any test module imports a kernel."""

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
    from tests.training_helpers import python_sources, write_shards

    out = tmp_path_factory.mktemp("data")
    sources = python_sources()
    write_shards(out, sources[1:], sources[:1])
    return out
