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
constexpr int GROUP_BYTES = PACK_ROWS * K_ALIGN;

inline int64_t hsum_epi32(__m512i a) {
  const __m512i lo = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(a));
  const __m512i hi = _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a, 1));
  return _mm512_reduce_add_epi64(_mm512_add_epi64(lo, hi));
}

inline __m512i load_w32(const int8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

inline void epilogue(const MatmulArgs& a, int m, int n, int64_t acc) {
  if (n >= a.n1) return;
  const double r = (double(acc) * a.scale[n]) * a.kf[m];
  if (a.y) a.y[m * a.ldy + n] = r;
  if (a.yi) a.yi[m * a.ldy + n] = int64_t(__builtin_nearbyint(r));
}

// MR activation rows against a whole group: each chunk of a weight row is one 32-byte load.
template <int MR>
inline void group(const MatmulArgs& a, int m, int g) {
  const int8_t* w = a.w + size_t(g) * size_t(a.K / K_ALIGN) * GROUP_BYTES;
  int64_t tot[MR][PACK_ROWS] = {};
  for (int k0 = 0; k0 < a.K; k0 += KBLOCK) {
    const int k1 = a.K < k0 + KBLOCK ? a.K : k0 + KBLOCK;
    __m512i acc[MR][PACK_ROWS];
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < PACK_ROWS; ++j) acc[i][j] = _mm512_setzero_si512();
    for (int k = k0; k < k1; k += K_ALIGN) {
      const int8_t* p = w + size_t(k / K_ALIGN) * GROUP_BYTES;
      __m512i xv[MR];
      for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_si512(reinterpret_cast<const void*>(a.x + (m + i) * a.ldx + k));
      for (int j = 0; j < PACK_ROWS; ++j) {
        const __m512i wv = load_w32(p + j * K_ALIGN);
        for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_dpwssd_epi32(acc[i][j], xv[i], wv);
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < PACK_ROWS; ++j) tot[i][j] += hsum_epi32(acc[i][j]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < PACK_ROWS; ++j) epilogue(a, m + i, g * PACK_ROWS + j, tot[i][j]);
}

void matmul(const MatmulArgs& a) {
  const int g0 = a.n0 / PACK_ROWS, g1 = (a.n1 + PACK_ROWS - 1) / PACK_ROWS;
  const int MB = 48;
  int GB = (32 * 1024) / (a.K * PACK_ROWS > 0 ? a.K * PACK_ROWS : 1);
  GB = GB < 1 ? 1 : GB;
  for (int m0 = 0; m0 < a.M; m0 += MB) {
    const int m1 = a.M < m0 + MB ? a.M : m0 + MB;
    for (int gb = g0; gb < g1; gb += GB) {
      const int ge = g1 < gb + GB ? g1 : gb + GB;
      for (int g = gb; g < ge; ++g) {
        int m = m0;
        for (; m + 3 <= m1; m += 3) group<3>(a, m, g);
        if (m1 - m == 2) group<2>(a, m, g);
        if (m1 - m == 1) group<1>(a, m, g);
      }
    }
  }
}

}  // namespace

void matmul_avx512vnni(const MatmulArgs& a) { matmul(a); }

}  // namespace lmz

#pragma GCC pop_options
#endif  // __x86_64__
