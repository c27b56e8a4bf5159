// The SIMD kernels of the exact model, one implementation per instruction set.
//
// Each kernel computes exact integers (int8 x int16 dot products, integer attention sums held in
// float64 below 2**53), so every implementation returns the same bits; they differ only in speed.
// Kernel files include nothing but this header and intrinsics, so that code compiled for AVX2 or
// AVX-512 cannot leak into the rest of the program through shared inline functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lmz {

enum SimdLevel : int { SIMD_PORTABLE = 0, SIMD_AVX2 = 1, SIMD_AVX512VNNI = 2 };

// Activations are int16 rows padded with zeros to a multiple of K_ALIGN; weight rows likewise.
constexpr int K_ALIGN = 32;
// Key/value head dimensions are padded to a multiple of this (zeros), and keys are stored in
// blocks of KEY_BLOCK positions, in dimension pairs inside a block (key_entry below).
constexpr int HD_ALIGN = 8;
constexpr int KEY_BLOCK = 8;
// Keys and values are integers of at most 21 bits, nearly all below 2**15: the kernels read
// their narrow parts, clamp(x, -KV_NARROW, KV_NARROW) in int16 (half the bytes of int32), and
// the cache adds the rare remainders x - clamp(x) afterwards (Cache, model.cpp).
constexpr int KV_NARROW = 32767;
// Inside a key block, dimensions go in pairs: entry (key j, dimension d) of the block is at
// (d / 2) * 2 * KEY_BLOCK + (j % KEY_BLOCK) * 2 + d % 2, so that one int32 holds one key's two
// dimensions, as vpdpwssd / vpmaddwd multiply them (hdp is even).
// (Outside the SIMD kernel files only: see the note at the top.)
inline int key_entry(int j, int d) { return (d / 2) * 2 * KEY_BLOCK + (j % KEY_BLOCK) * 2 + d % 2; }
constexpr int MAX_HDP = 512;  // head dimensions the kernels take (padded)
// Query rows attended together (they share every key and value load; kernels work on tiles of
// at most TILE_ROWS of them, re-reading each key or value block from L1 for the next tile).
constexpr int MAX_GROUP = 12;
constexpr int TILE_ROWS = 6;

// Weights are packed for the kernels (Linear::set): groups of PACK_ROWS rows, K in chunks of
// K_ALIGN bytes, and inside a group the rows' chunks interleaved, so that one step of a decoding
// matmul reads one contiguous run of PACK_ROWS * K_ALIGN bytes (twice the bandwidth of reading
// eight separate rows, measured). Rows are padded to a multiple of PACK_ROWS with zeros.
constexpr int PACK_ROWS = 8;
inline size_t packed_offset(int n, int k, int K) {
  return (size_t(n / PACK_ROWS) * size_t(K / K_ALIGN) + size_t(k / K_ALIGN)) * (PACK_ROWS * K_ALIGN) +
         size_t(n % PACK_ROWS) * K_ALIGN + size_t(k % K_ALIGN);
}

// acc[m, n] = sum_k x[m, k] * w[n, k] (exact), for rows m < M and columns n0 <= n < n1, then
//   y[m * ldy + n]  = ((double)acc * scale[n]) * kf[m]                (y != nullptr)
//   yi[m * ldy + n] = (int64) round-half-even(((double)acc * scale[n]) * kf[m])   (yi != nullptr)
//   yi32[m * ldy + n]: the same integer in int32 where |value| <= LOGIT32_LIMIT; elsewhere 0, and
//                      *clipped is set to 1 (the caller then asks for int64)   (yi32 != nullptr)
// n0 is a multiple of PACK_ROWS; w is packed (see above).
// Logits held in int32 (half the bytes of int64 for the predictor to read) are at most this in
// magnitude, so that adding the predictor's biases (|u >> 14| < 2**17) cannot leave int32.
constexpr double LOGIT32_LIMIT = 1073741824.0;  // 2**30

struct MatmulArgs {
  const int16_t* x;
  size_t ldx;
  int M;
  const int8_t* w;
  int K;  // a multiple of K_ALIGN
  const double* scale;
  const double* kf;
  int n0, n1;
  double* y;
  int64_t* yi;
  size_t ldy;
  int32_t* yi32;
  int* clipped;
};

