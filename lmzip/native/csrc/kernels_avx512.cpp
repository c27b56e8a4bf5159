// AVX-512 VNNI kernels: vpdpwssd multiplies int16 pairs and accumulates into int32 lanes in one
// instruction (32 products per instruction against AVX2's 16 in two). The attention's scores and
// mix sum integer products in int32 lanes and take 1024 hi + lo in float64 (exact integers below
// 2**53, so any order gives the same bits); its weights use the AVX2 kernel.
#include "kernels.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers extract halves from _mm256_undefined_si256(): false positives of
// -Wall (Python's flags) at the headers' lines, so the pragmas come before the include.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC diagnostic ignored "-Wunused-function"      // dense_impl.h: only the tails of the passes below
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")

namespace lmz {
namespace {
#include "dense_impl.h"

// 64 pair sums of |x| <= 32639, |w| <= 128 per lane stay below 2**31: flush every 2048 k.
constexpr int KBLOCK = 2048;
constexpr int GROUP_BYTES = PACK_ROWS * K_ALIGN;

// out[0..7] += the lane sums of eight accumulators, by a transposing tree: lanes are added in pairs
// and fours in int32 (a lane holds at most KBLOCK / 32 vpdpwssd, each two products of |x| <= 32639
// and |w| <= 128: four lanes < 2**31), the four partial sums of each accumulator in int64.
inline __m512i sum_pairs(__m512i x, __m512i y) { return _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y)); }
inline __m512i sum_fours(__m512i x, __m512i y) { return _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y)); }
// each 128-bit lane of u holds the four-lane sums of four accumulators, in order
inline void add_sums4(__m512i u, int64_t* o) {
  const __m512i v = _mm512_add_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(u)),
                                     _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(u, 1)));
  const __m256i r = _mm256_add_epi64(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(o)), r));
}
inline void hsum8_add(__m512i a0, __m512i a1, __m512i a2, __m512i a3, __m512i a4, __m512i a5, __m512i a6, __m512i a7,
                      int64_t* out) {
  add_sums4(sum_fours(sum_pairs(a0, a1), sum_pairs(a2, a3)), out);
  add_sums4(sum_fours(sum_pairs(a4, a5), sum_pairs(a6, a7)), out + 4);
}

