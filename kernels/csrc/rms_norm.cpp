// RMSNorm on the CPU, as transformers' Llama computes it: normalise each row in fp32, round to the
// input's dtype, multiply by the weight. One call where torch takes four (upcast, rms_norm, cast,
// product); rows run in parallel only from 64 of them, so a decode step's few rows start no
// thread team. `kernels/rms_norm.py` holds the reference it must equal.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_kernels.h"

#include <cmath>

namespace {

template <typename T>
void normalise_rows(const T* in, const T* w, T* out, int64_t rows, int64_t dim, float eps) {
  at::parallel_for(0, rows, 64, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x = in + r * dim;
      float squares = 0.f;
#pragma omp simd reduction(+ : squares)
      for (int64_t d = 0; d < dim; ++d) {
        const float value = static_cast<float>(x[d]);
        squares += value * value;
      }
      const float inv = 1.f / std::sqrt(squares / static_cast<float>(dim) + eps);
      for (int64_t d = 0; d < dim; ++d) {
        const T normed = static_cast<T>(static_cast<float>(x[d]) * inv);  // rounded, as transformers
        out[r * dim + d] = static_cast<T>(static_cast<float>(w[d]) * static_cast<float>(normed));
      }
    }
  });
}

}  // namespace

namespace completion_kernels {

// x: [..., D] contiguous; weight: [D] in x's dtype. Returns a new tensor like x.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  TORCH_CHECK(x.is_contiguous() && weight.is_contiguous(), "x and weight must be contiguous");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "weight must have x's dtype");
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  TORCH_CHECK(weight.numel() == dim, "weight must have x's last dimension");
  auto out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "rms_norm", [&] {
    normalise_rows(x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                   rows, dim, static_cast<float>(eps));
  });
  return out;
}

}  // namespace completion_kernels

TORCH_LIBRARY_FRAGMENT(completion_kernels, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.impl("rms_norm", c10::DispatchKey::CPU, &completion_kernels::rms_norm);
}
