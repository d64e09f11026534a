"""Decode step time, eager vs replayed CUDA graph, through the engine's ModelRunner.

    python benchmarks/bench_cuda_graphs.py

Random-weight checkpoints of two small shapes (GPT-2 12 x 768, the CodeParrot-small shape; Llama
8 x 1024 with GQA 16/4) and the tiny test tokenizer, bf16, every sequence 256 tokens into its
decode. A step is timed end to end as the engine sees it: packing the inputs on the host, the
forward pass and the logits. Without a GPU the script says so and exits 0.
"""

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.engine.config import EngineConfig  # noqa: E402
from service.engine.model_runner import ModelRunner  # noqa: E402
from service.engine.sampling_params import SamplingParams  # noqa: E402
from service.engine.scheduler import ScheduledChunk  # noqa: E402
from service.engine.sequence import Sequence  # noqa: E402
from tests.support.tiny_checkpoints import build_checkpoint  # noqa: E402

MODELS = {
    "gpt2 12x768": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024)),
    "llama 8x1024 GQA 16/4": (
        "llama_gqa",
        dict(
            hidden_size=1024,
            intermediate_size=2816,
            num_hidden_layers=8,
            num_attention_heads=16,
            num_key_value_heads=4,
            max_position_embeddings=1024,
        ),
    ),
}
BATCHES = (1, 8, 32)
CONTEXT = 256
BLOCK_SIZE = 16
ITERS = 100


def decode_chunks(batch: int, vocab_size: int) -> list[ScheduledChunk]:
    """`batch` sequences of CONTEXT tokens, each with its own blocks, about to decode."""
    blocks = -(-CONTEXT // BLOCK_SIZE)
    chunks = []
    for i in range(batch):
        ids = torch.randint(vocab_size, (CONTEXT,)).tolist()
        seq = Sequence(f"s{i}", ids, SamplingParams())
        seq.num_computed_tokens = CONTEXT - 1
        seq.block_table = list(range(i * blocks, (i + 1) * blocks))
        chunks.append(ScheduledChunk(seq, 1))
    return chunks


def step_ms(run, chunks: list[ScheduledChunk]) -> float:
    for _ in range(5):
        run(chunks)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(ITERS):
        run(chunks)
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / ITERS * 1e3


def main() -> None:
    if not torch.cuda.is_available():
        print("no GPU: CUDA graphs need a CUDA device; nothing to time")
        return
    print(f"{torch.cuda.get_device_name()}, bf16, context {CONTEXT}, {ITERS} steps each")
    print(
        f"{'model':<24}{'batch':>6}{'eager ms':>10}{'graph ms':>10}{'speedup':>9}{'max |dlogit|':>14}"
    )
    with tempfile.TemporaryDirectory() as root:
        for name, (family, shape) in MODELS.items():
            checkpoint = build_checkpoint(Path(root) / family, family, **shape)
            config = EngineConfig(
                model_path=checkpoint,
                device="cuda",
                dtype="bfloat16",
                block_size=BLOCK_SIZE,
                kv_cache_mb=1024,
                max_num_seqs=max(BATCHES),
            )
            runner = ModelRunner(config)
            for batch in BATCHES:
                chunks = decode_chunks(batch, runner.model.vocab_size)
                diff = (runner.run(chunks) - runner.run_eager(chunks)).abs().max().item()
                eager, graph = step_ms(runner.run_eager, chunks), step_ms(runner.run, chunks)
                print(
                    f"{name:<24}{batch:>6}{eager:>10.3f}{graph:>10.3f}"
                    f"{eager / graph:>8.1f}x{diff:>14.2e}"
                )
            del runner
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