inline __m512i load_w32(const int8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// The eight sums of row m against weight group g, as the portable epilogue computes them one by
// one: ((double)acc * scale[n]) * kf[m], rounded half-even to int64 for yi. |acc| < 2**53, so the
// conversion is exact; the lanes are IEEE products in the same order, so the bits are the same.
// Rows of the group at or past n1 (padding) are neither read nor written.
inline void epilogue8(const MatmulArgs& a, int m, int g, const int64_t* acc) {
  const int n = g * PACK_ROWS, valid = a.n1 - n;
  if (valid <= 0) return;
  const __mmask8 k = valid >= 8 ? __mmask8(0xFF) : __mmask8((1u << valid) - 1);
  const __m512d s = _mm512_maskz_loadu_pd(k, a.scale + n);
  const __m512d v = _mm512_cvtepi64_pd(_mm512_loadu_si512(reinterpret_cast<const void*>(acc)));
  const __m512d r = _mm512_mul_pd(_mm512_mul_pd(v, s), _mm512_set1_pd(a.kf[m]));
  if (a.y) _mm512_mask_storeu_pd(a.y + m * a.ldy + n, k, r);
  if (a.yi) _mm512_mask_storeu_epi64(a.yi + m * a.ldy + n, k, _mm512_cvt_roundpd_epi64(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  if (a.yi32) {
    const __mmask8 big = _mm512_mask_cmp_pd_mask(k, _mm512_abs_pd(r), _mm512_set1_pd(LOGIT32_LIMIT), _CMP_GT_OQ);
    if (big) __atomic_store_n(a.clipped, 1, __ATOMIC_RELAXED);
    const __m256i v = _mm512_cvt_roundpd_epi32(_mm512_maskz_mov_pd(__mmask8(k & ~big), r), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi32(a.yi32 + m * a.ldy + n, k, v);
  }
}

// The tiles keep their accumulators in named variables, one function per K block (as the AVX2
// tiles do): with accumulator arrays GCC 12 keeps them on the stack (the first version did; a
// batch-16 step took 54 ms against 33.5 with this tile, its asm and the eight-wide epilogue).

// acc += pairwise products of x and w. In asm because GCC 12, given the intrinsic in a tile of 24
// accumulators, still copies accumulators through the stack at every step (seen in the disassembly).
inline __m512i dpwssd(__m512i acc, __m512i x, __m512i w) {
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
  return acc;
}

// MR (<= 3) activation rows against a whole group of eight weight rows: 24 accumulators, three
// activation registers and one weight register, within AVX-512's 32. The group's bytes are read as
// one contiguous run, each row's chunk converted to int16 once for the MR rows.
template <int MR>
__attribute__((noinline)) void group_block(const int16_t* x, size_t ldx, const int8_t* w, int k0, int k1, int64_t* out) {
  const __m512i z = _mm512_setzero_si512();
  __m512i a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
  __m512i b0 = z, b1 = z, b2 = z, b3 = z, b4 = z, b5 = z, b6 = z, b7 = z;
  __m512i c0 = z, c1 = z, c2 = z, c3 = z, c4 = z, c5 = z, c6 = z, c7 = z;
  for (int k = k0; k < k1; k += K_ALIGN) {
    const int8_t* p = w + size_t(k / K_ALIGN) * GROUP_BYTES;
    const __m512i x0 = _mm512_loadu_si512(reinterpret_cast<const void*>(x + k));
    __m512i x1 = z, x2 = z;
    if constexpr (MR > 1) x1 = _mm512_loadu_si512(reinterpret_cast<const void*>(x + ldx + k));
    if constexpr (MR > 2) x2 = _mm512_loadu_si512(reinterpret_cast<const void*>(x + 2 * ldx + k));
#define LMZ_COL(J, A, B, C)                                        \
  {                                                                \
    const __m512i wv = load_w32(p + J * K_ALIGN);                  \
    A = dpwssd(A, x0, wv);                                        \
    if constexpr (MR > 1) B = dpwssd(B, x1, wv);                    \
    if constexpr (MR > 2) C = dpwssd(C, x2, wv);                    \
  }
    LMZ_COL(0, a0, b0, c0) LMZ_COL(1, a1, b1, c1) LMZ_COL(2, a2, b2, c2) LMZ_COL(3, a3, b3, c3)
    LMZ_COL(4, a4, b4, c4) LMZ_COL(5, a5, b5, c5) LMZ_COL(6, a6, b6, c6) LMZ_COL(7, a7, b7, c7)
#undef LMZ_COL
  }
  hsum8_add(a0, a1, a2, a3, a4, a5, a6, a7, out);
  if constexpr (MR > 1) hsum8_add(b0, b1, b2, b3, b4, b5, b6, b7, out + 8);
  if constexpr (MR > 2) hsum8_add(c0, c1, c2, c3, c4, c5, c6, c7, out + 16);
}

template <int MR>
inline void group(const MatmulArgs& a, int m, int g) {
  const int8_t* w = a.w + size_t(g) * size_t(a.K / K_ALIGN) * GROUP_BYTES;
  int64_t tot[MR * PACK_ROWS] = {0};
  for (int k0 = 0; k0 < a.K; k0 += KBLOCK)
    group_block<MR>(a.x + m * a.ldx, a.ldx, w, k0, a.K < k0 + KBLOCK ? a.K : k0 + KBLOCK, tot);
  for (int i = 0; i < MR; ++i) epilogue8(a, m + i, g, tot + i * PACK_ROWS);
}

void matmul(const MatmulArgs& a) {
  const int g0 = a.n0 / PACK_ROWS, g1 = (a.n1 + PACK_ROWS - 1) / PACK_ROWS;
  if (a.M == 1) {  // the decoding step's shape, bound by memory bandwidth
    for (int g = g0; g < g1; ++g) group<1>(a, 0, g);
    return;
  }
  // Blocks: 48 activation rows (in L2) against groups whose bytes fit in L1 together.
  const int MB = 48;
  int GB = (32 * 1024) / (a.K * PACK_ROWS > 0 ? a.K * PACK_ROWS : 1);
  GB = GB < 1 ? 1 : GB;
  for (int m0 = 0; m0 < a.M; m0 += MB) {
    const int m1 = a.M < m0 + MB ? a.M : m0 + MB;
    for (int gb = g0; gb < g1; gb += GB) {
      const int ge = g1 < gb + GB ? g1 : gb + GB;
      for (int g = gb; g < ge; ++g) {
        // rows in threes, but four left as two pairs (a single row converts a weight per product)
        int m = m0;
        for (; m + 3 <= m1 && m1 - m != 4; m += 3) group<3>(a, m, g);
        for (; m + 2 <= m1; m += 2) group<2>(a, m, g);
        if (m < m1) group<1>(a, m, g);
      }
    }
  }
}


// -- attention --------------------------------------------------------------------------------
// Scores in integers: each query entry splits as q = 1024 qh + ql (qh in [-1024, 1024], ql in
// [0, 1024)), and vpdpwssd multiplies the keys' int16 dimension pairs (kernels.h: the pair layout
// of a key block) by the rows' (qh, qh') or (ql, ql') pairs. One 512-bit load of a block holds two
// pairs of dimensions of its eight keys, so the rows' pairs come as vectors of two halves
// (pair_vectors). A lane holds one key's sums over at most SCORE_PAIRS / 2 pairs, and the two
// halves together at most SCORE_PAIRS: below 64 * 32767 * 1024 < 2**31. The score is 1024 hi + lo
// in float64 (exact, below 2**53). G (<= 6) rows against NB blocks of eight keys per tile, two
// accumulators per row and block (24 at most of AVX-512's 32 registers).
constexpr int SCORE_PAIRS = 32;

// Row I (< R rows) of a tile, one step of two dimension pairs: its accumulators H0.., L0.. (W
// of each) += the keys' pairs X0.. times the row's (qh) and (ql) pair vectors QH, QL, loaded once
// into registers (as memory operands of every vpdpwssd they were most of the tile's loads).
#define LMZ_PAIR_STEP(R, W, I, QH, QL, X0, X1, X2, X3, H0, H1, H2, H3, L0, L1, L2, L3) \
  if constexpr (R > I) {                                                             \
    const __m512i qhv = _mm512_loadu_si512(QH), qlv = _mm512_loadu_si512(QL);         \
    H0 = dpwssd(H0, X0, qhv), L0 = dpwssd(L0, X0, qlv);                              \
    if constexpr (W > 1) H1 = dpwssd(H1, X1, qhv), L1 = dpwssd(L1, X1, qlv);         \
    if constexpr (W > 2) H2 = dpwssd(H2, X2, qhv), L2 = dpwssd(L2, X2, qlv);         \
    if constexpr (W > 3) H3 = dpwssd(H3, X3, qhv), L3 = dpwssd(L3, X3, qlv);         \
  }

inline __m256i halves(__m512i x) {
  return _mm256_add_epi32(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1));
}
inline __m512d score_of(__m512i hi, __m512i lo) {
  return _mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(halves(hi)), _mm512_set1_pd(1024.0)),
                       _mm512_cvtepi32_pd(halves(lo)));
}

// qh, ql: each row's nv = hdp / 4 pair vectors (pair_vectors).
template <int G, int NB>
__attribute__((noinline)) void score_tile(const ScoreArgs& a, const __m512i* qh, const __m512i* ql, int nv, int b) {
  static_assert(2 * G * NB <= 24, "tile too large for AVX-512's 32 registers");
  const size_t bstride = size_t(a.hdp) * KEY_BLOCK;
  const int16_t* base = a.kblk + size_t(b) * bstride;
  double* s = a.s + size_t(b) * KEY_BLOCK;
  for (int v0 = 0; v0 < nv; v0 += SCORE_PAIRS / 2) {
    const int v1 = nv < v0 + SCORE_PAIRS / 2 ? nv : v0 + SCORE_PAIRS / 2;
    const __m512i z = _mm512_setzero_si512();
    __m512i h00 = z, h01 = z, h02 = z, h03 = z, h10 = z, h11 = z, h12 = z, h13 = z, h20 = z, h21 = z, h22 = z, h23 = z;
    __m512i l00 = z, l01 = z, l02 = z, l03 = z, l10 = z, l11 = z, l12 = z, l13 = z, l20 = z, l21 = z, l22 = z, l23 = z;
    __m512i h30 = z, h31 = z, h40 = z, h41 = z, h50 = z, h51 = z, l30 = z, l31 = z, l40 = z, l41 = z, l50 = z, l51 = z;
    for (int v = v0; v < v1; ++v) {
      const int16_t* kp = base + v * 4 * KEY_BLOCK;
      const __m512i k0 = _mm512_loadu_si512(kp);
      __m512i k1 = z, k2 = z, k3 = z;
      if constexpr (NB > 1) k1 = _mm512_loadu_si512(kp + bstride);
      if constexpr (NB > 2) k2 = _mm512_loadu_si512(kp + 2 * bstride);
      if constexpr (NB > 3) k3 = _mm512_loadu_si512(kp + 3 * bstride);
#define LMZ_ROW(I, H0, H1, H2, H3, L0, L1, L2, L3) \
  LMZ_PAIR_STEP(G, NB, I, qh + I * nv + v, ql + I * nv + v, k0, k1, k2, k3, H0, H1, H2, H3, L0, L1, L2, L3)
      LMZ_ROW(0, h00, h01, h02, h03, l00, l01, l02, l03) LMZ_ROW(1, h10, h11, h12, h13, l10, l11, l12, l13)
      LMZ_ROW(2, h20, h21, h22, h23, l20, l21, l22, l23) LMZ_ROW(3, h30, h31, z, z, l30, l31, z, z)
      LMZ_ROW(4, h40, h41, z, z, l40, l41, z, z) LMZ_ROW(5, h50, h51, z, z, l50, l51, z, z)
#undef LMZ_ROW
    }
    // Whole blocks are stored (the caller's rows hold a multiple of KEY_BLOCK entries); a later
    // part of the dimensions adds to them.
#define LMZ_ST1(I, J, H, L)                                                             \
  if constexpr (G > I && NB > J) {                                                      \
    double* o = s + I * a.lds + J * KEY_BLOCK;                                          \
    const __m512d sc = score_of(H, L);                                                  \
    _mm512_storeu_pd(o, v0 == 0 ? sc : _mm512_add_pd(_mm512_loadu_pd(o), sc));          \
  }
#define LMZ_ST(I, H0, H1, H2, H3, L0, L1, L2, L3) \
  LMZ_ST1(I, 0, H0, L0) LMZ_ST1(I, 1, H1, L1) LMZ_ST1(I, 2, H2, L2) LMZ_ST1(I, 3, H3, L3)
    LMZ_ST(0, h00, h01, h02, h03, l00, l01, l02, l03) LMZ_ST(1, h10, h11, h12, h13, l10, l11, l12, l13)
    LMZ_ST(2, h20, h21, h22, h23, l20, l21, l22, l23) LMZ_ST(3, h30, h31, z, z, l30, l31, z, z)
    LMZ_ST(4, h40, h41, z, z, l40, l41, z, z) LMZ_ST(5, h50, h51, z, z, l50, l51, z, z)
#undef LMZ_ST
#undef LMZ_ST1
  }
}

// Keys and values stream from memory during decoding: the blocks ahead are requested explicitly
// into L2 (prefetcht1). Measured on a Zen 4 (keys and values of 1440 heads of 1280 positions, two
// threads): no prefetch 17-18 ms for the scores, 8 blocks ahead into L1 21-22 ms, 16-32 blocks
// ahead into L2 12-13 ms (a plain read of the same bytes: 7.5 ms). Into L1 the requests pile up
// in the core's few miss buffers and stall the loads; L2 has room for them.
constexpr int PREFETCH_BLOCKS = 24;  // key blocks: 24 KB at 64 dimensions
constexpr int MIX_PREFETCH_BLOCKS = 2;  // value blocks of MIX_BLOCK keys (below): 16 KB at 64 dimensions
// In asm volatile: GCC's IPA found a helper lambda made only of __builtin_prefetch free of side
// effects and deleted its calls, so the scores kernel had run without any prefetch.
inline void prefetch_bytes(const void* p, int bytes) {
  const char* c = static_cast<const char*>(p);
  for (int o = 0; o < bytes; o += 64) asm volatile("prefetcht1 %0" : : "m"(c[o]));
}

template <int G>
void scores_g(const ScoreArgs& a, const __m512i* qh, const __m512i* ql, int nv) {
  constexpr int NB = G <= 3 ? 4 : 2;  // 2 G NB accumulators <= 24
  const int b0 = a.j0 / KEY_BLOCK, b1 = (a.j1 + KEY_BLOCK - 1) / KEY_BLOCK;
  const int bbytes = a.hdp * KEY_BLOCK * int(sizeof(int16_t));
  auto pf = [&](int p) { if (p < b1) prefetch_bytes(a.kblk + size_t(p) * a.hdp * KEY_BLOCK, bbytes); };
  for (int p = b0; p < b0 + PREFETCH_BLOCKS; ++p) pf(p);
  int b = b0;
  for (; b + NB <= b1; b += NB) {
    for (int t = 0; t < NB; ++t) pf(b + PREFETCH_BLOCKS + t);
    score_tile<G, NB>(a, qh, ql, nv, b);
  }
  if constexpr (NB > 2)
    if (b + 2 <= b1) {
      pf(b + PREFETCH_BLOCKS), pf(b + PREFETCH_BLOCKS + 1);
      score_tile<G, 2>(a, qh, ql, nv, b);
      b += 2;
    }
  for (; b < b1; ++b) score_tile<G, 1>(a, qh, ql, nv, b);
}

// The rows' query pairs (split_query_pairs) as vpdpwssd operands: for every two dimension pairs
// (2v, 2v + 1), a vector whose low half repeats pair 2v's dword and whose high half pair 2v + 1's
// (the layout of a block's 512-bit load).
void pair_vectors(const int32_t* pairs, int G, int hdp, __m512i* out) {
  const int nv = hdp / 4;
  for (int g = 0; g < G; ++g)
    for (int v = 0; v < nv; ++v) {
      const int32_t* p = pairs + g * (hdp / 2) + 2 * v;
      out[g * nv + v] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(p[0])), _mm256_set1_epi32(p[1]), 1);
    }
}

