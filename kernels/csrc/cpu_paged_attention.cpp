// The paged KV cache on the CPU: storing a step's keys and values into their slots, and attention
// for sequences with a few query tokens (decodes, verified drafts, a keystroke's new characters):
// every such sequence of a step in one call, reading the cache through its block table in place.
// The Python side (kernels/cpu_paged_attention.py) calls them; `store_kv_reference` and
// `paged_attention_reference` are the definitions they must equal.
//
// One task is one (sequence, KV head): the G query heads that share the KV head, times the n
// query tokens, are R = n * G rows that read each key and value once. Query j (0-based) of a
// sequence of L tokens sits at position L - n + j and sees keys 0 .. L - n + j.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "cpu_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace {

inline float to_float(float x) { return x; }
inline float to_float(c10::BFloat16 x) {
  // bf16 is the high half of an fp32: a shift the compiler vectorises (c10's cast has a branch).
  uint32_t bits = static_cast<uint32_t>(x.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline float to_float(c10::Half x) { return static_cast<float>(x); }

template <typename T>
inline void load_row(const T* __restrict src, float* __restrict dst, int64_t dim) {
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) dst[d] = to_float(src[d]);
}

struct Layout {  // element strides of a [num_blocks, block_size, H_kv, D] cache
  int64_t block, token, head;
};

// 16 fp32 lanes (GCC vector extensions: one AVX-512 register, two AVX2 ones, ...). Another
// compiler fails the build, and the engine falls back to torch (kernels/cpu_extension.py).
typedef float Lanes __attribute__((vector_size(64), aligned(4)));
typedef int32_t LaneIndex __attribute__((vector_size(64)));

inline Lanes pair_sum(Lanes a, Lanes b, LaneIndex low, LaneIndex high) {
  return __builtin_shuffle(a, b, low) + __builtin_shuffle(a, b, high);
}

// out[j] = the sum of v[j]'s lanes, for 16 vectors at once: four rounds, each adding pairs of
// lane groups while packing two vectors into one (15 pair sums, where 16 separate horizontal
// sums take about three times the instructions).
inline Lanes transpose_sum(const Lanes v[16]) {
  const LaneIndex lo8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const LaneIndex hi8 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const LaneIndex lo4 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
  const LaneIndex hi4 = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
  const LaneIndex lo2 = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
  const LaneIndex hi2 = {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31};
  const LaneIndex lo1 = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
  const LaneIndex hi1 = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
  Lanes w[8], x[4], y[2];
  for (int i = 0; i < 8; ++i) w[i] = pair_sum(v[2 * i], v[2 * i + 1], lo8, hi8);
  for (int i = 0; i < 4; ++i) x[i] = pair_sum(w[2 * i], w[2 * i + 1], lo4, hi4);
  for (int i = 0; i < 2; ++i) y[i] = pair_sum(x[2 * i], x[2 * i + 1], lo2, hi2);
  return pair_sum(y[0], y[1], lo1, hi1);
}

// Scores of 16 fp32 keys, `kDim` (a multiple of 16) apart, against one query row.
template <int64_t kDim>
inline Lanes score_16(const float* q, const float* keys) {
  Lanes partial[16];
  for (int64_t j = 0; j < 16; ++j) {
    Lanes sum = {};
    for (int64_t c = 0; c < kDim; c += 16)
      sum += *reinterpret_cast<const Lanes*>(q + c) *
             *reinterpret_cast<const Lanes*>(keys + j * kDim + c);
    partial[j] = sum;
  }
  return transpose_sum(partial);
}

// Converts a block's first `count` rows (each `dim` long, `stride` apart) to fp32, packed.
template <typename T>
inline void load_block(const T* src, int64_t stride, int64_t count, int64_t dim, float* dst) {
  for (int64_t j = 0; j < count; ++j) load_row(src + j * stride, dst + j * dim, dim);
}

constexpr int64_t kMaxHeadDim = 256;

// kDim: the head dimension as a constant (0: read it from `head_dim`). A constant trip count
// lets the compiler unroll the per-key loops, which otherwise spend more on loop control than on
// the 32 multiply-adds of a small head.
template <typename T, int64_t kDim>
void attend_group(const T* q, T* out, const T* k_cache, const T* v_cache, Layout kl, Layout vl,
                  const int32_t* table, int64_t seq_len, int64_t n, int64_t kv_head, int64_t group,
                  int64_t q_stride, int64_t q_head_stride, int64_t out_stride, int64_t block_size,
                  int64_t head_dim, float scale) {
  const int64_t dim = kDim ? kDim : head_dim;
  const int64_t rows = n * group;
  std::vector<float> qf(rows * dim), acc(rows * dim, 0.f), scores(rows * seq_len);
  std::vector<float> block(block_size * dim);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t g = 0; g < group; ++g)
      load_row(q + j * q_stride + (kv_head * group + g) * q_head_stride,
               &qf[(j * group + g) * dim], dim);
  // Row r (query token r / group) sits at position seq_len - n + r / group and sees keys up to it.
  auto visible = [&](int64_t r) { return seq_len - n + r / group + 1; };

  // Scores, a block of keys at a time: converted once, then dotted with every row.
  for (int64_t b = 0, t0 = 0; t0 < seq_len; ++b, t0 += block_size) {
    const int64_t count = std::min(block_size, seq_len - t0);
    load_block(k_cache + table[b] * kl.block + kv_head * kl.head, kl.token, count, dim,
               block.data());
    for (int64_t r = 0; r < rows; ++r) {
      const float* qr = &qf[r * dim];
      float* s = &scores[r * seq_len + t0];
      if constexpr (kDim > 0 && kDim % 16 == 0) {
        if (block_size == 16) {  // a block's keys, 16 scores at once (stale rows past `count`)
          const Lanes x = score_16<kDim>(qr, block.data());
          for (int64_t j = 0; j < count; ++j) s[j] = x[j] * scale;
          continue;
        }
      }
      for (int64_t j = 0; j < count; ++j) {
        float x = 0.f;
#pragma omp simd reduction(+ : x)
        for (int64_t d = 0; d < dim; ++d) x += qr[d] * block[j * dim + d];
        s[j] = x * scale;
      }
    }
  }
  // Softmax of each row over the keys it sees.
  for (int64_t r = 0; r < rows; ++r) {
    float* s = &scores[r * seq_len];
    const int64_t count = visible(r);
    float m = s[0], sum = 0.f;
    for (int64_t t = 1; t < count; ++t) m = std::max(m, s[t]);
#pragma omp simd reduction(+ : sum)
    for (int64_t t = 0; t < count; ++t) sum += (s[t] = std::exp(s[t] - m));
    const float inv = 1.f / sum;
#pragma omp simd
    for (int64_t t = 0; t < count; ++t) s[t] *= inv;
  }
  // Weighted values, a block at a time; each row sums its block in registers (a sum kept in
  // memory would wait on its own store at every key).
  for (int64_t b = 0, t0 = 0; t0 < seq_len; ++b, t0 += block_size) {
    const int64_t count = std::min(block_size, seq_len - t0);
    load_block(v_cache + table[b] * vl.block + kv_head * vl.head, vl.token, count, dim,
               block.data());
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t seen = std::min(count, visible(r) - t0);
      const float* p = &scores[r * seq_len + t0];
      float sum[kDim ? kDim : kMaxHeadDim] = {};
      for (int64_t j = 0; j < seen; ++j)
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) sum[d] += p[j] * block[j * dim + d];
      float* a = &acc[r * dim];
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) a[d] += sum[d];
    }
  }
  for (int64_t j = 0; j < n; ++j)
    for (int64_t g = 0; g < group; ++g) {
      T* o = out + j * out_stride + (kv_head * group + g) * dim;
      const float* a = &acc[(j * group + g) * dim];
      for (int64_t d = 0; d < dim; ++d) o[d] = static_cast<T>(a[d]);
    }
}

