"""`python -m training export`: a training checkpoint -> a Hugging Face model directory.

The directory is what the server and `transformers.AutoModelForCausalLM` load (docs/CONTRACTS.md):
config.json, model.safetensors, tokenizer.json (+ tokenizer_config.json, special_tokens_map.json),
generation_config.json, and README.md, the model card: data, filter report, compute, evaluation.
"""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GenerationConfig, PreTrainedTokenizerFast

from service.models.int8_weights import quantization_config, quantize_state_dict
from training.config import RunConfig
from training.data.report import STAGES
from training.data.tokenizer import EOT, FILE_SEP, FIM_MIDDLE, FIM_PAD, FIM_PREFIX, FIM_SUFFIX
from training.train import build_model, read_meta

EVAL_RESULTS = "eval_results.json"
TRAINING_SUMMARY = "training_summary.json"
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}  # model.family's


def save_tokenizer(tokenizer_file: Path, out: Path, max_length: int, fim_order: str) -> None:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        model_max_length=max_length,
        bos_token=EOT,
        eos_token=EOT,
        unk_token=EOT,
        pad_token=FIM_PAD,
        additional_special_tokens=[FIM_PREFIX, FIM_MIDDLE, FIM_SUFFIX, FIM_PAD, FILE_SEP],
    )
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"  # the server reads the FIM order from here
    config_path.write_text(
        json.dumps(json.loads(config_path.read_text()) | {"fim_order": fim_order}, indent=2)
    )


def training_summary(ckpt: dict, n_params: int, base: dict | None) -> dict:
    """What this run did; `base` is the summary of the model it started from (train.init_from)."""
    t = ckpt["config"]["train"]
    return {
        "init_from": base,
        "steps": ckpt["step"],
        "tokens": ckpt["tokens"],
        "train_hours": round(ckpt["elapsed_s"] / 3600, 3),
        "device": ckpt["device"],
        "processes": ckpt["world_size"],
        "threads_per_process": t["num_threads"] or torch.get_num_threads(),
        "tokens_per_step": t["batch_size"] * t["block_size"] * t["grad_accum"] * ckpt["world_size"],
        "parameters": n_params,
        "model": ckpt["config"]["model"],
        "curriculum": ckpt["config"]["curriculum"],
    }


def export(cfg: RunConfig, out_dir: str | None = None) -> Path:
    """Export `train.out_dir/ckpt.pt` to `out_dir` (default `export.out_dir`)."""
    out = Path(out_dir or cfg.export.out_dir)
    init_from = cfg.train.init_from and Path(cfg.train.init_from) / TRAINING_SUMMARY
    # Read before writing: a fine-tuned model is often exported over the one it started from.
    base = json.loads(init_from.read_text()) if init_from and init_from.exists() else None
    out.mkdir(parents=True, exist_ok=True)
    ckpt = torch.load(Path(cfg.train.out_dir) / "ckpt.pt", map_location="cpu", weights_only=False)
    meta = read_meta(cfg.data.out)
    model = build_model(cfg, meta)
    model.load_state_dict(ckpt["model"])
    model.config.architectures = [ARCHITECTURES[cfg.model.family]]
    save_weights(model, cfg, out)
    save_tokenizer(cfg.data.out / "tokenizer.json", out, model.max_positions, cfg.export.fim_order)
    GenerationConfig(
        max_new_tokens=64,
        do_sample=False,
        bos_token_id=meta["eot_id"],
        eos_token_id=meta["eot_id"],
        pad_token_id=meta["eot_id"],
    ).save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    (out / TRAINING_SUMMARY).write_text(
        json.dumps(training_summary(ckpt, n_params, base), indent=2)
    )
    curve = Path(cfg.train.out_dir) / "learning_curve.png"
    if curve.exists():
        shutil.copy(curve, out / "learning_curve.png")
    write_model_card(out, cfg)
    megabytes = (out / "model.safetensors").stat().st_size / 1e6
    if megabytes > cfg.export.max_megabytes:
        raise ValueError(f"model.safetensors is {megabytes:.1f} MB > export.max_megabytes")
    return out


