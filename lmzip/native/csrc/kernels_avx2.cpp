// AVX2 kernels (x86-64 with AVX2 + FMA): int16 x int8 dot products with vpmaddwd, attention
// scores and mixes in int32 lanes (vpmaddwd on split operands), the rare remainders beyond int16
// with float64 FMAs (every product and partial sum is an integer below 2**53, so the fused
// multiply-add rounds nothing).
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // false positives inside GCC 12's gather intrinsics
#pragma GCC diagnostic ignored "-Wunused-function"      // dense_impl.h versions replaced by hand-written ones

namespace lmz {
namespace {
#include "dense_impl.h"

// Hand-vectorized versions of two predictor passes GCC leaves scalar (it does not emit gathers
// under generic tuning, and the 32 x 32 -> 64-bit products defeat it).

// floor(v * r / 2**32) per unsigned 32-bit lane, r < 2**32.
inline __m256i mulhi32(__m256i v, __m256i rv) {
  const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(v, rv), 32);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(v, 32), rv);
  return _mm256_blend_epi32(even, odd, 0xAA);
}

// floor(v * l / 2**16) per lane for v * l < 2**48 and a result below 2**32.
inline __m256i mulshr16(__m256i v, __m256i lv) {
  const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(v, lv), 16);
  const __m256i odd = _mm256_slli_epi64(_mm256_srli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(v, 32), lv), 16), 32);
  return _mm256_blend_epi32(even, odd, 0xAA);
}

void x_exp32(const int32_t* zb, int32_t mx, const int32_t* table, int32_t last, int32_t* et, int n, int64_t* sum,
             int* arg) {
  const __m256i vmx = _mm256_set1_epi32(mx), vlast = _mm256_set1_epi32(last);
  __m256i s64 = _mm256_setzero_si256(), best = _mm256_set1_epi32(-1), bidx = _mm256_setzero_si256();
  __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i eight = _mm256_set1_epi32(8);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i d = _mm256_min_epi32(_mm256_sub_epi32(vmx, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zb + i))), vlast);
    const __m256i v = _mm256_i32gather_epi32(table, d, 4);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(et + i), v);
    s64 = _mm256_add_epi64(s64, _mm256_add_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(v)),
                                                 _mm256_cvtepu32_epi64(_mm256_extracti128_si256(v, 1))));
    const __m256i gt = _mm256_cmpgt_epi32(v, best);  // strictly greater: each lane keeps its first maximum
    best = _mm256_blendv_epi8(best, v, gt);
    bidx = _mm256_blendv_epi8(bidx, idx, gt);
    idx = _mm256_add_epi32(idx, eight);
  }
  int64_t lanes[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), s64);
  int64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  int32_t bv[8], bi[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(bv), best);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(bi), bidx);
  int32_t m = -1, a = 0;
  for (int l = 0; l < 8; ++l)
    if (bv[l] > m || (bv[l] == m && bi[l] < a)) m = bv[l], a = bi[l];
  for (; i < n; ++i) {
    int32_t d = mx - zb[i];
    d = d < last ? d : last;
    const int32_t v = table[d];
    et[i] = v;
    s += v;
    if (v > m) m = v, a = i;
  }
  *sum = s;
  *arg = a;
}

inline __m256i max64(__m256i a, __m256i b) { return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(b, a)); }
inline int64_t hmax64(__m256i v) {
  int64_t l[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(l), v);
  int64_t m = l[0];
  for (int i = 1; i < 4; ++i) m = l[i] > m ? l[i] : m;
  return m;
}
// u[i..i+3] >> 14 as 4 x int64
inline __m256i ushr64(const int32_t* u) {
  return _mm256_cvtepi32_epi64(_mm_srai_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u)), 14));
}

inline __m256i min64(__m256i a, __m256i b) { return _mm256_blendv_epi8(a, b, _mm256_cmpgt_epi64(a, b)); }

void x_bias_logits(const int64_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin) {
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  __m256i a0 = _mm256_set1_epi64x(INT64_MIN), a1 = a0, b0 = _mm256_set1_epi64x(INT64_MAX), b1 = b0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w0 = _mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + i)), ushr64(u + i));
    const __m256i w1 = _mm256_add_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + i + 4)), ushr64(u + i + 4));
    a0 = max64(a0, w0);
    a1 = max64(a1, w1);
    b0 = min64(b0, w0);
    b1 = min64(b1, w1);
    const __m128i p0 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(w0, low_halves));
    const __m128i p1 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(w1, low_halves));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_inserti128_si256(_mm256_castsi128_si256(p0), p1, 1));
  }
  int64_t l[4], ta, tb;
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(l), min64(b0, b1));
  d_bias_logits(z + i, u + i, n - i, q + i, &ta, &tb);  // the tail
  const int64_t a = hmax64(max64(a0, a1));
  int64_t b = tb;
  for (int j = 0; j < 4; ++j) b = l[j] < b ? l[j] : b;
  *wmax = ta > a ? ta : a;
  *wmin = b;
}

// The logits row's bytes 16 KB ahead go to L2 (see the AVX-512 pass; a prefetch cannot fault).
inline void prefetch_row_ahead(const int32_t* p) {
  asm volatile("prefetcht1 %0" : : "m"(*reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + 16384)));
}
void x_bias_logits32(const int32_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin, int64_t* zfar) {
  __m256i a = _mm256_set1_epi32(INT32_MIN), b = _mm256_set1_epi32(INT32_MAX), za = _mm256_setzero_si256(), zb = za;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    if (!(i & 15)) prefetch_row_ahead(z + i);  // one a 64-byte line
    const __m256i zv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(z + i));
    const __m256i w = _mm256_add_epi32(zv, _mm256_srai_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(u + i)), 14));
    za = _mm256_max_epi32(za, zv);
    zb = _mm256_min_epi32(zb, zv);
    a = _mm256_max_epi32(a, w);
    b = _mm256_min_epi32(b, w);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), w);
  }
  int32_t la[8], lb[8], lza[8], lzb[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(la), a);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lb), b);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lza), za);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lzb), zb);
  int64_t ta, tb, tz;
  d_bias_logits32(z + i, u + i, n - i, q + i, &ta, &tb, &tz);  // the tail
  for (int j = 0; j < 8; ++j) {
    ta = la[j] > ta ? la[j] : ta, tb = lb[j] < tb ? lb[j] : tb;
    tz = lza[j] > tz ? lza[j] : tz, tz = -int64_t(lzb[j]) > tz ? -int64_t(lzb[j]) : tz;
  }
  *wmax = ta;
  *wmin = tb;
  *zfar = tz;
}

int64_t x_exp_rel(const int32_t* q, int32_t top, const int32_t* table, int32_t last, int32_t* et, int n) {
  const __m256i vtop = _mm256_set1_epi32(top), vlast = _mm256_set1_epi32(last), mask = _mm256_set1_epi64x(0xffffffffLL);
  __m256i s0 = _mm256_setzero_si256(), s1 = s0;
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i d = _mm256_min_epu32(_mm256_sub_epi32(vtop, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i))), vlast);
    const __m256i v = _mm256_i32gather_epi32(table, d, 4);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(et + i), v);
    s0 = _mm256_add_epi64(s0, _mm256_and_si256(v, mask));
    s1 = _mm256_add_epi64(s1, _mm256_srli_epi64(v, 32));
  }
  int64_t l[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(l), _mm256_add_epi64(s0, s1));
  return l[0] + l[1] + l[2] + l[3] + d_exp_rel(q + i, top, table, last, et + i, n - i);
}

int x_find32(const int32_t* row, int n, int32_t x) {
  const __m256i vx = _mm256_set1_epi32(x);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i)), vx)));
    if (m) return i + __builtin_ctz(unsigned(m));
  }
  return i + d_find32(row + i, n - i, x);
}

int x_select_ge32(const int32_t* row, int n, int32_t thr, int32_t* out) {
  const __m256i t = _mm256_set1_epi32(thr > INT32_MIN ? thr - 1 : thr);  // >= thr as > thr - 1
  int c = 0, i = 0;
  for (; thr > INT32_MIN && i + 8 <= n; i += 8) {
    int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i)), t)));
    while (m) {
      out[c++] = i + __builtin_ctz(unsigned(m));
      m &= m - 1;
    }
  }
  const int tail = d_select_ge32(row + i, n - i, thr, out + c);
  for (int j = c; j < c + tail; ++j) out[j] += i;
  return c + tail;
}

