// bf16 linear layers on CPUs with AVX512-BF16: y = x Wᵀ + b, fp32 accumulation, rounded to bf16
// once, as oneDNN's bf16 product. `kernels/cpu_linear.py` holds the reference it must equal.
//
// A decode step multiplies a few rows by every weight of the model, so what it costs is reading
// the weights plus each call's fixed cost. oneDNN's bf16 product spends ≈20 µs a call before any
// arithmetic (5.9 GB/s on a 256x256 weight at one row); this kernel reads the same weight at one
// row in ≈6 µs, and keeps level with oneDNN up to 1,024 rows (both then bound by the bf16 dot
// products), so one layout serves prefill and decode.
//
// The weight is packed once so that no horizontal sums are needed: output block j (16 outputs) at
// input pair p is one 64-byte vector, W[16j + l][2p + {0,1}] for l = 0..15. vdpbf16ps multiplies it
// by the input pair x[2p], x[2p+1] broadcast to all 16 lanes and adds both products into lane l of
// that block's fp32 accumulator. A tile keeps MR rows x NB blocks of accumulators in registers,
// reusing each loaded weight vector for MR rows.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_kernels.h"

#include <algorithm>
#include <cstring>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t LANES = 16;   // outputs per block: one vector of fp32 accumulators
constexpr int64_t NB = 4;       // blocks per tile: independent accumulators even at one row
constexpr int64_t MR = 4;       // rows per tile: 16 accumulators of the 32 vector registers
constexpr int64_t ROWS = 64;    // rows per parallel work item; a decode step's rows are one item

// w: [N, K] -> [ceil(N/16), ceil(K/2), 16, 2], zero-padded.
at::Tensor pack_linear_weight(const at::Tensor& w) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == at::kBFloat16, "weight must be a 2-d bf16 tensor");
  const int64_t n = w.size(0), k = w.size(1);
  const int64_t blocks = (n + LANES - 1) / LANES, pairs = (k + 1) / 2;
  auto padded = at::zeros({blocks * LANES, pairs * 2}, w.options());
  padded.narrow(0, 0, n).narrow(1, 0, k).copy_(w);
  return padded.view({blocks, LANES, pairs, 2}).permute({0, 2, 1, 3}).contiguous();
}

bool linear_kernel_available() {
#if defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

#if defined(__AVX512BF16__)

struct Product {
  const uint16_t* x;   // [M, K] rows
  const uint16_t* w;   // packed weight
  const float* bias;   // [N] or null
  uint16_t* y;         // [M, N]
  int64_t k, n, pairs;
};

// Rows [0, R) of x (at x) times blocks [0, B) of the weight (at w) into y's columns from col0.
template <int R, int B>
inline void tile(const Product& p, const uint16_t* x, const uint16_t* w, uint16_t* y, int64_t col0) {
  const int64_t block_stride = p.pairs * 2 * LANES;
  __m512 acc[R][B];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b) acc[r][b] = _mm512_setzero_ps();
  for (int64_t pair = 0; pair < p.pairs; ++pair) {
    __m512bh wv[B];
#pragma GCC unroll 4
    for (int b = 0; b < B; ++b)
      wv[b] = (__m512bh)_mm512_loadu_si512(w + b * block_stride + pair * 2 * LANES);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      int32_t xs;  // the input pair, as one 32-bit lane to broadcast
      std::memcpy(&xs, x + r * p.k + 2 * pair, sizeof xs);
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(xs);
#pragma GCC unroll 4
      for (int b = 0; b < B; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], wv[b], xv);
    }
  }
#pragma GCC unroll 4
  for (int b = 0; b < B; ++b) {
    const int64_t col = col0 + b * LANES;
    const int64_t left = p.n - col;
    const __mmask16 mask = left >= LANES ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
    const __m512 bias = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + col) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256i rounded = (__m256i)_mm512_cvtneps_pbh(_mm512_add_ps(acc[r][b], bias));
      _mm256_mask_storeu_epi16(y + r * p.n + col, mask, rounded);
    }
  }
}

