"""Benchmark the Triton kernels against the card's copy bandwidth, flash SDPA and torch.

    python benchmarks/bench_kernels.py            # on a CUDA machine: three tables
    python benchmarks/bench_kernels.py --quick    # fewer shapes

Decode attention is memory bound, so it is reported as achieved bandwidth (K/V bytes read per
second) over the bandwidth of a large device-to-device copy measured on the same card. Prefill is
compared with `scaled_dot_product_attention` on the flash backend, beam step with its torch
reference (log_softmax + mask + top-k). Without a GPU the script says so, runs a tiny
correctness smoke under the Triton interpreter and exits 0.
"""

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported

import torch.nn.functional as F  # noqa: E402
from completion_kernels.beam_step import beam_step_reference  # noqa: E402
from completion_kernels.paged_attention_reference import paged_attention_reference  # noqa: E402
from completion_kernels.triton_beam_step import beam_step_triton  # noqa: E402
from completion_kernels.triton_paged_attention import paged_attention_triton  # noqa: E402
from tqdm import tqdm  # noqa: E402

LAYOUTS = {"MHA 32/32": (32, 32), "GQA 32/8": (32, 8), "MQA 48/1": (48, 1)}
BLOCK_SIZE = 16
HEAD_DIM = 128
MAX_CACHE_BYTES = 24 * 2**30


def _bench_ms(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100)


def copy_bandwidth() -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = _bench_ms(lambda: dst.copy_(src))
    return 2 * src.numel() / (ms * 1e-3)


def paged_inputs(batch, context, q_len, heads, kv_heads, dtype=torch.float16, device="cuda"):
    """Random caches with shuffled block tables, every sequence `context` tokens long."""
    blocks_per_seq = (context + BLOCK_SIZE - 1) // BLOCK_SIZE
    num_blocks = batch * blocks_per_seq
    shape = (num_blocks, BLOCK_SIZE, kv_heads, HEAD_DIM)
    k_cache = torch.randn(shape, dtype=dtype, device=device)
    v_cache = torch.randn(shape, dtype=dtype, device=device)
    tables = torch.randperm(num_blocks, device=device).view(batch, blocks_per_seq).int()
    seq_lens = torch.full((batch,), context, dtype=torch.int32, device=device)
    cu = torch.arange(batch + 1, dtype=torch.int32, device=device) * q_len
    q = torch.randn(batch * q_len, heads, HEAD_DIM, dtype=dtype, device=device)
    return q, k_cache, v_cache, tables, seq_lens, cu


def bench_decode(bandwidth: float, quick: bool) -> None:
    print(f"\nDecode attention (fp16, D={HEAD_DIM}, block {BLOCK_SIZE}); copy bandwidth "
          f"{bandwidth / 1e9:.0f} GB/s")  # fmt: skip
    print(f"{'layout':<10} {'batch':>5} {'context':>7} {'us':>9} {'GB/s':>7} {'of copy':>7}")
    shapes = [(b, c) for b in (1, 16, 64, 256) for c in (256, 1024, 4096, 8192)]
    if quick:
        shapes = [(1, 8192), (64, 1024), (256, 4096)]
    for layout, (heads, kv_heads) in tqdm(LAYOUTS.items(), desc="decode", leave=False):
        for batch, context in shapes:
            kv_bytes = 2 * batch * context * kv_heads * HEAD_DIM * 2
            if kv_bytes > MAX_CACHE_BYTES:
                continue
            args = paged_inputs(batch, context, 1, heads, kv_heads)
            ms = _bench_ms(partial(paged_attention_triton, *args, HEAD_DIM**-0.5))
            rate = kv_bytes / (ms * 1e-3)
            print(f"{layout:<10} {batch:>5} {context:>7} {ms * 1e3:>9.1f} {rate / 1e9:>7.0f} "
                  f"{rate / bandwidth:>7.0%}")  # fmt: skip
            del args
            torch.cuda.empty_cache()