// Per 8 lanes of et: the 64-bit values of its even and odd lanes (as 4 x 64 each).
inline void split64(__m256i v, __m256i& even, __m256i& odd) {
  even = _mm256_and_si256(v, _mm256_set1_epi64x(0xffffffffLL));
  odd = _mm256_srli_epi64(v, 32);
}

void x_teacher_sums(const int32_t* et, int n, int64_t r, int sh, int64_t* fsum, int64_t* st) {
  const __m256i rv = _mm256_set1_epi64x(r);
  const __m128i shv = _mm_cvtsi32_si128(sh);
  __m256i fa = _mm256_setzero_si256(), sa = _mm256_setzero_si256();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i e, o;
    split64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(et + i)), e, o);
    fa = _mm256_add_epi64(fa, _mm256_add_epi64(_mm256_srli_epi64(_mm256_mul_epu32(e, rv), 32),
                                               _mm256_srli_epi64(_mm256_mul_epu32(o, rv), 32)));
    sa = _mm256_add_epi64(sa, _mm256_add_epi64(_mm256_srl_epi64(e, shv), _mm256_srl_epi64(o, shv)));
  }
  int64_t a[4], b[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), fa);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(b), sa);
  int64_t F = a[0] + a[1] + a[2] + a[3], S = b[0] + b[1] + b[2] + b[3];
  for (; i < n; ++i) {
    F += int64_t((uint64_t(uint32_t(et[i])) * uint64_t(r)) >> 32);
    S += uint32_t(et[i]) >> sh;
  }
  *fsum = F;
  *st = S;
}

int64_t x_teacher_out(const int32_t* et, int n, int64_t r, int32_t* out) {
  const __m256i rv = _mm256_set1_epi64x(r), one = _mm256_set1_epi32(1);
  __m256i fa = _mm256_setzero_si256();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i x = mulhi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(et + i)), rv);  // each < 2**32
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_add_epi32(x, one));
    fa = _mm256_add_epi64(fa, _mm256_add_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(x)),
                                               _mm256_cvtepu32_epi64(_mm256_extracti128_si256(x, 1))));
  }
  int64_t a[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), fa);
  return a[0] + a[1] + a[2] + a[3] + d_teacher_out(et + i, n - i, r, out + i);
}

// g = ((et >> sh) * dense) >> sh2 on 4 x 64-bit lanes (g < 2**33, see predictor.cpp).
inline __m256i mix_g(__m256i lanes, __m128i shv, __m256i dv, __m128i sh2v) {
  return _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srl_epi64(lanes, shv), dv), sh2v);
}

void x_mix_sum_arg(const int32_t* et, int n, int sh, int64_t dense, int sh2, int64_t* sum, int64_t* key) {
  const __m256i dv = _mm256_set1_epi64x(dense);
  const __m128i shv = _mm_cvtsi32_si128(sh), sh2v = _mm_cvtsi32_si128(sh2);
  const int64_t mask = (int64_t(1) << ARG_BITS) - 1;
  __m256i sa = _mm256_setzero_si256(), best = _mm256_set1_epi64x(-1);
  // keys: (g << 24) | (mask - index); even lanes hold indices i, i+2, ...; odd lanes i+1, i+3, ...
  __m256i ie = _mm256_setr_epi64x(mask, mask - 2, mask - 4, mask - 6), io = _mm256_sub_epi64(ie, _mm256_set1_epi64x(1));
  const __m256i step = _mm256_set1_epi64x(8);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i e, o;
    split64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(et + i)), e, o);
    const __m256i ge = mix_g(e, shv, dv, sh2v), go = mix_g(o, shv, dv, sh2v);
    sa = _mm256_add_epi64(sa, _mm256_add_epi64(ge, go));
    const __m256i ke = _mm256_or_si256(_mm256_slli_epi64(ge, ARG_BITS), ie);
    const __m256i ko = _mm256_or_si256(_mm256_slli_epi64(go, ARG_BITS), io);
    best = _mm256_blendv_epi8(best, ke, _mm256_cmpgt_epi64(ke, best));
    best = _mm256_blendv_epi8(best, ko, _mm256_cmpgt_epi64(ko, best));
    ie = _mm256_sub_epi64(ie, step);
    io = _mm256_sub_epi64(io, step);
  }
  int64_t a[4], b[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), sa);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(b), best);
  int64_t S = a[0] + a[1] + a[2] + a[3], K = b[0];
  for (int l = 1; l < 4; ++l) K = b[l] > K ? b[l] : K;
  for (; i < n; ++i) {
    const int64_t g = int64_t(((uint64_t(uint32_t(et[i]) >> sh)) * uint64_t(dense)) >> sh2);
    S += g;
    const int64_t k = (g << ARG_BITS) | (mask - i);
    K = k > K ? k : K;
  }
  *sum = S;
  *key = K;
}

int64_t x_mix_out(const int32_t* et, int n, int sh, int64_t dense, int sh2, int64_t r2, int32_t* out) {
  const __m256i dv = _mm256_set1_epi64x(dense), rv = _mm256_set1_epi64x(r2), one = _mm256_set1_epi32(1);
  const __m256i lo32 = _mm256_set1_epi64x(0xffffffffLL);
  const __m128i shv = _mm_cvtsi32_si128(sh), sh2v = _mm_cvtsi32_si128(sh2);
  __m256i fa = _mm256_setzero_si256();
  int i = 0;
  // floor(g * r2 / 2**32) for g < 2**33: g = gh * 2**32 + gl, gh in {0, 1}.
  auto scaled = [&](__m256i g) {
    const __m256i low = _mm256_srli_epi64(_mm256_mul_epu32(g, rv), 32);
    const __m256i high = _mm256_and_si256(_mm256_cmpgt_epi64(g, lo32), rv);
    return _mm256_add_epi64(low, high);
  };
  for (; i + 8 <= n; i += 8) {
    __m256i e, o;
    split64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(et + i)), e, o);
    const __m256i xe = scaled(mix_g(e, shv, dv, sh2v)), xo = scaled(mix_g(o, shv, dv, sh2v));
    fa = _mm256_add_epi64(fa, _mm256_add_epi64(xe, xo));
    const __m256i packed = _mm256_blend_epi32(xe, _mm256_slli_epi64(xo, 32), 0xAA);  // each x < 2**32
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_add_epi32(packed, one));
  }
  int64_t a[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(a), fa);
  int64_t F = a[0] + a[1] + a[2] + a[3];
  for (; i < n; ++i) {
    const uint64_t g = ((uint64_t(uint32_t(et[i]) >> sh)) * uint64_t(dense)) >> sh2;
    const int64_t x = int64_t((g * uint64_t(r2)) >> 32);
    out[i] = int32_t(x + 1);
    F += x;
  }
  return F;
}

int x_unigram_step32(int32_t* u, const int32_t* et, int n, int64_t r, int64_t lr, int64_t thr, int32_t* sel) {
  const __m256i rv = _mm256_set1_epi64x(r), lv = _mm256_set1_epi64x(lr), one = _mm256_set1_epi32(1);
  const __m256i tv = _mm256_set1_epi32(int32_t(thr - 1));
  int c = 0, i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i f = _mm256_add_epi32(mulhi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(et + i)), rv), one);
    __m256i* up = reinterpret_cast<__m256i*>(u + i);
    _mm256_storeu_si256(up, _mm256_sub_epi32(_mm256_loadu_si256(up), mulshr16(f, lv)));
    int mask = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(f, tv)));
    while (mask) {
      sel[c++] = i + __builtin_ctz(unsigned(mask));
      mask &= mask - 1;
    }
  }
  for (; i < n; ++i) {
    const uint64_t f = ((uint64_t(uint32_t(et[i])) * uint64_t(r)) >> 32) + 1;
    u[i] -= int32_t((f * uint64_t(lr)) >> 16);
    if (int64_t(f) >= thr) sel[c++] = i;
  }
  return c;
}

