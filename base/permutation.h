// The one sample order: a permutation of [0, n) that depends only on (seed, epoch) — Fisher-Yates with one
// keyed draw per position (base/rng.h). Epoch orders, train/val splits and subsets all use it, so the sampler,
// the trainer and any number of ranks agree on the order without talking to each other.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "base/rng.h"

namespace stoke {

// Fills `out` (n = out.size()) with the permutation for (seed, epoch).
inline void epoch_permutation(uint64_t seed, int64_t epoch, std::span<int64_t> out) {
  const auto n = static_cast<int64_t>(out.size());
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = i;
  const uint64_t key = hash_key(seed, 0x5a3b1e, static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(uniform_below(key, static_cast<uint64_t>(i), static_cast<uint64_t>(i + 1)));
    std::swap(out[static_cast<size_t>(i)], out[static_cast<size_t>(j)]);
  }
}

inline std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  epoch_permutation(seed, epoch, p);
  return p;
}

}  // namespace stoke