#if defined(__AVX512BF16__)

// bf16 caches with AVX512-BF16: vdpbf16ps multiplies pairs of bf16 and adds both products into
// an fp32 lane, so neither keys nor values are converted and no score needs a horizontal sum.
// - Scores: a block's 16 keys are transposed as a 16 x 16 matrix of 32-bit words, so vector p
//   holds pair p of every key; each query row then takes one instruction per pair, its pair
//   broadcast, and gets its 16 scores in the lanes.
// - Values: keys j and j+1 interleaved word by word give pairs (v_j[d], v_j+1[d]) in lane d; the
//   pair of probabilities (p_j, p_j+1) broadcast weights both at once. The probabilities are
//   rounded to bf16 for this, as torch's CPU flash attention does for bf16; they are not yet
//   normalised (the division comes after, in fp32).
// Against the general kernel above, which converts to fp32: 16 sequences of 1,000 tokens took
// 287 µs instead of 396 at one query token each, 630 instead of 1,157 at five (a drafting
// decode), 2 threads.

// Permutation indices of the transposes and interleaves, built once.
struct Shuffles {
  __m512i butterfly_lo[4], butterfly_hi[4];  // 16 x 16 transpose: sub-blocks 8, 4, 2, 1
  __m512i words_lo, words_hi;                // interleave two rows of 32 bf16
  Shuffles() {
    for (int stage = 0, h = 8; h >= 1; ++stage, h /= 2) {
      alignas(64) int32_t lo[16], hi[16];
      for (int c = 0; c < 16; ++c) {  // swap the off-diagonal h x h sub-blocks of rows i, i + h
        lo[c] = (c & h) ? 16 + c - h : c;
        hi[c] = (c & h) ? 16 + c : c + h;
      }
      butterfly_lo[stage] = _mm512_load_si512(lo);
      butterfly_hi[stage] = _mm512_load_si512(hi);
    }
    alignas(64) int16_t lo[32], hi[32];
    for (int i = 0; i < 16; ++i) {
      lo[2 * i] = i, lo[2 * i + 1] = 32 + i;
      hi[2 * i] = 16 + i, hi[2 * i + 1] = 48 + i;
    }
    words_lo = _mm512_load_si512(lo);
    words_hi = _mm512_load_si512(hi);
  }
};

