// Every decoder layer of a decode step in one call, for the Llama family and GPT-2: the same
// kernels, in the same order, as the models' Python forwards (service/models/llama.py, gpt2.py),
// called directly. A decode step's layers are ~20 small operators each; at one row their Python
// calls, dispatch and module plumbing cost about as much as the kernels themselves.
// `kernels/cpu_decode_layers.py` says when the engine uses it; `tests/test_cpu_decode_layers.py`
// holds it to the Python forward.

#include <ATen/ATen.h>
#include <torch/library.h>

#include "cpu_kernels.h"

namespace {

constexpr size_t kWeightsPerLayer = 10;   // Llama
constexpr size_t kGpt2WeightsPerLayer = 12;

c10::optional<at::Tensor> bias_of(const at::Tensor& t) {
  return t.numel() ? c10::optional<at::Tensor>(t) : c10::nullopt;
}

// Where a step's tokens go and which blocks its sequences read, as the engine's metadata.
struct Step {
  const at::Tensor &slot_mapping, &block_tables, &seq_lens, &cu_seqlens_q, &seqs;
};

// q [N, H, D] over the caches after storing k, v [N, H_kv, D]: [N, H * D], as the layers' Python.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  at::Tensor k_cache, at::Tensor v_cache, const Step& step, double scale) {
  completion_kernels::store_kv(k, v, k_cache, v_cache, step.slot_mapping);
  at::Tensor out = at::empty(q.sizes(), q.options());
  completion_kernels::paged_attention_rows(q, k_cache, v_cache, step.block_tables, step.seq_lens,
                                           step.cu_seqlens_q, scale, step.seqs, out);
  return out.view({q.size(0), q.size(1) * q.size(2)});
}

}  // namespace

namespace completion_kernels {

// x: [N, hidden] bf16, the step's token embeddings. weights, 10 a layer: input norm, packed qkv,
// qkv bias, packed o, o bias, post-attention norm, packed gate_up, gate_up bias, packed down, down
// bias (an empty tensor: no bias; biases fp32). caches: k, v a layer. cos, sin: [N, D / 2] fp32.
// The attention metadata as the engine's; `seqs` must hold every sequence with queries (no prefill
// chunk in the step). Returns the hidden states after the last layer, before the final norm.
at::Tensor llama_decode_layers(const at::Tensor& x, at::TensorList weights, at::TensorList caches,
                               const at::Tensor& cos, const at::Tensor& sin,
                               const at::Tensor& slot_mapping, const at::Tensor& block_tables,
                               const at::Tensor& seq_lens, const at::Tensor& cu_seqlens_q,
                               const at::Tensor& seqs, int64_t num_heads, int64_t num_kv_heads,
                               double eps, double scale) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "x must be [N, hidden], contiguous");
  TORCH_CHECK(weights.size() % kWeightsPerLayer == 0, "10 weights a layer");
  TORCH_CHECK(caches.size() * kWeightsPerLayer == 2 * weights.size(), "a k and a v cache a layer");
  const int64_t tokens = x.size(0), hidden = x.size(1), head_dim = 2 * cos.size(1);
  const int64_t q_size = num_heads * head_dim, kv_size = num_kv_heads * head_dim;
  const Step step{slot_mapping, block_tables, seq_lens, cu_seqlens_q, seqs};
  at::Tensor h = x;
  for (size_t layer = 0; layer < caches.size() / 2; ++layer) {
    const at::Tensor* w = &weights[layer * kWeightsPerLayer];
    at::Tensor k_cache = caches[2 * layer], v_cache = caches[2 * layer + 1];
    const int64_t intermediate = 2 * w[8].size(1);  // down's input: its packed pairs x 2

    const at::Tensor qkv = linear_packed(rms_norm(h, w[0], eps), w[1], bias_of(w[2]),
                                         q_size + 2 * kv_size);
    at::Tensor qk = qkv.narrow(1, 0, q_size + kv_size).view({tokens, num_heads + num_kv_heads, head_dim});
    rotary_embedding_(qk, cos, sin);  // q and k together, in place
    const at::Tensor v = qkv.narrow(1, q_size + kv_size, kv_size).view({tokens, num_kv_heads, head_dim});
    const at::Tensor attention = attend(qk.narrow(1, 0, num_heads), qk.narrow(1, num_heads, num_kv_heads),
                                        v, k_cache, v_cache, step, scale);
    h = h + linear_packed(attention, w[3], bias_of(w[4]), hidden);

    const at::Tensor gate_up = linear_packed(rms_norm(h, w[5], eps), w[6], bias_of(w[7]),
                                             2 * intermediate);
    const at::Tensor act = at::silu(gate_up.narrow(1, 0, intermediate))
                               .mul_(gate_up.narrow(1, intermediate, intermediate));
    h = h + linear_packed(act, w[8], bias_of(w[9]), hidden);
  }
  return h;
}

