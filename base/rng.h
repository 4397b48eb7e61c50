// Counter-based random numbers: every value is a pure function of (key, counter), so sample order,
// augmentation and initialisation depend only on the seed and indices — never on thread scheduling —
// and the same functions run on the host and on the device.
#pragma once

#include <cmath>
#include <cstdint>

namespace stoke {

#if defined(__CUDACC__)
#define STOKE_HD __host__ __device__
#else
#define STOKE_HD
#endif

// splitmix64 finaliser: a bijective 64-bit mixer with full avalanche.
STOKE_HD inline uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A key from several integers (seed, epoch, sample id, purpose...).
STOKE_HD inline uint64_t hash_key(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
  uint64_t h = mix64(a);
  h = mix64(h ^ b);
  h = mix64(h ^ c);
  return mix64(h ^ d);
}

// Uniform in [0, 1) with 24 bits (exactly representable as float).
STOKE_HD inline float uniform01(uint64_t key, uint64_t counter) {
  return static_cast<float>(mix64(key ^ mix64(counter)) >> 40) * (1.0f / 16777216.0f);
}

// Standard normal by Box-Muller from two uniforms of the same counter.
inline float normal01(uint64_t key, uint64_t counter) {
  uint64_t bits = mix64(key ^ mix64(counter));
  double u1 = (static_cast<double>(bits >> 40) + 1.0) / 16777217.0;  // (0, 1]
  double u2 = static_cast<double>(bits & 0xffffff) / 16777216.0;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

// Uniform integer in [0, n) (Lemire's multiply-shift; bias < n / 2^64, irrelevant here).
__extension__ typedef unsigned __int128 stoke_u128;
STOKE_HD inline uint64_t uniform_below(uint64_t key, uint64_t counter, uint64_t n) {
  return static_cast<uint64_t>((static_cast<stoke_u128>(mix64(key ^ mix64(counter))) * n) >> 64);
}

}  // namespace stoke
