// The compiled CPU kernels' entry points. Python calls them as torch.ops.completion_kernels.*;
// the fused decode layers (cpu_decode_layers.cpp) call them directly, without the dispatcher.

#pragma once

#include <ATen/ATen.h>

namespace completion_kernels {

// cpu_linear.cpp: x [..., K] bf16 times a weight packed by pack_linear_weight, plus fp32 bias.
at::Tensor linear_packed(const at::Tensor& x, const at::Tensor& packed,
                         const c10::optional<at::Tensor>& bias, int64_t n);

// rms_norm.cpp: transformers' Llama RMSNorm of x's rows.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// rotary_embedding.cpp: RoPE of x [N, H, D] in place; cos, sin [N, D / 2] fp32.
void rotary_embedding_(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// cpu_paged_attention.cpp: this step's K/V into their cache slots, and attention of the
// sequences `seqs` (few query tokens each) over their blocks, into their rows of out.
void store_kv(const at::Tensor& key, const at::Tensor& value, at::Tensor& k_cache,
              at::Tensor& v_cache, const at::Tensor& slot_mapping);
void paged_attention_rows(const at::Tensor& q, const at::Tensor& k_cache,
                          const at::Tensor& v_cache, const at::Tensor& block_tables,
                          const at::Tensor& seq_lens, const at::Tensor& cu_seqlens_q,
                          double scale, const at::Tensor& seqs, at::Tensor& out);

}  // namespace completion_kernels
