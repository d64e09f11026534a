"""The training loop (nanoGPT-shaped): AdamW, warmup + cosine, clipping, accumulation, DDP.

Run it with `python -m training train --config C`, or `torchrun --nproc-per-node N -m training
train --config C` for data parallelism (gloo on CPU, NCCL on GPU). A run resumes by itself from
`OUT/ckpt.pt`: model, optimizer, scheduler, RNG and step are restored, and the data position is
the step (see `training/curriculum.py`), so the resumed run continues bit for bit.
"""

import dataclasses
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from service.models.gpt2 import GPT2, init_like_gpt2
from service.models.llama import Llama
from service.models.loader import load_model
from training.config import ModelConfig, RunConfig, TrainConfig, to_dict
from training.curriculum import IGNORE_INDEX, Curriculum, read_documents, tokenize_documents
from training.curves import plot_learning_curve
from training.validation import val_metrics, val_windows


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Distributed:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Distributed()
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


def read_tokens(path: Path, dtype: str) -> np.ndarray:
    return np.memmap(path, dtype=np.dtype(dtype), mode="r")


def read_meta(data_dir: Path) -> dict:
    return json.loads((data_dir / "meta.json").read_text())


def build_model(cfg: RunConfig, meta: dict) -> GPT2 | Llama:
    config = cfg.model.hf_config(meta["vocab_size"], meta["eot_id"])
    if cfg.model.family == "gpt2":
        return GPT2(config)  # which initialises itself as GPT-2 does
    model = Llama(config)  # the serving class keeps torch's defaults: it loads its weights
    init_like_gpt2(model, config.initializer_range, ("o_proj", "down_proj"))
    return model


def build_curriculum(cfg: RunConfig, tokenizer: Tokenizer, meta: dict) -> Curriculum:
    sources = {"pretrain": read_tokens(cfg.data.out / "train.bin", meta["dtype"])}
    for name, spec in cfg.finetune_sources.items():
        sources[name] = tokenize_documents(read_documents(spec), tokenizer)
    return Curriculum(cfg.curriculum, sources, tokenizer, cfg.train.block_size, cfg.train.seed)


class StepBatches(Dataset):
    """Step -> this rank's micro-batches. A batch is a pure function of its step, so DataLoader
    workers can build the next ones (FIM splits re-tokenize text: CPU work) while the GPU trains."""

    def __init__(self, curriculum: Curriculum, t: TrainConfig, ddp: Distributed):
        self.curriculum, self.t, self.ddp = curriculum, t, ddp

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        t, ddp = self.t, self.ddp
        slots = [micro * ddp.world_size + ddp.rank for micro in range(t.grad_accum)]
        return [
            self.curriculum.batch(step, range(s * t.batch_size, (s + 1) * t.batch_size))
            for s in slots
        ]


def step_loader(
    curriculum: Curriculum, t: TrainConfig, ddp: Distributed, steps: range, device: torch.device
) -> DataLoader:
    # Its own generator: starting an iterator draws a seed, which must not move the global RNG
    # that dropout uses (a resumed run would diverge from an uninterrupted one).
    return DataLoader(
        StepBatches(curriculum, t, ddp),
        batch_size=None,
        sampler=steps,
        num_workers=t.num_workers,
        prefetch_factor=4 if t.num_workers else None,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),
    )


def configure_optimizer(model: nn.Module, t: TrainConfig) -> torch.optim.AdamW:
    """Weight decay on matrices only; biases, LayerNorms stay undecayed (GPT-2 / nanoGPT)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": t.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = params[0].is_cuda  # one kernel for the whole update instead of one per tensor
    return torch.optim.AdamW(groups, lr=t.learning_rate, betas=(t.beta1, t.beta2), fused=fused)


def lr_multiplier(t: TrainConfig, max_steps: int):
    """Linear warmup, then cosine decay to min_lr at max_steps (as a factor of learning_rate)."""
    floor = t.min_lr / t.learning_rate

    def multiplier(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        progress = min(1.0, (step - t.warmup_steps) / max(1, max_steps - t.warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


class Trainee(nn.Module):
    """Model + LM head as one forward, so DDP hooks see every parameter's gradient."""

    def __init__(self, model: GPT2 | Llama):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.compute_logits(self.model(x))


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: an interrupted save never leaves a broken checkpoint


def keep_metrics_until(path: Path, step: int) -> None:
    """After a resume, drop records the interrupted run logged past its last checkpoint."""
    if path.exists():
        lines = path.read_text().splitlines()
        path.write_text("".join(f"{line}\n" for line in lines if json.loads(line)["step"] <= step))