// exp3 of dense_impl.h in 16 uint16 lanes (dense_impl.h derives each step, above d_exp3_rel).
int64_t x_exp3_rel(int32_t* q, int32_t top, int n, int* arg) {
  const __m256i vtop = _mm256_set1_epi32(top), cap = _mm256_set1_epi32(32767), zero = _mm256_setzero_si256();
  const __m256i k = _mm256_set1_epi16(94548 - 65536), m3e = _mm256_set1_epi16(0x3E), c31 = _mm256_set1_epi16(31);
  const __m256i one = _mm256_set1_epi16(1), c4 = _mm256_set1_epi16(225), c3 = _mm256_set1_epi16(-1745);
  const __m256i c2 = _mm256_set1_epi16(7847), c1 = _mm256_set1_epi16(-22710), c0 = _mm256_set1_epi16(-32768);
  const __m256i mask = _mm256_set1_epi64x(0xffffffffLL);
  __m256i s0 = zero, s1 = zero;
  int a = n, i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i da = _mm256_sub_epi32(vtop, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i)));
    const __m256i db = _mm256_sub_epi32(vtop, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i + 8)));
    if (a == n) {
      const unsigned m = unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(da, zero)))) |
                         (unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(db, zero)))) << 8);
      if (m) a = i + __builtin_ctz(m);
    }
    // packus puts 4 of a and 4 of b in each 128-bit lane; unpacklo/hi below take them back apart
    const __m256i d = _mm256_packus_epi32(_mm256_min_epu32(da, cap), _mm256_min_epu32(db, cap));
    const __m256i lo = _mm256_mullo_epi16(d, k);
    const __m256i S = _mm256_add_epi16(d, _mm256_mulhi_epu16(d, k));
    const __m256i y = _mm256_or_si256(_mm256_slli_epi16(S, 6), _mm256_and_si256(_mm256_srli_epi16(lo, 10), m3e));
    const __m256i n1 = _mm256_add_epi16(_mm256_min_epu16(_mm256_srli_epi16(S, 10), c31), one);
    const __m256i neg = _mm256_srai_epi16(y, 15);
    auto F = [&](__m256i p) {  // floor(p * x / 2**15)
      return _mm256_add_epi16(_mm256_mulhi_epi16(p, y), _mm256_and_si256(p, neg));
    };
    __m256i p = _mm256_add_epi16(c3, F(c4));
    p = _mm256_add_epi16(c2, F(p));
    p = _mm256_add_epi16(c1, F(p));
    p = _mm256_add_epi16(c0, F(p));  // m = 32768 + F, as uint16
    const __m256i va = _mm256_srlv_epi32(_mm256_unpacklo_epi16(zero, p), _mm256_unpacklo_epi16(n1, zero));
    const __m256i vb = _mm256_srlv_epi32(_mm256_unpackhi_epi16(zero, p), _mm256_unpackhi_epi16(n1, zero));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), va);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i + 8), vb);
    const __m256i w = _mm256_add_epi32(va, vb);  // each <= 2**30
    s0 = _mm256_add_epi64(s0, _mm256_and_si256(w, mask));
    s1 = _mm256_add_epi64(s1, _mm256_srli_epi64(w, 32));
  }
  int64_t l[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(l), _mm256_add_epi64(s0, s1));
  int ta;
  const int64_t tail = d_exp3_rel(q + i, top, n - i, &ta);
  if (a == n && ta < n - i) a = i + ta;
  *arg = a;
  return l[0] + l[1] + l[2] + l[3] + tail;
}

template <bool MIX, bool UNI, bool SEL>
int64_t x_out3_t(const Out3Args& a, int* nsel) {
  const __m256i rv = _mm256_set1_epi64x(a.r), lv = _mm256_set1_epi64x(a.lr), one = _mm256_set1_epi32(1);
  const __m256i tv = _mm256_set1_epi32(int32_t(a.thr - 1));  // f >= thr as f > thr - 1 (thr <= 2**24)
  const __m256i dv = _mm256_set1_epi64x(a.dense), r2v = _mm256_set1_epi64x(a.r2), lo32 = _mm256_set1_epi64x(0xffffffffLL);
  const __m128i shv = _mm_cvtsi32_si128(a.sh), sh2v = _mm_cvtsi32_si128(a.sh2);
  // floor(g * r2 / 2**32) for g < 2**33: g = gh * 2**32 + gl, gh in {0, 1}.
  auto scaled = [&](__m256i g) {
    const __m256i low = _mm256_srli_epi64(_mm256_mul_epu32(g, r2v), 32);
    return _mm256_add_epi64(low, _mm256_and_si256(_mm256_cmpgt_epi64(g, lo32), r2v));
  };
  __m256i fa = _mm256_setzero_si256();
  __m256i bmax = _mm256_set1_epi32(INT32_MIN);
  int c = 0, i = 0;
  for (; i + 8 <= a.n; i += 8) {
    const __m256i et = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.et + i));
    const __m256i ft = _mm256_add_epi32(mulhi32(et, rv), one);  // each < 2**25
    __m256i x;
    if (MIX) {
      __m256i e, o;
      split64(et, e, o);
      const __m256i xe = scaled(mix_g(e, shv, dv, sh2v)), xo = scaled(mix_g(o, shv, dv, sh2v));
      fa = _mm256_add_epi64(fa, _mm256_add_epi64(xe, xo));
      x = _mm256_blend_epi32(xe, _mm256_slli_epi64(xo, 32), 0xAA);  // each x < 2**32
    } else {
      x = _mm256_sub_epi32(ft, one);
      fa = _mm256_add_epi64(fa, _mm256_add_epi64(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(x)),
                                                 _mm256_cvtepu32_epi64(_mm256_extracti128_si256(x, 1))));
    }
    const __m256i o = _mm256_add_epi32(x, one);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.out + i), o);
    if (a.bm) {  // a block of TOPK_BLOCK = 8 steps
      bmax = _mm256_max_epi32(bmax, o);
      if ((i + 8) % TOPK_BLOCK == 0) {
        __m128i m = _mm_max_epi32(_mm256_castsi256_si128(bmax), _mm256_extracti128_si256(bmax, 1));
        m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4E));
        m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xB1));
        a.bm[i / TOPK_BLOCK] = _mm_cvtsi128_si32(m);
        bmax = _mm256_set1_epi32(INT32_MIN);
      }
    }
    if (UNI) {
      __m256i* up = reinterpret_cast<__m256i*>(a.u + i);
      _mm256_storeu_si256(up, _mm256_sub_epi32(_mm256_loadu_si256(up), mulshr16(ft, lv)));
    }
    if (SEL) {
      int m = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(ft, tv)));
      while (m) {
        a.sel[c++] = i + __builtin_ctz(unsigned(m));
        m &= m - 1;
      }
    }
  }
  int64_t l[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(l), fa);
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
  return l[0] + l[1] + l[2] + l[3] + tail;
}

struct XOut3 {
  template <bool MIX, bool UNI, bool SEL>
  static int64_t pass(const Out3Args& a, int* nsel) { return x_out3_t<MIX, UNI, SEL>(a, nsel); }
};
int64_t x_out3(const Out3Args& a, int* nsel) { return out3_dispatch<XOut3>(a, nsel); }
}  // namespace

const DenseKernels dense_avx2 = {d_max, d_exp_weights, d_scale<int32_t>, d_sum32, d_top_k,
                                x_bias_logits, x_bias_logits32, x_exp_rel, x_find32, d_block_max32, x_select_ge32, x_exp32, x_teacher_sums, x_teacher_out, x_mix_sum_arg, x_mix_out,
                                x_unigram_step32, d_select_teacher, d_clip32, x_exp3_rel, x_out3,
                                e_quantize, e_fix, e_rope, e_residual, e_silu};

namespace {

// vpmaddwd adds two products of |x| <= 32639 and |w| <= 128 per int32 lane. The tiles below
// reduce their lanes in int32 by fours (a transposing tree of vpaddd / vphaddd) before widening:
// four lanes hold half of a K block's products, and 512 of them stay below 2**31 (512 * 32639 *
// 128 = 2139029504), so K blocks are KBLOCK = 1024 long.
constexpr int KBLOCK = 1024;
constexpr int GROUP_BYTES = PACK_ROWS * K_ALIGN;

// Sums of four int32 accumulators' lanes, (a, b, c, d) -> int64 x 4: the eight lanes of each
// added in pairs and fours in int32 (within the bound above), the two 128-bit halves in int64.
inline __m256i hsum4(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i u = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm256_add_epi64(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(u)), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(u, 1)));
}
// out = s on a row's first K block, else out += s: the sums need no zeroed buffer (GCC's memset
// of one, rep stos, took ~4% of a batch-16 step in perf).
inline void add4(int64_t* out, __m256i s, bool first) {
  __m256i* p = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(p, first ? s : _mm256_add_epi64(_mm256_loadu_si256(p), s));
}
inline void add2(int64_t* out, __m128i s, bool first) {
  __m128i* p = reinterpret_cast<__m128i*>(out);
  _mm_storeu_si128(p, first ? s : _mm_add_epi64(_mm_loadu_si128(p), s));
}

