// Known-answer checks of the SIMD kernels against the portable ones, once per process.
//
// Every SIMD level must return the portable kernels' bits. The tests cover that on the machines
// CI runs on; this check covers machines nobody here ran (AVX-512 VNNI, for instance): before a
// level is used, its kernels run on small random problems (edge values included, K beyond one
// accumulation block) and any difference drops to the next lower level, with one line on stderr.
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "kernels.h"
#include "model.h"

namespace lmz {

namespace {

struct Rng {
  uint64_t s;
  uint32_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return uint32_t(s >> 33);
  }
  int32_t range(int32_t lo, int32_t hi) { return lo + int32_t(next() % uint32_t(hi - lo + 1)); }
};

bool same_matmul(const Kernels& k, Rng& r) {
  for (const int M : {1, 2, 5, 7, 16}) {  // 16: two tiles of six rows and one of four
    for (const int K : {64, 2112}) {  // 2112: several K blocks at every level (int32 lanes flushed to int64)
      for (const int N : {24, 21}) {  // 21: a last group with padding rows (masked epilogues)
        std::vector<int8_t> rows(size_t(N) * K);
        for (auto& w : rows) w = int8_t(r.range(-128, 127));
        std::vector<float> sc(static_cast<size_t>(N));
        for (auto& s : sc) s = float(r.range(1, 1000)) / 997.0f;
        if (K > 2048) {  // a weight row that meets the extreme activation row: the largest lane sums
          // a K block can hold (both reductions add four lanes in int32, blocks of 1024 and 2048), beyond LOGIT32_LIMIT
          std::fill(rows.begin(), rows.begin() + K, int8_t(-128));
          sc[0] = 1.0f;
        }
        Linear L;
        L.set(rows.data(), sc.data(), N, K);
        std::vector<int16_t> x(size_t(M) * K);
        for (auto& v : x) v = int16_t(r.range(-32639, 32639));
        if (M > 1) std::fill(x.begin(), x.begin() + K, int16_t(32639));  // the extreme row
        std::vector<double> kf(static_cast<size_t>(M));
        for (auto& f : kf) f = double(r.range(1, 1 << 20)) / 1048573.0;
        kf[0] = 1.0;
        std::vector<double> y0(size_t(M) * N), y1(y0.size());
        std::vector<int64_t> i0(y0.size()), i1(y0.size());
        MatmulArgs a{x.data(), size_t(K), M, L.q(), L.Kp, L.scale.data(), kf.data(), 0, N, y0.data(), i0.data(), size_t(N)};
        matmul_portable(a);
        a.y = y1.data();
        a.yi = i1.data();
        k.matmul(a);
        if (std::memcmp(y0.data(), y1.data(), y0.size() * sizeof(double)) || i0 != i1) return false;
        // int32 logits: the same integers where |y| <= LOGIT32_LIMIT, else 0 and the flag set
        std::vector<int32_t> j1(y0.size(), 7);
        int clipped = 0;
        bool any_big = false;
        MatmulArgs b{x.data(), size_t(K), M, L.q(), L.Kp, L.scale.data(), kf.data(), 0, N, nullptr, nullptr, size_t(N), j1.data(), &clipped};
        k.matmul(b);
        for (size_t e = 0; e < y0.size(); ++e) {
          const bool big = !(y0[e] >= -LOGIT32_LIMIT && y0[e] <= LOGIT32_LIMIT);
          any_big |= big;
          if (j1[e] != (big ? 0 : i0[e])) return false;
        }
        if (clipped != int(any_big)) return false;
      }
    }
  }
  return true;
}

bool same_attention_shape(const Kernels& k, Rng& r, int hdp) {
  const int L = 45;
  const int blocks = (L + KEY_BLOCK - 1) / KEY_BLOCK;
  std::vector<int16_t> keys(size_t(blocks) * hdp * KEY_BLOCK), vals(size_t(L) * hdp);
  for (auto& v : keys) v = int16_t(r.range(-KV_NARROW, KV_NARROW));
  for (auto& v : vals) v = int16_t(r.range(-KV_NARROW, KV_NARROW));
  keys[0] = vals[0] = -KV_NARROW, keys[1] = vals[1] = KV_NARROW;
  for (int i = 0; i < hdp * KEY_BLOCK; ++i) keys[size_t(hdp * KEY_BLOCK + i)] = -KV_NARROW;  // block 1
  // Remainders beyond int16 in a few marked vectors (and zeros under some marks, as stale bits leave).
  const int kmw = (hdp + 63) / 64;
  const size_t rstride = size_t(blocks) * KEY_BLOCK;
  std::vector<uint64_t> kmask(size_t(blocks) * kmw, 0), vmask(rstride, 0);
  std::vector<int32_t> kres(size_t(hdp) * rstride, 0), vres(size_t(hdp) * rstride, 0);
  for (int t = 0; t < 3 * blocks; ++t) {
    const int b = r.range(0, blocks - 1), d = r.range(0, hdp - 1), j = r.range(0, L - 1), grp = r.range(0, hdp / 8 - 1);
    kmask[size_t(b) * kmw + d / 64] |= uint64_t(1) << (d % 64);
    vmask[size_t(j)] |= uint64_t(1) << grp;
    for (int i = 0; i < KEY_BLOCK; ++i) {
      if (t % 4) kres[size_t(d) * rstride + size_t(b) * KEY_BLOCK + i] = r.range(-(1 << 20) + KV_NARROW, (1 << 20) - KV_NARROW);
      if (t % 5) vres[(size_t(grp) * rstride + size_t(j)) * 8 + i] = r.range(-(1 << 20) + KV_NARROW, (1 << 20) - KV_NARROW);
    }
  }
  for (const int G : {1, 3, 6, 12}) {
    std::vector<double> q(size_t(G) * hdp);
    for (auto& v : q) v = double(r.range(-(1 << 20), 1 << 20));
    // The integer scores' extremes: rows of +-2**20 and 2**20 - 1 against a block of -KV_NARROW.
    for (int d = 0; d < hdp; ++d) {
      q[size_t(d)] = double(1 << 20);
      if (G > 1) q[size_t(hdp + d)] = -double(1 << 20);
      if (G > 2) q[size_t(2 * hdp + d)] = double((1 << 20) - 1);
    }
    const size_t lds = size_t(blocks) * KEY_BLOCK;
    std::vector<double> s0(size_t(G) * lds, 0.0), s1(s0);
    const ScoreArgs sa{q.data(), G, hdp, keys.data(), 0, L, s0.data(), lds, kmask.data(), kmw, kres.data(), rstride};
    ScoreArgs sb = sa;
    sb.s = s1.data();
    scores_portable(sa);
    k.scores(sb);
    for (int g = 0; g < G; ++g)
      if (std::memcmp(s0.data() + g * lds, s1.data() + g * lds, size_t(L) * sizeof(double))) return false;
    // Weights: exp-like table, a row limit inside the range.
    std::vector<double> table(300);
    for (size_t i = 0; i < table.size(); ++i) table[i] = double((1 << 20) >> (i / 16));
    table.back() = 0;
    std::vector<double> w0(s0), w1(s0);
    for (int g = 0; g < G; ++g) {
      const double top = row_max_portable(s0.data() + g * lds, L);
      for (const int n : {0, 1, 7, 8, 15, 16, 17, L})  // the row max's vector bodies and tails
        if (k.row_max(s0.data() + g * lds, n) != row_max_portable(s0.data() + g * lds, n)) return false;
      const int64_t lim = 1 + (g * 7) % L;
      const WeightArgs wa0{w0.data() + g * lds, L, lim, top, 1.0 / (1 << 14), table.data(), int64_t(table.size()) - 1};
      WeightArgs wa1 = wa0;
      wa1.s = w1.data() + g * lds;
      if (weights_portable(wa0) != k.weights(wa1)) return false;
    }
    if (w0 != w1) return false;
    std::vector<double> n0(size_t(G) * hdp, 0.0), n1(n0);
    const MixArgs ma{w0.data(), lds, G, hdp, vals.data(), 0, L, n0.data(), vmask.data(), vres.data(), rstride};
    MixArgs mb = ma;
    mb.num = n1.data();
    mix_portable(ma);
    k.mix(mb);
    if (n0 != n1) return false;
    // Weights from the table above are mostly 0 or multiples of 1024 (so their low parts are 0):
    // random integers in [0, 2**20] exercise both parts of the integer mixes' split.
    std::vector<double> e(w0.size());
    for (auto& x : e) x = double(r.range(0, 1 << 20));
    std::fill(n0.begin(), n0.end(), 0.0), std::fill(n1.begin(), n1.end(), 0.0);
    MixArgs ea = ma, eb = mb;
    ea.e = eb.e = e.data();
    mix_portable(ea);
    k.mix(eb);
    if (n0 != n1) return false;
  }
  return true;
}

// The integer mixes' bound: whole blocks of 64 keys whose weights are all 2**20 (the table's
// largest) against values of -KV_NARROW or KV_NARROW, the largest int32 lane sums a block can hold.
// G = 5: AVX2's tiles of three rows and of two; G = 8: AVX-512's of six and two. hdp = 24: AVX2's
// passes of 16 dimensions and of 8, AVX-512's one masked pass; hdp = 72: AVX-512's passes of 32
// (six rows) or 64 (two or three) and a masked 8.
bool same_mix_extremes_shape(const Kernels& k, Rng& r, int G, int hdp) {
  const int L = 131;
  std::vector<int16_t> vals(size_t(L) * hdp);
  for (size_t i = 0; i < vals.size(); ++i)  // keys 0-127: -KV_NARROW (sums of one sign), then +KV_NARROW
    vals[i] = i < size_t(128) * hdp ? int16_t(-KV_NARROW) : int16_t(KV_NARROW);
  std::vector<double> e(size_t(G) * L);
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < L; ++j)
      e[size_t(g) * L + j] = g % 3 == 0 ? double(1 << 20) : g % 3 == 1 ? double((1 << 20) - 1) : double(r.range(0, 1 << 20));
  for (int j = 64; j < 128; ++j) e[size_t(2) * L + j] = 0;  // a block of zero weights in one row of a tile
  std::vector<double> n0(size_t(G) * hdp, 0.0), n1(n0);
  const MixArgs ma{e.data(), size_t(L), G, hdp, vals.data(), 0, L, n0.data(), nullptr, nullptr, 0};
  MixArgs mb = ma;
  mb.num = n1.data();
  mix_portable(ma);
  k.mix(mb);
  return n0 == n1;
}

