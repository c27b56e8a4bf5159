// Range coder and two-stage token coding (see coder.h).
#include "coder.h"

#include "kernels.h"

#include <algorithm>
#include <functional>
#include <stdexcept>

namespace lmz {

// -- the range coder (constriction's algorithm on integer intervals) -------------------------

void RangeEncoder::encode(uint32_t cum, uint32_t freq) {
  const uint64_t scale = range_ >> PRECISION;
  range_ = scale * freq;
  const uint64_t new_lower = lower_ + scale * cum;  // wraps: a carry into emitted words
  if (inverted_ && new_lower + range_ > new_lower) {
    // The carry question of the inverted words is settled.
    if (new_lower < lower_) {
      words_.push_back(first_inverted_ + 1);
      words_.insert(words_.end(), size_t(num_inverted_ - 1), 0u);
    } else {
      words_.push_back(first_inverted_);
      words_.insert(words_.end(), size_t(num_inverted_ - 1), ~0u);
    }
    inverted_ = false;
  }
  lower_ = new_lower;
  if (range_ < (uint64_t(1) << 32)) {
    range_ <<= 32;
    const uint32_t lower_word = uint32_t(lower_ >> 32);
    lower_ <<= 32;
    if (inverted_) {
      ++num_inverted_;
    } else if (lower_ + range_ > lower_) {
      words_.push_back(lower_word);
    } else {
      inverted_ = true;
      num_inverted_ = 1;
      first_inverted_ = lower_word;
    }
  }
}

std::vector<uint32_t> RangeEncoder::finish_words() const {
  std::vector<uint32_t> out = words_;
  if (range_ == ~uint64_t(0)) return out;
  const uint64_t point = lower_ + 0xffffffffULL;
  if (inverted_) {
    if (point >= lower_) {
      out.push_back(first_inverted_);
      out.insert(out.end(), size_t(num_inverted_ - 1), ~0u);
    } else {
      out.push_back(first_inverted_ + 1);
      out.insert(out.end(), size_t(num_inverted_ - 1), 0u);
    }
  }
  const uint32_t point_word = uint32_t(point >> 32);
  out.push_back(point_word);
  if (uint32_t((lower_ + range_) >> 32) == point_word) out.push_back(0);
  return out;
}

RangeDecoder::RangeDecoder(std::vector<uint32_t> words) : words_(std::move(words)) {
  point_ = (uint64_t(next_word()) << 32) | next_word();
}

uint32_t RangeDecoder::next_word() {
  const size_t i = pos_++;  // counts reads past the end too (overread)
  return i < words_.size() ? words_[i] : 0u;
}

bool RangeDecoder::quantile(uint32_t& q) const {
  const uint64_t scale = range_ >> PRECISION;
  const uint64_t x = (point_ - lower_) / scale;
  if (x >= (uint64_t(1) << PRECISION)) return false;
  q = uint32_t(x);
  return true;
}

void RangeDecoder::consume(uint32_t cum, uint32_t freq) {
  const uint64_t scale = range_ >> PRECISION;
  lower_ += scale * cum;
  range_ = scale * freq;
  if (range_ < (uint64_t(1) << 32)) {
    range_ <<= 32;
    lower_ <<= 32;
    point_ = (point_ << 32) | next_word();
  }
}

std::string words_to_bytes(const std::vector<uint32_t>& w) {
  std::string s(w.size() * 4, '\0');
  for (size_t i = 0; i < w.size(); ++i) {
    s[4 * i] = char(w[i] >> 24);
    s[4 * i + 1] = char(w[i] >> 16);
    s[4 * i + 2] = char(w[i] >> 8);
    s[4 * i + 3] = char(w[i]);
  }
  while (!s.empty() && s.back() == '\0') s.pop_back();
  return s;
}

// -- candidate selection -------------------------------------------------------------------------

namespace {

// Entries ordered by (frequency desc, id asc): a strict total order, so the k best are one set.
struct Cand {
  int32_t f, id;
};
inline bool better(const Cand& a, const Cand& b) { return a.f > b.f || (a.f == b.f && a.id < b.id); }

// The k best of row through its block maxima: T, the k-th largest block maximum, is at most the
// k-th largest entry (k blocks reach T, each with an entry of its own), so the k best are among
// the entries > T, which lie in the fewer than k blocks whose maximum exceeds T, and the entries
// == T, of which the k first by id are enough. Only blocks with a maximum >= T are read.
void top_k_by_blocks(const int32_t* row, int V, int k, int32_t* ids, int64_t* freqs, const int32_t* given) {
  thread_local std::vector<int32_t> bm, heap, hits;
  thread_local std::vector<Cand> cand;
  const DenseKernels& K = dense();
  const int nb = (V + TOPK_BLOCK - 1) / TOPK_BLOCK;
  if (given) {  // the predictor's output pass made them
    bm.assign(given, given + nb);
  } else {
    bm.resize(size_t(nb));
    K.block_max32(row, V, bm.data());
  }
  // T: the k-th largest block maximum, through a min-heap of the k largest (most are rejected)
  heap.assign(bm.begin(), bm.begin() + k);
  std::make_heap(heap.begin(), heap.end(), std::greater<int32_t>());
  for (int b = k; b < nb; ++b)
    if (bm[size_t(b)] > heap.front()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<int32_t>());
      heap.back() = bm[size_t(b)];
      std::push_heap(heap.begin(), heap.end(), std::greater<int32_t>());
    }
  const int32_t T = heap.front();
  cand.clear();
  hits.resize(TOPK_BLOCK);
  int equal = 0;
  for (int b = 0; b < nb; ++b) {
    if (bm[size_t(b)] < T || (bm[size_t(b)] == T && equal >= k)) continue;
    const int i0 = b * TOPK_BLOCK;
    const int nh = K.select_ge32(row + i0, std::min(V - i0, TOPK_BLOCK), T, hits.data());
    for (int h = 0; h < nh; ++h) {
      const int i = i0 + hits[size_t(h)];
      if (row[i] > T) {
        cand.push_back({row[i], i});
      } else if (equal < k) {
        cand.push_back({row[i], i});
        ++equal;
      }
    }
  }
  if (cand.size() < size_t(k)) throw std::logic_error("top-k block search found too few candidates");
  if (cand.size() > size_t(k)) std::nth_element(cand.begin(), cand.begin() + (k - 1), cand.end(), better);
  std::sort(cand.begin(), cand.begin() + k, better);
  for (int i = 0; i < k; ++i) ids[i] = cand[size_t(i)].id, freqs[i] = cand[size_t(i)].f;
}

}  // namespace

