"""Data parallelism for real: two gloo processes under torchrun == one process accumulating."""

import os
import subprocess
import sys

import pytest
import torch

from tests.support.service_process import REPO
from tests.support.training_config import write_config
from tests.support.training_data import python_sources, write_shards
from training.config import load_config
from training.train import build_model, read_meta

pytestmark = pytest.mark.slow  # trains in two processes

ROOT = REPO


def run_training(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(args, cwd=ROOT, env=env, check=True, timeout=300)


def test_two_gloo_processes_match_one_process_with_accumulation(tmp_path):
    sources = python_sources()
    write_shards(tmp_path / "data", sources[1:], sources[:1])
    model = {"dropout": 0.0}
    ddp = write_config(tmp_path / "ddp.yaml", tmp_path / "data", tmp_path / "ddp", model=model)
    single = write_config(tmp_path / "one.yaml", tmp_path / "data", tmp_path / "one", model=model)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    run_training(
        *torchrun, "-m", "training", "train", "--config", str(ddp), "--set", "train.num_threads=1"
    )
    run_training(
        sys.executable, "-m", "training", "train", "--config", str(single),
        "--set", "train.grad_accum=2", "--set", "train.num_threads=1",
    )  # fmt: skip
    a = torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=False)
    assert a["world_size"] == 2 and b["world_size"] == 1
    assert a["tokens"] == b["tokens"] == 8 * 2 * 4 * 32
    cfg = load_config(single)
    torch.manual_seed(cfg.train.seed)
    initial = build_model(cfg, read_meta(tmp_path / "data")).state_dict()
    for name, tensor in a["model"].items():
        # Same samples, same averaged gradients; only the summation order differs.
        torch.testing.assert_close(tensor, b["model"][name], atol=2e-5, rtol=1e-4, msg=name)
    assert any(not torch.equal(t, initial[n]) for n, t in a["model"].items())
