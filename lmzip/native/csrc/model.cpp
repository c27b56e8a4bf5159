// The exact forward pass (see model.h). Mirrors ExactModel in lmzip/exact_model.py line by line:
// the comments name the reference's operation where the order matters.
#include "model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lmz {

namespace {
constexpr double ACT_MAX = 32639.0;
constexpr double RES_SCALE = 65536.0;     // 2**RES_BITS
constexpr double QK_SCALE = 4096.0;       // 2**QK_BITS
constexpr double QK_LIMIT = 1048576.0;    // 2**20
constexpr double ROPE_INV = 1.0 / 65536;  // 2**-ROPE_BITS
constexpr double V_INV = 1.0 / 4096;      // 2**-V_BITS
constexpr double SIG_INV = 1.0 / 16777216;  // 2**-SIG_BITS
constexpr int SIG_HALF = 16 << 10;        // SIG_RANGE << SIG_STEP_BITS
constexpr int64_t TOTAL = int64_t(1) << 24;

inline size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }
inline double clampd(double x, double lim) { return x < -lim ? -lim : (x > lim ? lim : x); }
}  // namespace

// -- weights and cache ------------------------------------------------------------------------

namespace {
constexpr size_t HUGE_PAGE = size_t(2) << 20;
}

Bytes::~Bytes() { release(); }

void Bytes::release() {
#if defined(__linux__)
  if (mapped_) {
    munmap(p_, mapped_);
    p_ = nullptr, mapped_ = 0, n_ = 0;
    return;
  }
#endif
  std::free(p_);
  p_ = nullptr, n_ = 0;
}

