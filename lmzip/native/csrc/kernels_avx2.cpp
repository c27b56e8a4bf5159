// AVX2 kernels (x86-64 with AVX2 + FMA): int16 x int8 dot products with vpmaddwd, integer
// attention sums with float64 FMAs (every product and partial sum is an integer below 2**53,
// so the fused multiply-add rounds nothing).
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace lmz {
namespace {
#include "dense_impl.h"
}  // namespace

const DenseKernels dense_avx2 = {d_max, d_biased, d_exp_weights, d_scale<int64_t>, d_scale<int32_t>, d_mix_dense,
                                d_shift_sum_arg, d_unigram_step, d_clip, d_sum32, d_min32, d_select_ge, d_top_k};

namespace {

// vpmaddwd adds two products of |x| <= 32639 and |w| <= 128 per int32 lane; 128 of them
// stay below 2**31, so int32 lanes are flushed to int64 every 2048 k.
constexpr int KBLOCK = 2048;

inline int64_t hsum_epi32(__m256i a) {
  __m256i lo = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(a));
  __m256i hi = _mm256_cvtepi32_epi64(_mm256_extracti128_si256(a, 1));
  __m256i s = _mm256_add_epi64(lo, hi);
  __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return _mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1);
}

template <int MR, int NR>
inline void tile(const int16_t* x, size_t ldx, const int8_t* w, size_t ldw, int K, int64_t* out) {
  for (int i = 0; i < MR * NR; ++i) out[i] = 0;
  for (int k0 = 0; k0 < K; k0 += KBLOCK) {
    const int k1 = K < k0 + KBLOCK ? K : k0 + KBLOCK;
    __m256i acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
    for (int k = k0; k < k1; k += 16) {
      __m256i wv[NR];
      for (int j = 0; j < NR; ++j)
        wv[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + j * ldw + k)));
      for (int i = 0; i < MR; ++i) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i * ldx + k));
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(xv, wv[j]));
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) out[i * NR + j] += hsum_epi32(acc[i][j]);
  }
}

// One output tile through the epilogue.
template <int MR, int NR>
inline void tile_out(const MatmulArgs& a, int m, int n) {
  int64_t acc[MR * NR];
  tile<MR, NR>(a.x + m * a.ldx, a.ldx, a.w + n * a.ldw, a.ldw, a.K, acc);
  for (int i = 0; i < MR; ++i) {
    const double kf = a.kf[m + i];
    for (int j = 0; j < NR; ++j) {
      const double r = (double(acc[i * NR + j]) * a.scale[n + j]) * kf;
      if (a.y) a.y[(m + i) * a.ldy + n + j] = r;
      if (a.yi) a.yi[(m + i) * a.ldy + n + j] = int64_t(__builtin_nearbyint(r));
    }
  }
}

template <int MR>
inline void row_tiles(const MatmulArgs& a, int m, int n0, int n1) {
  int n = n0;
  for (; n + 4 <= n1; n += 4) tile_out<MR, 4>(a, m, n);
  switch (n1 - n) {
    case 3: tile_out<MR, 3>(a, m, n); break;
    case 2: tile_out<MR, 2>(a, m, n); break;
    case 1: tile_out<MR, 1>(a, m, n); break;
    default: break;
  }
}

template <>
inline void row_tiles<1>(const MatmulArgs& a, int m, int n0, int n1) {
  int n = n0;  // one activation row (a decoding step): more weight rows per pass
  for (; n + 8 <= n1; n += 8) tile_out<1, 8>(a, m, n);
  for (; n + 4 <= n1; n += 4) tile_out<1, 4>(a, m, n);
  for (; n < n1; ++n) tile_out<1, 1>(a, m, n);
}

void matmul(const MatmulArgs& a) {
  // Blocks: 48 activation rows (in L2) against weight rows that fit in L1 together.
  const int MB = 48;
  int NB = (24 * 1024) / (a.K > 0 ? a.K : 1);
  NB = NB < 12 ? 12 : (NB / 12) * 12;
  for (int m0 = 0; m0 < a.M; m0 += MB) {
    const int m1 = a.M < m0 + MB ? a.M : m0 + MB;
    for (int nb = a.n0; nb < a.n1; nb += NB) {
      const int ne = a.n1 < nb + NB ? a.n1 : nb + NB;
      int m = m0;
      for (; m + 3 <= m1; m += 3) row_tiles<3>(a, m, nb, ne);
      switch (m1 - m) {
        case 2: row_tiles<2>(a, m, nb, ne); break;
        case 1: row_tiles<1>(a, m, nb, ne); break;
        default: break;
      }
    }
  }
}