void scores_rows(const ScoreArgs& a, const __m512i* qh, const __m512i* ql) {
  const int nv = a.hdp / 4;
  switch (a.G) {
    case 1: scores_g<1>(a, qh, ql, nv); break;
    case 2: scores_g<2>(a, qh, ql, nv); break;
    case 3: scores_g<3>(a, qh, ql, nv); break;
    case 4: scores_g<4>(a, qh, ql, nv); break;
    case 5: scores_g<5>(a, qh, ql, nv); break;
    default: scores_g<6>(a, qh, ql, nv); break;
  }
}

// The keys' remainders beyond int16 (kernels.h), added to the stored scores of their blocks:
// rare (a head's one or two outlier dimensions), so a pass over the rows in L1 suffices.
void key_remainders(const ScoreArgs& a) {
  const int b0 = a.j0 / KEY_BLOCK, b1 = (a.j1 + KEY_BLOCK - 1) / KEY_BLOCK;
  for (int b = b0; b < b1; ++b)
    for (int w = 0; w < a.kmw; ++w)
      for (uint64_t m = a.kmask[size_t(b) * a.kmw + w]; m; m &= m - 1) {
        const int d = w * 64 + __builtin_ctzll(m);
        const int32_t* rp = a.kres + size_t(d) * a.kres_stride + size_t(b) * KEY_BLOCK;
        const __m512d r = _mm512_cvtepi32_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rp)));
        for (int g = 0; g < a.G; ++g) {
          double* s = a.s + g * a.lds + size_t(b) * KEY_BLOCK;
          _mm512_storeu_pd(s, _mm512_fmadd_pd(_mm512_set1_pd(a.q[g * a.hdp + d]), r, _mm512_loadu_pd(s)));
        }
      }
}