void Bytes::assign_zero(size_t n, bool huge) {
  release();
  n_ = n;
  if (!n) return;
#if defined(__linux__)
  if (!huge && n >= (size_t(64) << 10)) {
    // Zero pages that cost nothing until written; small ones, so a write touches 4 KB, not 2 MB.
    const size_t cap = round_up(n, 4096);
    void* p = mmap(nullptr, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_NOHUGEPAGE)
    madvise(p, cap, MADV_NOHUGEPAGE);
#endif
    p_ = static_cast<int8_t*>(p);
    mapped_ = cap;
    return;
  }
  if (huge && n >= HUGE_PAGE) {
    // Fresh anonymous pages are zero already (no memset pass over 134 MB), and 2 MB-aligned so
    // the kernel can back them with huge pages.
    const size_t cap = round_up(n, HUGE_PAGE);
    void* p = mmap(nullptr, cap + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    char* base = static_cast<char*>(p);
    char* aligned = reinterpret_cast<char*>(round_up(reinterpret_cast<size_t>(base), HUGE_PAGE));
    if (aligned > base) munmap(base, size_t(aligned - base));
    const size_t tail = size_t(base + cap + HUGE_PAGE - (aligned + cap));
    if (tail) munmap(aligned + cap, tail);
#if defined(MADV_HUGEPAGE)
    madvise(aligned, cap, MADV_HUGEPAGE);  // a hint: without it the kernel may use 4 KB pages
#endif
    p_ = reinterpret_cast<int8_t*>(aligned);
    mapped_ = cap;
    return;
  }
#endif
  void* p = nullptr;
  const size_t cap = round_up(n, 64);
  if (posix_memalign(&p, 64, cap) != 0 || !p) throw std::bad_alloc();
  std::memset(p, 0, cap);
  p_ = static_cast<int8_t*>(p);
}

size_t Linear::packed_size(int n, int k) {
  return round_up(round_up(size_t(n), PACK_ROWS) * round_up(size_t(k), K_ALIGN), 64);
}

void Linear::set(const int8_t* data, const float* scales, int n, int k) {
  N = n;
  K = k;
  Kp = int(round_up(size_t(k), K_ALIGN));
  scale.assign(scales, scales + n);  // float32 -> float64, as the reference's .to(float64)
  if (!arena) {
    bytes.assign_zero(packed_size(n, k));
    arena = bytes.data();
  }
  int8_t* out = arena;
  const int full = k / K_ALIGN * K_ALIGN;  // whole chunks: fixed-size copies, inlined
  for (int r = 0; r < n; ++r) {
    const int8_t* src = data + size_t(r) * k;
    int8_t* dst = out + packed_offset(r, 0, Kp);
    for (int c = 0; c < full; c += K_ALIGN)
      std::memcpy(dst + size_t(c / K_ALIGN) * (PACK_ROWS * K_ALIGN), src + c, size_t(K_ALIGN));
    if (full < k) std::memcpy(out + packed_offset(r, full, Kp), src + full, size_t(k - full));
  }
}

void Linear::set_rows(const int8_t* data, const float* scales, int n, int k) {
  N = n;
  K = k;
  Kp = int(round_up(size_t(k), K_ALIGN));
  scale.assign(scales, scales + n);
  bytes.assign_zero(size_t(n) * Kp);
  for (int r = 0; r < n; ++r) std::memcpy(bytes.data() + size_t(r) * Kp, data + size_t(r) * k, size_t(k));
}

Cache::Cache(int b, int cap, int l, int hk, int hd)
    : batch(b), capacity(std::max(cap, 1)), layers(l), kv_heads(hk), hdp(hd),
      stride(int(round_up(size_t(std::max(cap, 1)), KEY_BLOCK))), kmw((hd + 63) / 64) {
  if (hdp % HD_ALIGN || hdp > 64 * 8) throw std::invalid_argument("cache head dimension");
  const size_t n = size_t(layers) * batch * stream_elems();
  const size_t heads = size_t(layers) * batch * kv_heads;
  k.assign(n, 0);
  v.assign(n, 0);
  kmask.assign(heads * size_t(stride / KEY_BLOCK) * kmw, 0);
  vmask.assign(heads * size_t(stride), 0);
  kres.assign_zero(n * sizeof(int32_t), false);
  vres.assign_zero(n * sizeof(int32_t), false);
  lengths.assign(size_t(batch), 0);
}

namespace {
// x = narrow + remainder, narrow = clamp(x, -KV_NARROW, KV_NARROW) (the same sign: |narrow| and
// |remainder| never exceed |x|, so every partial sum of the split products stays within the
// bound of the unsplit ones, below 2**53, and is exact).
inline int16_t narrow_part(int32_t x) { return int16_t(x < -KV_NARROW ? -KV_NARROW : (x > KV_NARROW ? KV_NARROW : x)); }
}  // namespace

void Cache::put_key(int layer, int b, int g, int64_t p, const double* x, int hd) {
  int16_t* kb = keys(layer, b, g) + size_t(p / KEY_BLOCK) * hdp * KEY_BLOCK;
  uint64_t* mask = key_mask(layer, b, g) + size_t(p / KEY_BLOCK) * kmw;
  int32_t* res = key_res(layer, b, g);
  for (int i = 0; i < hd; ++i) {
    const int32_t xi = int32_t(x[i]);
    const int16_t nx = narrow_part(xi);
    kb[key_entry(int(p % KEY_BLOCK), i)] = nx;
    const uint64_t bit = uint64_t(1) << (i % 64);
    uint64_t* w = mask + i / 64;
    if (xi != nx) __atomic_fetch_or(w, bit, __ATOMIC_RELAXED);
    if (xi != nx || (__atomic_load_n(w, __ATOMIC_RELAXED) & bit))  // keep the invariant (see model.h)
      res[size_t(i) * stride + size_t(p)] = xi - nx;
  }
}

void Cache::put_value(int layer, int b, int g, int64_t p, const double* x, int hd) {
  int16_t* vd = vals(layer, b, g) + size_t(p) * hdp;
  uint64_t& mask = val_mask(layer, b, g)[p];  // one position: one writer
  int32_t* res = val_res(layer, b, g);
  for (int i = 0; i < hd; ++i) {
    const int32_t xi = int32_t(x[i]);
    const int16_t nx = narrow_part(xi);
    vd[i] = nx;
    const uint64_t bit = uint64_t(1) << (i / 8);
    if (xi != nx) mask |= bit;
    if (mask & bit) res[(size_t(i / 8) * stride + size_t(p)) * 8 + i % 8] = xi - nx;
  }
}

std::pair<int64_t, int64_t> Cache::marked() const {
  int64_t kc = 0, vc = 0;
  for (uint64_t m : kmask) kc += __builtin_popcountll(m);
  for (uint64_t m : vmask) vc += __builtin_popcountll(m);
  return {kc, vc};
}

size_t Cache::nbytes() const {
  const auto mk = marked();
  return (k.size() + v.size()) * sizeof(int16_t) + (kmask.size() + vmask.size()) * sizeof(uint64_t) +
         size_t(mk.first + mk.second) * 8 * sizeof(int32_t);
}

void Cache::copy_stream(int slot, const Cache& o, int os) {
  if (&o == this && slot == os) return;
  if (o.layers != layers || o.kv_heads != kv_heads || o.hdp != hdp) throw std::invalid_argument("cache shapes differ");
  const int64_t n = o.lengths[size_t(os)];
  if (n > capacity) throw std::invalid_argument("stream longer than this cache");
  const size_t nb = round_up(size_t(n), KEY_BLOCK) / KEY_BLOCK;
  const size_t kn = nb * KEY_BLOCK * hdp, vn = size_t(n) * hdp;
  Cache& src = const_cast<Cache&>(o);  // read only: its accessors are not const
  for (int li = 0; li < layers; ++li)
    for (int g = 0; g < kv_heads; ++g) {
      std::memcpy(keys(li, slot, g), src.keys(li, os, g), kn * sizeof(int16_t));
      std::memcpy(vals(li, slot, g), src.vals(li, os, g), vn * sizeof(int16_t));
      // Masks: this stream's bits or the source's (see the invariant in model.h), and the
      // remainders of every marked vector from the source (zero where the source has no bit).
      uint64_t* km = key_mask(li, slot, g);
      const uint64_t* okm = src.key_mask(li, os, g);
      int32_t* kr = key_res(li, slot, g);
      const int32_t* okr = src.key_res(li, os, g);
      for (size_t blk = 0; blk < nb; ++blk)
        for (int w = 0; w < kmw; ++w) {
          uint64_t& m = km[blk * kmw + size_t(w)];
          m |= okm[blk * kmw + size_t(w)];
          for (uint64_t t = m; t; t &= t - 1) {
            const size_t d = size_t(w) * 64 + size_t(__builtin_ctzll(t));
            std::memcpy(kr + d * stride + blk * KEY_BLOCK, okr + d * o.stride + blk * KEY_BLOCK, KEY_BLOCK * sizeof(int32_t));
          }
        }
      uint64_t* vm = val_mask(li, slot, g);
      const uint64_t* ovm = src.val_mask(li, os, g);
      int32_t* vr = val_res(li, slot, g);
      const int32_t* ovr = src.val_res(li, os, g);
      for (int64_t j = 0; j < n; ++j) {
        vm[j] |= ovm[j];
        for (uint64_t t = vm[j]; t; t &= t - 1) {
          const size_t grp = size_t(__builtin_ctzll(t));
          std::memcpy(vr + (grp * stride + size_t(j)) * 8, ovr + (grp * o.stride + size_t(j)) * 8, 8 * sizeof(int32_t));
        }
      }
    }
  lengths[size_t(slot)] = n;
}

void Cache::keep(const std::vector<int>& slots) {
  Cache nc(int(slots.size()), capacity, layers, kv_heads, hdp);
  for (size_t i = 0; i < slots.size(); ++i) nc.copy_stream(int(i), *this, slots[i]);
  *this = std::move(nc);
}

// -- elementwise pieces -------------------------------------------------------------------------

void quantize_rows(const double* x, int M, int K, int16_t* q, int Kp, double* s) {
  for (int m = 0; m < M; ++m) {
    const double* r = x + size_t(m) * K;
    double amax = 0;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(r[k]));
    double sc = std::max(amax, 1e-300) / ACT_MAX;  // amax.clamp_min_(1e-300), then / 32639
    int16_t* o = q + size_t(m) * Kp;
    for (int k = 0; k < K; ++k) o[k] = int16_t(clampd(std::nearbyint(r[k] / sc), ACT_MAX));
    for (int k = K; k < Kp; ++k) o[k] = 0;
    s[m] = sc;
  }
}