def restore(
    path: Path, model: nn.Module, optimizer, scheduler, cfg: RunConfig
) -> tuple[int, int, float]:
    """Load a checkpoint in place; returns (step, tokens, elapsed seconds) to continue from."""
    ckpt = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    if "optimizer" not in ckpt:
        raise ValueError(f"{path} holds weights only (trained elsewhere); use a new train.out_dir")
    # Fields added to ModelConfig since the checkpoint was written hold their defaults.
    saved = dataclasses.asdict(ModelConfig()) | ckpt["config"]["model"]
    if saved != to_dict(cfg)["model"]:
        raise ValueError(f"{path} was trained with another model config; use a new train.out_dir")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())  # map_location moved it with the weights
    return ckpt["step"], ckpt["tokens"], ckpt["elapsed_s"]


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def forward_backward(trainee: nn.Module, batches: list, t: TrainConfig, ddp: Distributed,
                     device: torch.device) -> float:  # fmt: skip
    """Accumulate one step's gradients over its micro-batches; returns the mean loss."""
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()
    total = 0.0
    for micro, (x, y) in enumerate(batches):
        last = micro == len(batches) - 1
        # DDP all-reduces gradients on the last micro-batch only.
        with nullcontext() if last or ddp.world_size == 1 else trainee.no_sync():
            with autocast:
                logits = trainee(x.to(device, non_blocking=True))
            y = y.to(device, non_blocking=True)
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE_INDEX
            )
            (loss / t.grad_accum).backward()
        total += loss.item() / t.grad_accum
    return total


def train(cfg: RunConfig, until_step: int | None = None) -> dict:
    """Train to the end of the curriculum (or stop after `until_step`); returns the last metrics."""
    t = cfg.train
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    ddp = init_distributed(pick_device(t.device, 0).type)
    device = pick_device(t.device, ddp.local_rank)
    out = Path(t.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / "ckpt.pt", out / "metrics.jsonl"
    meta = read_meta(cfg.data.out)
    curriculum = build_curriculum(
        cfg, Tokenizer.from_file(str(cfg.data.out / "tokenizer.json")), meta
    )
    val_tokens = read_tokens(cfg.data.out / "val.bin", meta["dtype"])
    val = val_windows(val_tokens, t.block_size, t.eval_batches * t.batch_size)

    torch.manual_seed(t.seed)
    model = build_model(cfg, meta).to(device)
    optimizer = configure_optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(t, cfg.max_steps))
    start, tokens, elapsed = 0, 0, 0.0
    if ckpt_path.exists():
        start, tokens, elapsed = restore(ckpt_path, model, optimizer, scheduler, cfg)
        if ddp.is_main:
            keep_metrics_until(metrics_path, start)
    elif t.init_from:  # fine-tuning: the weights of an exported model, a fresh optimizer
        model.load_state_dict(load_model(t.init_from, device=device).state_dict())
    trainee = Trainee(model)
    if ddp.world_size > 1:
        trainee = DistributedDataParallel(
            trainee, device_ids=[device.index] if device.type == "cuda" else None
        )

    def checkpoint(step: int) -> None:
        save_checkpoint(ckpt_path, dict(
            model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
            torch_rng=torch.get_rng_state(), step=step, tokens=tokens, elapsed_s=elapsed,
            config=to_dict(cfg), device=str(device), world_size=ddp.world_size))  # fmt: skip
        plot_learning_curve(
            metrics_path, out / "learning_curve.png", f"{cfg.model.n_layer}x{cfg.model.n_embd}"
        )

    stop = min(cfg.max_steps, until_step or cfg.max_steps)
    step_tokens = t.batch_size * t.block_size * t.grad_accum * ddp.world_size
    bar = tqdm(range(start, stop), initial=start, total=stop, disable=not ddp.is_main, desc="train",
               mininterval=1 if sys.stderr.isatty() else 30)  # fmt: skip
    last_save, metrics = time.monotonic(), {}
    batches = step_loader(curriculum, t, ddp, range(start, stop), device)
    for step, step_batches in zip(bar, batches, strict=True):
        t0 = time.perf_counter()
        loss = forward_backward(trainee, step_batches, t, ddp, device)
        norm = nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        tokens, seconds = tokens + step_tokens, time.perf_counter() - t0
        elapsed += seconds
        metrics = dict(step=step + 1, tokens=tokens, loss=loss, lr=scheduler.get_last_lr()[0],
                       grad_norm=norm.item(), tok_per_s=step_tokens / seconds, phase=curriculum.phase_at(step))  # fmt: skip
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{metrics['tok_per_s']:.0f}", refresh=False)
        if not ddp.is_main:
            continue
        if (step + 1) % t.log_every == 0:
            append_jsonl(metrics_path, metrics)
        if (step + 1) % t.eval_every == 0 or step + 1 == cfg.max_steps:
            model.eval()
            metrics |= val_metrics(model, val, t.batch_size, device)
            model.train()
            append_jsonl(metrics_path, dict(step=step + 1, tokens=tokens, val_loss=metrics["val_loss"],
                                            next_token_accuracy=metrics["next_token_accuracy"]))  # fmt: skip
        if (
            step + 1 == stop
            or (step + 1) % t.checkpoint_every_steps == 0
            or time.monotonic() - last_save >= t.checkpoint_every_s
        ):
            checkpoint(step + 1)
            last_save = time.monotonic()
    if ddp.world_size > 1:
        # Destroying gloo's process group joins its threads while this thread holds the GIL, and
        # a thread still finishing the last all-reduce may need the GIL: a deadlock in 2 of 12
        # runs. After the barrier, every collective before it is done.
        del trainee
        dist.barrier()
        dist.destroy_process_group()
    return metrics
