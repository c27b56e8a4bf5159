// Open-addressing hash map from 64-bit keys to 32-bit values (linear probing, grows at 1/2 load).
// Used for the predictor's context trie; iteration order never matters to any result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lmz {

class U64Map {
 public:
  U64Map() { rehash(64); }
  // Pointer to the value for key, or nullptr.
  const int32_t* find(uint64_t key) const {
    size_t i = slot(key);
    while (used_[i]) {
      if (keys_[i] == key) return &vals_[i];
      i = (i + 1) & mask_;
    }
    return nullptr;
  }
  // The value for key, inserting make() when absent.
  template <typename F>
  int32_t get_or_insert(uint64_t key, F make) {
    size_t i = slot(key);
    while (used_[i]) {
      if (keys_[i] == key) return vals_[i];
      i = (i + 1) & mask_;
    }
    const int32_t v = make();
    used_[i] = 1;
    keys_[i] = key;
    vals_[i] = v;
    if (++count_ * 2 > keys_.size()) rehash(keys_.size() * 2);
    return v;
  }
  void set(uint64_t key, int32_t value) {
    size_t i = slot(key);
    while (used_[i]) {
      if (keys_[i] == key) {
        vals_[i] = value;
        return;
      }
      i = (i + 1) & mask_;
    }
    used_[i] = 1;
    keys_[i] = key;
    vals_[i] = value;
    if (++count_ * 2 > keys_.size()) rehash(keys_.size() * 2);
  }
  size_t size() const { return count_; }
  template <typename F>
  void for_each(F f) const {
    for (size_t i = 0; i < keys_.size(); ++i)
      if (used_[i]) f(keys_[i], vals_[i]);
  }

 private:
  size_t slot(uint64_t k) const {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return size_t(k) & mask_;
  }
  void rehash(size_t n) {
    std::vector<uint64_t> ok;
    std::vector<int32_t> ov;
    std::vector<uint8_t> ou;
    ok.swap(keys_);
    ov.swap(vals_);
    ou.swap(used_);
    keys_.assign(n, 0);
    vals_.assign(n, 0);
    used_.assign(n, 0);
    mask_ = n - 1;
    count_ = 0;
    for (size_t i = 0; i < ok.size(); ++i)
      if (ou[i]) set(ok[i], ov[i]);
  }
  std::vector<uint64_t> keys_;
  std::vector<int32_t> vals_;
  std::vector<uint8_t> used_;
  size_t mask_ = 0, count_ = 0;
};

}  // namespace lmz
