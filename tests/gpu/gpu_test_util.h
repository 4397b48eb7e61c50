// Shared helpers for the GPU parity tests: the device gate, device buffers, host rounding to the storage
// types, and THE tolerance table with the comparison that reports the worst case as a share of its tolerance.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "base/cuda_check.h"
#include "engine/cuda/runtime.h"

namespace stoke::test {

// Every GPU test starts with this: on a machine without a usable device it is reported as SKIPPED (never as
// passed), with the runtime's reason.
inline const std::string& gpu_unavailable() {
  static const std::string why = cuda::device_unavailable_reason(0);
  return why;
}
#define REQUIRE_GPU()                                                             \
  do {                                                                            \
    if (!::stoke::test::gpu_unavailable().empty())                                \
      GTEST_SKIP() << "no usable GPU: " << ::stoke::test::gpu_unavailable();      \
  } while (0)

// ---- the tolerance table -------------------------------------------------------------------------------------
// An element passes when |gpu - ref| <= rtol * (|ref| + rms(ref)): relative to itself, with the tensor's own
// scale as the floor for elements near zero. The reference is the CPU op run on the SAME inputs (rounded to the
// storage type first), so the budget covers the GPU's final rounding (half an ulp: rtol/4 below) and fp32
// accumulation order, not input quantisation.
//
//   storage   rtol            why
//   fp32      1e-5            ~80 ulp: reduction order over up to ~10^5 terms
//   bf16      2^-6  (0.0156)  2 ulp of bf16's 8-bit significand (eps 2^-7)
//   fp16      2^-9  (0.00195) 2 ulp of fp16's 11-bit significand (eps 2^-10)
//
// Whole-model checks (a training step through many layers) use relative L2 error per tensor instead:
//   fp32 1e-4, bf16 2^-3, fp16 2^-6.
template <typename T>
struct Tol;
template <>
struct Tol<float> {
  static constexpr const char* name = "fp32";
  static constexpr double rtol = 1e-5;
  static constexpr double model_l2 = 1e-4;
};
template <>
struct Tol<__nv_bfloat16> {
  static constexpr const char* name = "bf16";
  static constexpr double rtol = 1.0 / 64;
  static constexpr double model_l2 = 1.0 / 8;
};
template <>
struct Tol<__half> {
  static constexpr const char* name = "fp16";
  static constexpr double rtol = 1.0 / 512;
  static constexpr double model_l2 = 1.0 / 64;
};

struct MatchReport {
  double worst = 0;  // worst |d| / allowance, 1.0 = at the tolerance
  size_t at = 0;
  double gpu = 0, ref = 0;
};

// Compares element-wise with the rule above; prints the worst case as a percentage of its tolerance.
inline MatchReport expect_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& ref,
                                double rtol) {
  MatchReport r;
  EXPECT_EQ(gpu.size(), ref.size()) << what;
  if (gpu.size() != ref.size() || ref.empty()) return r;
  double ss = 0;
  for (float v : ref) ss += static_cast<double>(v) * v;
  const double rms = std::sqrt(ss / static_cast<double>(ref.size()));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = gpu[i], f = ref[i];
    const double allow = rtol * (std::fabs(f) + rms) + 1e-30;
    const double ratio = (std::isfinite(g) || !std::isfinite(f)) ? std::fabs(g - f) / allow : INFINITY;
    if (!(ratio <= r.worst)) {  // NaN-safe: a NaN ratio is recorded as the worst
      r.worst = std::isnan(ratio) ? INFINITY : ratio;
      r.at = i;
      r.gpu = g;
      r.ref = f;
    }
  }
  std::printf("  %-40s worst %7.2f%% of tolerance (rtol %.3g) at %zu: gpu %.9g ref %.9g\n", what.c_str(),
              100.0 * r.worst, rtol, r.at, r.gpu, r.ref);
  EXPECT_LE(r.worst, 1.0) << what << ": element " << r.at << " gpu " << r.gpu << " ref " << r.ref;
  return r;
}

// Relative L2 error ||gpu - ref|| / ||ref||, printed as a share of the allowance.
inline double expect_l2_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& ref,
                              double tol) {
  EXPECT_EQ(gpu.size(), ref.size()) << what;
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(gpu.size(), ref.size()); ++i) {
    const double d = static_cast<double>(gpu[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  const double rel = std::sqrt(num) / (std::sqrt(den) + 1e-30);
  std::printf("  %-40s rel L2 %.3g = %7.2f%% of tolerance %.3g\n", what.c_str(), rel, 100.0 * rel / tol, tol);
  EXPECT_LE(rel, tol) << what;
  return rel;
}

inline void expect_bitwise(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& ref) {
  ASSERT_EQ(gpu.size(), ref.size()) << what;
  size_t diff = 0, first = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    if (std::memcmp(&gpu[i], &ref[i], sizeof(float)) != 0 && diff++ == 0) first = i;
  std::printf("  %-40s %zu of %zu values differ in any bit\n", what.c_str(), diff, ref.size());
  EXPECT_EQ(diff, 0u) << what << ": first at " << first << " gpu " << gpu[first] << " ref " << ref[first];
}

// ---- host conversions -----------------------------------------------------------------------------------------
template <typename T>
inline T from_f(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(v);
  else
    return __float2bfloat16_rn(v);
}
template <typename T>
inline float to_f(T v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(v);
  else
    return __bfloat162float(v);
}
// The values T can hold nearest to v (what the GPU sees after an upload).
template <typename T>
inline std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = to_f<T>(from_f<T>(x));
  return v;
}

inline std::vector<float> random_vec(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(gen);
  return v;
}

// ---- device buffers (tests only: the engine takes its memory from the arena) ------------------------------------
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T))); }
  ~DeviceBuffer() {
    if (p_) CUDA_CHECK_NOEXCEPT(cudaFree(p_));
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Uploads floats as T (rounding).
template <typename T>
inline DeviceBuffer<T> upload(const std::vector<float>& v) {
  DeviceBuffer<T> d(v.size());
  std::vector<T> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = from_f<T>(v[i]);
  CUDA_CHECK(cudaMemcpy(d.get(), h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
inline DeviceBuffer<T> upload_raw(const std::vector<T>& v) {
  DeviceBuffer<T> d(v.size());
  CUDA_CHECK(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
// Downloads n values of T as floats (synchronises the device first, so kernel faults surface here).
template <typename T>
inline std::vector<float> download(const T* d, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = to_f<T>(h[i]);
  return f;
}
template <typename T>
inline std::vector<T> download_raw(const T* d, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// The three storage types, for TYPED_TEST.
using StorageTypes = ::testing::Types<float, __nv_bfloat16, __half>;
struct StorageNames {
  template <typename T>
  static std::string GetName(int) {
    return Tol<T>::name;
  }
};

}  // namespace stoke::test