// -- attention --------------------------------------------------------------------------------

template <int G, int NB>
inline void score_blocks(const ScoreArgs& a, int b) {
  __m256d acc[G][2 * NB];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < 2 * NB; ++t) acc[g][t] = _mm256_setzero_pd();
  const int32_t* base = a.kblk + size_t(b) * a.hdp * KEY_BLOCK;
  const size_t bstride = size_t(a.hdp) * KEY_BLOCK;
  for (int d = 0; d < a.hdp; ++d) {
    __m256d kv[2 * NB];
    for (int t = 0; t < NB; ++t) {
      const __m256i k8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + t * bstride + d * KEY_BLOCK));
      kv[2 * t] = _mm256_cvtepi32_pd(_mm256_castsi256_si128(k8));
      kv[2 * t + 1] = _mm256_cvtepi32_pd(_mm256_extracti128_si256(k8, 1));
    }
    for (int g = 0; g < G; ++g) {
      const __m256d qb = _mm256_broadcast_sd(a.q + g * a.hdp + d);
      for (int t = 0; t < 2 * NB; ++t) acc[g][t] = _mm256_fmadd_pd(qb, kv[t], acc[g][t]);
    }
  }
  for (int t = 0; t < NB; ++t) {
    const int j = (b + t) * KEY_BLOCK;
    for (int g = 0; g < G; ++g) {
      double tmp[8];
      _mm256_storeu_pd(tmp, acc[g][2 * t]);
      _mm256_storeu_pd(tmp + 4, acc[g][2 * t + 1]);
      const int n = a.j1 - j < KEY_BLOCK ? a.j1 - j : KEY_BLOCK;
      double* out = a.s + g * a.lds + j;
      for (int l = 0; l < n; ++l) out[l] = tmp[l];
    }
  }
}

template <int G>
inline void scores_g(const ScoreArgs& a) {
  const int b0 = a.j0 / KEY_BLOCK, b1 = (a.j1 + KEY_BLOCK - 1) / KEY_BLOCK;
  int b = b0;
  if (G <= 3)
    for (; b + 2 <= b1; b += 2) score_blocks<G, 2>(a, b);
  for (; b < b1; ++b) score_blocks<G, 1>(a, b);
}

void scores(const ScoreArgs& a) {
  switch (a.G) {
    case 1: scores_g<1>(a); break;
    case 2: scores_g<2>(a); break;
    case 3: scores_g<3>(a); break;
    case 4: scores_g<4>(a); break;
    case 5: scores_g<5>(a); break;
    default: scores_g<6>(a); break;
  }
}

template <int G>
inline void mix_g(const MixArgs& a) {
  for (int d0 = 0; d0 < a.hdp; d0 += 8) {
    __m256d acc[G][2];
    for (int g = 0; g < G; ++g) {
      acc[g][0] = _mm256_loadu_pd(a.num + g * a.hdp + d0);
      acc[g][1] = _mm256_loadu_pd(a.num + g * a.hdp + d0 + 4);
    }
    for (int t = 0; t < a.nj; ++t) {
      const int j = a.idx[t];
      const __m256i v8 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.v + size_t(j) * a.hdp + d0));
      const __m256d v0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(v8));
      const __m256d v1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(v8, 1));
      for (int g = 0; g < G; ++g) {
        const __m256d eb = _mm256_broadcast_sd(a.e + g * a.lde + j);
        acc[g][0] = _mm256_fmadd_pd(eb, v0, acc[g][0]);
        acc[g][1] = _mm256_fmadd_pd(eb, v1, acc[g][1]);
      }
    }
    for (int g = 0; g < G; ++g) {
      _mm256_storeu_pd(a.num + g * a.hdp + d0, acc[g][0]);
      _mm256_storeu_pd(a.num + g * a.hdp + d0 + 4, acc[g][1]);
    }
  }
}

void mix(const MixArgs& a) {
  switch (a.G) {
    case 1: mix_g<1>(a); break;
    case 2: mix_g<2>(a); break;
    case 3: mix_g<3>(a); break;
    case 4: mix_g<4>(a); break;
    case 5: mix_g<5>(a); break;
    default: mix_g<6>(a); break;
  }
}

}  // namespace

void matmul_avx2(const MatmulArgs& a) { matmul(a); }
void scores_avx2(const ScoreArgs& a) { scores(a); }
void mix_avx2(const MixArgs& a) { mix(a); }

}  // namespace lmz

#pragma GCC pop_options
#endif  // __x86_64__