void scores(const ScoreArgs& a) {
  // 96 KB each at most (12 rows of 512 dimensions), too much for some threads' stacks
  static thread_local int32_t ph[MAX_GROUP * MAX_HDP / 2], pl[MAX_GROUP * MAX_HDP / 2];
  static thread_local __m512i qh[MAX_GROUP * MAX_HDP / 4], ql[MAX_GROUP * MAX_HDP / 4];
  split_query_pairs(a.q, a.G, a.hdp, ph, pl);
  pair_vectors(ph, a.G, a.hdp, qh);
  pair_vectors(pl, a.G, a.hdp, ql);
  const int nv = a.hdp / 4;
  if (a.G <= TILE_ROWS) {
    scores_rows(a, qh, ql);
  } else {
    // More rows than a tile (the full-sequence forward): keys in runs of 64 (in L1 after the
    // first tile of rows), every tile of rows against each run.
    constexpr int RUN = 64;
    for (int j0 = a.j0 / KEY_BLOCK * KEY_BLOCK; j0 < a.j1; j0 += RUN) {
      for (int r0 = 0; r0 < a.G; r0 += TILE_ROWS) {
        ScoreArgs t = a;
        t.q = a.q + r0 * a.hdp;
        t.s = a.s + r0 * a.lds;
        t.G = a.G - r0 < TILE_ROWS ? a.G - r0 : TILE_ROWS;
        t.j0 = j0;
        t.j1 = a.j1 < j0 + RUN ? a.j1 : j0 + RUN;
        scores_rows(t, qh + r0 * nv, ql + r0 * nv);
      }
    }
  }
  if (a.kmask) key_remainders(a);
}

// Mix in integers, as the AVX2 kernel (see there for the bound): a weight e <= 2**20 is split as
// 1024 eh + el, two keys' value rows are interleaved (vpunpck*wd) and vpdpwssd adds (v_j, v_j+1)
// times (eh_j, eh_j+1) or (el_j, el_j+1) into int32 lanes over blocks of 64 keys (32 pairs); per
// block the sums go to the float64 numerators as 1024 hi + lo (exact integers below 2**53).
constexpr int MIX_BLOCK = 64;  // keys: their values (8 KB at 64 dimensions) stay in L1 across the passes

// The block's weights of up to TILE_ROWS rows as int16 pairs: hi[r * 32 + p] = (eh_2p, eh_2p+1), lo alike.
struct MixPairs {
  alignas(64) int32_t hi[TILE_ROWS * MIX_BLOCK / 2], lo[TILE_ROWS * MIX_BLOCK / 2];
};

inline void split_weights(const MixArgs& a, int rows, int jb, int je, MixPairs& w) {
  for (int r = 0; r < rows; ++r) {
    const double* e = a.e + r * a.lde;
    uint16_t* hi = reinterpret_cast<uint16_t*>(w.hi + r * (MIX_BLOCK / 2));
    uint16_t* lo = reinterpret_cast<uint16_t*>(w.lo + r * (MIX_BLOCK / 2));
    for (int j = jb; j < je; j += 8) {  // a last part of the block reads (and stores) zeros
      const __mmask8 m = je - j >= 8 ? __mmask8(0xff) : __mmask8((1u << (je - j)) - 1);
      const __m256i ei = _mm512_cvttpd_epi32(_mm512_maskz_loadu_pd(m, e + j));  // integers 0..2**20: exact
      const __m256i h = _mm256_srli_epi32(ei, 10), l = _mm256_and_si256(ei, _mm256_set1_epi32(1023));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(hi + (j - jb)), _mm256_cvtepi32_epi16(h));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lo + (j - jb)), _mm256_cvtepi32_epi16(l));
    }
  }
}

// num[0 .. nd) (+)= 1024 hi + lo for 32 dimensions of a row, from the lanes of vpunpck*wd's
// order: lane i of A is dimension 8 (i / 4) + i % 4, of B the same + 4.
inline void add_sums32(double* num, __m512i ah, __m512i al, __m512i bh, __m512i bl, int nd) {
  const __m512i i0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i i1 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const __m512i h[2] = {_mm512_permutex2var_epi32(ah, i0, bh), _mm512_permutex2var_epi32(ah, i1, bh)};
  const __m512i l[2] = {_mm512_permutex2var_epi32(al, i0, bl), _mm512_permutex2var_epi32(al, i1, bl)};
  for (int q = 0; q < 4 && 8 * q < nd; ++q) {
    const __m256i hq = q & 1 ? _mm512_extracti64x4_epi64(h[q / 2], 1) : _mm512_castsi512_si256(h[q / 2]);
    const __m256i lq = q & 1 ? _mm512_extracti64x4_epi64(l[q / 2], 1) : _mm512_castsi512_si256(l[q / 2]);
    const __m512d s = _mm512_add_pd(_mm512_mul_pd(_mm512_cvtepi32_pd(hq), _mm512_set1_pd(1024.0)), _mm512_cvtepi32_pd(lq));
    _mm512_storeu_pd(num + 8 * q, _mm512_add_pd(_mm512_loadu_pd(num + 8 * q), s));
  }
}