inline __m256i load_w16(const int8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

inline void epilogue(const MatmulArgs& a, int m, int n, int64_t acc) {
  if (n >= a.n1) return;  // a padding row of the last group
  const double r = (double(acc) * a.scale[n]) * a.kf[m];
  if (a.y) a.y[m * a.ldy + n] = r;
  if (a.yi) a.yi[m * a.ldy + n] = int64_t(__builtin_nearbyint(r));
  if (a.yi32) {
    const bool big = !(r >= -LOGIT32_LIMIT && r <= LOGIT32_LIMIT);
    if (big) __atomic_store_n(a.clipped, 1, __ATOMIC_RELAXED);
    a.yi32[m * a.ldy + n] = big ? 0 : int32_t(__builtin_nearbyint(r));
  }
}

// int64 <-> float64 for |x| < 2**51 (AVX2 has no conversion): x + 2**52 + 2**51 is a double whose
// low mantissa bits are x, exactly.
const double MAGIC = 6755399441055744.0;  // 2**52 + 2**51
inline __m256d i64_to_pd(__m256i x) {
  const __m256d m = _mm256_set1_pd(MAGIC);
  return _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(x, _mm256_castpd_si256(m))), m);
}

// epilogue() for the eight columns of a whole group and one row, four at a time: the same IEEE
// products in the same order, and the same rounding (the current mode, as nearbyint).
inline void epilogue8(const MatmulArgs& a, int m, int n, const int64_t* acc) {
  const __m256d kf = _mm256_set1_pd(a.kf[m]);
  for (int h = 0; h < 2; ++h) {
    const __m256i ai = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + 4 * h));
    // |acc| <= 2**51 for any K below 5 * 10**8; checked, with the scalar epilogue as the way out
    const __m256i sh = _mm256_add_epi64(ai, _mm256_set1_epi64x(int64_t(1) << 51));  // in [0, 2**52]?
    const __m256i big = _mm256_or_si256(_mm256_cmpgt_epi64(_mm256_setzero_si256(), sh),
                                        _mm256_cmpgt_epi64(sh, _mm256_set1_epi64x(int64_t(1) << 52)));
    const int nn = n + 4 * h;
    if (!_mm256_testz_si256(big, big)) {
      for (int j = 0; j < 4; ++j) epilogue(a, m, nn + j, acc[4 * h + j]);
      continue;
    }
    const __m256d r = _mm256_mul_pd(_mm256_mul_pd(i64_to_pd(ai), _mm256_loadu_pd(a.scale + nn)), kf);
    if (a.y) _mm256_storeu_pd(a.y + m * a.ldy + nn, r);
    if (a.yi || a.yi32) {
      const __m256d lim = _mm256_set1_pd(LOGIT32_LIMIT);
      const __m256d inb = _mm256_and_pd(_mm256_cmp_pd(r, _mm256_sub_pd(_mm256_setzero_pd(), lim), _CMP_GE_OQ),
                                        _mm256_cmp_pd(r, lim, _CMP_LE_OQ));
      const __m256d ri = _mm256_round_pd(r, _MM_FROUND_CUR_DIRECTION);
      if (a.yi32) {
        const int in = _mm256_movemask_pd(inb);
        if (in != 15) __atomic_store_n(a.clipped, 1, __ATOMIC_RELAXED);
        const __m128i v = _mm256_cvtpd_epi32(_mm256_and_pd(ri, inb));  // 0 where out of bounds
        _mm_storeu_si128(reinterpret_cast<__m128i*>(a.yi32 + m * a.ldy + nn), v);
      }
      if (a.yi) {
        if (_mm256_movemask_pd(inb) == 15) {  // |r| <= 2**30: the conversion's bound holds
          const __m256d mg = _mm256_set1_pd(MAGIC);
          const __m256i v = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(ri, mg)), _mm256_castpd_si256(mg));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.yi + m * a.ldy + nn), v);
        } else {
          double t[4];
          _mm256_storeu_pd(t, ri);
          for (int j = 0; j < 4; ++j) a.yi[m * a.ldy + nn + j] = int64_t(t[j]);
        }
      }
    }
  }
}

// The tiles below keep their accumulators in named variables, one function per K block (at most
// KBLOCK long): with accumulator arrays, or a K-block loop around the K loop, GCC keeps most of
// them on the stack (measured: half the speed).

// One activation row against a whole group of eight weight rows: the decoding step's shape,
// bound by memory bandwidth; the group's bytes are read as one contiguous run.
// The weights are one sequential run (groups follow each other): the lines WEIGHTS_AHEAD bytes on
// are requested at every step (measured, Zen 3, one thread, a 576 x 3072 matrix from memory:
// 104 -> 89-92 us; 512 bytes ahead gained nothing, 768-2048 all about the same).
constexpr int WEIGHTS_AHEAD = 1536;
// One cache line into L1, in asm so that the compiler cannot drop it (GCC deleted a prefetch
// whose address it could not see used, in the AVX-512 file); a prefetch never faults.
inline void prefetch_l1(const void* p) { asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p))); }

__attribute__((noinline)) void group_1x8_block(const int16_t* x, const int8_t* w, int k0, int k1, int64_t* out) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int k = k0; k < k1; k += K_ALIGN) {
    const int8_t* p = w + size_t(k / K_ALIGN) * GROUP_BYTES;
    // GROUP_BYTES = 256: four lines a step (an address past the matrix cannot fault)
    prefetch_l1(p + WEIGHTS_AHEAD), prefetch_l1(p + WEIGHTS_AHEAD + 64);
    prefetch_l1(p + WEIGHTS_AHEAD + 128), prefetch_l1(p + WEIGHTS_AHEAD + 192);
    const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k));
    const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k + 16));
#define LMZ_ROW(J, A)                                                            \
  A = _mm256_add_epi32(A, _mm256_madd_epi16(x0, load_w16(p + J * K_ALIGN)));     \
  A = _mm256_add_epi32(A, _mm256_madd_epi16(x1, load_w16(p + J * K_ALIGN + 16)));
    LMZ_ROW(0, a0) LMZ_ROW(1, a1) LMZ_ROW(2, a2) LMZ_ROW(3, a3) LMZ_ROW(4, a4) LMZ_ROW(5, a5) LMZ_ROW(6, a6) LMZ_ROW(7, a7)
#undef LMZ_ROW
  }
  add4(out, hsum4(a0, a1, a2, a3), k0 == 0);
  add4(out + 4, hsum4(a4, a5, a6, a7), k0 == 0);
}

inline void group_1x8(const MatmulArgs& a, int m, int g) {
  const int8_t* w = a.w + size_t(g) * size_t(a.K / K_ALIGN) * GROUP_BYTES;
  alignas(32) int64_t tot[PACK_ROWS];
  for (int k0 = 0; k0 < a.K; k0 += KBLOCK) group_1x8_block(a.x + m * a.ldx, w, k0, a.K < k0 + KBLOCK ? a.K : k0 + KBLOCK, tot);
  if ((g + 1) * PACK_ROWS <= a.n1) {
    epilogue8(a, m, g * PACK_ROWS, tot);
  } else {
    for (int j = 0; j < PACK_ROWS; ++j) epilogue(a, m, g * PACK_ROWS + j, tot[j]);
  }
}