def bench_prefill(quick: bool) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    print(f"\nPrefill attention (fp16, causal, D={HEAD_DIM}) vs SDPA flash")
    print(f"{'layout':<10} {'batch':>5} {'length':>7} {'ours us':>9} {'sdpa us':>9} {'ratio':>6}")
    shapes = [(1, 512), (1, 2048), (4, 1024), (8, 2048), (1, 8192)]
    if quick:
        shapes = [(1, 2048), (4, 1024)]
    for layout, (heads, kv_heads) in tqdm(LAYOUTS.items(), desc="prefill", leave=False):
        for batch, length in shapes:
            q, k_cache, v_cache, tables, lens, cu = paged_inputs(
                batch, length, length, heads, kv_heads
            )
            ours = _bench_ms(
                partial(paged_attention_triton, q, k_cache, v_cache, tables, lens, cu, 0.1)
            )
            dense_q = q.view(batch, length, heads, HEAD_DIM).transpose(1, 2)
            dense_k = torch.randn(batch, kv_heads, length, HEAD_DIM, dtype=q.dtype, device="cuda")
            dense_v = torch.randn_like(dense_k)
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                sdpa = _bench_ms(
                    partial(
                        F.scaled_dot_product_attention, dense_q, dense_k, dense_v,
                        is_causal=True, enable_gqa=heads != kv_heads,
                    )
                )  # fmt: skip
            print(f"{layout:<10} {batch:>5} {length:>7} {ours * 1e3:>9.1f} {sdpa * 1e3:>9.1f} "
                  f"{sdpa / ours:>5.2f}x")  # fmt: skip


def bench_beam_step(quick: bool) -> None:
    print("\nBeam step (fp32 logits, half the vocabulary allowed) vs torch reference")
    print(f"{'vocab':>6} {'beams':>5} {'batch':>5} {'ours us':>9} {'torch us':>9} {'speedup':>7}")
    shapes = [(v, k, b) for v in (32000, 50257) for k in (4, 8) for b in (16, 64)]
    if quick:
        shapes = [(50257, 8, 16)]
    for vocab, beams, batch in tqdm(shapes, desc="beam step", leave=False):
        rows = batch * beams
        logits = torch.randn(rows, vocab, device="cuda")
        scores = torch.randn(rows, device="cuda")
        allowed = torch.randint(-(2**31), 2**31, (rows, (vocab + 31) // 32), device="cuda")
        allowed = allowed.int()
        ours = _bench_ms(partial(beam_step_triton, logits, scores, allowed, beams))
        ref = _bench_ms(partial(beam_step_reference, logits, scores, allowed, beams))
        print(f"{vocab:>6} {beams:>5} {batch:>5} {ours * 1e3:>9.1f} {ref * 1e3:>9.1f} "
              f"{ref / ours:>6.1f}x")  # fmt: skip


def cpu_smoke() -> None:
    """One tiny decode + prefill batch and one beam step, interpreter vs reference."""
    q, k_cache, v_cache, tables, lens, cu = paged_inputs(2, 40, 1, 4, 2, torch.float32, "cpu")
    cu = torch.tensor([0, 1, 41], dtype=torch.int32)
    q = torch.randn(41, 4, HEAD_DIM)
    attn_err = (
        paged_attention_triton(q, k_cache, v_cache, tables, lens, cu, 0.1)
        - paged_attention_reference(q, k_cache, v_cache, tables, lens, cu, 0.1)
    ).abs().max()  # fmt: skip
    logits, scores = torch.randn(8, 5000), torch.randn(8)
    got = beam_step_triton(logits, scores, None, 4)
    want = beam_step_reference(logits, scores, None, 4)
    same = torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    print(f"interpreter smoke: attention max |err| {attn_err:.2e}, beam step identical: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few shapes per table")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No GPU present: the kernel benchmarks need CUDA; GPU numbers are still owed.")
        cpu_smoke()
        return
    print(f"{torch.cuda.get_device_name()} | torch {torch.__version__}")
    bench_decode(copy_bandwidth(), args.quick)
    bench_prefill(args.quick)
    bench_beam_step(args.quick)


if __name__ == "__main__":
    main()