// R (<= TILE_ROWS) rows against the block's keys [jb, je), the dimensions of mask dm from d0 (32
// at most, one zmm of each value row): four accumulators a row, 24 at six rows.
template <int R>
__attribute__((noinline)) void mix32(const MixArgs& a, const MixPairs& w, int jb, int je, int d0, __mmask32 dm) {
  const __m512i z = _mm512_setzero_si512();
  __m512i ah0 = z, al0 = z, bh0 = z, bl0 = z, ah1 = z, al1 = z, bh1 = z, bl1 = z, ah2 = z, al2 = z, bh2 = z, bl2 = z;
  __m512i ah3 = z, al3 = z, bh3 = z, bl3 = z, ah4 = z, al4 = z, bh4 = z, bl4 = z, ah5 = z, al5 = z, bh5 = z, bl5 = z;
  const size_t hdp = size_t(a.hdp);
  for (int j = jb, p = 0; j < je; j += 2, ++p) {
    const int16_t* r0 = a.v + size_t(j) * hdp + d0;
    const __m512i v0 = _mm512_maskz_loadu_epi16(dm, r0);
    const __m512i v1 = j + 1 < je ? _mm512_maskz_loadu_epi16(dm, r0 + hdp) : z;  // an odd block's last pair: (v_j, 0)
    const __m512i pl = _mm512_unpacklo_epi16(v0, v1), ph = _mm512_unpackhi_epi16(v0, v1);
    // In asm, one row at a time: with intrinsics GCC kept most of the 24 accumulators on the stack.
#define LMZ_R(I, AH, AL, BH, BL)                                                                  \
  if constexpr (R > I) {                                                                          \
    __m512i t;                                                                                    \
    asm("vpbroadcastd %[eh], %[t]\n\t"                                                            \
        "vpdpwssd %[t], %[pl], %[ah]\n\t"                                                         \
        "vpdpwssd %[t], %[ph], %[bh]\n\t"                                                         \
        "vpbroadcastd %[el], %[t]\n\t"                                                            \
        "vpdpwssd %[t], %[pl], %[al]\n\t"                                                         \
        "vpdpwssd %[t], %[ph], %[bl]"                                                              \
        : [ah] "+v"(AH), [al] "+v"(AL), [bh] "+v"(BH), [bl] "+v"(BL), [t] "=&v"(t)                \
        : [pl] "v"(pl), [ph] "v"(ph), [eh] "m"(w.hi[I * (MIX_BLOCK / 2) + p]), [el] "m"(w.lo[I * (MIX_BLOCK / 2) + p])); \
  }
    LMZ_R(0, ah0, al0, bh0, bl0) LMZ_R(1, ah1, al1, bh1, bl1) LMZ_R(2, ah2, al2, bh2, bl2)
    LMZ_R(3, ah3, al3, bh3, bl3) LMZ_R(4, ah4, al4, bh4, bl4) LMZ_R(5, ah5, al5, bh5, bl5)
#undef LMZ_R
  }
  const int nd = a.hdp - d0 < 32 ? a.hdp - d0 : 32;
  double* n = a.num + d0;
  add_sums32(n, ah0, al0, bh0, bl0, nd);
  if constexpr (R > 1) add_sums32(n + a.hdp, ah1, al1, bh1, bl1, nd);
  if constexpr (R > 2) add_sums32(n + 2 * a.hdp, ah2, al2, bh2, bl2, nd);
  if constexpr (R > 3) add_sums32(n + 3 * a.hdp, ah3, al3, bh3, bl3, nd);
  if constexpr (R > 4) add_sums32(n + 4 * a.hdp, ah4, al4, bh4, bl4, nd);
  if constexpr (R > 5) add_sums32(n + 5 * a.hdp, ah5, al5, bh5, bl5, nd);
}

// The same for R <= 3 rows and 64 dimensions a pass (two zmm of each value row): eight
// accumulators a row, and each weight broadcast serves eight vpdpwssd instead of four (the
// 32-dimension passes spent a third of their instructions on broadcasts).
template <int R>
__attribute__((noinline)) void mix64(const MixArgs& a, const MixPairs& w, int jb, int je, int d0) {
  static_assert(R <= 3, "tile too large for AVX-512's 32 registers");
  const __m512i z = _mm512_setzero_si512();
  __m512i ah0 = z, al0 = z, bh0 = z, bl0 = z, ch0 = z, cl0 = z, dh0 = z, dl0 = z;
  __m512i ah1 = z, al1 = z, bh1 = z, bl1 = z, ch1 = z, cl1 = z, dh1 = z, dl1 = z;
  __m512i ah2 = z, al2 = z, bh2 = z, bl2 = z, ch2 = z, cl2 = z, dh2 = z, dl2 = z;
  const size_t hdp = size_t(a.hdp);
  for (int j = jb, p = 0; j < je; j += 2, ++p) {
    const int16_t* r0 = a.v + size_t(j) * hdp + d0;
    const bool two = j + 1 < je;  // an odd block's last pair: (v_j, 0)
    const __m512i v0 = _mm512_loadu_si512(r0), u0 = _mm512_loadu_si512(r0 + 32);
    const __m512i v1 = two ? _mm512_loadu_si512(r0 + hdp) : z, u1 = two ? _mm512_loadu_si512(r0 + hdp + 32) : z;
    const __m512i pl = _mm512_unpacklo_epi16(v0, v1), ph = _mm512_unpackhi_epi16(v0, v1);
    const __m512i ql = _mm512_unpacklo_epi16(u0, u1), qh = _mm512_unpackhi_epi16(u0, u1);
#define LMZ_R(I, AH, AL, BH, BL, CH, CL, DH, DL)                                                    \
  if constexpr (R > I) {                                                                          \
    __m512i t;                                                                                    \
    asm("vpbroadcastd %[eh], %[t]\n\t"                                                            \
        "vpdpwssd %[t], %[pl], %[ah]\n\t"                                                         \
        "vpdpwssd %[t], %[ph], %[bh]\n\t"                                                         \
        "vpdpwssd %[t], %[ql], %[ch]\n\t"                                                         \
        "vpdpwssd %[t], %[qh], %[dh]\n\t"                                                         \
        "vpbroadcastd %[el], %[t]\n\t"                                                            \
        "vpdpwssd %[t], %[pl], %[al]\n\t"                                                         \
        "vpdpwssd %[t], %[ph], %[bl]\n\t"                                                         \
        "vpdpwssd %[t], %[ql], %[cl]\n\t"                                                         \
        "vpdpwssd %[t], %[qh], %[dl]"                                                              \
        : [ah] "+v"(AH), [al] "+v"(AL), [bh] "+v"(BH), [bl] "+v"(BL), [ch] "+v"(CH), [cl] "+v"(CL), \
          [dh] "+v"(DH), [dl] "+v"(DL), [t] "=&v"(t)                                              \
        : [pl] "v"(pl), [ph] "v"(ph), [ql] "v"(ql), [qh] "v"(qh), [eh] "m"(w.hi[I * (MIX_BLOCK / 2) + p]), \
          [el] "m"(w.lo[I * (MIX_BLOCK / 2) + p]));                                               \
  }
    LMZ_R(0, ah0, al0, bh0, bl0, ch0, cl0, dh0, dl0)
    LMZ_R(1, ah1, al1, bh1, bl1, ch1, cl1, dh1, dl1)
    LMZ_R(2, ah2, al2, bh2, bl2, ch2, cl2, dh2, dl2)
#undef LMZ_R
  }
  double* n = a.num + d0;
  add_sums32(n, ah0, al0, bh0, bl0, 32), add_sums32(n + 32, ch0, cl0, dh0, dl0, 32);
  if constexpr (R > 1) add_sums32(n + a.hdp, ah1, al1, bh1, bl1, 32), add_sums32(n + a.hdp + 32, ch1, cl1, dh1, dl1, 32);
  if constexpr (R > 2) add_sums32(n + 2 * a.hdp, ah2, al2, bh2, bl2, 32), add_sums32(n + 2 * a.hdp + 32, ch2, cl2, dh2, dl2, 32);
}