void select_top_k(const int32_t* row, int V, int k, int32_t* ids, int64_t* freqs, const int32_t* bm) {
  if (k >= 1 && (V + TOPK_BLOCK - 1) / TOPK_BLOCK > 2 * k) return top_k_by_blocks(row, V, k, ids, freqs, bm);
  if (k <= 256) return dense().top_k(row, V, k, ids, freqs);
  // A min-heap of the k best (freq, -id) so far; ids are scanned in ascending order, so a later
  // entry must have a strictly larger frequency to displace the heap's minimum.
  struct E { int32_t f, id; };
  auto worse = [](const E& a, const E& b) { return a.f > b.f || (a.f == b.f && a.id < b.id); };  // heap: min at front
  thread_local std::vector<E> heap;
  heap.clear();
  int v = 0;
  for (; v < V && int(heap.size()) < k; ++v) {
    heap.push_back({row[v], v});
    std::push_heap(heap.begin(), heap.end(), worse);
  }
  int32_t thr = heap.front().f;
  for (; v < V; ++v) {
    if (row[v] > thr) {
      std::pop_heap(heap.begin(), heap.end(), worse);
      heap.back() = {row[v], v};
      std::push_heap(heap.begin(), heap.end(), worse);
      thr = heap.front().f;
    }
  }
  std::sort(heap.begin(), heap.end(), [](const E& a, const E& b) { return a.f > b.f || (a.f == b.f && a.id < b.id); });
  for (int i = 0; i < k; ++i) ids[i] = heap[size_t(i)].id, freqs[i] = heap[size_t(i)].f;
}

// -- two-stage coding ------------------------------------------------------------------------------

TokenCoder::TokenCoder(int tb, int k) : total_bits(tb), top_k(k) {
  if (tb < 1 || tb > PRECISION) throw std::invalid_argument("total_bits must be 1..24");
  if (k < 0) throw std::invalid_argument("top_k must be >= 0");
}