const Shuffles& shuffles() {
  static const Shuffles instance;
  return instance;
}

// rows[j] = 16 words of key j; afterwards rows[p] = word p of every key.
inline void transpose_16x16(__m512i rows[16]) {
  const Shuffles& sh = shuffles();
  for (int stage = 0, h = 8; h >= 1; ++stage, h /= 2)
    for (int i = 0; i < 16; ++i) {
      if (i & h) continue;
      const __m512i a = rows[i], b = rows[i + h];
      rows[i] = _mm512_permutex2var_epi32(a, sh.butterfly_lo[stage], b);
      rows[i + h] = _mm512_permutex2var_epi32(a, sh.butterfly_hi[stage], b);
    }
}

inline int32_t word_pair(const c10::BFloat16* at) {
  int32_t pair;
  std::memcpy(&pair, at, sizeof pair);
  return pair;
}

// Where one task's rows are: row r is query token r / group of head kv_head * group + r % group.
struct RowMap {
  const c10::BFloat16* q;
  c10::BFloat16* out;
  int64_t group, kv_head, q_stride, q_head_stride, out_stride;
  const c10::BFloat16* query(int64_t r) const {
    return q + (r / group) * q_stride + (kv_head * group + r % group) * q_head_stride;
  }
};

// Scores of rows [r0, r0 + R) against one block's transposed keys, scaled, into their rows of
// `scores` (`stride` apart) from column t0. R is a constant so the sums stay in registers.
template <int64_t kDim, int R>
inline void score_rows(const __m512i (*kt)[16], const RowMap& m, int64_t r0, float scale,
                       float* scores, int64_t stride, int64_t t0) {
  __m512 acc[R];
  const c10::BFloat16* query[R];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) acc[i] = _mm512_setzero_ps(), query[i] = m.query(r0 + i);
#pragma GCC unroll 4
  for (int64_t p = 0; p < kDim / 2; ++p) {
    const __m512bh keys = (__m512bh)kt[p / 16][p % 16];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i) {
      const __m512bh pair = (__m512bh)_mm512_set1_epi32(word_pair(query[i] + 2 * p));
      acc[i] = _mm512_dpbf16_ps(acc[i], keys, pair);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
    _mm512_storeu_ps(scores + (r0 + i) * stride + t0, _mm512_mul_ps(acc[i], _mm512_set1_ps(scale)));
}