// Rows [row0, row1) times blocks [block0, block0 + B), MR rows at a time.
template <int B>
void rows_times_blocks(const Product& p, int64_t row0, int64_t row1, int64_t block0) {
  const uint16_t* w = p.w + block0 * p.pairs * 2 * LANES;
  const int64_t col0 = block0 * LANES;
  int64_t r = row0;
  for (; r + MR <= row1; r += MR) tile<MR, B>(p, p.x + r * p.k, w, p.y + r * p.n, col0);
  switch (row1 - r) {
    case 3: tile<3, B>(p, p.x + r * p.k, w, p.y + r * p.n, col0); break;
    case 2: tile<2, B>(p, p.x + r * p.k, w, p.y + r * p.n, col0); break;
    case 1: tile<1, B>(p, p.x + r * p.k, w, p.y + r * p.n, col0); break;
  }
}

void multiply(const Product& p, int64_t rows, int64_t blocks) {
  const int64_t groups = (blocks + NB - 1) / NB, row_chunks = (rows + ROWS - 1) / ROWS;
  at::parallel_for(0, groups * row_chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t group = item % groups, chunk = item / groups;
      const int64_t row0 = chunk * ROWS, row1 = std::min(rows, row0 + ROWS);
      const int64_t block0 = group * NB;
      switch (std::min(NB, blocks - block0)) {
        case 4: rows_times_blocks<4>(p, row0, row1, block0); break;
        case 3: rows_times_blocks<3>(p, row0, row1, block0); break;
        case 2: rows_times_blocks<2>(p, row0, row1, block0); break;
        case 1: rows_times_blocks<1>(p, row0, row1, block0); break;
      }
    }
  });
}

#endif  // __AVX512BF16__

}  // namespace

namespace completion_kernels {

// x: [..., K] bf16 contiguous, K even; packed from pack_linear_weight of an [N, K] weight;
// bias: [N] fp32.
at::Tensor linear_packed(const at::Tensor& x, const at::Tensor& packed,
                         const c10::optional<at::Tensor>& bias, int64_t n) {
  TORCH_CHECK(linear_kernel_available(), "built for a CPU without AVX512-BF16");
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && x.is_contiguous(), "x must be contiguous bf16");
  const int64_t k = x.size(-1), rows = x.numel() / k;
  TORCH_CHECK(k % 2 == 0 && packed.size(1) * 2 == k, "x's last dimension must be the weight's, even");
  TORCH_CHECK(packed.size(0) * LANES >= n, "n exceeds the packed weight's outputs");
  auto sizes = x.sizes().vec();
  sizes.back() = n;
  auto y = at::empty(sizes, x.options());
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || (bias->scalar_type() == at::kFloat && bias->is_contiguous() &&
                            bias->numel() == n),
              "bias must be n contiguous fp32 values (added to the sums before the rounding)");
#if defined(__AVX512BF16__)
  const Product p{reinterpret_cast<const uint16_t*>(x.data_ptr()),
                  reinterpret_cast<const uint16_t*>(packed.data_ptr()),
                  has_bias ? bias->data_ptr<float>() : nullptr,
                  reinterpret_cast<uint16_t*>(y.data_ptr()), k, n, k / 2};
  multiply(p, rows, (n + LANES - 1) / LANES);
#endif
  return y;
}

}  // namespace completion_kernels

TORCH_LIBRARY_FRAGMENT(completion_kernels, m) {
  m.def("linear_kernel_available() -> bool");
  m.impl("linear_kernel_available", &linear_kernel_available);
  m.def("pack_linear_weight(Tensor w) -> Tensor");
  m.impl("pack_linear_weight", c10::DispatchKey::CPU, &pack_linear_weight);
  m.def("linear_packed(Tensor x, Tensor packed, Tensor? bias, int n) -> Tensor");
  m.impl("linear_packed", c10::DispatchKey::CPU, &completion_kernels::linear_packed);
}