bool same_mix_extremes(const Kernels& k, Rng& r) {
  return same_mix_extremes_shape(k, r, 5, 24) && same_mix_extremes_shape(k, r, 8, 72) && same_mix_extremes_shape(k, r, 3, 72);
}

bool same_attention(const Kernels& k, Rng& r) {
  for (const int hdp : {16, 72})  // 72: passes of 32 dimensions and of 8 (AVX-512 mix)
    if (!same_attention_shape(k, r, hdp)) return false;
  return same_mix_extremes(k, r);
}

}  // namespace

int verified_simd(int wanted) {
  static std::mutex mu;
  static int checked[3] = {-1, -1, -1};  // per level: unknown, 0 failed, 1 passed
  std::lock_guard<std::mutex> lock(mu);
  int level = std::max(0, std::min(wanted, best_simd()));
  for (; level > SIMD_PORTABLE; --level) {
    if (checked[level] < 0) {
      Rng r{0x6c6d7a6970ULL + uint64_t(level)};
      const Kernels k = kernels_for(level);
      checked[level] = same_matmul(k, r) && same_attention(k, r);
      if (!checked[level])
        std::fprintf(stderr, "lmzip: %s kernels disagree with the portable ones on this CPU; not using them\n",
                     simd_name(level));
    }
    if (checked[level]) break;
  }
  return level;
}

}  // namespace lmz