void norm_factors(const int16_t* q, int M, int K, int Kp, const double* s, int dim, double eps, double* kf) {
  for (int m = 0; m < M; ++m) {
    const int16_t* r = q + size_t(m) * Kp;
    int64_t ss = 0;
    for (int k = 0; k < K; ++k) ss += int64_t(r[k]) * r[k];
    const double t = s[m] * (1.0 / RES_SCALE);
    const double ms = ((double(ss) / double(dim)) * t) * t;
    kf[m] = t / std::sqrt(ms + eps);
  }
}

void logits_to_frequencies(const int64_t* z, int V, const int64_t* out_exp, int out_exp_len, int32_t* f) {
  // e = out_exp[min(zmax - z, last)]; normalize_frequencies(e): 1 + floor(e * r / 2**32),
  // r = floor(spare * 2**32 / sum(e)), the remainder to the first maximum.
  const DenseKernels& K = dense();
  thread_local std::vector<int64_t> e;
  e.resize(size_t(V));
  int64_t sum;
  int arg;
  K.exp_weights(z, K.max(z, V), out_exp, out_exp_len - 1, e.data(), V, &sum, &arg);
  const int64_t spare = TOTAL - V;
  const int64_t r = (spare << 32) / sum;
  const int64_t fsum = K.scale32(e.data(), r, f, V);
  f[arg] += int32_t(spare - fsum);
}