// Rows [r0, r0 + R): their probabilities (bf16, `stride` apart) times every value, divided by
// their sums, into out.
template <int64_t kDim, int R>
void weigh_values(const c10::BFloat16* v_cache, Layout vl, const int32_t* table, int64_t seq_len,
                  const c10::BFloat16* probs, int64_t stride, const float* inv_sums,
                  const RowMap& m, int64_t r0) {
  constexpr int64_t kVectors = kDim / 16;
  const Shuffles& sh = shuffles();
  __m512 acc[R][kVectors];
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
    for (int64_t v = 0; v < kVectors; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t b = 0, t0 = 0; t0 < seq_len; ++b, t0 += 16) {
    const int64_t count = std::min<int64_t>(16, seq_len - t0);
    const c10::BFloat16* values = v_cache + table[b] * vl.block + m.kv_head * vl.head;
    if (t0 + 16 < seq_len) prefetch_block<kDim>(v_cache + table[b + 1] * vl.block + m.kv_head * vl.head, vl);
    for (int64_t j = 0; j < count; j += 2) {
      const c10::BFloat16* a = values + j * vl.token;
      const bool both = j + 1 < count;  // else the second of the pair is zeros, its weight 0
#pragma GCC unroll 4
      for (int64_t c = 0; c < kDim / 32; ++c) {
        const __m512i first = _mm512_loadu_si512(a + 32 * c);
        const __m512i second =
            both ? _mm512_loadu_si512(a + vl.token + 32 * c) : _mm512_setzero_si512();
        const __m512bh lo = (__m512bh)_mm512_permutex2var_epi16(first, sh.words_lo, second);
        const __m512bh hi = (__m512bh)_mm512_permutex2var_epi16(first, sh.words_hi, second);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
          const __m512bh pair =
              (__m512bh)_mm512_set1_epi32(word_pair(probs + (r0 + i) * stride + t0 + j));
          acc[i][2 * c] = _mm512_dpbf16_ps(acc[i][2 * c], lo, pair);
          acc[i][2 * c + 1] = _mm512_dpbf16_ps(acc[i][2 * c + 1], hi, pair);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < R; ++i) {
    const int64_t r = r0 + i;
    c10::BFloat16* o = m.out + (r / m.group) * m.out_stride + (m.kv_head * m.group + r % m.group) * kDim;
    const __m512 inv = _mm512_set1_ps(inv_sums[r]);
#pragma GCC unroll 8
    for (int64_t v = 0; v < kVectors; ++v)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 16 * v),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[i][v], inv)));
  }
}

// The next block's rows for one head, requested while this one is computed: blocks lie anywhere
// in the pool, so the hardware prefetcher cannot see the next one coming.
template <int64_t kDim>
inline void prefetch_block(const c10::BFloat16* rows, Layout layout) {
  for (int64_t j = 0; j < 16; ++j)
    for (int64_t c = 0; c < kDim; c += 32) _mm_prefetch(reinterpret_cast<const char*>(rows + j * layout.token + c), _MM_HINT_T0);
}

// Calls f.template operator()<R>() for R = rows (1 .. kMax), a constant the compiler unrolls by.
template <int kMax, typename F>
inline void with_rows(int64_t rows, F&& f) {
  if constexpr (kMax > 0) {
    if (rows == kMax) return f.template operator()<kMax>();
    with_rows<kMax - 1>(rows, f);
  }
}