// MR (<= 6) activation rows against two weight rows of a group: 12 accumulators at MR = 6, two
// weight registers and one activation register, within AVX2's 16. out[i * PACK_ROWS + j]: row i's
// sum for the pair's column j (the caller offsets out to the pair).
// pf (null: none): bytes of the next group to request meanwhile, a line every other step (the
// caller gives each of a group's four pairs its quarter).
template <int MR>
__attribute__((noinline)) void pair_block(const int16_t* x, size_t ldx, const int8_t* w, int k0, int k1, int64_t* out,
                                          const char* pf) {
  const __m256i z = _mm256_setzero_si256();
  __m256i a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, b0 = z, b1 = z, b2 = z, b3 = z, b4 = z, b5 = z;
  for (unsigned k = unsigned(k0); k < unsigned(k1); k += 16) {
    const int8_t* p = w + size_t(k / K_ALIGN) * GROUP_BYTES + (k % K_ALIGN);
    const __m256i w0 = load_w16(p), w1 = load_w16(p + K_ALIGN);
    if (pf && !(k & 16)) prefetch_l1(pf + 2 * k);
    // Each activation vector is loaded once into a register and used twice, in asm so that GCC
    // neither folds it into two vpmaddwd memory operands nor hoists all six loads (spilling the
    // accumulators): either ran the tile at half to two thirds of this speed (Zen 3).
#define LMZ_ROW(I, A, B)                                                                          \
  if constexpr (MR > I) {                                                                         \
    __m256i t, u;                                                                                 \
    asm("vmovdqu %[p], %[t]\n\t"                                                                \
        "vpmaddwd %[t], %[w0], %[u]\n\t"                                                          \
        "vpmaddwd %[t], %[w1], %[t]\n\t"                                                          \
        "vpaddd %[u], %[a], %[a]\n\t"                                                             \
        "vpaddd %[t], %[b], %[b]"                                                                 \
        : [a] "+x"(A), [b] "+x"(B), [t] "=&x"(t), [u] "=&x"(u)                                    \
        : [p] "m"(*reinterpret_cast<const __m256i*>(x + I * ldx + k)), [w0] "x"(w0), [w1] "x"(w1)); \
  }
    LMZ_ROW(0, a0, b0) LMZ_ROW(1, a1, b1) LMZ_ROW(2, a2, b2) LMZ_ROW(3, a3, b3) LMZ_ROW(4, a4, b4) LMZ_ROW(5, a5, b5)
#undef LMZ_ROW
  }
  // Rows in twos: (a_i, b_i, a_i+1, b_i+1) -> row i's two columns, then row i+1's.
#define LMZ_SUM2(I, A0, B0, A1, B1)                                                  \
  if constexpr (MR > I + 1) {                                                        \
    const __m256i s = hsum4(A0, B0, A1, B1);                                         \
    add2(out + I * PACK_ROWS, _mm256_castsi256_si128(s), k0 == 0);                   \
    add2(out + (I + 1) * PACK_ROWS, _mm256_extracti128_si256(s, 1), k0 == 0);        \
  } else if constexpr (MR > I) {                                                     \
    add2(out + I * PACK_ROWS, _mm256_castsi256_si128(hsum4(A0, B0, z, z)), k0 == 0); \
  }
  LMZ_SUM2(0, a0, b0, a1, b1) LMZ_SUM2(2, a2, b2, a3, b3) LMZ_SUM2(4, a4, b4, a5, b5)
#undef LMZ_SUM2
}

template <int MR>
inline void group_rows(const MatmulArgs& a, int m, int g, const char* pf) {
  const int8_t* w = a.w + size_t(g) * size_t(a.K / K_ALIGN) * GROUP_BYTES;
  alignas(32) int64_t tot[MR * PACK_ROWS];
  for (int jp = 0; jp < PACK_ROWS / 2; ++jp)
    for (int k0 = 0; k0 < a.K; k0 += KBLOCK)
      pair_block<MR>(a.x + m * a.ldx, a.ldx, w + jp * 2 * K_ALIGN, k0, a.K < k0 + KBLOCK ? a.K : k0 + KBLOCK, tot + jp * 2,
                     pf ? pf + jp * 2 * a.K : nullptr);
  if ((g + 1) * PACK_ROWS <= a.n1) {
    for (int i = 0; i < MR; ++i) epilogue8(a, m + i, g * PACK_ROWS, tot + i * PACK_ROWS);
  } else {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < PACK_ROWS; ++j) epilogue(a, m + i, g * PACK_ROWS + j, tot[i * PACK_ROWS + j]);
  }
}

void matmul(const MatmulArgs& a) {
  const int g0 = a.n0 / PACK_ROWS, g1 = (a.n1 + PACK_ROWS - 1) / PACK_ROWS;
  if (a.M == 1) {
    for (int g = g0; g < g1; ++g) group_1x8(a, 0, g);
    return;
  }
  // Blocks: 48 activation rows (in L2) against groups whose bytes fit in L1 together.
  const int MB = 48;
  int GB = (24 * 1024) / (a.K * PACK_ROWS > 0 ? a.K * PACK_ROWS : 1);
  GB = GB < 1 ? 1 : GB;
  for (int m0 = 0; m0 < a.M; m0 += MB) {
    const int m1 = a.M < m0 + MB ? a.M : m0 + MB;
    for (int gb = g0; gb < g1; gb += GB) {
      const int ge = g1 < gb + GB ? g1 : gb + GB;
      for (int g = gb; g < ge; ++g) {
        // The next group's bytes, from memory while the first tile of rows computes, spread over
        // its steps (measured, Zen 3, one thread, weights from memory, against the group's lines
        // requested at once before it: 16 x 576 x 3072 603 -> 500 us, 6 rows 280 -> 189, 2 rows
        // 64 -> 33; 1024 rows, computing from cache, unchanged).
        const char* pf = m0 == 0 && g + 1 < g1 ? reinterpret_cast<const char*>(a.w + size_t(g + 1) * size_t(a.K / K_ALIGN) * GROUP_BYTES) : nullptr;
        int m = m0;
        for (; m + 6 <= m1; m += 6, pf = nullptr) group_rows<6>(a, m, g, pf);
        switch (m1 - m) {
          case 5: group_rows<5>(a, m, g, pf); break;
          case 4: group_rows<4>(a, m, g, pf); break;
          case 3: group_rows<3>(a, m, g, pf); break;
          case 2: group_rows<2>(a, m, g, pf); break;
          case 1: group_rows<1>(a, m, g, pf); break;
          default: break;
        }
      }
    }
  }
}

// -- attention --------------------------------------------------------------------------------
// Scores in integers, as the AVX-512 kernel (see there): q = 1024 qh + ql, vpmaddwd of the keys'
// int16 dimension pairs by (qh, qh') or (ql, ql') pairs (pair sums below 2**31, lane sums over at
// most SCORE_PAIRS pairs too), the score 1024 hi + lo in float64. G rows against NB (<= 2) blocks
// of eight keys per tile, two accumulators per row and block (12 at most of AVX2's 16 registers).
constexpr int SCORE_PAIRS = 32;

// 1024 hi + lo of four int32 lanes in float64 (exact): the integer scores' and mixes' sums.
inline __m256d hilo_pd(__m128i hi, __m128i lo) {
  return _mm256_add_pd(_mm256_mul_pd(_mm256_cvtepi32_pd(hi), _mm256_set1_pd(1024.0)), _mm256_cvtepi32_pd(lo));
}
// o[i] (+)= hilo of four lanes, for the mixes' numerators.
inline void add_hilo(double* o, __m128i hi, __m128i lo) {
  _mm256_storeu_pd(o, _mm256_add_pd(_mm256_loadu_pd(o), hilo_pd(hi, lo)));
}

inline void store_scores(double* o, __m256i hi, __m256i lo, bool add) {
  const __m256d s0 = hilo_pd(_mm256_castsi256_si128(hi), _mm256_castsi256_si128(lo));
  const __m256d s1 = hilo_pd(_mm256_extracti128_si256(hi, 1), _mm256_extracti128_si256(lo, 1));
  _mm256_storeu_pd(o, add ? _mm256_add_pd(_mm256_loadu_pd(o), s0) : s0);
  _mm256_storeu_pd(o + 4, add ? _mm256_add_pd(_mm256_loadu_pd(o + 4), s1) : s1);
}

// pf (null: none): key blocks to request while this tile computes, NB of them, one line per
// pair step (a pair step of NB blocks reads 32 * NB bytes: NB blocks' lines over np steps).
template <int G, int NB>
__attribute__((noinline)) void score_tile(const ScoreArgs& a, const int32_t* qh, const int32_t* ql, int np, int b,
                                          const char* pf = nullptr) {
  static_assert(2 * G * NB <= 12, "tile too large for AVX2's 16 registers");
  const size_t bstride = size_t(a.hdp) * KEY_BLOCK;
  const int16_t* base = a.kblk + size_t(b) * bstride;
  double* s = a.s + size_t(b) * KEY_BLOCK;
  for (int p0 = 0; p0 < np; p0 += SCORE_PAIRS) {
    const int p1 = np < p0 + SCORE_PAIRS ? np : p0 + SCORE_PAIRS;
    const __m256i z = _mm256_setzero_si256();
    __m256i h00 = z, h01 = z, h10 = z, h11 = z, h20 = z, h21 = z, h30 = z, h40 = z, h50 = z;
    __m256i l00 = z, l01 = z, l10 = z, l11 = z, l20 = z, l21 = z, l30 = z, l40 = z, l50 = z;
    for (int p = p0; p < p1; ++p) {
      const int16_t* kp = base + p * 2 * KEY_BLOCK;
      if (pf) prefetch_l1(pf + p * 32 * NB);
      const __m256i k0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kp));
      __m256i k1 = z;
      if constexpr (NB > 1) k1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kp + bstride));
    // In asm, one row at a time: with intrinsics GCC spilled half of the twelve accumulators of
    // the three-row, two-block tile (the batched decoding step's shape) to the stack.
