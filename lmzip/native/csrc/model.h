// The exact model's forward pass, natively: the same integers as lmzip/exact_model.py.
//
// Every elementwise step is the reference's IEEE float64 operation in the reference's order
// (built with -ffp-contract=off, no fast-math), every reduction an exact integer sum (see
// kernels.h), so the residual stream, the keys and values and the logits are bit for bit those
// of the torch reference, on any thread count and SIMD level.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "kernels.h"
#include "pool.h"

namespace lmz {

struct ModelConfig {
  int vocab = 0, dim = 0, layers = 0, heads = 0, kv_heads = 0, ffn = 0, max_context = 0;
  double norm_eps = 0;
  double score_scale = 0;  // 2**(EXP_STEP_BITS - 2 QK_BITS) / sqrt(head_dim), computed by the caller
  int head_dim() const { return dim / heads; }
};

// Owned bytes on 2 MB pages where the kernel allows: a decoding step reads every weight once,
// and huge pages halve its TLB misses.
class Bytes {
 public:
  Bytes() = default;
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  Bytes(Bytes&& o) noexcept : p_(o.p_), n_(o.n_), mapped_(o.mapped_) { o.p_ = nullptr, o.n_ = 0, o.mapped_ = 0; }
  Bytes& operator=(Bytes&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    std::swap(mapped_, o.mapped_);
    return *this;
  }
  ~Bytes();
  // huge = false: small pages, and none of them backed by memory until written (the cache's
  // remainders, of which a few pages are ever touched)
  void assign_zero(size_t n, bool huge = true);
  int8_t* data() { return p_; }
  const int8_t* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  void release();
  int8_t* p_ = nullptr;
  size_t n_ = 0;
  size_t mapped_ = 0;  // bytes of an anonymous mapping (large buffers), else 0 (malloc'd)
};

// An int8 matrix [N, K] with one float scale per row, copied out of the model file: packed for
// the matmul kernels (kernels.h, packed_offset), or as plain rows padded to K_ALIGN (the
// embedding, read one row per token).
struct Linear {
  Bytes bytes;             // owned storage (the embedding's rows)
  int8_t* arena = nullptr;  // or a slice of the model's arena (packed matrices)
  std::vector<double> scale;
  int N = 0, K = 0, Kp = 0;
  const int8_t* q() const { return arena ? arena : bytes.data(); }
  static size_t packed_size(int n, int k);
  void set(const int8_t* data, const float* scales, int n, int k);       // packed, into arena
  void set_rows(const int8_t* data, const float* scales, int n, int k);  // plain rows, owned
  const int8_t* row(int64_t n) const { return q() + size_t(n) * size_t(Kp); }
};

struct Tables {
  std::vector<double> rope_cos, rope_sin;  // [max_context, head_dim / 2]
  std::vector<double> attn_exp;            // exp(-i/1024) * 2**20, last entry 0
  std::vector<int64_t> out_exp;            // exp(-i/1024) * 2**30, last entry 0
  std::vector<double> sigmoid;             // sigmoid((i - 16384) / 1024) * 2**24
};

// Keys and values of every layer, stream and kv head, as the kernels read them: int16 narrow
// parts (kernels.h, KV_NARROW), keys in blocks of KEY_BLOCK positions (dimension pairs
// outermost, kernels.h key_entry), values
// one row of hdp per position. What a narrow part leaves out, x - clamp(x) (keys and values are
// 21-bit integers, a few in a hundred of them beyond 2**15, most in one or two "outlier"
// dimensions of a head), is kept apart, and the attention kernels add it (kernels.h):
//   keys:   kmask, per block, a bit per dimension that holds a remainder somewhere in the block;
//           kres, per dimension, one int32 per position (a plane: only its touched pages cost);
//   values: vmask, per position, a bit per group of 8 dimensions holding a remainder;
//           vres, per group, 8 int32 per position.
// Invariant: a remainder is non-zero only where its mask bit is set (bits are never cleared,
// a stale bit only costs a few additions of zero), so the sums are the reference's integers.
struct Cache {
  int batch = 0, capacity = 0, layers = 0, kv_heads = 0, hdp = 0;
  int stride = 0;  // positions allocated per stream: capacity rounded up to whole key blocks
  int kmw = 0;     // 64-bit mask words per key block: hdp / 64 rounded up
  std::vector<int16_t> k, v;
  std::vector<uint64_t> kmask, vmask;
  Bytes kres, vres;  // int32
  std::vector<int64_t> lengths;
  Cache(int batch, int capacity, int layers, int kv_heads, int hdp);
  size_t stream_elems() const { return size_t(kv_heads) * stride * hdp; }
  size_t head_index(int layer, int b, int g) const { return (size_t(layer) * batch + b) * kv_heads + g; }
  int16_t* keys(int layer, int b, int g) { return k.data() + head_index(layer, b, g) * size_t(stride) * hdp; }
  int16_t* vals(int layer, int b, int g) { return v.data() + head_index(layer, b, g) * size_t(stride) * hdp; }
  uint64_t* key_mask(int layer, int b, int g) { return kmask.data() + head_index(layer, b, g) * size_t(stride / KEY_BLOCK) * kmw; }
  uint64_t* val_mask(int layer, int b, int g) { return vmask.data() + head_index(layer, b, g) * size_t(stride); }
  int32_t* key_res(int layer, int b, int g) {
    return reinterpret_cast<int32_t*>(kres.data()) + head_index(layer, b, g) * size_t(stride) * hdp;
  }
  int32_t* val_res(int layer, int b, int g) {
    return reinterpret_cast<int32_t*>(vres.data()) + head_index(layer, b, g) * size_t(stride) * hdp;
  }
  // Store position p's key (hd dimensions, integers |x| <= 2**20; the padding stays zero). Rows
  // of one head may be stored concurrently from several threads (the mask bits are set atomically).
  void put_key(int layer, int b, int g, int64_t p, const double* x, int hd);
  void put_value(int layer, int b, int g, int64_t p, const double* x, int hd);
  // The kernels' arguments for one head of the cache: its narrow parts and remainders, with the
  // caller's rows (a.kblk / a.v are filled in here).
  ScoreArgs score_args(int layer, int b, int g, ScoreArgs a) {
    a.kblk = keys(layer, b, g), a.kmask = key_mask(layer, b, g), a.kmw = kmw;
    a.kres = key_res(layer, b, g), a.kres_stride = size_t(stride);
    return a;
  }
  MixArgs mix_args(int layer, int b, int g, MixArgs a) {
    a.v = vals(layer, b, g), a.vmask = val_mask(layer, b, g), a.vres = val_res(layer, b, g), a.vres_stride = size_t(stride);
    return a;
  }
  // Key vectors (a block's 8 entries of one dimension) and value groups (8 dimensions of one
  // position) marked as holding remainders, over every layer, stream and head.
  std::pair<int64_t, int64_t> marked() const;
  size_t nbytes() const;  // bytes held: narrow parts, masks, and the marked remainder vectors
  void copy_stream(int slot, const Cache& other, int other_slot);
  void keep(const std::vector<int>& slots);
};

class Model {
 public:
  Model(const ModelConfig& cfg, Tables tables, int simd, int threads);
  const ModelConfig cfg;
  Bytes arena;  // every packed matrix, in one allocation on huge pages (small ones would get 4 KB pages)
  Linear embed, head;
  struct Layer { Linear wqkv, wo, w13, w2; };
  std::vector<Layer> layer;
  Tables tab;