// Tiles of up to three rows take passes of 64 dimensions, larger tiles passes of 32; a last
// pass of 8 to 56 dimensions (hdp: a multiple of 8) is masked.
template <int R>
void mix_tile(const MixArgs& a, const MixPairs& w, int jb, int je) {
  int d0 = 0;
  if constexpr (R <= 3)
    for (; d0 + 64 <= a.hdp; d0 += 64) mix64<R>(a, w, jb, je, d0);
  for (; d0 < a.hdp; d0 += 32) {
    const int nd = a.hdp - d0 < 32 ? a.hdp - d0 : 32;
    mix32<R>(a, w, jb, je, d0, nd == 32 ? ~__mmask32(0) : __mmask32((1u << nd) - 1));
  }
}

inline bool all_zero(const double* e, size_t lde, int rows, int jb, int je) {
  __m512i any = _mm512_setzero_si512();
  for (int g = 0; g < rows; ++g) {
    const double* r = e + g * lde;
    int j = jb;
    for (; j + 8 <= je; j += 8) any = _mm512_or_si512(any, _mm512_castpd_si512(_mm512_loadu_pd(r + j)));
    if (j < je) any = _mm512_or_si512(any, _mm512_castpd_si512(_mm512_maskz_loadu_pd(__mmask8((1u << (je - j)) - 1), r + j)));
  }
  return _mm512_test_epi64_mask(any, any) == 0;  // every weight of the block is +0.0
}

// The values' remainders beyond int16 (kernels.h), after the rows' sums (any order is exact).
// Marked positions are found eight masks at a time (requesting the remainders' rows ahead measured
// no faster).
inline __mmask8 marked8(const uint64_t* m, int n) {
  const __m512i v = _mm512_maskz_loadu_epi64(n >= 8 ? __mmask8(0xff) : __mmask8((1u << n) - 1), m);
  return _mm512_test_epi64_mask(v, v);
}
void value_remainders(const MixArgs& a) {
  for (int j8 = a.j0; j8 < a.j1; j8 += 8) {
    for (__mmask8 nz = marked8(a.vmask + j8, a.j1 - j8); nz; nz &= nz - 1) {
      const int j = j8 + __builtin_ctz(nz);
      for (uint64_t m = a.vmask[j]; m; m &= m - 1) {
        const int grp = __builtin_ctzll(m);
        const int32_t* rp = a.vres + (size_t(grp) * a.vres_stride + size_t(j)) * 8;
        const __m512d r = _mm512_cvtepi32_pd(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rp)));
        for (int g = 0; g < a.G; ++g) {
          const double e = a.e[g * a.lde + j];
          if (e == 0) continue;
          double* num = a.num + g * a.hdp + grp * 8;
          _mm512_storeu_pd(num, _mm512_fmadd_pd(_mm512_set1_pd(e), r, _mm512_loadu_pd(num)));
        }
      }
    }
  }
}

void mix(const MixArgs& a) {
  MixPairs w;
  for (int jb = a.j0; jb < a.j1; jb += MIX_BLOCK) {
    const int je = a.j1 < jb + MIX_BLOCK ? a.j1 : jb + MIX_BLOCK;
    // The values MIX_PREFETCH_BLOCKS blocks ahead (and at the start, those before them).
    for (int d = jb == a.j0 ? 1 : MIX_PREFETCH_BLOCKS; d <= MIX_PREFETCH_BLOCKS; ++d) {
      const int s0 = jb + d * MIX_BLOCK;
      if (s0 < a.j1) prefetch_bytes(a.v + size_t(s0) * a.hdp, (a.j1 - s0 < MIX_BLOCK ? a.j1 - s0 : MIX_BLOCK) * a.hdp * int(sizeof(int16_t)));
    }
    for (int r0 = 0; r0 < a.G; r0 += TILE_ROWS) {  // the block's values from L1 after the first tile
      MixArgs t = a;
      const int rows = a.G - r0 < TILE_ROWS ? a.G - r0 : TILE_ROWS;
      t.e = a.e + r0 * a.lde;
      t.num = a.num + r0 * a.hdp;
      if (all_zero(t.e, t.lde, rows, jb, je)) continue;
      split_weights(t, rows, jb, je, w);
      switch (rows) {
        case 1: mix_tile<1>(t, w, jb, je); break;
        case 2: mix_tile<2>(t, w, jb, je); break;
        case 3: mix_tile<3>(t, w, jb, je); break;
        case 4: mix_tile<4>(t, w, jb, je); break;
        case 5: mix_tile<5>(t, w, jb, je); break;
        default: mix_tile<6>(t, w, jb, je); break;
      }
    }
  }
  if (a.vmask) value_remainders(a);
}


// -- the predictor's passes over the vocabulary ------------------------------------------------
// The logits row is the one stream from memory (the predictor's own rows stay in L2), read once:
// its bytes 16 KB ahead go to L2 (prefetcht1; a prefetch cannot fault, and past a row's end, in
// encode_logits, lies the next row). Measured: predictor + coder 65.5 -> 54.5 us a token (Zen 4).
inline void prefetch_row_ahead(const int32_t* p) {
  prefetch_bytes(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + 16384), 1);
}

// The three heaviest passes of predictor version 3 on 16 lanes (dense_impl.h's integer steps; the
// AVX2 versions' comments hold for these too). AVX-512 has what AVX2 emulates: 64-bit max/min and
// compares into masks, and narrowing moves.

void z_bias_logits(const int64_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin) {
  __m512i a0 = _mm512_set1_epi64(INT64_MIN), a1 = a0, b0 = _mm512_set1_epi64(INT64_MAX), b1 = b0;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i us = _mm512_srai_epi32(_mm512_loadu_si512(reinterpret_cast<const void*>(u + i)), 14);
    const __m512i w0 = _mm512_add_epi64(_mm512_loadu_si512(reinterpret_cast<const void*>(z + i)),
                                        _mm512_cvtepi32_epi64(_mm512_castsi512_si256(us)));
    const __m512i w1 = _mm512_add_epi64(_mm512_loadu_si512(reinterpret_cast<const void*>(z + i + 8)),
                                        _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(us, 1)));
    a0 = _mm512_max_epi64(a0, w0), a1 = _mm512_max_epi64(a1, w1);
    b0 = _mm512_min_epi64(b0, w0), b1 = _mm512_min_epi64(b1, w1);
    // the low 32 bits of each w (vpmovqd truncates)
    const __m512i qv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(w0)), _mm512_cvtepi64_epi32(w1), 1);
    _mm512_storeu_si512(reinterpret_cast<void*>(q + i), qv);
  }
  int64_t ta, tb;
  d_bias_logits(z + i, u + i, n - i, q + i, &ta, &tb);  // the tail
  const int64_t a = _mm512_reduce_max_epi64(_mm512_max_epi64(a0, a1)), b = _mm512_reduce_min_epi64(_mm512_min_epi64(b0, b1));
  *wmax = ta > a ? ta : a;
  *wmin = tb < b ? tb : b;
}