template <int64_t kDim>
void attend_group_bf16(const c10::BFloat16* q, c10::BFloat16* out, const c10::BFloat16* k_cache,
                       const c10::BFloat16* v_cache, Layout kl, Layout vl, const int32_t* table,
                       int64_t seq_len, int64_t n, int64_t kv_head, int64_t group,
                       int64_t q_stride, int64_t q_head_stride, int64_t out_stride,
                       int64_t /*block_size: 16*/, int64_t /*head_dim: kDim*/, float scale) {
  constexpr int kScoreRows = 8;                                // 8 sums beside 16 key vectors
  constexpr int kValueRows = std::max<int64_t>(1, 256 / kDim);  // 16 sums of 16 lanes
  const RowMap m{q, out, group, kv_head, q_stride, q_head_stride, out_stride};
  const int64_t rows = n * group, padded = (seq_len + 15) / 16 * 16;
  // Scratch reused by each thread's tasks: sized, never cleared (every element read is written).
  thread_local std::vector<float> score_space, sum_space;
  thread_local std::vector<c10::BFloat16> prob_space;
  score_space.resize(std::max<size_t>(score_space.size(), rows * padded));
  prob_space.resize(std::max<size_t>(prob_space.size(), rows * padded));
  sum_space.resize(std::max<size_t>(sum_space.size(), rows));
  float* scores = score_space.data();
  c10::BFloat16* probs = prob_space.data();
  float* inv_sums = sum_space.data();

  for (int64_t b = 0, t0 = 0; t0 < seq_len; ++b, t0 += 16) {
    const int64_t count = std::min<int64_t>(16, seq_len - t0);
    const c10::BFloat16* keys = k_cache + table[b] * kl.block + kv_head * kl.head;
    if (t0 + 16 < seq_len) prefetch_block<kDim>(k_cache + table[b + 1] * kl.block + kv_head * kl.head, kl);
    __m512i kt[kDim / 32][16];
    for (int64_t c = 0; c < kDim / 32; ++c) {
      for (int64_t j = 0; j < 16; ++j)  // past `count`: zeros, never stale cache contents
        kt[c][j] = j < count ? _mm512_loadu_si512(keys + j * kl.token + 32 * c)
                             : _mm512_setzero_si512();
      transpose_16x16(kt[c]);
    }
    for (int64_t r0 = 0; r0 < rows; r0 += kScoreRows)
      with_rows<kScoreRows>(std::min<int64_t>(kScoreRows, rows - r0), [&]<int R>() {
        score_rows<kDim, R>(kt, m, r0, scale, scores, padded, t0);
      });
  }
  // Unnormalised probabilities in bf16, zero past what each row sees; fp32 sums.
  for (int64_t r = 0; r < rows; ++r) {
    float* s = &scores[r * padded];
    c10::BFloat16* p = &probs[r * padded];
    const int64_t count = seq_len - n + r / group + 1;
    float top = s[0], sum = 0.f;
    for (int64_t t = 1; t < count; ++t) top = std::max(top, s[t]);
#pragma omp simd reduction(+ : sum)
    for (int64_t t = 0; t < count; ++t) sum += (s[t] = std::exp(s[t] - top));
    for (int64_t t = 0; t < padded; t += 16) {  // rounded to bf16, 16 at a time
      const int64_t left = std::clamp<int64_t>(count - t, 0, 16);
      const __mmask16 seen = static_cast<__mmask16>((1u << left) - 1);
      const __m256bh rounded = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(seen, s + t));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + t), (__m256i)rounded);
    }
    inv_sums[r] = 1.f / sum;
  }
  for (int64_t r0 = 0; r0 < rows; r0 += kValueRows)
    with_rows<kValueRows>(std::min<int64_t>(kValueRows, rows - r0), [&]<int R>() {
      weigh_values<kDim, R>(v_cache, vl, table, seq_len, probs, padded, inv_sums, m, r0);
    });
}

#endif  // __AVX512BF16__

template <typename T>
using Attend = void (*)(const T*, T*, const T*, const T*, Layout, Layout, const int32_t*, int64_t,
                        int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                        float);

template <typename T>
Attend<T> attend_for(int64_t dim, int64_t block_size) {
#if defined(__AVX512BF16__)
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    if (block_size == 16 && (dim == 32 || dim == 64 || dim == 128))
      return dim == 32 ? attend_group_bf16<32> : dim == 64 ? attend_group_bf16<64> : attend_group_bf16<128>;
  }
#endif
  return dim == 32    ? attend_group<T, 32>
         : dim == 64  ? attend_group<T, 64>
         : dim == 128 ? attend_group<T, 128>
                      : attend_group<T, 0>;
}

}  // namespace

