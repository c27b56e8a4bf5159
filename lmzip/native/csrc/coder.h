// Two-stage range coding of integer frequency rows (lmzip/coder.py), natively.
//
// The range coder is constriction 0.5's RangeEncoder/RangeDecoder<u32, u64> at 24-bit precision,
// re-implemented on integer (cumulative, frequency) pairs: the bytes are identical (tests compare
// them with constriction and with the pure-Python specification in tests/test_coder.py). Each
// token is coded among the top_k candidates by (frequency desc, id asc) plus an escape, and on an
// escape among the other symbols rescaled to 2**24 (see coder.py for the arithmetic).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lmz {

constexpr int PRECISION = 24;
constexpr size_t MAX_OVERREAD = 3;

class RangeEncoder {
 public:
  void encode(uint32_t cum, uint32_t freq);  // 1 <= freq, cum + freq <= 2**24
  std::vector<uint32_t> finish_words() const;  // the words a finish would write now (state kept)
  size_t num_words() const { return words_.size(); }

 private:
  uint64_t lower_ = 0, range_ = ~uint64_t(0);
  std::vector<uint32_t> words_;
  bool inverted_ = false;
  uint64_t num_inverted_ = 0;
  uint32_t first_inverted_ = 0;
};

class RangeDecoder {
 public:
  explicit RangeDecoder(std::vector<uint32_t> words);
  // The quantile in [0, 2**24) the next symbol's interval must contain; false on invalid data.
  bool quantile(uint32_t& q) const;
  void consume(uint32_t cum, uint32_t freq);
  // Words read past the end of the data (they read as 0). The decoder reads two words ahead and
  // one per 32 bits of information consumed; the encoder's last one or two words may be zeros
  // that the payload leaves out. A valid stream reads at most 2 past the end except when its
  // last words are zero by chance (2**-32), 3 with 2**-64: more than MAX_OVERREAD means the
  // stream claims more than its payload holds, caught after work proportional to its size.
  size_t overread() const { return pos_ > words_.size() ? pos_ - words_.size() : 0; }

 private:
  uint32_t next_word();
  std::vector<uint32_t> words_;
  size_t pos_ = 0;
  uint64_t lower_ = 0, range_ = ~uint64_t(0), point_ = 0;
};

// Stage-1 candidates of a row: ids and frequencies ordered by (frequency desc, id asc). bm, if
// given: the maxima of the row's blocks of TOPK_BLOCK entries (Predictor::block_maxima).
void select_top_k(const int32_t* row, int V, int k, int32_t* ids, int64_t* freqs, const int32_t* bm = nullptr);

class TokenCoder {
 public:
  TokenCoder(int total_bits, int top_k);
  int total_bits, top_k;
  // (cum, freq) steps that code symbol under row (0, 1 or 2 of them).
  int steps(const int32_t* row, int V, int32_t symbol, uint32_t* cum, uint32_t* freq, const int32_t* bm = nullptr);
  // Decode a symbol under row from dec (shadow-encoding each step into shadow); -1 on invalid data.
  int32_t decode(const int32_t* row, int V, RangeDecoder& dec, RangeEncoder& shadow, const int32_t* bm = nullptr);
  int64_t escapes = 0;

 private:
  std::vector<int32_t> ids_;
  std::vector<int64_t> fr_;
  std::vector<int32_t> sorted_;
};

std::string words_to_bytes(const std::vector<uint32_t>& w);  // big-endian, trailing zero bytes dropped

}  // namespace lmz