// GPT-2. x: [N, hidden] bf16, token plus position embeddings. weights, 12 a layer: ln_1 weight and
// bias, packed c_attn and its fp32 bias, packed attention c_proj and bias, ln_2 weight and bias,
// packed c_fc and bias, packed MLP c_proj and bias. scales: each layer's attention scale (CodeParrot
// divides it by the layer's index + 1). gelu: "tanh" or "none", the config's activation.
at::Tensor gpt2_decode_layers(const at::Tensor& x, at::TensorList weights, at::TensorList caches,
                              at::ArrayRef<double> scales, const at::Tensor& slot_mapping,
                              const at::Tensor& block_tables, const at::Tensor& seq_lens,
                              const at::Tensor& cu_seqlens_q, const at::Tensor& seqs,
                              int64_t num_heads, double eps, c10::string_view gelu) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous(), "x must be [N, hidden], contiguous");
  TORCH_CHECK(weights.size() % kGpt2WeightsPerLayer == 0, "12 weights a layer");
  TORCH_CHECK(caches.size() * kGpt2WeightsPerLayer == 2 * weights.size(), "a k and a v cache a layer");
  TORCH_CHECK(scales.size() * 2 == caches.size(), "a scale a layer");
  const int64_t tokens = x.size(0), hidden = x.size(1), head_dim = hidden / num_heads;
  const Step step{slot_mapping, block_tables, seq_lens, cu_seqlens_q, seqs};
  at::Tensor h = x;
  for (size_t layer = 0; layer < scales.size(); ++layer) {
    const at::Tensor* w = &weights[layer * kGpt2WeightsPerLayer];
    at::Tensor k_cache = caches[2 * layer], v_cache = caches[2 * layer + 1];
    const int64_t inner = w[10].size(1) * 2;  // MLP c_proj's input: its packed pairs x 2

    const at::Tensor qkv = linear_packed(at::layer_norm(h, {hidden}, w[0], w[1], eps), w[2],
                                         bias_of(w[3]), 3 * hidden);
    auto heads = [&](int64_t part) {
      return qkv.narrow(1, part * hidden, hidden).view({tokens, num_heads, head_dim});
    };
    const at::Tensor attention =
        attend(heads(0), heads(1), heads(2), k_cache, v_cache, step, scales[layer]);
    h = h + linear_packed(attention, w[4], bias_of(w[5]), hidden);

    const at::Tensor fc = linear_packed(at::layer_norm(h, {hidden}, w[6], w[7], eps), w[8],
                                        bias_of(w[9]), inner);
    h = h + linear_packed(at::gelu(fc, gelu), w[10], bias_of(w[11]), hidden);
  }
  return h;
}

}  // namespace completion_kernels

TORCH_LIBRARY_FRAGMENT(completion_kernels, m) {
  m.def(
      "llama_decode_layers(Tensor x, Tensor[] weights, Tensor(a!)[] caches, Tensor cos, Tensor sin, "
      "Tensor slot_mapping, Tensor block_tables, Tensor seq_lens, Tensor cu_seqlens_q, "
      "Tensor seqs, int num_heads, int num_kv_heads, float eps, float scale) -> Tensor");
  m.impl("llama_decode_layers", c10::DispatchKey::CPU, &completion_kernels::llama_decode_layers);
  m.def(
      "gpt2_decode_layers(Tensor x, Tensor[] weights, Tensor(a!)[] caches, float[] scales, "
      "Tensor slot_mapping, Tensor block_tables, Tensor seq_lens, Tensor cu_seqlens_q, "
      "Tensor seqs, int num_heads, float eps, str gelu) -> Tensor");
  m.impl("gpt2_decode_layers", c10::DispatchKey::CPU, &completion_kernels::gpt2_decode_layers);
}