namespace completion_kernels {

// q, out: [N, H, D] (q any strides with D contiguous, as a slice of a fused projection gives;
// out contiguous); caches: [num_blocks, block_size, H_kv, D] (any strides, D contiguous);
// block_tables: [B, max_blocks] int32; seq_lens: [B] int32; cu_seqlens_q: [B + 1] int32;
// seqs: int32 indices of the sequences to compute. Writes their rows of out.
void paged_attention_rows(const at::Tensor& q, const at::Tensor& k_cache,
                          const at::Tensor& v_cache, const at::Tensor& block_tables,
                          const at::Tensor& seq_lens, const at::Tensor& cu_seqlens_q,
                          double scale, const at::Tensor& seqs, at::Tensor& out) {
  TORCH_CHECK(q.stride(2) == 1, "q's head_dim must be contiguous");
  TORCH_CHECK(out.is_contiguous(), "out must be contiguous");
  TORCH_CHECK(q.size(2) <= kMaxHeadDim, "head_dim must be at most ", kMaxHeadDim);
  TORCH_CHECK(k_cache.stride(3) == 1 && v_cache.stride(3) == 1, "head_dim must be contiguous");
  TORCH_CHECK(q.scalar_type() == k_cache.scalar_type() && q.scalar_type() == out.scalar_type(),
              "q, the caches and out must share a dtype");
  const int64_t heads = q.size(1), dim = q.size(2), kv_heads = k_cache.size(2);
  const int64_t block_size = k_cache.size(1), width = block_tables.size(1);
  const int64_t group = heads / kv_heads, q_stride = q.stride(0);
  const Layout kl{k_cache.stride(0), k_cache.stride(1), k_cache.stride(2)};
  const Layout vl{v_cache.stride(0), v_cache.stride(1), v_cache.stride(2)};
  const auto tables = block_tables.contiguous(), lens = seq_lens.contiguous();
  const auto starts = cu_seqlens_q.contiguous(), chosen = seqs.contiguous();
  const int32_t* table = tables.data_ptr<int32_t>();
  const int32_t* len = lens.data_ptr<int32_t>();
  const int32_t* start = starts.data_ptr<int32_t>();
  const int32_t* seq = chosen.data_ptr<int32_t>();
  const int64_t tasks = chosen.numel() * kv_heads;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "paged_attention_rows",
                                  [&] {
    const auto* qp = q.data_ptr<scalar_t>();
    auto* op = out.data_ptr<scalar_t>();
    const auto* kp = k_cache.data_ptr<scalar_t>();
    const auto* vp = v_cache.data_ptr<scalar_t>();
    const auto attend = attend_for<scalar_t>(dim, block_size);
    at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t i = seq[task / kv_heads], h = task % kv_heads;
        const int64_t first = start[i], n = start[i + 1] - start[i];
        attend(qp + first * q_stride, op + first * heads * dim, kp, vp, kl, vl,
               table + i * width, len[i], n, h, group, q_stride, q.stride(1), heads * dim,
               block_size, dim, static_cast<float>(scale));
      }
    });
  });
}


// key, value: [N, H_kv, D] (D contiguous); caches: [num_blocks, block_size, H_kv, D] (any
// strides, D contiguous); slot_mapping: [N] int64, block * block_size + offset, < 0 = skip.
void store_kv(const at::Tensor& key, const at::Tensor& value, at::Tensor& k_cache,
              at::Tensor& v_cache, const at::Tensor& slot_mapping) {
  TORCH_CHECK(key.stride(2) == 1 && value.stride(2) == 1, "K/V head_dim must be contiguous");
  TORCH_CHECK(k_cache.stride(3) == 1 && v_cache.stride(3) == 1, "head_dim must be contiguous");
  const auto slots = slot_mapping.contiguous();
  const int64_t* slot = slots.data_ptr<int64_t>();
  const int64_t tokens = key.size(0), kv_heads = key.size(1), dim = key.size(2);
  const int64_t block_size = k_cache.size(1);
  auto copy = [&](const at::Tensor& src, at::Tensor& cache) {
    const auto from = src.to(cache.scalar_type());
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, cache.scalar_type(), "store_kv", [&] {
      const auto* in = from.data_ptr<scalar_t>();
      auto* out = cache.data_ptr<scalar_t>();
      for (int64_t t = 0; t < tokens; ++t) {
        if (slot[t] < 0) continue;
        const int64_t block = slot[t] / block_size, offset = slot[t] % block_size;
        for (int64_t h = 0; h < kv_heads; ++h)
          std::memcpy(out + block * cache.stride(0) + offset * cache.stride(1) + h * cache.stride(2),
                      in + t * from.stride(0) + h * from.stride(1), dim * sizeof(scalar_t));
      }
    });
  };
  copy(key, k_cache);
  copy(value, v_cache);
}

}  // namespace completion_kernels

TORCH_LIBRARY(completion_kernels, m) {
  m.def(
      "paged_attention_rows(Tensor q, Tensor k_cache, Tensor v_cache, Tensor block_tables, "
      "Tensor seq_lens, Tensor cu_seqlens_q, float scale, Tensor seqs, Tensor(a!) out) -> ()");
  m.impl("paged_attention_rows", c10::DispatchKey::CPU, &completion_kernels::paged_attention_rows);
  m.def(
      "store_kv(Tensor key, Tensor value, Tensor(a!) k_cache, Tensor(b!) v_cache, "
      "Tensor slot_mapping) -> ()");
  m.impl("store_kv", c10::DispatchKey::CPU, &completion_kernels::store_kv);
}
