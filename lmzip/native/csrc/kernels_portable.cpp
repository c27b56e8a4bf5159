// Portable kernels: plain C++, any CPU. The reference point the SIMD kernels are checked against.
#include <cmath>

#include "kernels.h"

namespace lmz {
namespace {
#include "dense_impl.h"
}  // namespace

const DenseKernels dense_portable = {d_max, d_exp_weights, d_scale<int32_t>, d_sum32, d_top_k,
                                d_bias_logits, d_bias_logits32, d_exp_rel, d_find32, d_block_max32, d_select_ge32, d_exp32, d_teacher_sums, d_teacher_out, d_mix_sum_arg, d_mix_out,
                                d_unigram_step32, d_select_teacher, d_clip32, d_exp3_rel, d_out3,
                                e_quantize, e_fix, e_rope, e_residual, e_silu};

namespace {

void matmul(const MatmulArgs& a) {
  for (int m = 0; m < a.M; ++m) {
    const int16_t* x = a.x + m * a.ldx;
    for (int n = a.n0; n < a.n1; ++n) {
      const int8_t* w = a.w + packed_offset(n, 0, a.K);
      int64_t acc = 0;
      for (int c = 0; c < a.K; c += K_ALIGN) {
        const int8_t* wc = w + size_t(c / K_ALIGN) * (PACK_ROWS * K_ALIGN);
        for (int k = 0; k < K_ALIGN; ++k) acc += int32_t(x[c + k]) * int32_t(wc[k]);
      }
      const double r = (double(acc) * a.scale[n]) * a.kf[m];
      if (a.y) a.y[m * a.ldy + n] = r;
      if (a.yi) a.yi[m * a.ldy + n] = int64_t(std::nearbyint(r));
      if (a.yi32) {
        const bool big = !(r >= -LOGIT32_LIMIT && r <= LOGIT32_LIMIT);
        if (big) __atomic_store_n(a.clipped, 1, __ATOMIC_RELAXED);
        a.yi32[m * a.ldy + n] = big ? 0 : int32_t(std::nearbyint(r));
      }
    }
  }
}

void scores(const ScoreArgs& a) {
  for (int g = 0; g < a.G; ++g) {
    const double* q = a.q + g * a.hdp;
    for (int j = a.j0; j < a.j1; ++j) {
      const int16_t* blk = a.kblk + size_t(j / KEY_BLOCK) * a.hdp * KEY_BLOCK;
      int64_t acc = 0;  // |q|, |k| <= 2**20: exact in int64 as in float64
      for (int d = 0; d < a.hdp; ++d) acc += int64_t(q[d]) * blk[key_entry(j, d)];
      a.s[g * a.lds + j] = double(acc);
    }
  }
  if (!a.kmask) return;
  for (int blk = a.j0 / KEY_BLOCK; blk * KEY_BLOCK < a.j1; ++blk)
    for (int w = 0; w < a.kmw; ++w)
      for (uint64_t m = a.kmask[size_t(blk) * a.kmw + w]; m; m &= m - 1) {
        const int d = w * 64 + __builtin_ctzll(m);
        const int32_t* r = a.kres + size_t(d) * a.kres_stride + size_t(blk) * KEY_BLOCK;
        for (int g = 0; g < a.G; ++g) {
          double* s = a.s + g * a.lds + size_t(blk) * KEY_BLOCK;
          for (int i = 0; i < KEY_BLOCK; ++i) s[i] += a.q[g * a.hdp + d] * double(r[i]);  // integers: exact
        }
      }
}

void mix(const MixArgs& a) {
  for (int g = 0; g < a.G; ++g) {
    double* num = a.num + g * a.hdp;
    for (int j = a.j0; j < a.j1; ++j) {
      const double e = a.e[g * a.lde + j];
      if (e == 0) continue;
      const int16_t* v = a.v + size_t(j) * a.hdp;
      for (int d = 0; d < a.hdp; ++d) num[d] += e * double(v[d]);  // integers < 2**53: exact
      if (!a.vmask) continue;
      for (uint64_t m = a.vmask[j]; m; m &= m - 1) {
        const int grp = __builtin_ctzll(m);
        const int32_t* r = a.vres + (size_t(grp) * a.vres_stride + size_t(j)) * 8;
        for (int i = 0; i < 8; ++i) num[grp * 8 + i] += e * double(r[i]);
      }
    }
  }
}

int64_t weights(const WeightArgs& a) {
  int64_t z = 0;
  for (int64_t j = 0; j < a.n; ++j) {
    if (j < a.lim) {
      const double idx = std::nearbyint((a.top - a.s[j]) * a.scale);
      const double e = a.table[idx < double(a.last) ? int64_t(idx) : a.last];
      a.s[j] = e;
      z += int64_t(e);
    } else {
      a.s[j] = 0;
    }
  }
  return z;
}

}  // namespace

void split_query_pairs(const double* q, int G, int hdp, int32_t* qh, int32_t* ql) {
  const int np = hdp / 2;
  for (int g = 0; g < G; ++g)
    for (int p = 0; p < np; ++p) {
      uint32_t hi[2], lo[2];
      for (int t = 0; t < 2; ++t) {
        const int32_t x = int32_t(q[g * hdp + 2 * p + t]);
        const int32_t h = x >> 10;  // arithmetic: x = 1024 h + (x - 1024 h), the rest in [0, 1024)
        hi[t] = uint16_t(h), lo[t] = uint16_t(x - h * 1024);
      }
      qh[g * np + p] = int32_t(hi[0] | (hi[1] << 16));
      ql[g * np + p] = int32_t(lo[0] | (lo[1] << 16));
    }
}

void matmul_portable(const MatmulArgs& a) { matmul(a); }
void scores_portable(const ScoreArgs& a) { scores(a); }
void mix_portable(const MixArgs& a) { mix(a); }
int64_t weights_portable(const WeightArgs& a) { return weights(a); }
double row_max_portable(const double* s, int64_t n) {
  double m = -__builtin_inf();
  for (int64_t j = 0; j < n; ++j) m = m < s[j] ? s[j] : m;
  return m;
}

}  // namespace lmz