void z_bias_logits32(const int32_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin, int64_t* zfar) {
  __m512i a = _mm512_set1_epi32(INT32_MIN), b = _mm512_set1_epi32(INT32_MAX), za = _mm512_setzero_si512(), zb = za;
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    prefetch_row_ahead(z + i);
    const __m512i zv = _mm512_loadu_si512(reinterpret_cast<const void*>(z + i));
    const __m512i w = _mm512_add_epi32(zv, _mm512_srai_epi32(_mm512_loadu_si512(reinterpret_cast<const void*>(u + i)), 14));
    za = _mm512_max_epi32(za, zv);
    zb = _mm512_min_epi32(zb, zv);
    a = _mm512_max_epi32(a, w);
    b = _mm512_min_epi32(b, w);
    _mm512_storeu_si512(reinterpret_cast<void*>(q + i), w);
  }
  int64_t ta, tb, tz;
  d_bias_logits32(z + i, u + i, n - i, q + i, &ta, &tb, &tz);  // the tail
  const int64_t va = _mm512_reduce_max_epi32(a), vb = _mm512_reduce_min_epi32(b);
  const int64_t fa = _mm512_reduce_max_epi32(za), fb = -int64_t(_mm512_reduce_min_epi32(zb));
  *wmax = ta > va ? ta : va;
  *wmin = tb < vb ? tb : vb;
  *zfar = tz > fa ? (tz > fb ? tz : fb) : (fa > fb ? fa : fb);
}

// exp3 of dense_impl.h in 32 uint16 lanes (dense_impl.h derives each step, above d_exp3_rel).
int64_t z_exp3_rel(int32_t* q, int32_t top, int n, int* arg) {
  const __m512i vtop = _mm512_set1_epi32(top), cap = _mm512_set1_epi32(32767), zero = _mm512_setzero_si512();
  const __m512i k = _mm512_set1_epi16(94548 - 65536), m3e = _mm512_set1_epi16(0x3E), c31 = _mm512_set1_epi16(31);
  const __m512i one = _mm512_set1_epi16(1), c4 = _mm512_set1_epi16(225), c3 = _mm512_set1_epi16(-1745);
  const __m512i c2 = _mm512_set1_epi16(7847), c1 = _mm512_set1_epi16(-22710), c0 = _mm512_set1_epi16(-32768);
  const __m512i lo32 = _mm512_set1_epi64(0xffffffffLL);
  __m512i s0 = zero, s1 = zero;
  int a = n, i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512i da = _mm512_sub_epi32(vtop, _mm512_loadu_si512(reinterpret_cast<const void*>(q + i)));
    const __m512i db = _mm512_sub_epi32(vtop, _mm512_loadu_si512(reinterpret_cast<const void*>(q + i + 16)));
    if (a == n) {
      const uint64_t m = uint64_t(_mm512_cmpeq_epi32_mask(da, zero)) | (uint64_t(_mm512_cmpeq_epi32_mask(db, zero)) << 16);
      if (m) a = i + __builtin_ctzll(m);
    }
    // packus puts 4 of a and 4 of b in each 128-bit lane; unpacklo/hi below take them back apart
    const __m512i d = _mm512_packus_epi32(_mm512_min_epu32(da, cap), _mm512_min_epu32(db, cap));
    const __m512i lo = _mm512_mullo_epi16(d, k);
    const __m512i S = _mm512_add_epi16(d, _mm512_mulhi_epu16(d, k));
    const __m512i y = _mm512_ternarylogic_epi32(_mm512_slli_epi16(S, 6), _mm512_srli_epi16(lo, 10), m3e, 0xF8);  // A | (B & C)
    const __m512i n1 = _mm512_add_epi16(_mm512_min_epu16(_mm512_srli_epi16(S, 10), c31), one);
    const __mmask32 neg = _mm512_movepi16_mask(y);
    auto F = [&](__m512i p) {  // floor(p * x / 2**15)
      const __m512i h = _mm512_mulhi_epi16(p, y);
      return _mm512_mask_add_epi16(h, neg, h, p);
    };
    __m512i p = _mm512_add_epi16(c3, F(c4));
    p = _mm512_add_epi16(c2, F(p));
    p = _mm512_add_epi16(c1, F(p));
    p = _mm512_add_epi16(c0, F(p));  // m = 32768 + F, as uint16
    const __m512i va = _mm512_srlv_epi32(_mm512_unpacklo_epi16(zero, p), _mm512_unpacklo_epi16(n1, zero));
    const __m512i vb = _mm512_srlv_epi32(_mm512_unpackhi_epi16(zero, p), _mm512_unpackhi_epi16(n1, zero));
    _mm512_storeu_si512(reinterpret_cast<void*>(q + i), va);
    _mm512_storeu_si512(reinterpret_cast<void*>(q + i + 16), vb);
    const __m512i w = _mm512_add_epi32(va, vb);  // each <= 2**30
    s0 = _mm512_add_epi64(s0, _mm512_and_si512(w, lo32));
    s1 = _mm512_add_epi64(s1, _mm512_srli_epi64(w, 32));
  }
  int ta;
  const int64_t tail = d_exp3_rel(q + i, top, n - i, &ta);
  if (a == n && ta < n - i) a = i + ta;
  *arg = a;
  return _mm512_reduce_add_epi64(_mm512_add_epi64(s0, s1)) + tail;
}

// floor(v * r / 2**32) per unsigned 32-bit lane, r < 2**32.
inline __m512i mulhi32(__m512i v, __m512i rv) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(v, rv), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(v, 32), rv);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

// floor(v * l / 2**16) per lane for v * l < 2**48 and a result below 2**32.
inline __m512i mulshr16(__m512i v, __m512i lv) {
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(v, lv), 16);
  const __m512i odd = _mm512_slli_epi64(_mm512_srli_epi64(_mm512_mul_epu32(_mm512_srli_epi64(v, 32), lv), 16), 32);
  return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

