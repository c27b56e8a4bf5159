// The adaptive predictor (see predictor.h); comments cite the reference's lines where it matters.
#include "predictor.h"

#include "kernels.h"

#include <algorithm>
#include <stdexcept>

namespace lmz {

namespace {
inline int bit_length(int64_t x) { return x <= 0 ? 0 : 64 - __builtin_clzll(uint64_t(x)); }

// Python's floor division for a positive divisor.
inline int64_t floor_div(__int128 num, __int128 den) {
  __int128 q = num / den;
  if ((num % den != 0) && (num < 0)) --q;
  return int64_t(q);
}

// normalize (adapt.py): weights e >= 0 (some > 0) -> frequencies >= 1 summing to 2**24,
// 1 + floor(e * r / 2**32) with r = floor(spare * 2**32 / sum(e)); remainder to the first maximum.
template <typename Out>
void normalize(const int64_t* e, int V, int64_t sum, int arg, Out* f) {
  const DenseKernels& K = dense();
  const int64_t spare = Predictor::ONE - V;
  const int64_t r = (spare << 32) / sum;
  const int64_t fsum = sizeof(Out) == 8 ? K.scale64(e, r, reinterpret_cast<int64_t*>(f), V)
                                        : K.scale32(e, r, reinterpret_cast<int32_t*>(f), V);
  f[arg] += Out(spare - fsum);
}
}  // namespace

Predictor::Predictor(const PredictorParams& p, std::vector<int64_t> exp_table, int vocab, std::vector<int64_t> classes)
    : p_(p), exp_(std::move(exp_table)), V_(vocab), classes_(std::move(classes)) {
  if (p_.ngram_order < 0 || p_.ngram_order > 6) throw std::invalid_argument("n-gram order must be 0..6");
  if (V_ < 1 || V_ >= ONE) throw std::invalid_argument("vocabulary size out of range");
  if (exp_.empty() || exp_.back() != 0) throw std::invalid_argument("bad exp table");
  if (p_.mixer2 && int(classes_.size()) != V_) throw std::invalid_argument("the second mixer needs the token classes");
  for (int64_t c : classes_)
    if (c < 0 || c >= N_CLASSES) throw std::invalid_argument("token class out of range");
  n_comp_ = 2 + p_.ngram_order;
  depth_ = std::max(p_.ngram_order, p_.match ? MATCH_MIN : 0);
  unigram_.assign(size_t(V_), 0);
  e_t_.assign(size_t(V_), 0);
  f_.assign(size_t(V_), 0);
  e_.assign(size_t(V_), 0);
  weights_.assign(size_t(N_KEYS) * n_comp_, 0);
  weights2_.assign(size_t(N_KEYS) * n_comp_, 0);
  present_.assign(N_KEYS, 0);
  present2_.assign(N_KEYS, 0);
  nodes_.emplace_back();  // root: the empty context
  cur_.fill(-1);
  cur_[0] = 0;
  last_.fill(-1);
}

int32_t Predictor::child(int32_t node, int32_t token) {
  const uint64_t key = (uint64_t(uint32_t(node)) << 32) | uint32_t(token);
  return children_.get_or_insert(key, [&] {
    Node c;
    c.parent = node;
    c.token = token;
    c.depth = nodes_[size_t(node)].depth + 1;
    nodes_.push_back(std::move(c));
    return int32_t(nodes_.size() - 1);
  });
}

void Predictor::walk() {
  const int64_t h = int64_t(history_.size());
  int32_t node = 0;
  for (int k = 1; k <= depth_; ++k) {
    if (h < k) {
      cur_[size_t(k)] = -1;
      continue;
    }
    node = child(node, history_[size_t(h - k)]);
    cur_[size_t(k)] = node;
  }
}

int Predictor::match_bucket() const {
  const int64_t m = match_len_;
  return match_ptr_ < 0 ? 0 : (m < 8 ? 1 : (m < 16 ? 2 : 3));
}

void Predictor::biased(const int64_t* z) {
  // zb = unigram (+ the bigram row of the previous token), >> BIAS_FRAC, + z (or (z*beta) >> 12);
  // e_t = exp[min(max(zb) - zb, last)]. The bigram row is sparse: its entries are recomputed.
  const DenseKernels& K = dense();
  int64_t* zb = e_.data();  // scratch until the mixture needs it
  int64_t mx = K.biased(unigram_.data(), z, beta_, zb, V_);
  if (!history_.empty()) {
    auto it = bigram_.find(history_.back());
    if (it != bigram_.end() && !it->second.keys.empty()) {
      bool lowered_max = false;
      for (size_t i = 0; i < it->second.keys.size(); ++i) {
        const int32_t v = it->second.keys[i];
        const int64_t u = unigram_[size_t(v)] + it->second.vals[i];
        const int64_t zz = beta_ == BETA_ONE ? z[v] : ((z[v] * beta_) >> 12);
        const int64_t nv = (u >> BIAS_FRAC) + zz;
        lowered_max |= zb[v] == mx && nv < mx;
        zb[v] = nv;
      }
      if (lowered_max) {
        mx = K.max(zb, V_);
      } else {
        for (int32_t v : it->second.keys) mx = std::max(mx, zb[v]);
      }
    }
  }
  K.exp_weights(zb, mx, exp_.data(), int64_t(exp_.size()) - 1, e_t_.data(), V_, &sum_t_, &arg_t_);
}

void Predictor::predict(const int64_t* z, int32_t* out) {
  const DenseKernels& K = dense();
  biased(z);
  const int64_t sum_t = sum_t_;
  normalize(e_t_.data(), V_, sum_t, arg_t_, f_.data());  // the biased teacher alone: what its learner and the mixer score
  const int64_t top = f_[size_t(arg_t_)];  // f grows with e, and the first maximum took the remainder
  if (p_.temp_lr) z_copy_.assign(z, z + V_);

  // n-gram contexts seen so far (orders >= NGRAM_MIN)
  const int64_t hlen = int64_t(history_.size());
  int hi = 0;
  for (int k = 1; k <= p_.ngram_order; ++k) {
    ctx_seen_[k] = false;
    if (k >= NGRAM_MIN && hlen >= k) {
      const Node& nd = nodes_[size_t(cur_[size_t(k)])];
      if (!nd.next.empty()) {
        ctx_seen_[k] = true;
        ctx_node_[k] = cur_[size_t(k)];
        ctx_n_[k] = nd.n;
        ctx_d_[k] = int64_t(nd.next.size());
        hi = k;
      }
    }
  }
  predicted_ = (p_.match && match_ptr_ >= 0) ? history_[size_t(match_ptr_)] : -1;
  // _mixer_context
  {
    int order = 0, nb = 0, det = 0;
    if (hi) {
      order = hi;
      nb = ctx_n_[hi] == 1 ? 0 : (ctx_n_[hi] < 4 ? 1 : 2);
      det = ctx_d_[hi] == 1;
    }
    const int conf = top < ONE / 4 ? 0 : (top < (ONE * 3) / 4 ? 1 : 2);
    key_ = (((order * 3 + nb) * 2 + det) * 4 + match_bucket()) * 3 + conf;
  }
  int64_t* w = weights_.data() + size_t(key_) * n_comp_;
  if (!present_[size_t(key_)]) {
    present_[size_t(key_)] = 1;
    w[0] = MIX_ONE;
    for (int i = 1; i < n_comp_; ++i) w[i] = MIX_INIT;
  }
  int64_t* w2 = nullptr;
  key2_ = -1;
  if (p_.mixer2) {
    const int mb = match_bucket();
    if (hlen < 3) {
      key2_ = N_CLASSES * N_CLASSES * N_CLASSES * 4 + mb;
    } else {
      const int64_t* c = classes_.data();
      key2_ = int(((c[history_[size_t(hlen - 1)]] * N_CLASSES + c[history_[size_t(hlen - 2)]]) * N_CLASSES +
                   c[history_[size_t(hlen - 3)]]) * 4 + mb);
    }
    w2 = weights2_.data() + size_t(key2_) * n_comp_;
    if (!present2_[size_t(key2_)]) {
      present2_[size_t(key2_)] = 1;
      w2[0] = MIX_ONE;
      for (int i = 1; i < n_comp_; ++i) w2[i] = MIX_INIT;
    }
  }
  // avail: teacher, the orders seen, the match
  int avail[8], na = 0;
  avail[na++] = 0;
  for (int k = 1; k <= p_.ngram_order; ++k)
    if (ctx_seen_[k]) avail[na++] = k;
  if (predicted_ >= 0) avail[na++] = n_comp_ - 1;
  if (na == 1) {
    for (int v = 0; v < V_; ++v) out[v] = int32_t(f_[size_t(v)]);
    return;
  }
  (void)K;
  // Mixture sum_i w_i P_i with weights rescaled to sum 2**16 (two mixers: the mean of both).
  int64_t wn[8] = {0};
  int64_t wsum = 0;
  for (int a = 0; a < na; ++a) wsum += w[avail[a]];
  for (int a = 0; a < na; ++a) wn[avail[a]] = (w[avail[a]] << 16) / wsum;
  if (w2) {
    int64_t wsum2 = 0;
    for (int a = 0; a < na; ++a) wsum2 += w2[avail[a]];
    for (int a = 0; a < na; ++a) wn[avail[a]] = (wn[avail[a]] + ((w2[avail[a]] << 16) / wsum2)) >> 1;
  }
  const int sh = std::max(0, bit_length(sum_t) - 32);
  int64_t s_t = 0;
  int64_t dense = wn[0];
  for (int k = 1; k <= p_.ngram_order; ++k)
    if (ctx_seen_[k]) dense += (wn[k] * ctx_d_[k]) / (ctx_n_[k] + ctx_d_[k]);  // the counts' escape mass
  int64_t* e = e_.data();
  s_t = K.mix_dense(e_t_.data(), sh, dense, e, V_);
  int64_t esum = s_t * dense;
  for (int k = 1; k <= p_.ngram_order; ++k) {
    if (!ctx_seen_[k]) continue;
    const int64_t add = (wn[k] * s_t) / (ctx_n_[k] + ctx_d_[k]);
    for (const auto& tc : nodes_[size_t(ctx_node_[k])].next) {
      e[tc.first] += tc.second * add;
      esum += tc.second * add;
    }
  }
  if (predicted_ >= 0) {
    e[predicted_] += wn[n_comp_ - 1] * s_t;
    esum += wn[n_comp_ - 1] * s_t;
  }
  const int sh2 = std::max(0, bit_length(esum) - 33);  // keeps normalize's ratio precise
  int64_t sum2;
  int arg2;
  K.shift_sum_arg(e, sh2, V_, &sum2, &arg2);
  normalize(e, V_, sum2, arg2, out);
}

void Predictor::update(int32_t y) {
  if (y < 0 || y >= V_) throw std::out_of_range("token out of range");
  const int64_t p_t = f_[size_t(y)];
  int64_t probs[8] = {0};
  bool av[8] = {false};
  probs[0] = p_t;
  av[0] = true;
  for (int k = 1; k <= p_.ngram_order; ++k) {
    if (!ctx_seen_[k]) continue;
    int64_t cy = 0;
    for (const auto& tc : nodes_[size_t(ctx_node_[k])].next)
      if (tc.first == y) {
        cy = tc.second;
        break;
      }
    probs[k] = ((cy << TOTAL_BITS) + ctx_d_[k] * p_t) / (ctx_n_[k] + ctx_d_[k]);
    av[k] = true;
  }
  probs[n_comp_ - 1] = predicted_ == y ? ONE : 0;
  av[n_comp_ - 1] = predicted_ >= 0;
  learn_mixer(weights_.data() + size_t(key_) * n_comp_, probs, av);
  if (key2_ >= 0) learn_mixer(weights2_.data() + size_t(key2_) * n_comp_, probs, av);  // each set learns as if alone
  last_.fill(-1);
  last_[0] = p_t;
  for (int k = 1; k <= p_.ngram_order; ++k)
    if (ctx_seen_[k]) last_[size_t(k)] = probs[k];  // slot k: order k (order 1 is never seen)
  if (predicted_ >= 0) last_[7] = probs[n_comp_ - 1];
  learn_bias(y);
  learn_counts(y);
}

void Predictor::learn_mixer(int64_t* w, const int64_t* probs, const bool* avail) {
  int na = 0;
  for (int i = 0; i < n_comp_; ++i) na += avail[i];
  if (!p_.mix_lr || na < 2) return;
  int64_t wsum = 0, dot = 0;
  for (int i = 0; i < n_comp_; ++i)
    if (avail[i]) wsum += w[i], dot += w[i] * probs[i];
  const int64_t mixed = std::max<int64_t>(1, dot / wsum);
  for (int i = 0; i < n_comp_; ++i) {
    if (!avail[i]) continue;
    // d log P / d w_i = (P_i - P) / (W P), scaled by W, the ratio P_i / P capped at 16
    const int64_t gain = std::min(probs[i], 16 * mixed) - mixed;
    const int64_t step = floor_div(__int128(p_.mix_lr) * gain * wsum, __int128(mixed) << 16);
    w[i] = std::min<int64_t>(MIX_MAX, std::max<int64_t>(MIX_MIN, w[i] + step));
  }
}

void Predictor::learn_bias(int32_t y) {
  const int64_t* f = f_.data();
  if (p_.bias_lr) {
    const int64_t lr = p_.bias_lr;
    dense().unigram_step(unigram_.data(), f, lr, V_);
    unigram_[size_t(y)] += lr << 8;
    if (history_.size() % 64 == 0) dense().clip(unigram_.data(), BIAS_LIMIT, V_);
  }
  if (p_.bigram_lr && !history_.empty()) {
    const int64_t lr = p_.bigram_lr;
    const int64_t floor_f = ONE >> BIGRAM_FLOOR_BITS;
    // sel: tokens with p >= 2**-9, plus y; ascending
    thread_local std::vector<int32_t> sel;
    sel.resize(size_t(V_) + 1);
    int ns = dense().select_ge(f, floor_f, V_, sel.data());
    sel.resize(size_t(ns));
    auto at = std::lower_bound(sel.begin(), sel.end(), y);
    if (at == sel.end() || *at != y) sel.insert(at, y);
    BigramRow& row = bigram_[history_.back()];
    BigramRow merged;
    merged.keys.reserve(row.keys.size() + sel.size());
    merged.vals.reserve(row.keys.size() + sel.size());
    size_t i = 0, j = 0;
    while (i < row.keys.size() || j < sel.size()) {
      if (j == sel.size() || (i < row.keys.size() && row.keys[i] < sel[j])) {
        merged.keys.push_back(row.keys[i]);
        merged.vals.push_back(row.vals[i]);
        ++i;
        continue;
      }
      const int32_t v = sel[j++];
      int64_t val = 0;
      if (i < row.keys.size() && row.keys[i] == v) val = row.vals[i++];
      int64_t delta = -((f[v] * lr) >> 16);
      if (v == y) delta += lr << 8;
      merged.keys.push_back(v);
      merged.vals.push_back(std::min(BIAS_LIMIT, std::max(-BIAS_LIMIT, val + delta)));
    }
    row.keys.swap(merged.keys);
    row.vals.swap(merged.vals);
  }
  if (p_.temp_lr) {
    // d log p_y / d beta = z_y - E_p[z]; beta in 2**-12
    __int128 dot = 0;
    for (int v = 0; v < V_; ++v) dot += __int128(f[v]) * z_copy_[size_t(v)];
    const __int128 g = (__int128(z_copy_[size_t(y)]) << TOTAL_BITS) - dot;
    const __int128 ag = g < 0 ? -g : g;
    const int64_t step = int64_t((ag * p_.temp_lr) >> 38);  // rounded toward zero
    beta_ = std::min(4 * BETA_ONE, std::max(BETA_ONE / 4, beta_ + (g >= 0 ? step : -step)));
  }
}

void Predictor::learn_counts(int32_t y) {
  const int64_t hlen = int64_t(history_.size());
  for (int k = 1; k <= p_.ngram_order; ++k) {
    if (hlen < k) continue;
    Node& nd = nodes_[size_t(cur_[size_t(k)])];
    bool found = false;
    for (auto& tc : nd.next)
      if (tc.first == y) {
        ++tc.second;
        found = true;
        break;
      }
    if (!found) nd.next.emplace_back(y, 1);
    ++nd.n;
  }
  if (p_.match) {
    if (match_ptr_ >= 0 && history_[size_t(match_ptr_)] == y) {
      ++match_ptr_;
      match_len_ = std::min<int64_t>(MATCH_CAP, match_len_ + 1);
    } else {
      match_ptr_ = -1;
      match_len_ = 0;
    }
  }
  history_.push_back(y);
  walk();
  const int64_t h = int64_t(history_.size());
  if (p_.match && h >= MATCH_MIN) {
    const uint64_t key = uint64_t(cur_[MATCH_MIN]);
    if (match_ptr_ < 0) {
      const int32_t* prev = match_index_.find(key);
      if (prev) {
        const int64_t pv = *prev;
        int64_t n = MATCH_MIN;
        while (n < MATCH_CAP && pv - n - 1 >= 0 && history_[size_t(pv - n - 1)] == history_[size_t(h - n - 1)]) ++n;
        match_ptr_ = pv;
        match_len_ = n;
      }
    }
    match_index_.set(key, int32_t(h));
  }
}

std::vector<std::pair<int, std::vector<int64_t>>> Predictor::weight_sets(bool second) const {
  std::vector<std::pair<int, std::vector<int64_t>>> out;
  const auto& pres = second ? present2_ : present_;
  const auto& w = second ? weights2_ : weights_;
  for (int k = 0; k < N_KEYS; ++k)
    if (pres[size_t(k)]) out.emplace_back(k, std::vector<int64_t>(w.begin() + size_t(k) * n_comp_, w.begin() + size_t(k + 1) * n_comp_));
  return out;
}

}  // namespace lmz
