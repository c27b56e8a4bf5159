// The adaptive predictor (lmzip/adapt.py), natively: the same integer state, token for token.
//
// The n-gram contexts live in one trie (node = context read backwards from the last token), so a
// token costs one walk of at most six hash lookups; the match model indexes its 5-token contexts
// by trie node. Every formula is the reference's, with Python's unbounded integers replaced by
// int64 where the reference's bounds hold and by 128-bit products where they do not (the mixer's
// step), and Python's floor division kept as floor division.
#pragma once

#include <array>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "hashmap.h"

namespace lmz {

struct PredictorParams {
  int bias_lr = 4800, bigram_lr = 9600, temp_lr = 0, ngram_order = 6;
  bool match = true;
  int mix_lr = 2000;
  bool mixer2 = true;
  bool v3 = true;  // numerics version 3: exp3 computed, one output pass (adapt.py)
};

class Predictor {
 public:
  static constexpr int TOTAL_BITS = 24;
  static constexpr int64_t ONE = int64_t(1) << TOTAL_BITS;
  static constexpr int BIAS_FRAC = 14;
  static constexpr int64_t BIAS_LIMIT = int64_t(12) << (10 + BIAS_FRAC);
  static constexpr int64_t BETA_ONE = 1 << 12;
  static constexpr int BIGRAM_FLOOR_BITS = 9;
  static constexpr int NGRAM_MIN = 2;
  static constexpr int MATCH_MIN = 5;
  static constexpr int MATCH_CAP = 64;
  static constexpr int64_t MIX_ONE = 1 << 16;
  static constexpr int64_t MIX_MIN = 16, MIX_MAX = 1 << 22;
  static constexpr int64_t MIX_INIT = MIX_ONE / 16;
  static constexpr int N_CLASSES = 5;
  static constexpr int N_KEYS = 504;  // both mixers' context keys are < 504

  Predictor(const PredictorParams& p, std::vector<int64_t> exp_table, int vocab, std::vector<int64_t> classes);

  // Frequencies (>= 1, sum 2**24) of the next token from the model's integer logits z [V].
  void predict(const int64_t* z, int32_t* out);
  // The same from int32 logits |z| <= LOGIT32_LIMIT (kernels.h), read at half the bytes.
  void predict(const int32_t* z, int32_t* out);
  // Learn the token just coded (the one predict was asked about).
  void update(int32_t y);

  // Version 3: the maxima of the last predicted row's blocks of TOPK_BLOCK entries (made by its
  // output pass, for the coder's candidate search), else nullptr.
  const int32_t* block_maxima() const { return bm_ready_ ? bm_.data() : nullptr; }

  int vocab() const { return V_; }
  const PredictorParams& params() const { return p_; }

  // -- state, for digests and inspection ------------------------------------------------------
  struct Node {
    int32_t parent = -1, token = -1, depth = 0;
    int64_t n = 0;                                  // total count of this context
    std::vector<std::pair<int32_t, int64_t>> next;  // (token, count), in first-seen order
  };
  struct BigramRow {
    std::vector<int32_t> keys;  // ascending
    std::vector<int64_t> vals;
  };
  const std::vector<int32_t>& unigram() const { return unigram_; }
  const std::unordered_map<int32_t, BigramRow>& bigram() const { return bigram_; }
  int64_t beta() const { return beta_; }
  int64_t match_ptr() const { return match_ptr_; }
  int64_t match_len() const { return match_len_; }
  const std::vector<int32_t>& history() const { return history_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const U64Map& match_index() const { return match_index_; }  // key: trie node of the 5-token context
  // Weight sets present: (key, weights) of the first / second mixer.
  std::vector<std::pair<int, std::vector<int64_t>>> weight_sets(bool second) const;
  // Probability (2**-24) of the last coded token per component: teacher, order2..6, match (-1: absent).
  const std::array<int64_t, 8>& last() const { return last_; }

 private:
  void biased(const int64_t* z);  // et_ = exp[min(max - zb, last)] of the biased logits
  void predict_impl(const int64_t* z, const int32_t* z32, int32_t* out);  // one of z, z32
  bool biased3(const int64_t* z, const int32_t* z32);  // version 3: et_ = exp3(max - zb); false: z32 out of bounds
  void relative_logits(const int64_t* z, int32_t* out);  // the int64 path of both
  int64_t out3(bool mix, int sh, int64_t dense, int sh2, int64_t r2, int32_t* out);
  void unstep();  // version 3: undo predict's unigram step (predicted again without an update)
  const BigramRow* add_bigram_row();
  void remove_bigram_row(const BigramRow* row);
  int64_t teacher_f(int v) const;  // the biased teacher's frequency of token v
  void learn_mixer(int64_t* w, const int64_t* probs, const bool* avail);
  void learn_bias(int32_t y);
  void learn_counts(int32_t y);
  void walk();  // cur_[k]: trie node of the order-k context of history_, k = 1..depth_
  int32_t child(int32_t node, int32_t token);
  int match_bucket() const;

  PredictorParams p_;
  std::vector<int64_t> exp_;
  int V_;
  std::vector<int64_t> classes_;
  int n_comp_, depth_;

  // |unigram| < 2**31: each token moves an entry by at most lr * 2**8 <= 2**24, and it is clipped
  // to 12 nats (2**27.6) every 64 tokens, so int32 holds it exactly (and halves the traffic).
  std::vector<int32_t> unigram_;
  std::unordered_map<int32_t, BigramRow> bigram_;
  int64_t beta_ = BETA_ONE;
  std::vector<int32_t> history_;
  std::vector<Node> nodes_;
  U64Map children_;     // (parent << 32 | token) -> child node
  U64Map match_index_;  // order-5 node -> position after it
  int64_t match_ptr_ = -1, match_len_ = 0;
  std::vector<int64_t> weights_, weights2_;  // N_KEYS x n_comp_
  std::vector<uint8_t> present_, present2_;
  std::array<int32_t, 8> cur_{};  // trie nodes of the current contexts, by order (0: root)

  // What predict saw, for update. The biased teacher's weights et_ (<= 2**30) define its
  // frequencies f = 1 + floor(et * r / 2**32) (+ rest_ at arg_t_), computed where needed.
  // zb_: scratch of biased(): the low 32 bits of w = (u >> 14) + z (or, on the int64 path, the
  // biased logits relative to their maximum); zb64_ that path's int64 logits.
  std::vector<int32_t> exp32_, zb_, et_, sel_;
  std::vector<int64_t> zb64_, adds_, z_copy_, z_wide_;
  std::vector<int32_t> touched_;
  std::vector<int32_t> bm_;  // block maxima of the output row (version 3)
  bool bm_ready_ = false;
  void refresh_block(const int32_t* out, int v);  // bm_ of v's block, after out[v] changed
  int64_t sum_t_ = 0, r_ = 0, rest_ = 0;
  int ns_ = 0;           // version 3: tokens in sel_ (collected by predict's output pass)
  bool stepped_ = false;  // version 3: predict took the unigram step, update has not run yet
  int arg_t_ = 0;
  int64_t ctx_n_[8] = {0}, ctx_d_[8] = {0};
  int32_t ctx_node_[8] = {0};
  bool ctx_seen_[8] = {false};
  int64_t predicted_ = -1;
  int key_ = 0, key2_ = -1;
  std::array<int64_t, 8> last_{};
};

}  // namespace lmz
