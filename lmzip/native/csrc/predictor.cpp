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
  for (int64_t x : exp_) {
    if (x < 0 || x > (int64_t(1) << 30)) throw std::invalid_argument("exp table entries must be 0..2**30");
    exp32_.push_back(int32_t(x));
  }
  zb_.assign(size_t(V_), 0);
  et_.assign(size_t(V_), 0);
  sel_.assign(size_t(V_) + 1, 0);
  adds_.assign(size_t(V_), 0);
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

int64_t Predictor::teacher_f(int v) const {
  return int64_t((uint64_t(uint32_t(et_[size_t(v)])) * uint64_t(r_)) >> 32) + 1 + (v == arg_t_ ? rest_ : 0);
}

const Predictor::BigramRow* Predictor::add_bigram_row() {
  if (history_.empty()) return nullptr;
  auto it = bigram_.find(history_.back());
  if (it == bigram_.end() || it->second.keys.empty()) return nullptr;
  const BigramRow* row = &it->second;
  for (size_t i = 0; i < row->keys.size(); ++i) unigram_[size_t(row->keys[i])] += int32_t(row->vals[i]);
  return row;
}

void Predictor::remove_bigram_row(const BigramRow* row) {
  if (row)
    for (size_t i = 0; i < row->keys.size(); ++i) unigram_[size_t(row->keys[i])] -= int32_t(row->vals[i]);
}

void Predictor::biased(const int64_t* z) {
  // zb = unigram (+ the bigram row of the previous token), >> BIAS_FRAC, + z (or (z*beta) >> 12);
  // et = exp[min(max(zb) - zb, last)]. The bigram row is sparse: it is added to the unigram bias
  // in place for these passes and taken out again (the sum stays below 2**31).
  const DenseKernels& K = dense();
  const BigramRow* row = add_bigram_row();
  const int32_t last = int32_t(exp32_.size()) - 1;
  bool done = false;
  if (beta_ == BETA_ONE) {
    // et = exp[min(max(w) - w, last)] with w = (u >> 14) + z (dense_impl.h derives it), in
    // uint32 lanes when w spans less than 2**32 (any real model's logits)
    int64_t wmax, wmin;
    K.bias_logits(z, unigram_.data(), V_, zb_.data(), &wmax, &wmin);
    if (uint64_t(wmax) - uint64_t(wmin) < (uint64_t(1) << 32)) {
      const int32_t top = int32_t(uint32_t(uint64_t(wmax)));
      sum_t_ = K.exp_rel(zb_.data(), top, exp32_.data(), last, et_.data(), V_);
      arg_t_ = K.find32(zb_.data(), V_, top);  // et's first maximum: d == 0 there only
      done = true;
    }
  }
  if (!done) {
    // A learned temperature, or logits spanning 2**32 or more
    relative_logits(z, zb_.data());
    K.exp32(zb_.data(), 0, exp32_.data(), last, et_.data(), V_, &sum_t_, &arg_t_);
  }
  remove_bigram_row(row);
}

// The biased logits in int64 (a learned temperature, or logits spanning 2**32 or more), then
// relative to their maximum in int32, clamped at 2**29 below it: there the table saturates and
// exp3 is 0 either way, and the clamp of z at max(z) - 2**29 never moves the maximum.
void Predictor::relative_logits(const int64_t* z, int32_t* out) {
  const DenseKernels& K = dense();
  const int64_t lo = -(int64_t(1) << 29);
  zb64_.resize(size_t(V_));
  if (beta_ == BETA_ONE) {
    const int64_t zmax = K.max(z, V_);
    for (int v = 0; v < V_; ++v) zb64_[size_t(v)] = (int64_t(unigram_[size_t(v)]) >> BIAS_FRAC) + std::max(z[v] - zmax, lo);
  } else {
    for (int v = 0; v < V_; ++v) zb64_[size_t(v)] = (int64_t(unigram_[size_t(v)]) >> BIAS_FRAC) + ((z[v] * beta_) >> 12);
  }
  const int64_t m64 = K.max(zb64_.data(), V_);
  for (int v = 0; v < V_; ++v) out[v] = int32_t(std::max(zb64_[size_t(v)] - m64, lo));
}

