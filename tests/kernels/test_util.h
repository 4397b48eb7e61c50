// Shared helpers for the kernel tests: seeded random tensors and a thread-count guard.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "base/parallel.h"

namespace stoke::test {

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}

// True when a and b hold the same bits (NaNs included).
inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Sets the pool size for a scope and restores the default afterwards.
struct ThreadsGuard {
  explicit ThreadsGuard(int n) { ThreadPool::set_threads(n); }
  ~ThreadsGuard() { ThreadPool::set_threads(0); }
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;
};

}  // namespace stoke::test