// s[g * lds + j] = q[g] . key[j] for g < G, j in [j0, j1): q rows hdp doubles apart (exact
// integers), keys in blocks (see KEY_BLOCK) of int16 (their narrow parts, see KV_NARROW). j0 is
// a multiple of KEY_BLOCK; entries up to the end of j1's block may be written (lds and the rows'
// room are multiples of KEY_BLOCK).
struct ScoreArgs {
  const double* q;
  int G;
  int hdp;
  const int16_t* kblk;  // key block b starts at kblk + b * hdp * KEY_BLOCK
  int j0, j1;
  double* s;
  size_t lds;
  // The keys' remainders beyond int16 (null: none), added to the scores of whole blocks: key j's
  // remainder in dimension d is kres[d * kres_stride + j] where bit d % 64 of
  // kmask[(j / KEY_BLOCK) * kmw + d / 64] is set, and zero elsewhere.
  const uint64_t* kmask;
  int kmw;
  const int32_t* kres;
  size_t kres_stride;
};

// num[g * hdp + d] += sum over keys j in [j0, j1) of e[g * lde + j] * v[j * hdp + d] (exact:
// integers, partial sums < 2**53), v the values' narrow parts in int16, the weights integers in
// [0, MIX_WEIGHT_MAX] (the attention exp table's range, checked when a model is built; the integer
// mixes split them in two int16 parts). Blocks of keys whose weights are all zero are skipped.
constexpr double MIX_WEIGHT_MAX = 1048576.0;  // 2**20
struct MixArgs {
  const double* e;
  size_t lde;
  int G;
  int hdp;
  const int16_t* v;
  int j0, j1;
  double* num;
  // The values' remainders beyond int16 (null: none): value j's remainder in dimension d is
  // vres[((d / 8) * vres_stride + j) * 8 + d % 8] where bit d / 8 of vmask[j] is set, else zero.
  const uint64_t* vmask;
  const int32_t* vres;
  size_t vres_stride;
};

// Attention weights in place: s[j] = table[min(round_half_even((top - s[j]) * scale), last)] for
// j < min(lim, n), 0 for lim <= j < n; returns their sum (an exact integer). lim may exceed n.
struct WeightArgs {
  double* s;
  int64_t n, lim;
  double top, scale;
  const double* table;
  int64_t last;
};

// The largest of s[0 .. n), -inf if n <= 0: a row's top score (exact integers, no NaN, so the
// order of the comparisons cannot matter).
using RowMax = double (*)(const double* s, int64_t n);

struct Kernels {
  void (*matmul)(const MatmulArgs&);
  void (*scores)(const ScoreArgs&);
  void (*mix)(const MixArgs&);
  int64_t (*weights)(const WeightArgs&);
  RowMax row_max;
};

// The coder's candidate search works on blocks of this many entries of a row.
constexpr int TOPK_BLOCK = 64;

// The output pass of predictor numerics version 3 (dense_impl.h: d_out3).
struct Out3Args {
  const int32_t* et;
  int n;
  int64_t r;                // the teacher's scale: f = 1 + floor(et * r / 2**32)
  bool mix;                 // the mixture's dense part (else the teacher alone)
  int sh, sh2;
  int64_t dense, r2;
  int32_t* u;               // non-null: the unigram step u -= (f * lr) >> 16
  int64_t lr;
  int32_t* sel;             // non-null: indices with f >= thr
  int64_t thr;
  int32_t* out;
  int32_t* bm;              // non-null: the maxima of out's blocks of TOPK_BLOCK (the coder's search)
};