// -- SIMD selection -------------------------------------------------------------------------------

int best_simd() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return SIMD_AVX512VNNI;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SIMD_AVX2;
#endif
  return SIMD_PORTABLE;
}

const char* simd_name(int level) {
  switch (level) {
    case SIMD_AVX512VNNI: return "avx512vnni";
    case SIMD_AVX2: return "avx2";
    default: return "portable";
  }
}

namespace {
const DenseKernels* g_dense = nullptr;
int g_dense_level = -1;
}  // namespace

void set_dense_level(int level) {
  level = verified_simd(level);  // the best level here at most, and only one whose kernels passed
  g_dense = &dense_for(level);
  g_dense_level = level;
}

const DenseKernels& dense_for(int level) {
#if defined(__x86_64__)
  level = std::min(level, best_simd());
  if (level >= SIMD_AVX512VNNI) return dense_avx512();
  if (level >= SIMD_AVX2) return dense_avx2;
#endif
  (void)level;
  return dense_portable;
}

const DenseKernels& dense() {
  if (!g_dense) set_dense_level(best_simd());
  return *g_dense;
}

int dense_level() {
  dense();
  return g_dense_level;
}

Kernels kernels_for(int level) {
  Kernels k{matmul_portable, scores_portable, mix_portable, weights_portable, row_max_portable};
#if defined(__x86_64__)
  if (level >= SIMD_AVX2) k = {matmul_avx2, scores_avx2, mix_avx2, weights_avx2, row_max_avx2};
  if (level >= SIMD_AVX512VNNI)
    k.matmul = matmul_avx512vnni, k.scores = scores_avx512, k.mix = mix_avx512, k.row_max = row_max_avx512;
#endif
  return k;
}

// -- the model -----------------------------------------------------------------------------------

Model::Model(const ModelConfig& c, Tables t, int simd, int threads) : cfg(c), tab(std::move(t)), pool_(threads) {
  layer.resize(size_t(cfg.layers));
  const int hd = cfg.head_dim(), qkv = (cfg.heads + 2 * cfg.kv_heads) * hd;
  const size_t per_layer = Linear::packed_size(qkv, cfg.dim) + Linear::packed_size(cfg.dim, cfg.heads * hd) +
                           Linear::packed_size(2 * cfg.ffn, cfg.dim) + Linear::packed_size(cfg.dim, cfg.ffn);
  arena.assign_zero(per_layer * size_t(cfg.layers) + Linear::packed_size(cfg.vocab, cfg.dim));
  int8_t* p = arena.data();
  for (Layer& L : layer) {
    L.wqkv.arena = p, p += Linear::packed_size(qkv, cfg.dim);
    L.wo.arena = p, p += Linear::packed_size(cfg.dim, cfg.heads * hd);
    L.w13.arena = p, p += Linear::packed_size(2 * cfg.ffn, cfg.dim);
    L.w2.arena = p, p += Linear::packed_size(cfg.dim, cfg.ffn);
  }
  head.arena = p;
  set_simd(simd);
}

void Model::set_simd(int level) {
  level = verified_simd(level);
  simd_ = level;
  kern_ = kernels_for(level);
  dk_ = &dense_for(level);
}