int TokenCoder::steps(const int32_t* row, int V, int32_t s, uint32_t* cum, uint32_t* freq, const int32_t* bm) {
  const int sh = PRECISION - total_bits;
  const int k = top_k;
  if (V == 1) return 0;
  if (k == 0 || V <= k) {
    int64_t c = 0;
    for (int i = 0; i < s; ++i) c += row[i];
    cum[0] = uint32_t(c << sh);
    freq[0] = uint32_t(int64_t(row[s]) << sh);
    return 1;
  }
  ids_.resize(size_t(k));
  fr_.resize(size_t(k));
  select_top_k(row, V, k, ids_.data(), fr_.data(), bm);
  int64_t c = 0, top_sum = 0;
  for (int i = 0; i < k; ++i) top_sum += fr_[size_t(i)];
  for (int r = 0; r < k; ++r) {
    if (ids_[size_t(r)] == s) {
      cum[0] = uint32_t(c << sh);
      freq[0] = uint32_t(fr_[size_t(r)] << sh);
      return 1;
    }
    c += fr_[size_t(r)];
  }
  ++escapes;
  const int64_t escape = (int64_t(1) << total_bits) - top_sum;
  cum[0] = uint32_t(top_sum << sh);
  freq[0] = uint32_t(escape << sh);
  if (V - k == 1) return 1;  // a single non-candidate is certain once ESCAPE is coded
  // Stage 2: non-candidates in id order, cumulative frequencies rescaled to 2**24.
  sorted_.assign(ids_.begin(), ids_.end());
  std::sort(sorted_.begin(), sorted_.end());
  int64_t before = dense().sum32(row, s);
  for (int32_t c : sorted_) {
    if (c >= s) break;
    before -= row[c];
  }
  const int64_t lo = (before << PRECISION) / escape, hi = ((before + row[s]) << PRECISION) / escape;
  cum[1] = uint32_t(lo);
  freq[1] = uint32_t(hi - lo);
  return 2;
}

int32_t TokenCoder::decode(const int32_t* row, int V, RangeDecoder& dec, RangeEncoder& shadow, const int32_t* bm) {
  const int sh = PRECISION - total_bits;
  const int k = top_k;
  if (V == 1) return 0;
  uint32_t q;
  if (k == 0 || V <= k) {
    if (!dec.quantile(q)) return -1;
    int64_t c = 0;
    for (int i = 0; i < V; ++i) {
      const int64_t f = int64_t(row[i]) << sh;
      if (q < c + f) {
        dec.consume(uint32_t(c), uint32_t(f));
        shadow.encode(uint32_t(c), uint32_t(f));
        return i;
      }
      c += f;
    }
    return -1;
  }
  ids_.resize(size_t(k));
  fr_.resize(size_t(k));
  select_top_k(row, V, k, ids_.data(), fr_.data(), bm);
  if (!dec.quantile(q)) return -1;
  int64_t c = 0;
  for (int r = 0; r < k; ++r) {
    const int64_t f = fr_[size_t(r)] << sh;
    if (q < c + f) {
      dec.consume(uint32_t(c), uint32_t(f));
      shadow.encode(uint32_t(c), uint32_t(f));
      return ids_[size_t(r)];
    }
    c += f;
  }
  // ESCAPE: the rest of the 2**24 interval
  const int64_t top_sum = c >> sh;
  const int64_t escape = (int64_t(1) << total_bits) - top_sum;
  dec.consume(uint32_t(c), uint32_t(escape << sh));
  shadow.encode(uint32_t(c), uint32_t(escape << sh));
  ++escapes;
  sorted_.assign(ids_.begin(), ids_.end());
  std::sort(sorted_.begin(), sorted_.end());
  if (V - k == 1) {  // the only non-candidate
    int32_t s = 0;
    for (int32_t t : sorted_) {
      if (t == s) ++s;
      else break;
    }
    return s;
  }
  if (!dec.quantile(q)) return -1;
  // The symbol j whose interval [floor(C_{j-1} 2**24 / E), floor(C_j 2**24 / E)) holds q:
  // the first with C_j * 2**24 >= (q + 1) * E.
  const int64_t need = int64_t(q) + 1;
  int64_t C = 0;
  size_t t = 0;
  int i = 0;
  // Whole blocks first (one vectorized sum each), then symbol by symbol inside the block that crosses.
  constexpr int BLK = 256;
  for (; i + BLK <= V; i += BLK) {
    int64_t c = dense().sum32(row + i, BLK);
    size_t t2 = t;
    while (t2 < sorted_.size() && sorted_[t2] < i + BLK) c -= row[sorted_[t2++]];
    if (((C + c) << PRECISION) >= need * escape) break;
    C += c;
    t = t2;
  }
  for (; i < V; ++i) {
    if (t < sorted_.size() && sorted_[t] == i) {
      ++t;
      continue;
    }
    const int64_t prev = C;
    C += row[i];
    if ((C << PRECISION) >= need * escape) {
      const int64_t lo = (prev << PRECISION) / escape, hi = (C << PRECISION) / escape;
      dec.consume(uint32_t(lo), uint32_t(hi - lo));
      shadow.encode(uint32_t(lo), uint32_t(hi - lo));
      return i;
    }
  }
  return -1;
}

}  // namespace lmz