  // Seconds spent per phase of hidden() since the last reset (for profiling; always counted,
  // a clock read costs ~20 ns against microseconds of work per phase).
  enum Phase { PH_NORM, PH_QKV, PH_ROPE, PH_ATTN, PH_WO, PH_W13, PH_SILU, PH_W2, PH_EMBED, PH_COUNT };
  double phase_seconds[PH_COUNT] = {0};

  int simd() const { return simd_; }
  void set_simd(int level);
  int threads() const { return pool_.size(); }
  void set_threads(int n) { pool_.resize(n); }

  // Residual stream [B * n, dim] after all layers for tokens [B, n] appended to the cache.
  void hidden(Cache& cache, const int64_t* tokens, int B, int n, double* h);
  // Integer logits [M, vocab] (2**-10 nat units) / frequency rows (>= 1, sum 2**24) of h [M, dim].
  void head_logits(const double* h, int M, int64_t* logits);
  // The same logits in int32; false (and the rows undefined) if one exceeds LOGIT32_LIMIT.
  bool head_logits32(const double* h, int M, int32_t* logits);
  void head_frequencies(const double* h, int M, int32_t* freqs);

 private:
  void matmul(const Linear& w, const int16_t* x, int M, const double* kf, double* y, int64_t* yi,
              int32_t* yi32 = nullptr, int* clipped = nullptr);
  // f(m0, m1) over row ranges covering [0, M), on the pool (rows are independent: any split gives
  // the same bits).
  void rows(int M, const std::function<void(int, int)>& f);
  void head_logits_locked(const double* h, int M, int64_t* logits, int32_t* logits32 = nullptr, int* clipped = nullptr);
  void attention(Cache& cache, int li, const double* q, const std::vector<int64_t>& pos, int B, int n, double* o);
  int simd_;
  Kernels kern_;
  const DenseKernels* dk_ = nullptr;
  // Scratch reused across calls (grow-only): fresh buffers of a few MB per step cost their page
  // faults every time (measured: 5% of a decoding batch's step).
  struct Scratch {
    std::vector<int16_t> xq;
    std::vector<double> s, kf, y, qbuf, o, act, asbuf, acmax, apnum;
    std::vector<int64_t> pos, apz;
    std::vector<int64_t> zhead;
  } sc_;
  std::mutex busy_;  // one forward at a time per model (its scratch and pool are shared)
  ThreadPool pool_;
};

// int16 quantisation of rows [M, K] into x [M, Kp] (zero padding): s = max|row| / 32639.
void quantize_rows(const double* x, int M, int K, int16_t* q, int Kp, double* s);
// RMSNorm factor of each quantised row: t / sqrt(sum(q^2) / dim * t * t + eps), t = s / 2**16.
void norm_factors(const int16_t* q, int M, int K, int Kp, const double* s, int dim, double eps, double* kf);
// Integer logits -> frequencies >= 1 summing to 2**24 (normalize_frequencies of exp weights).
void logits_to_frequencies(const int64_t* z, int V, const int64_t* out_exp, int out_exp_len, int32_t* f);

Kernels kernels_for(int level);
int best_simd();
// The highest level <= wanted whose kernels pass the known-answer checks here (selftest.cpp).
int verified_simd(int wanted);
const char* simd_name(int level);

}  // namespace lmz