void Model::matmul(const Linear& w, const int16_t* x, int M, const double* kf, double* y, int64_t* yi,
                   int32_t* yi32, int* clipped) {
  MatmulArgs a{x, size_t(w.Kp), M, w.q(), w.Kp, w.scale.data(), kf, 0, w.N, y, yi, size_t(w.N), yi32, clipped};
  // Column ranges of whole weight groups, 24 rows or more: one per task, each written by one thread.
  const int threads = pool_.size();
  int64_t tasks = threads == 1 ? 1 : std::min<int64_t>(int64_t(threads) * (M <= 4 ? 4 : 8), (w.N + 23) / 24);
  if (tasks < 1) tasks = 1;
  const int per = int(round_up(size_t((w.N + tasks - 1) / tasks), PACK_ROWS));
  tasks = (w.N + per - 1) / per;
  pool_.run(tasks, [&](int64_t t) {
    MatmulArgs b = a;
    b.n0 = int(t) * per;
    b.n1 = std::min(w.N, b.n0 + per);
    kern_.matmul(b);
  });
}

void Model::rows(int M, const std::function<void(int, int)>& f) {
  const int threads = pool_.size();
  if (threads == 1 || M < 2) return f(0, M);
  const int tasks = std::min(M, 2 * threads), per = (M + tasks - 1) / tasks;
  pool_.run((M + per - 1) / per, [&](int64_t t) { f(int(t) * per, std::min(M, int(t + 1) * per)); });
}

template <typename T>
static T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

