// AVX-512 VNNI kernels: vpdpwssd multiplies int16 pairs and accumulates into int32 lanes in one
// instruction (32 products per instruction against AVX2's 16 in two). Only the matmul has its
// own version here; attention uses the AVX2 kernels on these machines.
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // false positives inside GCC 12's AVX-512 headers
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")

namespace lmz {
namespace {

// 64 pair sums of |x| <= 32639, |w| <= 128 per lane stay below 2**31: flush every 2048 k.
constexpr int KBLOCK = 2048;

inline int64_t hsum_epi32(__m512i a) {
  const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(a));
  const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a, 1));
  return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

template <int MR, int NR>
inline void tile(const int16_t* x, size_t ldx, const int8_t* w, size_t ldw, int K, int64_t* out) {
  for (int i = 0; i < MR * NR; ++i) out[i] = 0;
  for (int k0 = 0; k0 < K; k0 += KBLOCK) {
    const int k1 = K < k0 + KBLOCK ? K : k0 + KBLOCK;
    __m512i acc[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int k = k0; k < k1; k += 32) {
      __m512i wv[NR];
      for (int j = 0; j < NR; ++j)
        wv[j] = _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * ldw + k)));
      for (int i = 0; i < MR; ++i) {
        const __m512i xv = _mm512_loadu_si512(reinterpret_cast<const void*>(x + i * ldx + k));
        for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpwssd_epi32(acc[i][j], xv, wv[j]);
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NR; ++j) out[i * NR + j] += hsum_epi32(acc[i][j]);
  }
}

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
  for (; n + 6 <= n1; n += 6) tile_out<MR, 6>(a, m, n);
  for (; n < n1; ++n) tile_out<MR, 1>(a, m, n);
}

void matmul(const MatmulArgs& a) {
  const int MB = 48;
  int NB = (32 * 1024) / (a.K > 0 ? a.K : 1);
  NB = NB < 12 ? 12 : (NB / 12) * 12;
  for (int m0 = 0; m0 < a.M; m0 += MB) {
    const int m1 = a.M < m0 + MB ? a.M : m0 + MB;
    for (int nb = a.n0; nb < a.n1; nb += NB) {
      const int ne = a.n1 < nb + NB ? a.n1 : nb + NB;
      int m = m0;
      for (; m + 4 <= m1; m += 4) row_tiles<4>(a, m, nb, ne);
      switch (m1 - m) {
        case 3: row_tiles<3>(a, m, nb, ne); break;
        case 2: row_tiles<2>(a, m, nb, ne); break;
        case 1: row_tiles<1>(a, m, nb, ne); break;
        default: break;
      }
    }
  }
}

}  // namespace

void matmul_avx512vnni(const MatmulArgs& a) { matmul(a); }

}  // namespace lmz

#pragma GCC pop_options
#endif  // __x86_64__
