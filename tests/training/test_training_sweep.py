import json

import pytest
import torch

from tests.support.training_config import write_config
from tests.support.training_data import python_sources, write_shards
from training.config import load_config
from training.sweep import flops_per_token, run_sweep
from training.train import build_model


@pytest.mark.slow  # trains each variant
def test_sweep_trains_each_variant_and_plots_the_curves(tmp_path):
    sources = python_sources()
    write_shards(tmp_path / "data", sources[1:], sources[:1])
    sweep = {
        "out_dir": str(tmp_path / "sweep"),
        "steps": 6,
        "common": ["train.eval_every=3"],
        "variants": {"untied": [], "tied": ["model.n_shared_blocks=1"]},
    }
    config = write_config(tmp_path / "c.yaml", tmp_path / "data", tmp_path / "unused", sweep=sweep)
    rows = run_sweep(str(config))
    assert [r["name"] for r in rows] == ["untied", "tied"]
    assert all([t for t, _ in r["curve"]] == [384, 768] for r in rows)  # 3 steps x 4 x 32 tokens
    block = 12 * 32 * 32 + 13 * 32  # one GPT-2 block of width 32
    assert rows[0]["parameters"] - rows[1]["parameters"] == block
    assert rows[0]["flops_per_token"] == rows[1]["flops_per_token"]
    assert json.loads((tmp_path / "sweep" / "sweep.json").read_text()) == rows
    assert (tmp_path / "sweep" / "scaling_sweep.png").stat().st_size > 1000


def test_tied_blocks_cost_the_same_flops_with_fewer_parameters(tmp_path):
    sources = python_sources()
    write_shards(tmp_path / "data", sources[1:], sources[:1])
    path = write_config(tmp_path / "c.yaml", tmp_path / "data", tmp_path / "run")
    untied, tied = load_config(path), load_config(path, ["model.n_shared_blocks=1"])
    assert (
        flops_per_token(untied, 512)
        == flops_per_token(tied, 512)
        == 6 * (12 * 2 * 32 * 32 + 512 * 32)
    )


@pytest.mark.parametrize(
    "overrides",
    [[], ["model.family=llama", "model.dropout=0.0", "model.n_head=4", "model.n_kv_head=2"]],
    ids=["gpt2", "llama"],
)
def test_flops_count_every_layer_matrix_and_the_head(tmp_path, overrides):
    path = write_config(tmp_path / "c.yaml", tmp_path / "data", tmp_path / "run")
    cfg = load_config(path, overrides)
    model = build_model(cfg, {"vocab_size": 512, "eot_id": 0})
    layers = model.h if cfg.model.family == "gpt2" else model.layers
    matrices = sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
    assert flops_per_token(cfg, 512) == 6 * (matrices + 512 * cfg.model.n_embd)