#define LMZ_Q(I, H0, H1, L0, L1)                                                                 \
  if constexpr (G > I) {                                                                         \
    __m256i t, u;                                                                                \
    if constexpr (NB > 1) {                                                                      \
      asm("vpbroadcastd %[qh], %[t]\n\t"                                                         \
          "vpmaddwd %[t], %[k0], %[u]\n\t"                                                       \
          "vpaddd %[u], %[h0], %[h0]\n\t"                                                        \
          "vpmaddwd %[t], %[k1], %[u]\n\t"                                                       \
          "vpaddd %[u], %[h1], %[h1]\n\t"                                                        \
          "vpbroadcastd %[ql], %[t]\n\t"                                                         \
          "vpmaddwd %[t], %[k0], %[u]\n\t"                                                       \
          "vpaddd %[u], %[l0], %[l0]\n\t"                                                        \
          "vpmaddwd %[t], %[k1], %[u]\n\t"                                                       \
          "vpaddd %[u], %[l1], %[l1]"                                                            \
          : [h0] "+x"(H0), [h1] "+x"(H1), [l0] "+x"(L0), [l1] "+x"(L1), [t] "=&x"(t), [u] "=&x"(u) \
          : [k0] "x"(k0), [k1] "x"(k1), [qh] "m"(qh[I * np + p]), [ql] "m"(ql[I * np + p]));       \
    } else {                                                                                     \
      asm("vpbroadcastd %[qh], %[t]\n\t"                                                         \
          "vpmaddwd %[t], %[k0], %[u]\n\t"                                                       \
          "vpaddd %[u], %[h0], %[h0]\n\t"                                                        \
          "vpbroadcastd %[ql], %[t]\n\t"                                                         \
          "vpmaddwd %[t], %[k0], %[u]\n\t"                                                       \
          "vpaddd %[u], %[l0], %[l0]"                                                            \
          : [h0] "+x"(H0), [l0] "+x"(L0), [t] "=&x"(t), [u] "=&x"(u)                               \
          : [k0] "x"(k0), [qh] "m"(qh[I * np + p]), [ql] "m"(ql[I * np + p]));                     \
    }                                                                                            \
  }
      LMZ_Q(0, h00, h01, l00, l01) LMZ_Q(1, h10, h11, l10, l11) LMZ_Q(2, h20, h21, l20, l21)
      LMZ_Q(3, h30, h30, l30, l30) LMZ_Q(4, h40, h40, l40, l40) LMZ_Q(5, h50, h50, l50, l50)
#undef LMZ_Q
    }
    // Whole blocks are stored (the caller's rows hold a multiple of KEY_BLOCK entries).
    const bool add = p0 > 0;
#define LMZ_ST(I, H0, H1, L0, L1)                                                   \
  if constexpr (G > I) {                                                            \
    store_scores(s + I * a.lds, H0, L0, add);                                       \
    if constexpr (NB > 1) store_scores(s + I * a.lds + KEY_BLOCK, H1, L1, add);     \
  }
    LMZ_ST(0, h00, h01, l00, l01) LMZ_ST(1, h10, h11, l10, l11) LMZ_ST(2, h20, h21, l20, l21)
    LMZ_ST(3, h30, h30, l30, l30) LMZ_ST(4, h40, h40, l40, l40) LMZ_ST(5, h50, h50, l50, l50)
#undef LMZ_ST
  }
}

// Keys stream from memory during decoding (every stream's cache is read once per step): the
// blocks a few ahead are requested explicitly, a line per step of the tile's loop (measured,
// Zen 3, keys from memory: requesting each block's 16 lines at once before its tile left the
// scores at 24.5 us per head of 3000 keys, spread over the loop 20.8, compute alone ~20; the
// hardware prefetcher alone leaves a core at half its streaming bandwidth here).
constexpr int PREFETCH_BLOCKS = 4;
inline void prefetch_block(const ScoreArgs& a, int b) {
  const char* p = reinterpret_cast<const char*>(a.kblk + size_t(b) * a.hdp * KEY_BLOCK);
  const int bytes = a.hdp * KEY_BLOCK * int(sizeof(int16_t));
  for (int o = 0; o < bytes; o += 64) prefetch_l1(p + o);
}

template <int G>
inline void scores_g(const ScoreArgs& a, const int32_t* qh, const int32_t* ql, int np) {
  const int b0 = a.j0 / KEY_BLOCK, b1 = (a.j1 + KEY_BLOCK - 1) / KEY_BLOCK;
  int b = b0;
  for (int p = b0; p < b0 + PREFETCH_BLOCKS && p < b1; ++p) prefetch_block(a, p);
  auto ahead = [&](int nb) {  // the nb blocks PREFETCH_BLOCKS ahead, if they exist
    return b + PREFETCH_BLOCKS + nb <= b1 ? reinterpret_cast<const char*>(a.kblk + size_t(b + PREFETCH_BLOCKS) * a.hdp * KEY_BLOCK) : nullptr;
  };
  if constexpr (G <= 3)
    for (; b + 2 <= b1; b += 2) score_tile<G, 2>(a, qh, ql, np, b, ahead(2));
  for (; b < b1; ++b) score_tile<G, 1>(a, qh, ql, np, b, ahead(1));
}

inline void tile_block(const ScoreArgs& a, const int32_t* qh, const int32_t* ql, int np, int b) {
  switch (a.G) {
    case 1: score_tile<1, 1>(a, qh, ql, np, b); break;
    case 2: score_tile<2, 1>(a, qh, ql, np, b); break;
    case 3: score_tile<3, 1>(a, qh, ql, np, b); break;
    case 4: score_tile<4, 1>(a, qh, ql, np, b); break;
    case 5: score_tile<5, 1>(a, qh, ql, np, b); break;
    default: score_tile<6, 1>(a, qh, ql, np, b); break;
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
        const __m256d r0 = _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rp)));
        const __m256d r1 = _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rp + 4)));
        for (int g = 0; g < a.G; ++g) {
          double* s = a.s + g * a.lds + size_t(b) * KEY_BLOCK;
          const __m256d q = _mm256_set1_pd(a.q[g * a.hdp + d]);
          _mm256_storeu_pd(s, _mm256_fmadd_pd(q, r0, _mm256_loadu_pd(s)));
          _mm256_storeu_pd(s + 4, _mm256_fmadd_pd(q, r1, _mm256_loadu_pd(s + 4)));
        }
      }
}

void scores(const ScoreArgs& a) {
  int32_t qh[MAX_GROUP * MAX_HDP / 2], ql[MAX_GROUP * MAX_HDP / 2];
  split_query_pairs(a.q, a.G, a.hdp, qh, ql);
  const int np = a.hdp / 2;
  if (a.G > TILE_ROWS) {  // each key block once from L3, then from L1 for every tile of rows
    const int b0 = a.j0 / KEY_BLOCK, b1 = (a.j1 + KEY_BLOCK - 1) / KEY_BLOCK;
    for (int b = b0; b < b1; ++b)
      for (int r0 = 0; r0 < a.G; r0 += TILE_ROWS) {
        ScoreArgs t = a;
        t.q = a.q + r0 * a.hdp;
        t.s = a.s + r0 * a.lds;
        t.G = a.G - r0 < TILE_ROWS ? a.G - r0 : TILE_ROWS;
        tile_block(t, qh + r0 * np, ql + r0 * np, np, b);
      }
  } else {
    switch (a.G) {
      case 1: scores_g<1>(a, qh, ql, np); break;
      case 2: scores_g<2>(a, qh, ql, np); break;
      case 3: scores_g<3>(a, qh, ql, np); break;
      case 4: scores_g<4>(a, qh, ql, np); break;
      case 5: scores_g<5>(a, qh, ql, np); break;
      default: scores_g<6>(a, qh, ql, np); break;
    }
  }
  if (a.kmask) key_remainders(a);
}

