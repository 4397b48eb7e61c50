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
#include "engine/cuda/precision.h"
#include "engine/cuda/runtime.h"
#include "kernels/batchnorm.cuh"
#include "kernels/batchnorm.h"

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
// Whole-model checks (a training step through many layers) use the relative L2 error per tensor instead,
//
//   rel = ||gpu - ref|| / max(||ref||, sqrt(n) * noise * s)      must be <= model_l2
//
// where s is the rms of the tensor's family in that step (all parameter gradients for a gradient, all updates for
// an update, all Adam m for an m, ...; the tensor itself when it has none). The floor is the noise level: a tensor
// whose true value is far below its family's scale (a conv bias followed by batch norm has a gradient that is
// exactly zero in exact arithmetic; near-cancelling sums) is computed by both backends as rounding noise of
// about u * s per element, and its relative error is then meaningless. noise = 8 u / model_l2 (u = the storage
// type's unit roundoff), so the floor allows 8 u * s of error per element and no more:
//
//   storage   model_l2   u       noise (x family rms)
//   fp32      1e-4       2^-24   0.005
//   bf16      2^-3       2^-8    0.25
//   fp16      2^-6       2^-11   0.25
//
// Max-pool argmax ties: in bf16/fp16 the GPU's activations are rounded to the storage type and the CPU's are
// not, so a window's near-tie can pick a different pixel and move a gradient element elsewhere (fp16 dW errors
// up to 0.05 were seen for layers below a max-pool). Whole-graph parity in half precision therefore runs
// avg-pool twins of the graphs; max-pool is compared whole-graph in fp32 and per op (same rounded inputs on both
// sides, no ties to flip) in every precision.
template <typename T>
struct Tol;
template <>
struct Tol<float> {
  static constexpr const char* name = "fp32";
  static constexpr double rtol = 1e-5;
  static constexpr double model_l2 = 1e-4;
  static constexpr double unit = 1.0 / (1 << 24);
  static constexpr double noise = 8 * unit / model_l2;
};
template <>
struct Tol<__nv_bfloat16> {
  static constexpr const char* name = "bf16";
  static constexpr double rtol = 1.0 / 64;
  static constexpr double model_l2 = 1.0 / 8;
  static constexpr double unit = 1.0 / (1 << 8);
  static constexpr double noise = 8 * unit / model_l2;
};
template <>
struct Tol<__half> {
  static constexpr const char* name = "fp16";
  static constexpr double rtol = 1.0 / 512;
  static constexpr double model_l2 = 1.0 / 64;
  static constexpr double unit = 1.0 / (1 << 11);
  static constexpr double noise = 8 * unit / model_l2;
};

inline double rms_of(const std::vector<float>& v) {
  double ss = 0;
  for (float x : v) ss += static_cast<double>(x) * x;
  return v.empty() ? 0.0 : std::sqrt(ss / static_cast<double>(v.size()));
}

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

// Relative L2 error ||gpu - ref|| / max(||ref||, sqrt(n) * floor_rms), printed as a share of the allowance
// (and whether the noise floor set the denominator). NaN/inf anywhere fails.
inline double expect_l2_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& ref,
                              double tol, double floor_rms = 0) {
  EXPECT_EQ(gpu.size(), ref.size()) << what;
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(gpu.size(), ref.size()); ++i) {
    const double d = static_cast<double>(gpu[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  const double floor = std::sqrt(static_cast<double>(ref.size())) * floor_rms;
  const bool floored = floor > std::sqrt(den);
  const double rel = std::sqrt(num) / (std::max(std::sqrt(den), floor) + 1e-30);
  std::printf("  %-40s rel L2 %.3g = %7.2f%% of tolerance %.3g%s\n", what.c_str(), rel, 100.0 * rel / tol, tol,
              floored ? " (noise floor)" : "");
  EXPECT_LE(rel, tol) << what;  // NaN fails: the comparison is false
  return rel;
}

// The whole-model rule of the table: storage T's model_l2, noise floor at Tol<T>::noise x `family_rms` (the
// tensor's own rms when negative). `tol_mult` widens model_l2 for quantities that square an error (Adam's v).
template <typename T>
double expect_model_close(const std::string& what, const std::vector<float>& gpu, const std::vector<float>& ref,
                          double family_rms = -1, double tol_mult = 1) {
  const double s = family_rms < 0 ? rms_of(ref) : family_rms;
  return expect_l2_close(std::string(Tol<T>::name) + " " + what, gpu, ref, tol_mult * Tol<T>::model_l2,
                         Tol<T>::noise * s);
}

// "<storage type> <what>": the name a comparison prints and fails with.
template <typename T>
std::string tag(const std::string& what) {
  return std::string(Tol<T>::name) + " " + what;
}

// A device-side --sync-bn sum made on the host: the doubles come down, `host_sum` adds the other ranks' values in
// place, they go back up; synchronously, for tests that do not capture graphs.
inline cuda::DeviceChannelAllReduce through_host(cpu::ChannelAllReduce host_sum) {
  return [host_sum = std::move(host_sum)](double* dev, int n, cudaStream_t s) {
    std::vector<double> h(static_cast<size_t>(n));
    CUDA_CHECK(cudaMemcpyAsync(h.data(), dev, h.size() * sizeof(double), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
    host_sum(h.data(), n);
    CUDA_CHECK(cudaMemcpyAsync(dev, h.data(), h.size() * sizeof(double), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  };
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
using cuda::host_from_float;  // engine/cuda/precision.h, as the executor converts
using cuda::host_to_float;
// The values T can hold nearest to v (what the GPU sees after an upload).
template <typename T>
inline std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = host_to_float<T>(host_from_float<T>(x));
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
  explicit DeviceBuffer(size_t n) : n_(n) {
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T)));
  }
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

// Host -> device copy that is complete when it returns. A cudaMemcpy from pageable memory may return once the
// data is staged, before the DMA lands; the libraries' and the executor's streams are non-blocking, so they do
// not wait for the legacy stream and could read the old bytes. So: copy on `stream` (the consumer's, when
// known) and wait for the whole device.
inline void copy_to_device(void* dst, const void* src, size_t bytes, cudaStream_t stream = nullptr) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  CUDA_CHECK(cudaDeviceSynchronize());
}

// Uploads floats as T (rounding); finished on return (see copy_to_device).
template <typename T>
inline DeviceBuffer<T> upload(const std::vector<float>& v) {
  DeviceBuffer<T> d(v.size());
  std::vector<T> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = host_from_float<T>(v[i]);
  copy_to_device(d.get(), h.data(), h.size() * sizeof(T));
  return d;
}
template <typename T>
inline DeviceBuffer<T> upload_raw(const std::vector<T>& v) {
  DeviceBuffer<T> d(v.size());
  copy_to_device(d.get(), v.data(), v.size() * sizeof(T));
  return d;
}
// Downloads n values of T as floats (synchronises the device first, so kernel faults surface here).
template <typename T>
inline std::vector<float> download(const T* d, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<T> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  std::vector<float> f(n);
  for (size_t i = 0; i < n; ++i) f[i] = host_to_float<T>(h[i]);
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