// Version 3: the same biased logits, et = exp3(max - zb) computed in place of the buffer that
// held them (one buffer less in the cache), the first maximum found on the way.
bool Predictor::biased3(const int64_t* z, const int32_t* z32) {
  const DenseKernels& K = dense();
  const BigramRow* row = add_bigram_row();
  struct Undo {  // the bigram row leaves the unigram bias on every way out
    Predictor* p;
    const BigramRow* row;
    ~Undo() { p->remove_bigram_row(row); }
  } undo{this, row};
  bool done = false;
  if (beta_ == BETA_ONE) {
    int64_t wmax, wmin;
    if (z32) {
      int64_t zfar;
      K.bias_logits32(z32, unigram_.data(), V_, et_.data(), &wmax, &wmin, &zfar);
      if (zfar > int64_t(LOGIT32_LIMIT)) return false;  // w may have wrapped: the caller widens z
    } else {
      K.bias_logits(z, unigram_.data(), V_, et_.data(), &wmax, &wmin);
    }
    if (uint64_t(wmax) - uint64_t(wmin) < (uint64_t(1) << 32)) {
      sum_t_ = K.exp3_rel(et_.data(), int32_t(uint32_t(uint64_t(wmax))), V_, &arg_t_);
      done = true;
    }
  }
  if (!done) {
    if (!z) return false;  // int32 logits span less than 2**32 when they are in bounds: not reached
    relative_logits(z, et_.data());  // as in biased()
    sum_t_ = K.exp3_rel(et_.data(), 0, V_, &arg_t_);
  }
  if (arg_t_ >= V_) throw std::logic_error("exp3 pass found no maximum");  // the maximum is always there
  return true;
}

// Version 3's one pass over et: the output row, and for update() the unigram step (its dense
// part does not depend on the coded token) and the bigram's candidates.
int64_t Predictor::out3(bool mix, int sh, int64_t dense, int sh2, int64_t r2, int32_t* out) {
  Out3Args a{};
  a.et = et_.data();
  a.n = V_;
  a.r = r_;
  a.mix = mix;
  a.sh = sh, a.sh2 = sh2, a.dense = dense, a.r2 = r2;
  a.out = out;
  if (p_.bias_lr) a.u = unigram_.data(), a.lr = p_.bias_lr;
  if (p_.bigram_lr && !history_.empty()) a.sel = sel_.data(), a.thr = ONE >> BIGRAM_FLOOR_BITS;
  bm_.resize(size_t((V_ + TOPK_BLOCK - 1) / TOPK_BLOCK));
  a.bm = bm_.data();
  const int64_t s = lmz::dense().out3(a, &ns_);
  bm_ready_ = true;
  stepped_ = p_.bias_lr != 0;
  return s;
}

void Predictor::refresh_block(const int32_t* out, int v) {
  const int i0 = v / TOPK_BLOCK * TOPK_BLOCK, i1 = std::min(V_, i0 + TOPK_BLOCK);
  bm_[size_t(v / TOPK_BLOCK)] = *std::max_element(out + i0, out + i1);
}

void Predictor::unstep() {
  const uint64_t lr = uint64_t(p_.bias_lr);
  for (int v = 0; v < V_; ++v) unigram_[size_t(v)] += int32_t((uint64_t(teacher_f(v)) * lr) >> 16);
  stepped_ = false;
}

void Predictor::predict(const int64_t* z, int32_t* out) { predict_impl(z, nullptr, out); }

void Predictor::predict(const int32_t* z, int32_t* out) {
  if (p_.v3 && !p_.temp_lr) return predict_impl(nullptr, z, out);  // beta stays 1 without temp_lr
  z_wide_.assign(z, z + V_);  // the paths that need int64 logits
  predict_impl(z_wide_.data(), nullptr, out);
}