// Weights: round((top - s) * scale) with the SSE4.1 rounding of the current mode (half-even,
// as the reference's round), clamped, looked up in the table, summed exactly.
int64_t weights(const WeightArgs& a) {
  const __m256d top = _mm256_set1_pd(a.top), scale = _mm256_set1_pd(a.scale), last = _mm256_set1_pd(double(a.last));
  __m256d zsum = _mm256_setzero_pd();
  const int64_t nv = (a.lim < a.n ? a.lim : a.n) / 4 * 4;
  for (int64_t j = 0; j < nv; j += 4) {
    const __m256d d = _mm256_mul_pd(_mm256_sub_pd(top, _mm256_loadu_pd(a.s + j)), scale);
    const __m256d r = _mm256_min_pd(_mm256_round_pd(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), last);
    const __m256d e = _mm256_i32gather_pd(a.table, _mm256_cvttpd_epi32(r), 8);
    _mm256_storeu_pd(a.s + j, e);
    zsum = _mm256_add_pd(zsum, e);  // integers: the sum is exact in any order
  }
  double t[4];
  _mm256_storeu_pd(t, zsum);
  int64_t z = int64_t(t[0]) + int64_t(t[1]) + int64_t(t[2]) + int64_t(t[3]);
  for (int64_t j = nv; j < a.n; ++j) {
    if (j < a.lim) {
      const double idx = __builtin_nearbyint((a.top - a.s[j]) * a.scale);
      const double e = a.table[idx < double(a.last) ? int64_t(idx) : a.last];
      a.s[j] = e;
      z += int64_t(e);
    } else {
      a.s[j] = 0;
    }
  }
  return z;
}

// Mix in integers. A weight e <= MIX_WEIGHT_MAX = 2**20 is split as 1024 eh + el (eh <= 1024,
// el < 1024, both int16), and the value rows of two keys j, j+1 are interleaved (vpunpck*wd) so
// that vpmaddwd multiplies (v_j, v_j+1) by (eh_j, eh_j+1) or (el_j, el_j+1): a pair's sum is at
// most 2 * 1024 * 32767, and a block's 32 pairs stay below 2**31 in int32 lanes. Per block, the
// sums go to the float64 numerators as 1024 hi + lo (exact integers below 2**53, so in any order).
constexpr int MIX_BLOCK = 64;  // keys: 32 pairs; their values (8 KB) stay in L1 across the passes

// The block's weights of up to three rows as int16 pairs: hi[r * 32 + p] = (eh_2p, eh_2p+1), lo alike.
struct MixPairs {
  alignas(32) int32_t hi[3 * MIX_BLOCK / 2], lo[3 * MIX_BLOCK / 2];
};

inline void split_weights(const MixArgs& a, int rows, int jb, int je, MixPairs& w) {
  for (int r = 0; r < rows; ++r) {
    const double* e = a.e + r * a.lde;
    uint16_t* hi = reinterpret_cast<uint16_t*>(w.hi + r * (MIX_BLOCK / 2));
    uint16_t* lo = reinterpret_cast<uint16_t*>(w.lo + r * (MIX_BLOCK / 2));
    int j = jb;
    for (; j + 4 <= je; j += 4) {
      const __m128i ei = _mm256_cvttpd_epi32(_mm256_loadu_pd(e + j));  // integers 0..2**20: exact
      const __m128i h = _mm_srli_epi32(ei, 10), l = _mm_and_si128(ei, _mm_set1_epi32(1023));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(hi + (j - jb)), _mm_packs_epi32(h, h));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(lo + (j - jb)), _mm_packs_epi32(l, l));
    }
    for (; j < je; ++j) {
      const int32_t ei = int32_t(e[j]);
      hi[j - jb] = uint16_t(ei >> 10), lo[j - jb] = uint16_t(ei & 1023);
    }
    if ((je - jb) & 1) hi[je - jb] = 0, lo[je - jb] = 0;  // an odd block's last pair: (e_j, 0)
  }
}

// num[r][d0 .. d0 + 16) for rows r < R from int32 sums: lanes of A are dimensions 0-3 and 8-11
// (vpunpcklwd's order), of B 4-7 and 12-15.
inline void add_sums(double* num, __m256i ah, __m256i al, __m256i bh, __m256i bl) {
  add_hilo(num, _mm256_castsi256_si128(ah), _mm256_castsi256_si128(al));
  add_hilo(num + 8, _mm256_extracti128_si256(ah, 1), _mm256_extracti128_si256(al, 1));
  add_hilo(num + 4, _mm256_castsi256_si128(bh), _mm256_castsi256_si128(bl));
  add_hilo(num + 12, _mm256_extracti128_si256(bh, 1), _mm256_extracti128_si256(bl, 1));
}

// R (<= 3) rows against the block's keys [jb, je), 16 dimensions from d0: 4 accumulators a row
// (hi and lo of two lane sets), 12 at R = 3, with the two interleaved value vectors and a weight
// broadcast within AVX2's 16 registers. zrow (zeros) stands for the second key of an odd
// block's last pair.
// pf (null: none): the next block's values to request, a line per key pair (a block of 64 keys
// holds 2 * hdp lines, and the hdp / 16 passes of 32 pairs each request their share).
template <int R>
__attribute__((noinline)) void mix16(const MixArgs& a, const MixPairs& w, int jb, int je, int d0, const int16_t* zrow,
                                     const char* pf) {
  const __m256i z = _mm256_setzero_si256();
  __m256i ah0 = z, al0 = z, bh0 = z, bl0 = z, ah1 = z, al1 = z, bh1 = z, bl1 = z, ah2 = z, al2 = z, bh2 = z, bl2 = z;
  const size_t hdp = size_t(a.hdp);
  for (int j = jb; j < je; j += 2) {
    const int16_t* r0 = a.v + size_t(j) * hdp + d0;
    const int16_t* r1 = j + 1 < je ? r0 + hdp : zrow;
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r0));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r1));
    const __m256i pl = _mm256_unpacklo_epi16(v0, v1), ph = _mm256_unpackhi_epi16(v0, v1);
    const int p = (j - jb) / 2;
    if (pf) prefetch_l1(pf + p * 64);
    // In asm, one row at a time: with intrinsics GCC spilled half of the twelve accumulators.
#define LMZ_R(I, AH, AL, BH, BL)                                                               \
  if constexpr (R > I) {                                                                       \
    __m256i t, u;                                                                              \
    asm("vpbroadcastd %[eh], %[t]\n\t"                                                         \
        "vpmaddwd %[t], %[pl], %[u]\n\t"                                                       \
        "vpaddd %[u], %[ah], %[ah]\n\t"                                                        \
        "vpmaddwd %[t], %[ph], %[u]\n\t"                                                       \
        "vpaddd %[u], %[bh], %[bh]\n\t"                                                        \
        "vpbroadcastd %[el], %[t]\n\t"                                                         \
        "vpmaddwd %[t], %[pl], %[u]\n\t"                                                       \
        "vpaddd %[u], %[al], %[al]\n\t"                                                        \
        "vpmaddwd %[t], %[ph], %[u]\n\t"                                                       \
        "vpaddd %[u], %[bl], %[bl]"                                                            \
        : [ah] "+x"(AH), [al] "+x"(AL), [bh] "+x"(BH), [bl] "+x"(BL), [t] "=&x"(t), [u] "=&x"(u) \
        : [pl] "x"(pl), [ph] "x"(ph), [eh] "m"(w.hi[I * (MIX_BLOCK / 2) + p]),                  \
          [el] "m"(w.lo[I * (MIX_BLOCK / 2) + p]));                                            \
  }
    LMZ_R(0, ah0, al0, bh0, bl0) LMZ_R(1, ah1, al1, bh1, bl1) LMZ_R(2, ah2, al2, bh2, bl2)
#undef LMZ_R
  }
  add_sums(a.num + d0, ah0, al0, bh0, bl0);
  if constexpr (R > 1) add_sums(a.num + a.hdp + d0, ah1, al1, bh1, bl1);
  if constexpr (R > 2) add_sums(a.num + 2 * a.hdp + d0, ah2, al2, bh2, bl2);
}