template <bool MIX, bool UNI, bool SEL>
int64_t z_out3_t(const Out3Args& a, int* nsel) {
  const __m512i rv = _mm512_set1_epi64(a.r), lv = _mm512_set1_epi64(a.lr), one = _mm512_set1_epi32(1);
  const __m512i tv = _mm512_set1_epi32(int32_t(a.thr - 1));  // f >= thr as f > thr - 1 (thr <= 2**24)
  const __m512i dv = _mm512_set1_epi64(a.dense), r2v = _mm512_set1_epi64(a.r2), lo32 = _mm512_set1_epi64(0xffffffffLL);
  const __m128i shv = _mm_cvtsi32_si128(a.sh), sh2v = _mm_cvtsi32_si128(a.sh2);
  // g = ((et >> sh) * dense) >> sh2 < 2**33; floor(g * r2 / 2**32) with g = gh * 2**32 + gl, gh in {0, 1}.
  auto scaled = [&](__m512i lanes) {
    const __m512i g = _mm512_srl_epi64(_mm512_mul_epu32(_mm512_srl_epi64(lanes, shv), dv), sh2v);
    const __m512i low = _mm512_srli_epi64(_mm512_mul_epu32(g, r2v), 32);
    return _mm512_mask_add_epi64(low, _mm512_cmpgt_epu64_mask(g, lo32), low, r2v);
  };
  __m512i fa = _mm512_setzero_si512(), bmax = _mm512_set1_epi32(INT32_MIN);
  int c = 0, i = 0;
  for (; i + 16 <= a.n; i += 16) {
    const __m512i et = _mm512_loadu_si512(reinterpret_cast<const void*>(a.et + i));
    const __m512i ft = _mm512_add_epi32(mulhi32(et, rv), one);  // each < 2**25
    __m512i x;
    if (MIX) {
      const __m512i xe = scaled(_mm512_and_si512(et, lo32)), xo = scaled(_mm512_srli_epi64(et, 32));
      fa = _mm512_add_epi64(fa, _mm512_add_epi64(xe, xo));
      x = _mm512_mask_blend_epi32(0xAAAA, xe, _mm512_slli_epi64(xo, 32));  // each x < 2**32
    } else {
      x = _mm512_sub_epi32(ft, one);
      fa = _mm512_add_epi64(fa, _mm512_add_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(x)),
                                                 _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(x, 1))));
    }
    const __m512i o = _mm512_add_epi32(x, one);
    _mm512_storeu_si512(reinterpret_cast<void*>(a.out + i), o);
    if (a.bm) {  // a block of TOPK_BLOCK = 4 steps
      bmax = _mm512_max_epi32(bmax, o);
      if ((i + 16) % TOPK_BLOCK == 0) {
        a.bm[i / TOPK_BLOCK] = _mm512_reduce_max_epi32(bmax);
        bmax = _mm512_set1_epi32(INT32_MIN);
      }
    }
    if (UNI) {
      void* up = a.u + i;
      _mm512_storeu_si512(up, _mm512_sub_epi32(_mm512_loadu_si512(up), mulshr16(ft, lv)));
    }
    if (SEL) {
      unsigned m = _mm512_cmpgt_epi32_mask(ft, tv);
      while (m) {
        a.sel[c++] = i + __builtin_ctz(m);
        m &= m - 1;
      }
    }
  }
  Out3Args t = a;  // the tail, by the plain loop
  t.et += i, t.out += i, t.n -= i;
  if (UNI) t.u += i;
  if (SEL) t.sel += c;
  t.bm = nullptr;  // the tail may start inside a block: its blocks below, from out
  int tc;
  const int64_t tail = d_out3_t<MIX, UNI, SEL>(t, &tc);
  for (int j = c; j < c + tc; ++j) a.sel[j] += i;
  *nsel = c + tc;
  const int b0 = i / TOPK_BLOCK;  // the blocks the loop did not finish
  if (a.bm && b0 * TOPK_BLOCK < a.n) d_block_max32(a.out + b0 * TOPK_BLOCK, a.n - b0 * TOPK_BLOCK, a.bm + b0);
  return _mm512_reduce_add_epi64(fa) + tail;
}

struct ZOut3 {
  template <bool MIX, bool UNI, bool SEL>
  static int64_t pass(const Out3Args& a, int* nsel) { return z_out3_t<MIX, UNI, SEL>(a, nsel); }
};
int64_t z_out3(const Out3Args& a, int* nsel) { return out3_dispatch<ZOut3>(a, nsel); }

}  // namespace

void matmul_avx512vnni(const MatmulArgs& a) { matmul(a); }

int64_t dot_peak_avx512vnni(int64_t iters) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
          a10 = a0, a11 = a0;
  const __m512i x = _mm512_set1_epi16(3), y = _mm512_set1_epi16(5);
  for (int64_t i = 0; i < iters; ++i) {
    asm volatile(
        "vpdpwssd %[x], %[y], %[a0]\n\tvpdpwssd %[x], %[y], %[a1]\n\tvpdpwssd %[x], %[y], %[a2]\n\t"
        "vpdpwssd %[x], %[y], %[a3]\n\tvpdpwssd %[x], %[y], %[a4]\n\tvpdpwssd %[x], %[y], %[a5]\n\t"
        "vpdpwssd %[x], %[y], %[a6]\n\tvpdpwssd %[x], %[y], %[a7]\n\tvpdpwssd %[x], %[y], %[a8]\n\t"
        "vpdpwssd %[x], %[y], %[a9]\n\tvpdpwssd %[x], %[y], %[a10]\n\tvpdpwssd %[x], %[y], %[a11]"
        : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4), [a5] "+v"(a5), [a6] "+v"(a6),
          [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9), [a10] "+v"(a10), [a11] "+v"(a11)
        : [x] "v"(x), [y] "v"(y));
  }
  const __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                     _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
  const __m512i t = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
  volatile int sink = _mm512_reduce_add_epi32(t);
  (void)sink;
  return iters * 12 * 32;
}
void scores_avx512(const ScoreArgs& a) { scores(a); }
void mix_avx512(const MixArgs& a) { mix(a); }
double row_max_avx512(const double* s, int64_t n) {
  __m512d m0 = _mm512_set1_pd(-__builtin_inf()), m1 = m0;
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) m0 = _mm512_max_pd(m0, _mm512_loadu_pd(s + j)), m1 = _mm512_max_pd(m1, _mm512_loadu_pd(s + j + 8));
  for (; j < n; j += 8) {
    const __mmask8 k = n - j >= 8 ? __mmask8(0xff) : __mmask8((1u << (n - j)) - 1);
    m1 = _mm512_mask_max_pd(m1, k, m1, _mm512_maskz_loadu_pd(k, s + j));
  }
  return _mm512_reduce_max_pd(_mm512_max_pd(m0, m1));
}

// The AVX2 table with the passes above in place of theirs (built on first use: dense_avx2 is a
// constant of another translation unit, initialized before any code runs).
const DenseKernels& dense_avx512() {
  static const DenseKernels k = [] {
    DenseKernels d = dense_avx2;
    d.bias_logits = z_bias_logits;
    d.bias_logits32 = z_bias_logits32;
    d.exp3_rel = z_exp3_rel;
    d.out3 = z_out3;
    return d;
  }();
  return k;
}

}  // namespace lmz

#pragma GCC pop_options
#endif  // __x86_64__