void Model::hidden(Cache& cache, const int64_t* tokens, int B, int n, double* h) {
  std::lock_guard<std::mutex> lock(busy_);
  const int d = cfg.dim, H = cfg.heads, Hk = cfg.kv_heads, hd = cfg.head_dim(), half = hd / 2, F = cfg.ffn;
  const int rep = H / Hk, hdp = cache.hdp, M = B * n;
  if (B != cache.batch) throw std::invalid_argument("batch size differs from the cache's");
  if (n == 0) return;
  for (int b = 0; b < B; ++b)
    if (cache.lengths[size_t(b)] + n > std::min(cache.capacity, cfg.max_context))
      throw std::invalid_argument("sequence longer than the cache capacity / model context");
  for (int i = 0; i < M; ++i)
    if (tokens[i] < 0 || tokens[i] >= cfg.vocab) throw std::invalid_argument("token id out of range");
  std::vector<int64_t>& pos = sc_.pos;
  pos.resize(size_t(M));
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < n; ++t) pos[size_t(b) * n + t] = cache.lengths[size_t(b)] + t;

  // Embedding: (q * scale) * 2**16, rounded.
  for (int m = 0; m < M; ++m) {
    const int64_t tok = tokens[m];
    const int8_t* row = embed.row(tok);
    const double sc = embed.scale[size_t(tok)];
    for (int i = 0; i < d; ++i) h[size_t(m) * d + i] = std::nearbyint((double(row[i]) * sc) * RES_SCALE);
  }

  const int Kmax = int(round_up(size_t(std::max({d, H * hd, F})), K_ALIGN));
  const int QKV = (H + 2 * Hk) * hd;
  int16_t* xq = grow(sc_.xq, size_t(M) * Kmax);
  double* s = grow(sc_.s, size_t(M));
  double* kf = grow(sc_.kf, size_t(M));
  double* y = grow(sc_.y, size_t(M) * std::max(QKV, 2 * F));
  const size_t qn = size_t(B) * Hk * n * rep * hdp;
  double* qbuf = grow(sc_.qbuf, qn);
  std::fill(qbuf, qbuf + qn, 0.0);  // padded head dimensions must read as 0
  double* o = grow(sc_.o, size_t(M) * H * hd);
  double* act = grow(sc_.act, size_t(M) * F);

  using clock = std::chrono::steady_clock;
  auto t_last = clock::now();
  auto mark = [&](Phase ph) {
    const auto now = clock::now();
    phase_seconds[ph] += std::chrono::duration<double>(now - t_last).count();
    t_last = now;
  };
  mark(PH_EMBED);
  // The residual stream quantized for a matmul of padded width Kp, with its RMS-norm factors.
  auto normed = [&](int Kp) {
    rows(M, [&](int m0, int m1) {
      dk_->quantize(h + size_t(m0) * d, m1 - m0, d, xq + size_t(m0) * Kp, Kp, s + m0);
      norm_factors(xq + size_t(m0) * Kp, m1 - m0, d, Kp, s + m0, d, cfg.norm_eps, kf + m0);
    });
  };
  for (int li = 0; li < cfg.layers; ++li) {
    Layer& L = layer[size_t(li)];
    // ---- attention
    const DenseKernels& E = *dk_;
    normed(L.wqkv.Kp);
    mark(PH_NORM);
    matmul(L.wqkv, xq, M, kf, y, nullptr);
    mark(PH_QKV);
    rows(M, [&](int m0, int m1) {
      E.fix(y + size_t(m0) * QKV, size_t(m1 - m0) * QKV);  // _fix
      for (int m = m0; m < m1; ++m) {  // each row writes its own query slots and cache positions
        double* r = y + size_t(m) * QKV;
        const int b = m / n, t = m % n;
        const int64_t p = pos[size_t(m)];
        const double* c = tab.rope_cos.data() + size_t(p) * half;
        const double* sn = tab.rope_sin.data() + size_t(p) * half;
        for (int hh = 0; hh < H + Hk; ++hh) {  // _rope on query and key heads
          double rot[512];
          E.rope(r + hh * hd, c, sn, half, rot);
          if (hh < H) {  // query head hh = g * rep + i -> row t * rep + i of kv group g
            const int g = hh / rep, ri = hh % rep;
            double* qd = qbuf + ((size_t(b) * Hk + g) * (size_t(n) * rep) + size_t(t) * rep + ri) * hdp;
            for (int i = 0; i < hd; ++i) qd[i] = rot[i];
          } else {
            const int g = hh - H;
            cache.put_key(li, b, g, p, rot, hd);
          }
        }
        for (int g = 0; g < Hk; ++g) cache.put_value(li, b, g, p, r + (H + Hk + g) * hd, hd);
      }
    });
    mark(PH_ROPE);
    attention(cache, li, qbuf, pos, B, n, o);
    mark(PH_ATTN);
    rows(M, [&](int m0, int m1) {
      E.quantize(o + size_t(m0) * H * hd, m1 - m0, H * hd, xq + size_t(m0) * L.wo.Kp, L.wo.Kp, s + m0);
      for (int m = m0; m < m1; ++m) kf[size_t(m)] = s[size_t(m)] * V_INV;
    });
    matmul(L.wo, xq, M, kf, y, nullptr);
    E.residual(h, y, size_t(M) * d);
    mark(PH_WO);
    // ---- feed-forward
    normed(L.w13.Kp);
    mark(PH_NORM);
    matmul(L.w13, xq, M, kf, y, nullptr);
    mark(PH_W13);
    rows(M, [&](int m0, int m1) {
      E.silu(y + size_t(m0) * 2 * F, m1 - m0, F, tab.sigmoid.data(), act + size_t(m0) * F);
      E.quantize(act + size_t(m0) * F, m1 - m0, F, xq + size_t(m0) * L.w2.Kp, L.w2.Kp, s + m0);
    });
    mark(PH_SILU);
    matmul(L.w2, xq, M, s, y, nullptr);
    E.residual(h, y, size_t(M) * d);
    mark(PH_W2);
  }
  for (int b = 0; b < B; ++b) cache.lengths[size_t(b)] += n;
}