void Predictor::predict_impl(const int64_t* z, const int32_t* z32, int32_t* out) {
  const DenseKernels& K = dense();
  const bool v3 = p_.v3;
  bm_ready_ = false;
  if (v3 && stepped_) unstep();
  if (v3) {
    if (!biased3(z, z32)) {  // int32 logits out of bounds: nothing learned yet, widen them
      z_wide_.assign(z32, z32 + V_);
      return predict_impl(z_wide_.data(), nullptr, out);
    }
  } else {
    biased(z);
  }
  // The biased teacher alone (what its learner and the mixer score): normalize(et) of adapt.py
  // (version 3: without the remainder, and the teacher's mass in the mixture is sum(et) >> sh).
  const int64_t spare = ONE - V_;
  const int64_t sum_t = sum_t_;
  r_ = (spare << 32) / sum_t;
  const int sh = std::max(0, bit_length(sum_t) - 32);
  int64_t fsum, s_t;
  if (v3) {
    rest_ = 0;
    s_t = sum_t >> sh;
  } else {
    K.teacher_sums(et_.data(), V_, r_, sh, &fsum, &s_t);
    rest_ = spare - fsum;
  }
  const int64_t top = teacher_f(arg_t_);  // f grows with e, and the first maximum took the remainder
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
    if (v3) {
      out[arg_t_] += int32_t(spare - out3(false, 0, 0, 0, 0, out));
      refresh_block(out, arg_t_);
      return;
    }
    K.teacher_out(et_.data(), V_, r_, out);
    out[arg_t_] += int32_t(rest_);
    return;
  }
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
  // e = (et >> sh) * dense everywhere (the teacher and the counts' escape mass), plus the
  // counts and the match at a few tokens ("adds"); e >>= sh2; out = normalize(e). The dense part
  // is never stored: two passes over et give its sum and maximum, then the output; the few
  // tokens with adds are corrected exactly.
  int64_t dense = wn[0];
  for (int k = 1; k <= p_.ngram_order; ++k)
    if (ctx_seen_[k]) dense += (wn[k] * ctx_d_[k]) / (ctx_n_[k] + ctx_d_[k]);
  touched_.clear();
  auto add = [&](int32_t v, int64_t x) {
    if (adds_[size_t(v)] == 0 && x) touched_.push_back(v);
    adds_[size_t(v)] += x;
  };
  int64_t esum = s_t * dense;
  for (int k = 1; k <= p_.ngram_order; ++k) {
    if (!ctx_seen_[k]) continue;
    const int64_t a = (wn[k] * s_t) / (ctx_n_[k] + ctx_d_[k]);
    for (const auto& tc : nodes_[size_t(ctx_node_[k])].next) {
      add(tc.first, tc.second * a);
      esum += tc.second * a;
    }
  }
  if (predicted_ >= 0) {
    add(int32_t(predicted_), wn[n_comp_ - 1] * s_t);
    esum += wn[n_comp_ - 1] * s_t;
  }
  const int sh2 = std::max(0, bit_length(esum) - 33);  // keeps normalize's ratio precise
  auto dense_at = [&](int32_t v) { return (int64_t(uint32_t(et_[size_t(v)]) >> sh) * dense); };
  int64_t r2, fs2;
  int best = 0;
  if (v3) {
    // esum bounds the sum of e (sum(et >> sh) <= s_t), so esum >> sh2 bounds the sum of g and
    // the floors below sum to at most spare: no pass for the exact sum.
    r2 = (spare << 32) / std::max<int64_t>(1, esum >> sh2);
    fs2 = out3(true, sh, dense, sh2, r2, out);
  } else {
    int64_t sum2, key;
    K.mix_sum_arg(et_.data(), V_, sh, dense, sh2, &sum2, &key);
    for (int32_t v : touched_) {
      const int64_t gd = dense_at(v) >> sh2, gt = (dense_at(v) + adds_[size_t(v)]) >> sh2;
      sum2 += gt - gd;
      key = std::max(key, (gt << 24) | ((int64_t(1) << 24) - 1 - v));
    }
    best = int(((int64_t(1) << 24) - 1) - (key & ((int64_t(1) << 24) - 1)));
    r2 = (spare << 32) / sum2;
    fs2 = K.mix_out(et_.data(), V_, sh, dense, sh2, r2, out);
  }
  // the dense pass wrote the tokens with adds as if they had none: their entries, exactly
  for (int32_t v : touched_) {
    const int64_t gd = dense_at(v) >> sh2, gt = (dense_at(v) + adds_[size_t(v)]) >> sh2;
    const int64_t xd = int64_t((uint64_t(gd) * uint64_t(r2)) >> 32), xt = int64_t((uint64_t(gt) * uint64_t(r2)) >> 32);
    out[v] = int32_t(xt + 1);
    fs2 += xt - xd;
    adds_[size_t(v)] = 0;
  }
  if (v3) {
    // the remainder to the largest of the teacher's first maximum and the tokens with adds
    // (every other entry is at most the former's), the smallest id among equals
    best = arg_t_;
    for (int32_t v : touched_)
      if (out[v] > out[best] || (out[v] == out[best] && v < best)) best = v;
  }
  out[best] += int32_t(spare - fs2);
  if (bm_ready_) {  // the entries changed since the output pass
    for (int32_t v : touched_) refresh_block(out, v);
    refresh_block(out, best);
  }
}

