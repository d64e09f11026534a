"""The engine's knobs, each a named argument with a default."""

from dataclasses import dataclass
from pathlib import Path


@dataclass
class EngineConfig:
    model_path: Path
    device: str = "cpu"  # "cpu" or "cuda"
    dtype: str = "float32"  # "float32", "bfloat16" or "float16"
    block_size: int = 16  # tokens per KV block
    kv_cache_mb: int = 256  # memory for the paged KV cache, all layers
    max_num_seqs: int = 32  # sequences decoding at once
    # Tokens per step: decodes first, then prefill chunks. A whole 1k-token prompt fits in one step:
    # its second chunk would attend under a mask, which costs more than the chunk saves.
    max_num_batched_tokens: int = 1024
    # While sequences decode, prompts advance by at most this many tokens a step, so a burst of
    # new prompts slows the answers already streaming only a little.
    max_prefill_tokens_while_decoding: int = 128
    # A prompt with at most this many tokens left to compute (a keystroke after its cached prefix)
    # is prefilled whole, outside that budget: a warm editor session never waits behind chunks.
    max_tail_tokens: int = 32
    max_waiting: int = 128  # queued requests past which new ones are refused
    num_threads: int | None = None  # torch CPU threads; None = all cores
    # Greedy sequences draft up to this many tokens a step from their own context and verify
    # them in the same forward pass (service/engine/speculation.py); 0 turns it off. Off where
    # CUDA graphs run the decode steps.
    speculative_tokens: int = 4
    speculative_ngram: tuple[int, int] = (3, 2)  # longest and shortest context n-gram to match
    # A streamed request's outputs between its first and last go out at most this often (the
    # later replacing the held one: outputs are cumulative); 0 = after every step.
    stream_interval_ms: float = 20.0
    # Replay decode steps from CUDA graphs captured at start-up, one per bucketed batch size
    # (CUDA with the Triton kernels only; prefill and mixed steps always run eagerly).
    cuda_graphs: bool = True