// Attention of the n new tokens of every stream against its cache (keys 0..pos of each query).
// Query rows of one kv head are attended in groups (they share every key and value load).
// Few groups (decoding): the keys are split into chunks, partial sums added exactly afterwards.
void Model::attention(Cache& cache, int li, const double* qbuf, const std::vector<int64_t>& pos, int B, int n, double* o) {
  const int H = cfg.heads, Hk = cfg.kv_heads, hd = cfg.head_dim(), rep = H / Hk, hdp = cache.hdp;
  const int R = n * rep;
  const int G = std::min(MAX_GROUP, R);
  const int groups_per = (R + G - 1) / G;
  const int64_t n_groups = int64_t(B) * Hk * groups_per;
  const int64_t last = int64_t(tab.attn_exp.size()) - 1;
  const double* aexp = tab.attn_exp.data();
  const double scale = cfg.score_scale;
  const int threads = pool_.size();

  struct GroupInfo { int b, g, r0, rows; int64_t lim[MAX_GROUP]; int64_t lmax; };
  auto info = [&](int64_t gi) {
    GroupInfo x;
    x.b = int(gi / (int64_t(Hk) * groups_per));
    x.g = int((gi / groups_per) % Hk);
    x.r0 = int(gi % groups_per) * G;
    x.rows = std::min(G, R - x.r0);
    x.lmax = 0;
    for (int r = 0; r < x.rows; ++r) {
      x.lim[r] = pos[size_t(x.b) * n + (x.r0 + r) / rep] + 1;
      x.lmax = std::max(x.lmax, x.lim[r]);
    }
    return x;
  };
  auto qrows = [&](const GroupInfo& x) { return qbuf + ((size_t(x.b) * Hk + x.g) * R + x.r0) * hdp; };
  // e = attn_exp[min(round((top - s) * scale), last)] for keys j < lim, else 0; z = sum e.
  auto weights = [&](double* srow, int64_t j0, int64_t j1, int64_t lim, double top) {
    return kern_.weights({srow + j0, j1 - j0, std::max<int64_t>(0, lim - j0), top, scale, aexp, last});
  };
  auto write_out = [&](const GroupInfo& x, const double* num, const int64_t* z) {
    for (int r = 0; r < x.rows; ++r) {
      const int row = x.r0 + r, t = row / rep, hh = x.g * rep + row % rep;
      double* out = o + (size_t(x.b) * n + t) * H * hd + size_t(hh) * hd;
      const double zz = double(z[r]);
      for (int i = 0; i < hd; ++i) out[i] = num[r * hdp + i] / zz;  // exact numerator, one IEEE division
    }
  };

  const int64_t CHUNK = 512;
  int64_t max_len = 0;
  for (int64_t p : pos) max_len = std::max(max_len, p + 1);
  const int64_t chunks = threads > 1 && n_groups < 2 * threads ? std::max<int64_t>(1, (max_len + CHUNK - 1) / CHUNK) : 1;

  if (chunks == 1) {
    pool_.run(n_groups, [&](int64_t gi) {
      const GroupInfo x = info(gi);
      const size_t lds = round_up(size_t(x.lmax), KEY_BLOCK);
      thread_local std::vector<double> sbuf_local;
      double* sbuf = grow(sbuf_local, size_t(x.rows) * lds);
      kern_.scores(cache.score_args(li, x.b, x.g, {qrows(x), x.rows, hdp, nullptr, 0, int(x.lmax), sbuf, lds}));
      int64_t z[MAX_GROUP] = {0};
      for (int r = 0; r < x.rows; ++r) {
        double* srow = sbuf + r * lds;
        z[r] = weights(srow, 0, x.lmax, x.lim[r], kern_.row_max(srow, x.lim[r]));
      }
      double num[MAX_GROUP * 256];
      std::fill(num, num + x.rows * hdp, 0.0);
      kern_.mix(cache.mix_args(li, x.b, x.g, {sbuf, lds, x.rows, hdp, nullptr, 0, int(x.lmax), num}));
      write_out(x, num, z);
    });
    return;
  }

  // Key-split: phase 1 scores and per-chunk maxima, phase 2 weights and partial sums.
  const size_t lds = round_up(size_t(max_len), KEY_BLOCK);
  double* sbuf = grow(sc_.asbuf, size_t(n_groups) * G * lds);
  double* cmax = grow(sc_.acmax, size_t(n_groups) * chunks * G);
  std::fill(cmax, cmax + size_t(n_groups) * chunks * G, -INFINITY);
  pool_.run(n_groups * chunks, [&](int64_t task) {
    const int64_t gi = task / chunks, c = task % chunks;
    const GroupInfo x = info(gi);
    const int64_t j0 = c * CHUNK, j1 = std::min(x.lmax, j0 + CHUNK);
    if (j0 >= j1) return;
    double* s = sbuf + size_t(gi) * G * lds;
    kern_.scores(cache.score_args(li, x.b, x.g, {qrows(x), x.rows, hdp, nullptr, int(j0), int(j1), s, lds}));
    for (int r = 0; r < x.rows; ++r) {
      cmax[(size_t(gi) * chunks + c) * G + r] = kern_.row_max(s + r * lds + j0, std::min(j1, x.lim[r]) - j0);
    }
  });
  const size_t npn = size_t(n_groups) * chunks * G * hdp, npz = size_t(n_groups) * chunks * G;
  double* pnum = grow(sc_.apnum, npn);
  std::fill(pnum, pnum + npn, 0.0);
  int64_t* pz = grow(sc_.apz, npz);
  std::fill(pz, pz + npz, int64_t(0));
  pool_.run(n_groups * chunks, [&](int64_t task) {
    const int64_t gi = task / chunks, c = task % chunks;
    const GroupInfo x = info(gi);
    const int64_t j0 = c * CHUNK, j1 = std::min(x.lmax, j0 + CHUNK);
    if (j0 >= j1) return;
    double* s = sbuf + size_t(gi) * G * lds;
    for (int r = 0; r < x.rows; ++r) {
      double top = -INFINITY;
      for (int64_t cc = 0; cc < chunks; ++cc) top = std::max(top, cmax[(size_t(gi) * chunks + cc) * G + r]);
      pz[(size_t(gi) * chunks + c) * G + r] = weights(s + r * lds, j0, j1, x.lim[r], top);
    }
    double* part = pnum + (size_t(gi) * chunks + c) * G * hdp;
    kern_.mix(cache.mix_args(li, x.b, x.g, {s, lds, x.rows, hdp, nullptr, int(j0), int(j1), part}));
  });
  for (int64_t gi = 0; gi < n_groups; ++gi) {
    const GroupInfo x = info(gi);
    std::vector<double> num(size_t(G) * hdp, 0.0);
    int64_t z[MAX_GROUP] = {0};
    for (int64_t c = 0; c < chunks; ++c) {
      const double* p = pnum + (size_t(gi) * chunks + c) * G * hdp;
      for (int i = 0; i < x.rows * hdp; ++i) num[size_t(i)] += p[i];  // integers < 2**52: exact in any order
      for (int r = 0; r < x.rows; ++r) z[r] += pz[(size_t(gi) * chunks + c) * G + r];
    }
    write_out(x, num.data(), z);
  }
}

