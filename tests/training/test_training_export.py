import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from service.models.loader import load_model
from tests.support.training_config import write_config
from training.config import load_config
from training.export import export
from training.train import build_model, read_meta, train

pytestmark = pytest.mark.slow  # trains a model before each export


def assert_same_logits(cfg, data_dir, out):
    """`transformers` and our server read the export with the trained checkpoint's logits."""
    ours = build_model(cfg, read_meta(data_dir)).eval()
    ckpt = torch.load(f"{cfg.train.out_dir}/ckpt.pt", weights_only=False)
    ours.load_state_dict(ckpt["model"])
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(
        0, hf.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        expected = ours.compute_logits(ours(ids))
        torch.testing.assert_close(hf(ids).logits, expected, atol=1e-4, rtol=1e-4)
        served = load_model(out).eval()
        torch.testing.assert_close(
            served.compute_logits(served(ids)), expected, atol=1e-5, rtol=1e-5
        )
    return hf


@pytest.mark.parametrize("shared", ["null", "1"])
def test_export_loads_in_transformers_with_equal_logits(tmp_path, data_dir, shared):
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "run"),
        [f"model.n_shared_blocks={shared}", "model.n_layer=3", f"export.out_dir={tmp_path / 'hf'}"],
    )
    cfg.curriculum = {"causal": cfg.curriculum["random_fim"]}
    train(cfg)
    out = export(cfg)

    hf = assert_same_logits(cfg, data_dir, out)
    assert hf.config.scale_attn_by_inverse_layer_idx and hf.config.reorder_and_upcast_attn
    assert hf.config.n_ctx == hf.config.n_positions == 64

    tokenizer = AutoTokenizer.from_pretrained(out)
    fim = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<|endoftext|>"]
    assert all(len(tokenizer.encode(t, add_special_tokens=False)) == 1 for t in fim)
    assert (
        tokenizer.decode(tokenizer.encode("def f(x):\n    return x\n"))
        == "def f(x):\n    return x\n"
    )
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    card = (out / "README.md").read_text()
    assert "## Data" in card and "## Compute" in card and "## Evaluation" in card
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 4 and summary["tokens"] == 4 * 4 * 32


def test_llama_export_loads_in_transformers_with_equal_logits(tmp_path, data_dir):
    """model.family=llama: trained by the same loop, exported as LlamaForCausalLM (grouped-query
    attention, tied embedding), read by transformers and by the server alike."""
    llama = ["model.family=llama", "model.n_head=4", "model.n_kv_head=2", "model.dropout=0.0"]
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "run"),
        [*llama, f"export.out_dir={tmp_path / 'hf'}"],
    )
    train(cfg)
    out = export(cfg)

    hf = assert_same_logits(cfg, data_dir, out)
    assert type(hf).__name__ == "LlamaForCausalLM" and hf.config.num_key_value_heads == 2
    assert "A Llama-style decoder" in (out / "README.md").read_text()


def test_int8_export_loads_in_transformers_and_the_server_alike(tmp_path, data_dir):
    """export.quantize=int8: linear layers as int8 + scales, which `transformers` (through
    compressed-tensors) and our loader dequantize to the same weights, near the trained ones."""
    llama = ["model.family=llama", "model.dropout=0.0", "export.dtype=float16"]
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "run"),
        [*llama, f"export.out_dir={tmp_path / 'hf'}"],
    )
    train(cfg)
    half = export(cfg).joinpath("model.safetensors").stat().st_size
    cfg.export.quantize, cfg.export.group_size = "int8", 16
    out = export(cfg, str(tmp_path / "hf-int8"))
    tensors = load_file(out / "model.safetensors")
    assert tensors["model.layers.0.mlp.down_proj.weight"].dtype == torch.int8
    assert tensors["model.layers.0.mlp.down_proj.weight_scale"].shape == (32, 64 // 16)
    linear = sum(t.numel() for t in tensors.values() if t.dtype == torch.int8)
    saved = half - (out / "model.safetensors").stat().st_size  # a byte a weight, less the scales
    assert linear * (1 - 2 / 16) - 2048 < saved <= linear * (1 - 2 / 16)
    assert "as int8 with a scale per 16 columns" in (out / "README.md").read_text()

    trained = build_model(cfg, read_meta(data_dir)).eval()
    trained.load_state_dict(torch.load(f"{cfg.train.out_dir}/ckpt.pt", weights_only=False)["model"])
    hf = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    served = load_model(out)
    ids = torch.randint(
        0, hf.config.vocab_size, (2, 40), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        ours = served.compute_logits(served(ids))
        torch.testing.assert_close(hf(ids).logits, ours, atol=1e-4, rtol=1e-4)
        full = trained.compute_logits(trained(ids))
    assert (ours - full).abs().max() < 0.02 * full.abs().max()
    assert (ours.argmax(-1) == full.argmax(-1)).float().mean() > 0.9


def test_int8_export_of_gpt2_is_refused(tmp_path, data_dir):
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "run"),
        ["export.quantize=int8", "train.checkpoint_every_steps=1", f"export.out_dir={tmp_path}/hf"],
    )
    train(cfg, until_step=1)
    with pytest.raises(ValueError, match="needs model.family=llama"):
        export(cfg)


def test_export_refuses_a_checkpoint_over_the_size_budget(tmp_path, data_dir):
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "run"),
        [
            "export.max_megabytes=0.01",
            f"export.out_dir={tmp_path / 'hf'}",
            "train.checkpoint_every_steps=1",
        ],
    )
    train(cfg, until_step=1)
    with pytest.raises(ValueError, match="max_megabytes"):
        export(cfg)


def test_half_precision_export_and_fine_tuning_from_it(tmp_path, data_dir):
    """export.dtype=float16 halves the file; train.init_from starts a new run from its weights."""
    cfg = load_config(
        write_config(tmp_path / "c.yaml", data_dir, tmp_path / "run"),
        [f"export.out_dir={tmp_path / 'hf'}", "export.dtype=float16", "export.fim_order=spm"],
    )
    train(cfg)
    out = export(cfg)
    assert json.loads((out / "tokenizer_config.json").read_text())["fim_order"] == "spm"
    exported = load_model(out)
    assert next(exported.parameters()).dtype == torch.float32  # the loader upcasts
    trained = torch.load(tmp_path / "run" / "ckpt.pt", weights_only=False)["model"]
    for name, weight in exported.state_dict().items():
        torch.testing.assert_close(weight, trained[name].half().float())

    tuned = load_config(
        write_config(tmp_path / "f.yaml", data_dir, tmp_path / "tune"),
        [f"train.init_from={out}", "train.learning_rate=1.0e-12", "train.min_lr=1.0e-12"],
    )
    train(tuned, until_step=1)
    start = torch.load(tmp_path / "tune" / "ckpt.pt", weights_only=False)["model"]
    for name, weight in exported.state_dict().items():
        torch.testing.assert_close(start[name], weight, atol=1e-6, rtol=0)
    tuned_out = export(tuned, str(tmp_path / "hf-tuned"))
    summary = json.loads((tuned_out / "training_summary.json").read_text())
    assert summary["steps"] == 1 and summary["init_from"]["steps"] == 8
    assert "Then, from that model: 1 steps" in (tuned_out / "README.md").read_text()