// Loops over vocabulary-sized rows (dense_impl.h), one set per SIMD level.
struct DenseKernels {
  int64_t (*max)(const int64_t* x, int n);
  void (*exp_weights)(const int64_t* x, int64_t top, const int64_t* table, int64_t last, int64_t* e, int n,
                      int64_t* sum, int* arg);
  int64_t (*scale32)(const int64_t* e, int64_t r, int32_t* f, int n);
  int64_t (*sum32)(const int32_t* row, int n);
  void (*top_k)(const int32_t* row, int n, int k, int32_t* ids, int64_t* freqs);
  void (*bias_logits)(const int64_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin);
  // the same for int32 logits, w in int32 lanes: exact where |z| <= LOGIT32_LIMIT, which the
  // caller checks with *zfar = max |z| (its pass is wasted otherwise)
  void (*bias_logits32)(const int32_t* z, const int32_t* u, int n, int32_t* q, int64_t* wmax, int64_t* wmin, int64_t* zfar);
  int64_t (*exp_rel)(const int32_t* q, int32_t top, const int32_t* table, int32_t last, int32_t* et, int n);
  int (*find32)(const int32_t* row, int n, int32_t x);
  void (*block_max32)(const int32_t* row, int n, int32_t* bm);
  int (*select_ge32)(const int32_t* row, int n, int32_t thr, int32_t* out);
  void (*exp32)(const int32_t* zb, int32_t mx, const int32_t* table, int32_t last, int32_t* et, int n, int64_t* sum,
                int* arg);
  void (*teacher_sums)(const int32_t* et, int n, int64_t r, int sh, int64_t* fsum, int64_t* st);
  int64_t (*teacher_out)(const int32_t* et, int n, int64_t r, int32_t* out);
  void (*mix_sum_arg)(const int32_t* et, int n, int sh, int64_t dense, int sh2, int64_t* sum, int64_t* key);
  int64_t (*mix_out)(const int32_t* et, int n, int sh, int64_t dense, int sh2, int64_t r2, int32_t* out);
  int (*unigram_step32)(int32_t* u, const int32_t* et, int n, int64_t r, int64_t lr, int64_t thr, int32_t* sel);
  int (*select_teacher)(const int32_t* et, int n, int64_t r, int64_t thr, int32_t* sel);
  void (*clip32)(int32_t* u, int32_t lim, int n);
  int64_t (*exp3_rel)(int32_t* q, int32_t top, int n, int* arg);
  int64_t (*out3)(const Out3Args& a, int* nsel);
  // the forward pass's elementwise steps
  void (*quantize)(const double* x, int M, int K, int16_t* q, int Kp, double* s);
  void (*fix)(double* y, size_t n);
  void (*rope)(const double* x, const double* c, const double* sn, int half, double* out);
  void (*residual)(double* h, const double* y, size_t n);
  void (*silu)(const double* gu, int M, int F, const double* sig, double* a);
};
extern const DenseKernels dense_portable;
#if defined(__x86_64__)
extern const DenseKernels dense_avx2;
const DenseKernels& dense_avx512();  // dense_avx2 with AVX-512 versions of the heaviest passes
#endif
// The dense kernels of the process's SIMD level (set_dense_level caps it; tests compare levels).
const DenseKernels& dense();
const DenseKernels& dense_for(int level);
void set_dense_level(int level);
int dense_level();

// The integer scores' split of G query rows (exact integers, |q| <= 2**20): q = 1024 qh + ql with
// qh in [-1024, 1024] and ql in [0, 1024), both int16, one dword per dimension pair (low half:
// the even dimension), as vpdpwssd / vpmaddwd multiply a key's pair: qh[g * hdp / 2 + p].
void split_query_pairs(const double* q, int G, int hdp, int32_t* qh, int32_t* ql);

void matmul_portable(const MatmulArgs&);
void scores_portable(const ScoreArgs&);
void mix_portable(const MixArgs&);
int64_t weights_portable(const WeightArgs&);
double row_max_portable(const double* s, int64_t n);
#if defined(__x86_64__)
void matmul_avx2(const MatmulArgs&);
void scores_avx2(const ScoreArgs&);
void mix_avx2(const MixArgs&);
int64_t weights_avx2(const WeightArgs&);
double row_max_avx2(const double* s, int64_t n);
void matmul_avx512vnni(const MatmulArgs&);
void scores_avx512(const ScoreArgs&);
void mix_avx512(const MixArgs&);
double row_max_avx512(const double* s, int64_t n);
// The int8 x int16 dot product's peak on this core: the matmul's own instructions on 12
// independent accumulators, no memory operands, `iters` rounds; returns the products computed.
int64_t dot_peak_avx2(int64_t iters);
int64_t dot_peak_avx512vnni(int64_t iters);
#endif

}  // namespace lmz