void Model::head_logits(const double* h, int M, int64_t* logits) {
  std::lock_guard<std::mutex> lock(busy_);
  head_logits_locked(h, M, logits);
}

bool Model::head_logits32(const double* h, int M, int32_t* logits) {
  std::lock_guard<std::mutex> lock(busy_);
  int clipped = 0;
  head_logits_locked(h, M, nullptr, logits, &clipped);
  return !clipped;
}

void Model::head_logits_locked(const double* h, int M, int64_t* logits, int32_t* logits32, int* clipped) {
  const int d = cfg.dim;
  std::vector<int16_t>& xq = sc_.xq;
  xq.resize(std::max(xq.size(), size_t(M) * head.Kp));
  std::vector<double> s(static_cast<size_t>(M)), kf(static_cast<size_t>(M));
  dk_->quantize(h, M, d, xq.data(), head.Kp, s.data());
  norm_factors(xq.data(), M, d, head.Kp, s.data(), d, cfg.norm_eps, kf.data());
  for (int m = 0; m < M; ++m) kf[size_t(m)] = kf[size_t(m)] * 1024.0;  // logits on the exp table's grid
  matmul(head, xq.data(), M, kf.data(), nullptr, logits, logits32, clipped);
}

void Model::head_frequencies(const double* h, int M, int32_t* freqs) {
  std::lock_guard<std::mutex> lock(busy_);
  const int V = cfg.vocab;
  const int rows = 16;
  std::vector<int64_t>& z = sc_.zhead;
  z.resize(size_t(rows) * V);
  for (int m0 = 0; m0 < M; m0 += rows) {
    const int mr = std::min(rows, M - m0);
    head_logits_locked(h + size_t(m0) * cfg.dim, mr, z.data());
    pool_.run(mr, [&](int64_t r) {
      logits_to_frequencies(z.data() + size_t(r) * V, V, tab.out_exp.data(), int(tab.out_exp.size()),
                            freqs + (size_t(m0) + r) * V);
    });
  }
}

}  // namespace lmz
