// Rotary position embedding on the CPU, in place: for each token and head, the pairs
// (x_i, x_{i + D/2}) turn by the token's angle (transformers' rotate_half convention). One call
// where the torch reference (`kernels/rotary.py`) takes a dozen operators a layer; the rotation
// runs in fp32 and rounds once.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_kernels.h"

namespace completion_kernels {

// x: [N, H, D] (D contiguous, other strides free: q and k sliced from a fused projection);
// cos, sin: [N, D / 2] fp32.
void rotary_embedding_(at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 3 && x.stride(2) == 1, "x must be [N, H, D] with D contiguous");
  TORCH_CHECK(cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat,
              "cos and sin must be float32");
  const int64_t tokens = x.size(0), heads = x.size(1), half = x.size(2) / 2;
  TORCH_CHECK(cos.size(0) == tokens && cos.size(-1) == half, "cos must be [N, D / 2]");
  const auto c = cos.contiguous(), s = sin.contiguous();
  const float* cp = c.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rotary", [&] {
    auto* xp = x.data_ptr<scalar_t>();
    at::parallel_for(0, tokens, 64, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t)
        for (int64_t h = 0; h < heads; ++h) {
          scalar_t* first = xp + t * x.stride(0) + h * x.stride(1);
          scalar_t* second = first + half;
          for (int64_t i = 0; i < half; ++i) {
            const float a = first[i], b = second[i];
            const float ci = cp[t * half + i], si = sp[t * half + i];
            first[i] = static_cast<scalar_t>(a * ci - b * si);
            second[i] = static_cast<scalar_t>(b * ci + a * si);
          }
        }
    });
  });
}

}  // namespace completion_kernels

TORCH_LIBRARY_FRAGMENT(completion_kernels, m) {
  m.def("rotary_embedding_(Tensor(a!) x, Tensor cos, Tensor sin) -> ()");
  m.impl("rotary_embedding_", c10::DispatchKey::CPU, &completion_kernels::rotary_embedding_);
}