void Predictor::update(int32_t y) {
  if (y < 0 || y >= V_) throw std::out_of_range("token out of range");
  const int64_t p_t = teacher_f(y);
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
  const DenseKernels& K = dense();
  const int64_t floor_f = ONE >> BIGRAM_FLOOR_BITS;
  int ns = 0;
  const bool want_sel = p_.bigram_lr && !history_.empty();
  // The biased teacher's f at its first maximum is f without the remainder plus rest_: the dense
  // passes below use the former, and that one token is corrected.
  const int64_t f_arg = teacher_f(arg_t_), f_arg_plain = f_arg - rest_;
  if (p_.bias_lr) {
    // state += lr * ([v == y] - f / 2**24) in 2**-24 nat units, lr in 2**-16 nat (version 3:
    // predict's output pass took the dense part, and f has no remainder)
    const int64_t lr = p_.bias_lr;
    if (p_.v3) {
      ns = ns_;
      stepped_ = false;
    } else {
      ns = K.unigram_step32(unigram_.data(), et_.data(), V_, r_, lr, floor_f, sel_.data());
      unigram_[size_t(arg_t_)] += int32_t(((f_arg_plain * lr) >> 16) - ((f_arg * lr) >> 16));
    }
    unigram_[size_t(y)] += int32_t(lr << 8);
    if (history_.size() % 64 == 0) K.clip32(unigram_.data(), int32_t(BIAS_LIMIT), V_);
  } else if (want_sel) {
    ns = p_.v3 ? ns_ : K.select_teacher(et_.data(), V_, r_, floor_f, sel_.data());
  }
  if (want_sel) {
    const int64_t lr = p_.bigram_lr;
    // sel: tokens with p >= 2**-9 (the first maximum's f corrected), plus y; ascending
    std::vector<int32_t> sel(sel_.begin(), sel_.begin() + ns);
    if (f_arg_plain < floor_f && f_arg >= floor_f) sel.insert(std::lower_bound(sel.begin(), sel.end(), arg_t_), arg_t_);
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
      int64_t delta = -((teacher_f(v) * lr) >> 16);
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
    for (int v = 0; v < V_; ++v) dot += __int128(teacher_f(v)) * z_copy_[size_t(v)];
    const __int128 g = __int128(z_copy_[size_t(y)]) * ONE - dot;  // z_y * 2**24 (a shift of a negative is UB)
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