def save_weights(model: torch.nn.Module, cfg: RunConfig, out: Path) -> None:
    """config.json and model.safetensors, in `export.dtype` or as int8 (`export.quantize`)."""
    e = cfg.export
    state_dict = model.to_hf_state_dict()
    state_dict.pop("lm_head.weight", None)  # tied to the embedding: loaders re-tie it
    dtype = getattr(torch, e.dtype)
    if e.quantize == "int8":
        if cfg.model.family != "llama":
            # transformers' GPT-2 computes with Conv1D layers, which compressed-tensors skips
            raise ValueError("export.quantize=int8 needs model.family=llama")
        state_dict = quantize_state_dict(state_dict, e.group_size, dtype)
        model.config.quantization_config = quantization_config(e.group_size)
    elif e.quantize == "none":
        state_dict = {name: w.to(dtype) for name, w in state_dict.items()}
    else:
        raise ValueError(f"export.quantize is {e.quantize!r}: none or int8")
    model.config.save_pretrained(out)
    save_file(state_dict, out / "model.safetensors", metadata={"format": "pt"})


def filter_report(data_dir: Path) -> str:
    """prepare's report.json as a table: what each CodeParrot filter removed."""
    path = data_dir / "report.json"
    if not path.exists():
        return "(no report.json: the corpus was packed without `prepare`)"
    report = json.loads(path.read_text())
    files, nbytes = report["files_in"], report["bytes_in"]
    rows = ["| stage | files left | files dropped | MB left |", "| --- | --- | --- | --- |"]
    rows.append(f"| input | {files:,} | | {nbytes / 1e6:.1f} |")
    for stage in STAGES:
        dropped_files, dropped_bytes = report["dropped"][stage]
        files, nbytes = files - dropped_files, nbytes - dropped_bytes
        rows.append(f"| {stage} | {files:,} | {dropped_files:,} | {nbytes / 1e6:.1f} |")
    return "\n".join(rows)


def eval_table(results: dict) -> str:
    rows = ["| metric | value |", "| --- | --- |"]
    rows += [
        f"| {name} | {value:.4g} |"
        for name, value in results.items()
        if isinstance(value, float | int)
    ]
    return "\n".join(rows)


def compute_lines(summary: dict) -> str:
    """One paragraph per training stage, the first stage first."""
    earlier = (
        compute_lines(summary["init_from"]) + "\n\nThen, from that model: "
        if summary.get("init_from")
        else ""
    )
    where = (
        summary["device"]
        if summary["device"].startswith("cuda")
        else f"{summary['device']} ({summary['threads_per_process']} thread(s))"
    )
    phases = ", ".join(
        f"{name} ({phase['steps']} steps)" for name, phase in summary["curriculum"].items()
    )
    return (
        f"{earlier}{summary['steps']:,} steps, {summary['tokens']:,} tokens ({summary['tokens_per_step']:,} a step), "
        f"{summary['train_hours']} hours on {summary['processes']} × {where}. Curriculum: {phases}."
    )


def weights_line(cfg: RunConfig) -> str:
    e = cfg.export
    if e.quantize == "int8":
        return (
            f"Weights: the linear layers as int8 with a scale per {e.group_size} columns "
            f"(compressed-tensors W8A16; `transformers` needs the `compressed-tensors` package), "
            f"the rest {e.dtype}."
        )
    return f"Weights: {e.dtype}."


def write_model_card(out: Path, cfg: RunConfig) -> None:
    summary = json.loads((out / TRAINING_SUMMARY).read_text())
    meta = read_meta(cfg.data.out)
    results_path = out / EVAL_RESULTS
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    m = summary["model"]
    tied = f", {m['n_shared_blocks']} shared block(s)" if m["n_shared_blocks"] else ""
    family = {"gpt2": "GPT-2", "llama": "Llama-style"}[m.get("family", "gpt2")]
    card = f"""# {out.name}: a small Python code-completion model

A {family} decoder ({m["n_layer"]} layers × {m["n_embd"]}, {m["n_head"]} heads{tied}, context
{m["n_positions"]}, vocabulary {meta["vocab_size"]}, {summary["parameters"] / 1e6:.2f}M parameters),
trained with this repository's CodeParrot-style pipeline (`python -m training pipeline`) with
fill-in-the-middle (StarCoder sentinels `<fim_prefix>`, `<fim_suffix>`, `<fim_middle>`).
Served by `make serve`; loads in `transformers.AutoModelForCausalLM`. {weights_line(cfg)}

## Data

Offline corpus: {meta["n_tokens"]["train"]:,} training tokens, {meta["n_tokens"]["val"]:,} validation
tokens from {len(meta["val_repos"])} held-out repositories. What the filters removed:

{filter_report(cfg.data.out)}

## Compute

{compute_lines(summary)}

![learning curve](learning_curve.png)

## Evaluation (`python -m training evaluate`)

{eval_table(results) if results else "(not evaluated yet)"}

## Limitations

A model this small, trained on this few tokens, completes common idioms and names from context;
it does not write correct programs. Use it to try the service, not to judge completion quality.
"""
    (out / "README.md").write_text(card)
