// A small persistent thread pool for the exact kernels.
//
// Work is split into tasks whose outputs never overlap, and every task computes its outputs
// the same way whichever thread runs it, so results cannot depend on the thread count or on
// scheduling. Workers spin briefly before sleeping: a decoding step dispatches a few hundred
// small jobs, and a futex wake-up per job would cost more than the job.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lmz {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { resize(threads); }
  ~ThreadPool() { stop(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  void resize(int threads) {
    stop();
    if (threads < 1) threads = 1;
    quit_ = false;
    // A worker must know which job was the last before it existed: read the counter here, not
    // when the thread first runs (a job published in between would be missed, and run() would
    // wait for it forever).
    const uint64_t start = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, start] { loop(start); });
  }

  // Run fn(task) for task in [0, n), spread over the pool (the calling thread takes part).
  void run(int64_t n, const std::function<void(int64_t)>& fn) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1 || serial_left_ > 0) {
      if (serial_left_ > 0) --serial_left_;
      for (int64_t t = 0; t < n; ++t) fn(t);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      n_ = n;
      next_.store(0, std::memory_order_relaxed);
      pending_.store(int(workers_.size()), std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    const auto t0 = Clock::now();
    work(fn, n);
    const auto t1 = Clock::now();
    // Wait for every worker to leave this job (they may still hold a task). On shared cores a
    // worker may have been descheduled holding one: yield to it after a while, and if that keeps
    // happening, run the next jobs on this thread alone (measured: two threads decoding 2x slower
    // than one while two other processes kept both cores busy). Results cannot change: every task
    // computes the same outputs whichever thread runs it.
    int spins = 0;
    while (pending_.load(std::memory_order_acquire) != 0) {
      if (++spins < kSpin) {
        spin_pause();
      } else {
        std::this_thread::yield();
      }
    }
    job_ = nullptr;
    // A stall: the caller waited longer than it worked on this job (and more than kStallMin). A
    // worker finishing its last task waits at most one task's time; a descheduled one, a time
    // slice. (Counting every wait past a fixed spin count also caught the last big task of a
    // full-sequence matmul, ~2 ms, and sent compression onto one core: measured 1.1 of 2 cores.)
    const auto waited = Clock::now() - t1;
    stalls_ += waited > kStallMin && waited > t1 - t0;
    if (++jobs_ == kWindow) {  // a straggler in more than 1 job of 16: the cores are shared
      if (stalls_ * 16 > kWindow) serial_left_ = kSerial;
      jobs_ = stalls_ = 0;
    }
  }

 private:
  static inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  void work(const std::function<void(int64_t)>& fn, int64_t n) {
    for (;;) {
      int64_t t = next_.fetch_add(1, std::memory_order_relaxed);
      if (t >= n) break;
      fn(t);
    }
  }

  void loop(uint64_t seen) {
    for (;;) {
      // Spin a while for the next job, then sleep until notified.
      uint64_t g = seen;
      for (int i = 0; i < 20000; ++i) {
        g = generation_.load(std::memory_order_acquire);
        if (g != seen || quit_.load(std::memory_order_relaxed)) break;
        spin_pause();
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen || quit_.load(); });
        g = generation_.load(std::memory_order_acquire);
      }
      if (quit_.load()) return;
      seen = g;
      const std::function<void(int64_t)>* fn;
      int64_t n;
      {
        std::lock_guard<std::mutex> lock(mu_);
        fn = job_;
        n = n_;
      }
      if (fn) work(*fn, n);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  using Clock = std::chrono::steady_clock;
  static constexpr int kSpin = 4000;  // pause instructions (~50-200 us) before yielding
  static constexpr std::chrono::microseconds kStallMin{100};
  static constexpr int kWindow = 256;  // jobs between checks of how often the caller waited long
  static constexpr int kSerial = 4096;  // jobs then run on the calling thread alone

  int jobs_ = 0, stalls_ = 0, serial_left_ = 0;  // touched by the calling thread only
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> quit_{false};
};

}  // namespace lmz