// The same for the last 8 dimensions when hdp is not a multiple of 16, in 128-bit vectors.
template <int R>
__attribute__((noinline)) void mix8(const MixArgs& a, const MixPairs& w, int jb, int je, int d0, const int16_t* zrow) {
  const __m128i z = _mm_setzero_si128();
  __m128i ah[3] = {z, z, z}, al[3] = {z, z, z}, bh[3] = {z, z, z}, bl[3] = {z, z, z};
  const size_t hdp = size_t(a.hdp);
  for (int j = jb; j < je; j += 2) {
    const int16_t* r0 = a.v + size_t(j) * hdp + d0;
    const int16_t* r1 = j + 1 < je ? r0 + hdp : zrow;
    const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r0));
    const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(r1));
    const __m128i pl = _mm_unpacklo_epi16(v0, v1), ph = _mm_unpackhi_epi16(v0, v1);  // dims 0-3, 4-7
    const int p = (j - jb) / 2;
    for (int i = 0; i < R; ++i) {
      const __m128i eh = _mm_set1_epi32(w.hi[i * (MIX_BLOCK / 2) + p]), el = _mm_set1_epi32(w.lo[i * (MIX_BLOCK / 2) + p]);
      ah[i] = _mm_add_epi32(ah[i], _mm_madd_epi16(pl, eh)), bh[i] = _mm_add_epi32(bh[i], _mm_madd_epi16(ph, eh));
      al[i] = _mm_add_epi32(al[i], _mm_madd_epi16(pl, el)), bl[i] = _mm_add_epi32(bl[i], _mm_madd_epi16(ph, el));
    }
  }
  for (int i = 0; i < R; ++i) {
    double* o = a.num + i * a.hdp + d0;
    add_hilo(o, ah[i], al[i]);
    add_hilo(o + 4, bh[i], bl[i]);
  }
}

template <int R>
void mix_tile(const MixArgs& a, const MixPairs& w, int jb, int je, const int16_t* zrow, const char* pf) {
  int d0 = 0;
  for (; d0 + 16 <= a.hdp; d0 += 16) mix16<R>(a, w, jb, je, d0, zrow, pf ? pf + (d0 / 16) * (MIX_BLOCK / 2) * 64 : nullptr);
  if (d0 < a.hdp) mix8<R>(a, w, jb, je, d0, zrow);
}

inline bool all_zero(const double* e, size_t lde, int rows, int jb, int je) {
  __m256d any = _mm256_setzero_pd();
  for (int g = 0; g < rows; ++g) {
    const double* r = e + g * lde;
    int j = jb;
    for (; j + 4 <= je; j += 4) any = _mm256_or_pd(any, _mm256_loadu_pd(r + j));
    for (; j < je; ++j) any = _mm256_or_pd(any, _mm256_set1_pd(r[j]));
  }
  const __m256i bits = _mm256_castpd_si256(any);
  return _mm256_testz_si256(bits, bits);  // every weight of the block is +0.0
}

// The values' remainders beyond int16 (kernels.h), after the rows' sums (any order is exact).
void value_remainders(const MixArgs& a) {
  for (int j = a.j0; j < a.j1; ++j)
    for (uint64_t m = a.vmask[j]; m; m &= m - 1) {
      const int grp = __builtin_ctzll(m);
      const int32_t* rp = a.vres + (size_t(grp) * a.vres_stride + size_t(j)) * 8;
      const __m256d r0 = _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rp)));
      const __m256d r1 = _mm256_cvtepi32_pd(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rp + 4)));
      for (int g = 0; g < a.G; ++g) {
        const double e = a.e[g * a.lde + j];
        if (e == 0) continue;
        const __m256d eb = _mm256_set1_pd(e);
        double* num = a.num + g * a.hdp + grp * 8;
        _mm256_storeu_pd(num, _mm256_fmadd_pd(eb, r0, _mm256_loadu_pd(num)));
        _mm256_storeu_pd(num + 4, _mm256_fmadd_pd(eb, r1, _mm256_loadu_pd(num + 4)));
      }
    }
}

void mix(const MixArgs& a) {
  alignas(32) static const int16_t zrow[MAX_HDP] = {0};
  MixPairs w;
  for (int jb = a.j0; jb < a.j1; jb += MIX_BLOCK) {
    const int je = a.j1 < jb + MIX_BLOCK ? a.j1 : jb + MIX_BLOCK;
    // The next block's values, from memory while this one computes: spread over the first tile
    // that runs, a line per key pair (measured, Zen 3, values from memory: the block's 128 lines
    // requested at once before it took the mix to 45 us per head of 3000 keys, spread 27.5,
    // the same as with the values in cache). A short last block is left to the hardware.
    const char* pf = je + MIX_BLOCK <= a.j1 && a.hdp % 16 == 0 ? reinterpret_cast<const char*>(a.v + size_t(je) * a.hdp) : nullptr;
    for (int r0 = 0; r0 < a.G; r0 += 3) {  // tiles of three rows; the block's values from L1 after the first
      MixArgs t = a;
      const int rows = a.G - r0 < 3 ? a.G - r0 : 3;
      t.e = a.e + r0 * a.lde;
      t.num = a.num + r0 * a.hdp;
      if (all_zero(t.e, t.lde, rows, jb, je)) continue;
      split_weights(t, rows, jb, je, w);
      switch (rows) {
        case 1: mix_tile<1>(t, w, jb, je, zrow, pf); break;
        case 2: mix_tile<2>(t, w, jb, je, zrow, pf); break;
        default: mix_tile<3>(t, w, jb, je, zrow, pf); break;
      }
      pf = nullptr;  // requested once
    }
  }
  if (a.vmask) value_remainders(a);
}

}  // namespace

int64_t dot_peak_avx2(int64_t iters) {
  // One asm block on twelve named accumulators: with an array and an asm statement per element,
  // GCC kept the array on the stack and the figure measured store forwarding (a third of the peak).
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
          a10 = a0, a11 = a0, t0, t1;
  const __m256i x = _mm256_set1_epi16(3), y = _mm256_set1_epi16(5);
  for (int64_t i = 0; i < iters; ++i) {
#define LMZ_P(A, T) "vpmaddwd %[x], %[y], %[" T "]\n\tvpaddd %[" T "], %[" A "], %[" A "]\n\t"
    asm volatile(LMZ_P("a0", "t0") LMZ_P("a1", "t1") LMZ_P("a2", "t0") LMZ_P("a3", "t1") LMZ_P("a4", "t0")
                     LMZ_P("a5", "t1") LMZ_P("a6", "t0") LMZ_P("a7", "t1") LMZ_P("a8", "t0") LMZ_P("a9", "t1")
                         LMZ_P("a10", "t0") LMZ_P("a11", "t1")
                 : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [a4] "+x"(a4), [a5] "+x"(a5),
                   [a6] "+x"(a6), [a7] "+x"(a7), [a8] "+x"(a8), [a9] "+x"(a9), [a10] "+x"(a10), [a11] "+x"(a11),
                   [t0] "=&x"(t0), [t1] "=&x"(t1)
                 : [x] "x"(x), [y] "x"(y));
#undef LMZ_P
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                     _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
  const __m256i u = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(a8, a9), _mm256_add_epi32(a10, a11)));
  volatile int sink = _mm256_extract_epi32(u, 0);
  (void)sink;
  return iters * 12 * 16;
}

void matmul_avx2(const MatmulArgs& a) { matmul(a); }
void scores_avx2(const ScoreArgs& a) { scores(a); }
void mix_avx2(const MixArgs& a) { mix(a); }
int64_t weights_avx2(const WeightArgs& a) { return weights(a); }
double row_max_avx2(const double* s, int64_t n) {
  __m256d m0 = _mm256_set1_pd(-__builtin_inf()), m1 = m0;
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m0 = _mm256_max_pd(m0, _mm256_loadu_pd(s + j)), m1 = _mm256_max_pd(m1, _mm256_loadu_pd(s + j + 4));
  double t[4];
  _mm256_storeu_pd(t, _mm256_max_pd(m0, m1));
  double m = t[0] < t[1] ? t[1] : t[0];
  m = m < t[2] ? t[2] : m;
  m = m < t[3] ? t[3] : m;
  for (; j < n; ++j) m = m < s[j] ? s[j] : m;
  return m;
}

}  // namespace lmz

#pragma GCC pop_options
#endif  // __x86_64__
