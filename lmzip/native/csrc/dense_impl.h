// Loops over vocabulary-sized rows (the predictor, the coder's candidates, the model's output
// distribution), written once as plain C++ and compiled once per SIMD level: this header is
// included by kernels_portable.cpp and, under an AVX2 target pragma, by kernels_avx2.cpp, where
// GCC vectorizes every loop. All arithmetic is integer; results never depend on the level.
// Include only inside an anonymous namespace of a kernel file (no STL, no shared inline code).

// First index of the maximum as a plain max-reduction: key = value * 2**24 + (2**24 - 1 - index)
// (values < 2**39, indices < 2**24), so the largest key is the largest value at its first index.
constexpr int64_t ARG_BITS = 24;
constexpr int64_t ARG_MASK = (int64_t(1) << ARG_BITS) - 1;

int64_t d_max(const int64_t* x, int n) {
  int64_t m = x[0];
  for (int i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// e = table[min(top - x, last)] (top >= every x); *sum = sum(e), *arg = first index of max(e).
void d_exp_weights(const int64_t* x, int64_t top, const int64_t* table, int64_t last, int64_t* e, int n,
                   int64_t* sum, int* arg) {
  int64_t s = 0, key = -1;
  for (int i = 0; i < n; ++i) {
    int64_t d = top - x[i];
    d = d < last ? d : last;
    const int64_t v = table[d];
    e[i] = v;
    s += v;
    const int64_t k = (v << ARG_BITS) | (ARG_MASK - i);
    key = k > key ? k : key;
  }
  *sum = s;
  *arg = int(ARG_MASK - (key & ARG_MASK));
}

// f = 1 + floor(e * r / 2**32) (e * r < 2**64); returns the sum of the floors (without the 1s).
template <typename Out>
int64_t d_scale(const int64_t* e, int64_t r, Out* f, int n) {
  int64_t s = 0;
  for (int i = 0; i < n; ++i) {
    const int64_t x = int64_t((uint64_t(e[i]) * uint64_t(r)) >> 32);
    f[i] = Out(x + 1);
    s += x;
  }
  return s;
}

// Sum of row[0..n) (int32 entries).
int64_t d_sum32(const int32_t* row, int n) {
  int64_t s = 0;
  for (int i = 0; i < n; ++i) s += row[i];
  return s;
}

// The k best entries of row by (frequency desc, id asc) into ids/freqs, in that order (k <= n).
// A heap holds the best k so far with the worst at its root; ids arrive in ascending order, so
// a later entry displaces the root only with a strictly larger frequency.
struct TopE {
  int32_t f, id;
};
inline bool sorts_after(const TopE& a, const TopE& b) { return a.f < b.f || (a.f == b.f && a.id > b.id); }
inline void sift_down(TopE* h, int k, int i) {
  for (;;) {
    int w = i;
    const int l = 2 * i + 1, r = l + 1;
    if (l < k && sorts_after(h[l], h[w])) w = l;
    if (r < k && sorts_after(h[r], h[w])) w = r;
    if (w == i) return;
    const TopE t = h[i];
    h[i] = h[w];
    h[w] = t;
    i = w;
  }
}
void d_top_k(const int32_t* row, int n, int k, int32_t* ids, int64_t* freqs) {
  TopE h[256];  // k <= 256 (checked by callers)
  for (int i = 0; i < k; ++i) h[i] = TopE{row[i], i};
  for (int i = k / 2 - 1; i >= 0; --i) sift_down(h, k, i);
  int32_t thr = h[0].f;
  int v = k;
  for (; v < n && v % 16; ++v)
    if (row[v] > thr) h[0] = TopE{row[v], v}, sift_down(h, k, 0), thr = h[0].f;
  for (; v + 16 <= n; v += 16) {
    int any = 0;
    for (int j = 0; j < 16; ++j) any |= row[v + j] > thr;
    if (!any) continue;
    for (int j = 0; j < 16; ++j)
      if (row[v + j] > thr) h[0] = TopE{row[v + j], v + j}, sift_down(h, k, 0), thr = h[0].f;
  }
  for (; v < n; ++v)
    if (row[v] > thr) h[0] = TopE{row[v], v}, sift_down(h, k, 0), thr = h[0].f;
  // Heap sort: repeatedly move the worst to the end.
  for (int end = k - 1; end > 0; --end) {
    const TopE t = h[0];
    h[0] = h[end];
    h[end] = t;
    sift_down(h, end, 0);
  }
  // h is now in order of "sorts after" ascending... i.e. best first.
  for (int i = 0; i < k; ++i) ids[i] = h[i].id, freqs[i] = h[i].f;
}

// ---- the adaptive predictor's passes on int32 rows (predictor.cpp explains the bounds) ----------

// The biased teacher's weights are et = exp[min(max(zb) - zb, last)] with zb = (u >> 14) +
// max(z - max(z), -2**29) (u: the unigram bias plus the previous token's bigram row, |u| < 2**31;
// the clamp keeps zb in int32). With w = (u >> 14) + z this is et = exp[min(max(w) - w, last)]:
// |u >> 14| < 2**17, so the maximum of zb sits at an unclamped entry, where zb = w - max(z),
// and a clamped entry is more than 2**29 - 2**18 > last below it either way. Pass one keeps w's
// low 32 bits and its range; when max(w) - min(w) < 2**32, pass two computes max(w) - w exactly
// in uint32 lanes.
void d_bias_logits(const int64_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin) {
  int64_t a = INT64_MIN, b = INT64_MAX;
  for (int i = 0; i < n; ++i) {
    const int64_t w = int64_t(u[i] >> 14) + z[i];
    q[i] = int32_t(uint32_t(uint64_t(w)));
    a = w > a ? w : a;
    b = w < b ? w : b;
  }
  *wmax = a;
  *wmin = b;
}

void d_bias_logits32(const int32_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin, int64_t* zfar) {
  int32_t a = INT32_MIN, b = INT32_MAX, za = 0, zb = 0;
  for (int i = 0; i < n; ++i) {
    const int32_t w = int32_t(uint32_t(u[i] >> 14) + uint32_t(z[i]));  // |w| < 2**30 + 2**17 when |z| <= 2**30
    q[i] = w;
    a = w > a ? w : a;
    b = w < b ? w : b;
    za = z[i] > za ? z[i] : za;
    zb = z[i] < zb ? z[i] : zb;
  }
  *wmax = n ? a : INT64_MIN;
  *wmin = n ? b : INT64_MAX;
  *zfar = za > -int64_t(zb) ? za : -int64_t(zb);
}

// et = table[min(top - q, last)] in uint32 arithmetic (top: max(w)'s low 32 bits); *sum = sum(et).
int64_t d_exp_rel(const int32_t* q, int32_t top, const int32_t* table, int32_t last, int32_t* et, int n) {
  int64_t s = 0;
  for (int i = 0; i < n; ++i) {
    uint32_t d = uint32_t(top) - uint32_t(q[i]);
    d = d < uint32_t(last) ? d : uint32_t(last);
    const int32_t v = table[d];
    et[i] = v;
    s += v;
  }
  return s;
}

// First index i with row[i] == x (n if none).
int d_find32(const int32_t* row, int n, int32_t x) {
  for (int i = 0; i < n; ++i)
    if (row[i] == x) return i;
  return n;
}

// Indices i < n with row[i] >= thr, ascending; returns their count.
int d_select_ge32(const int32_t* row, int n, int32_t thr, int32_t* out) {
  int c = 0;
  for (int i = 0; i < n; ++i)
    if (row[i] >= thr) out[c++] = i;
  return c;
}

// Maxima of the row's blocks of TOPK_BLOCK entries (the last block may be short): the coder's
// candidate search reads only the blocks that can hold a candidate.
void d_block_max32(const int32_t* row, int n, int32_t* bm) {
  const int nb = (n + TOPK_BLOCK - 1) / TOPK_BLOCK;
  for (int b = 0; b < nb; ++b) {
    const int i0 = b * TOPK_BLOCK, i1 = i0 + TOPK_BLOCK < n ? i0 + TOPK_BLOCK : n;
    int32_t m = row[i0];
    for (int i = i0 + 1; i < i1; ++i) m = row[i] > m ? row[i] : m;
    bm[b] = m;
  }
}

// et = table[min(mx - zb, last)]; *sum = sum(et), *arg = first index of max(et).
void d_exp32(const int32_t* zb, int32_t mx, const int32_t* table, int32_t last, int32_t* et, int n, int64_t* sum,
             int* arg) {
  int64_t s = 0, key = -1;
  for (int i = 0; i < n; ++i) {
    int32_t d = mx - zb[i];
    d = d < last ? d : last;
    const int32_t v = table[d];
    et[i] = v;
    s += v;
    const int64_t k = (int64_t(v) << ARG_BITS) | (ARG_MASK - i);
    key = k > key ? k : key;
  }
  *sum = s;
  *arg = int(ARG_MASK - (key & ARG_MASK));
}

// The biased teacher's frequencies are f = 1 + floor(et * r / 2**32) (+ the remainder at its first
// maximum); here: sum of the floors, and sum(et >> sh) (the mixture's teacher mass).
void d_teacher_sums(const int32_t* et, int n, int64_t r, int sh, int64_t* fsum, int64_t* st) {
  int64_t a = 0, b = 0;
  const uint64_t rr = uint64_t(r);
  for (int i = 0; i < n; ++i) {
    a += int64_t((uint64_t(uint32_t(et[i])) * rr) >> 32);
    b += uint32_t(et[i]) >> sh;
  }
  *fsum = a;
  *st = b;
}

// f itself as an output row (the mixture had nothing to add): 1 + floor(et * r / 2**32).
int64_t d_teacher_out(const int32_t* et, int n, int64_t r, int32_t* out) {
  int64_t s = 0;
  const uint64_t rr = uint64_t(r);
  for (int i = 0; i < n; ++i) {
    const int64_t x = int64_t((uint64_t(uint32_t(et[i])) * rr) >> 32);
    out[i] = int32_t(x + 1);
    s += x;
  }
  return s;
}

// The mixture's dense part g = (((et >> sh) * dense) >> sh2): sum, and the max-key of g.
void d_mix_sum_arg(const int32_t* et, int n, int sh, int64_t dense, int sh2, int64_t* sum, int64_t* key) {
  int64_t s = 0, kmax = -1;
  const uint64_t dd = uint64_t(dense);
  for (int i = 0; i < n; ++i) {
    const int64_t g = int64_t(((uint64_t(uint32_t(et[i]) >> sh)) * dd) >> sh2);
    s += g;
    const int64_t k = (g << ARG_BITS) | (ARG_MASK - i);
    kmax = k > kmax ? k : kmax;
  }
  *sum = s;
  *key = kmax;
}

// out = 1 + floor(g * r2 / 2**32) for the dense part g; returns the sum of the floors.
int64_t d_mix_out(const int32_t* et, int n, int sh, int64_t dense, int sh2, int64_t r2, int32_t* out) {
  int64_t s = 0;
  const uint64_t dd = uint64_t(dense), rr = uint64_t(r2);
  for (int i = 0; i < n; ++i) {
    const uint64_t g = ((uint64_t(uint32_t(et[i]) >> sh)) * dd) >> sh2;
    const int64_t x = int64_t((g * rr) >> 32);  // g * r2 < 2**56 (see predictor.cpp)
    out[i] = int32_t(x + 1);
    s += x;
  }
  return s;
}

// The unigram bias step for every token: u -= (f * lr) >> 16 with f = 1 + floor(et * r / 2**32)
// (the first maximum's remainder is added by the caller); and the tokens with f >= thr, ascending.
int d_unigram_step32(int32_t* u, const int32_t* et, int n, int64_t r, int64_t lr, int64_t thr, int32_t* sel) {
  const uint64_t rr = uint64_t(r), ll = uint64_t(lr);
  int c = 0, i = 0;
  for (; i + 16 <= n; i += 16) {
    int any = 0;
    for (int j = 0; j < 16; ++j) {
      const uint64_t f = ((uint64_t(uint32_t(et[i + j])) * rr) >> 32) + 1;
      u[i + j] -= int32_t((f * ll) >> 16);
      any |= int64_t(f) >= thr;
    }
    if (!any) continue;
    for (int j = 0; j < 16; ++j)
      if (int64_t(((uint64_t(uint32_t(et[i + j])) * rr) >> 32) + 1) >= thr) sel[c++] = i + j;
  }
  for (; i < n; ++i) {
    const uint64_t f = ((uint64_t(uint32_t(et[i])) * rr) >> 32) + 1;
    u[i] -= int32_t((f * ll) >> 16);
    if (int64_t(f) >= thr) sel[c++] = i;
  }
  return c;
}

// Tokens with f >= thr only (no bias step: unigram learning off).
int d_select_teacher(const int32_t* et, int n, int64_t r, int64_t thr, int32_t* sel) {
  const uint64_t rr = uint64_t(r);
  int c = 0, i = 0;
  for (; i + 16 <= n; i += 16) {
    int any = 0;
    for (int j = 0; j < 16; ++j) any |= int64_t(((uint64_t(uint32_t(et[i + j])) * rr) >> 32) + 1) >= thr;
    if (!any) continue;
    for (int j = 0; j < 16; ++j)
      if (int64_t(((uint64_t(uint32_t(et[i + j])) * rr) >> 32) + 1) >= thr) sel[c++] = i + j;
  }
  for (; i < n; ++i)
    if (int64_t(((uint64_t(uint32_t(et[i])) * rr) >> 32) + 1) >= thr) sel[c++] = i;
  return c;
}

void d_clip32(int32_t* u, int32_t lim, int n) {
  for (int i = 0; i < n; ++i) {
    const int32_t v = u[i] < -lim ? -lim : u[i];
    u[i] = v > lim ? lim : v;
  }
}

// ---- predictor numerics version 3 (adapt.py: exp3 and the fused output pass) ---------------------

// 2**30 * e**(-d / 1024), computed instead of looked up (a gather per entry cost more than the rest
// of the predictor): d in 2**-16 bits is t = (d * 94548) >> 10, and 2**-t = 2**-(t >> 16) times a
// degree-4 polynomial in the fraction (15 bits, Horner, arithmetic shifts: floor). d is clamped
// to 32767 (t < 2**22); from 2**30 * 2**-30 on the value is 0.
inline int32_t exp3(uint32_t d) {
  d = d < 32767u ? d : 32767u;
  const uint32_t t = (d * 94548u) >> 10;
  const uint32_t n = t >> 16;
  const int32_t x = int32_t((t & 0xFFFFu) >> 1);
  int32_t p = 225;
  p = -1745 + ((p * x) >> 15);  // |p * x| < 2**30
  p = 7847 + ((p * x) >> 15);
  p = -22710 + ((p * x) >> 15);
  const int32_t m = 32768 + ((p * x) >> 15);  // 16383..32768
  return int32_t((uint32_t(m) << 15) >> (n < 31u ? n : 31u));
}

// The SIMD passes compute exp3 in uint16 lanes (twice the lanes, and no 32-bit multiply), the
// same integers by these identities, for d <= 32767 after the cap:
//   d * 94548 = d * 2**16 + d * 29012; with hi, lo the high and low 16 bits of d * 29012 and
//   S = d + hi (< 2**16): t = 64 S + (lo >> 10), so t >> 16 = S >> 10, and
//   y = 2x = (t & 0xFFFF) & ~1 = (S << 6 mod 2**16) | ((lo >> 10) & 0x3E);
//   floor(p x / 2**15) = floor(p y / 2**16) = mulhi(p, y as int16) + (p if y >= 2**15): every
//   Horner step's p and result fit int16, and m = 32768 + F wraps into uint16 exactly;
//   (m << 15) >> min(n, 31) = (m << 16) >> (min(n, 31) + 1) in uint32 (m << 16 <= 2**31).
// In place: et = exp3(top - q) in uint32 arithmetic; returns sum(et); *arg = the first index where
// q == top (n if none).
int64_t d_exp3_rel(int32_t* q, int32_t top, int n, int* arg) {
  int64_t s = 0;
  int a = n;
  for (int i = 0; i < n; ++i) {
    const uint32_t d = uint32_t(top) - uint32_t(q[i]);
    if (d == 0 && a == n) a = i;
    const int32_t v = exp3(d);
    q[i] = v;
    s += v;
  }
  *arg = a;
  return s;
}

// The output pass of version 3, one read of et for everything that needs the whole vocabulary:
//   x = floor(g * r2 / 2**32) with g = ((et >> sh) * dense) >> sh2   (mix)
//   x = floor(et * r / 2**32)                                          (the teacher alone)
//   out = x + 1; returns sum(x)
//   u -= (f * lr) >> 16 with f = 1 + floor(et * r / 2**32)              (u: the unigram step)
//   sel: the indices with f >= thr, ascending; *nsel their count      (sel)
//   bm: the maxima of out's blocks of TOPK_BLOCK entries              (bm)
template <bool MIX, bool UNI, bool SEL>
int64_t d_out3_t(const Out3Args& a, int* nsel) {
  const uint64_t rr = uint64_t(a.r), ll = uint64_t(a.lr), dd = uint64_t(a.dense), r2 = uint64_t(a.r2);
  int64_t s = 0;
  int c = 0;
  for (int i = 0; i < a.n; ++i) {
    const uint64_t e = uint32_t(a.et[i]);
    const uint64_t ft = ((e * rr) >> 32) + 1;
    int64_t x;
    if (MIX) {
      x = int64_t(((((e >> a.sh) * dd) >> a.sh2) * r2) >> 32);
    } else {
      x = int64_t(ft - 1);
    }
    a.out[i] = int32_t(x + 1);
    s += x;
    if (UNI) a.u[i] -= int32_t((ft * ll) >> 16);
    if (SEL && int64_t(ft) >= a.thr) a.sel[c++] = i;
  }
  *nsel = c;
  if (a.bm) d_block_max32(a.out, a.n, a.bm);
  return s;
}

// Out3Args' three switches (the mixture, the unigram step, the selection) as template arguments:
// P::template pass<MIX, UNI, SEL>, one instantiation per combination (each level's out3 uses it).
template <class P>
int64_t out3_dispatch(const Out3Args& a, int* nsel) {
  const bool uni = a.u != nullptr, sel = a.sel != nullptr;
  *nsel = 0;
  if (a.mix) {
    if (uni) return sel ? P::template pass<true, true, true>(a, nsel) : P::template pass<true, true, false>(a, nsel);
    return sel ? P::template pass<true, false, true>(a, nsel) : P::template pass<true, false, false>(a, nsel);
  }
  if (uni) return sel ? P::template pass<false, true, true>(a, nsel) : P::template pass<false, true, false>(a, nsel);
  return sel ? P::template pass<false, false, true>(a, nsel) : P::template pass<false, false, false>(a, nsel);
}

struct DOut3 {
  template <bool MIX, bool UNI, bool SEL>
  static int64_t pass(const Out3Args& a, int* nsel) { return d_out3_t<MIX, UNI, SEL>(a, nsel); }
};
int64_t d_out3(const Out3Args& a, int* nsel) { return out3_dispatch<DOut3>(a, nsel); }

// ---- the forward pass's elementwise steps (model.cpp; each the reference's IEEE operations in the
// reference's order, so vectorizing them changes no bit) --------------------------------------------

// int16 quantisation of rows [M, K] into q [M, Kp] (zero padding): s = max(max|row|, 1e-300) / 32639.
void e_quantize(const double* x, int M, int K, int16_t* q, int Kp, double* s) {
  for (int m = 0; m < M; ++m) {
    const double* r = x + size_t(m) * K;
    double amax = 0;
    for (int k = 0; k < K; ++k) {
      const double a = r[k] < 0 ? -r[k] : r[k];
      amax = a > amax ? a : amax;
    }
    const double sc = (amax > 1e-300 ? amax : 1e-300) / 32639.0;  // clamp_min_(1e-300), then / ACT_MAX
    int16_t* o = q + size_t(m) * Kp;
    for (int k = 0; k < K; ++k) {
      double v = __builtin_nearbyint(r[k] / sc);
      v = v < -32639.0 ? -32639.0 : (v > 32639.0 ? 32639.0 : v);
      o[k] = int16_t(v);
    }
    for (int k = K; k < Kp; ++k) o[k] = 0;
    s[m] = sc;
  }
}

// y = clamp(round(y * 2**12), +-2**20): the query/key/value fixed point.
void e_fix(double* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const double v = __builtin_nearbyint(y[i] * 4096.0);
    y[i] = v < -1048576.0 ? -1048576.0 : (v > 1048576.0 ? 1048576.0 : v);
  }
}

// RoPE of one head x [2 * half] at one position: [x1 c - x2 s, x2 c + x1 s] / 2**16, rounded, clamped.
void e_rope(const double* x, const double* c, const double* sn, int half, double* out) {
  for (int i = 0; i < half; ++i) {
    const double x1 = x[i], x2 = x[half + i];
    double a = __builtin_nearbyint((x1 * c[i] - x2 * sn[i]) * (1.0 / 65536));
    double b = __builtin_nearbyint((x2 * c[i] + x1 * sn[i]) * (1.0 / 65536));
    out[i] = a < -1048576.0 ? -1048576.0 : (a > 1048576.0 ? 1048576.0 : a);
    out[half + i] = b < -1048576.0 ? -1048576.0 : (b > 1048576.0 ? 1048576.0 : b);
  }
}

// h = h + round(y * 2**16): a sublayer's output into the fixed-point residual stream.
void e_residual(double* h, const double* y, size_t n) {
  for (size_t i = 0; i < n; ++i) h[i] = h[i] + __builtin_nearbyint(y[i] * 65536.0);
}

// a = (g * (sigmoid[round(g * 1024) clamped] * 2**-24)) * u for the gate g and up u of each row.
void e_silu(const double* gu, int M, int F, const double* sig, double* a) {
  for (int m = 0; m < M; ++m) {
    const double* g = gu + size_t(m) * 2 * F;
    const double* u = g + F;
    double* o = a + size_t(m) * F;
    for (int i = 0; i < F; ++i) {
      double gi = __builtin_nearbyint(g[i] * 1024.0);
      gi = gi < -16384.0 ? -16384.0 : (gi > 16384.0 ? 16384.0 : gi);
      const double sg = sig[int(gi) + 16384] * (1.0 / 16777216);
      o[i] = (g[i] * sg) * u[i];  // SiLU(g) * u = (g * sigmoid(g)) * u
    }
  }
}
