"""The Triton kernels compile for a real GPU (sm_90 PTX and cubin) without one being present.

The interpreter tests check the arithmetic but not what only the compiler enforces (constexpr
globals, loop-carried types, layouts, shared memory); this compiles one variant of every kernel
with the ptxas bundled in the triton wheel.
"""

import os
import subprocess
import sys

import pytest
import triton
from completion_kernels import triton_beam_step as tbs
from completion_kernels import triton_paged_attention as tpa
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from tests.support.service_process import REPO

pytestmark = pytest.mark.slow  # compiles every Triton kernel for sm90

POINTERS = {
    "block_tables_ptr": "*i32",
    "seq_lens_ptr": "*i32",
    "cu_seqlens_q_ptr": "*i32",
    "slot_mapping_ptr": "*i64",
    "part_acc_ptr": "*fp32",
    "part_max_ptr": "*fp32",
    "part_sum_ptr": "*fp32",
    "logits_ptr": "*bf16",
    "allowed_ptr": "*i32",
    "chunk_max_ptr": "*fp32",
    "chunk_sum_ptr": "*fp32",
    "cand_logit_ptr": "*fp32",
    "cand_token_ptr": "*i32",
    "parent_ptr": "*i64",
    "token_ptr": "*i64",
    "score_ptr": "*fp32",
    "beam_scores_ptr": "*fp32",
    "scale_log2": "fp32",
}
ATTENTION = {"BLOCK_N": 64, "BLOCK_SIZE": 16, "HEAD_DIM": 128, "D_PAD": 128, "PRECISION": "tf32"}

CASES = [
    (tpa._prefill_kernel, {"GROUP": 7, "BLOCK_Q": 9, "BLOCK_M": 64, "FP32_MATH": False, **ATTENTION}),
    (tpa._decode_segment_kernel, {"GROUP": 8, "BLOCK_M": 16, "SEGMENT": 512, "FP32_MATH": False, **ATTENTION}),
    (tpa._decode_merge_kernel, {"SEGMENT": 512, "HEAD_DIM": 128, "D_PAD": 128}),
    (tpa._store_kv_kernel, {"NUM_KV_HEADS": 2, "HEAD_DIM": 64, "H_PAD": 2, "D_PAD": 64, "BLOCK_SIZE": 16}),
    (tbs._chunk_kernel, {"HAS_MASK": True, "CHUNK": 4096, "NUM_CAND": 16}),
    (tbs._merge_kernel, {"NUM_BEAMS": 8, "NUM_CAND": 16, "BEAMS_PAD": 8, "CHUNKS_PAD": 16, "CANDS_PAD": 256}),
]  # fmt: skip


def compile_all() -> None:
    """Compile every case; run in a fresh process, since TRITON_INTERPRET is read at import."""
    for kernel, constants in CASES:
        names = kernel.arg_names
        # Unlisted pointers hold the model's dtype; other runtime arguments are int32 scalars.
        signature = {
            name: "constexpr"
            if name in constants
            else POINTERS.get(name, "*bf16" if name.endswith("_ptr") else "i32")
            for name in names
        }
        source = ASTSource(
            fn=kernel,
            signature=signature,
            constexprs={(names.index(k),): v for k, v in constants.items()},
        )
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"] and ".entry" in compiled.asm["ptx"]
        assert compiled.metadata.shared <= 227 * 1024, kernel.__name__  # fits an H100 SM
        print(kernel.__name__, "shared", compiled.metadata.shared, flush=True)


def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from tests.kernels.test_kernels_compile import compile_all; compile_all()",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("shared") == len(CASES)
