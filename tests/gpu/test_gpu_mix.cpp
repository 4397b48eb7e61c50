// Parity of batch mixing on the device (kernels/mix.cuh, softmax_cross_entropy_mixed in kernels/softmax_ce.cuh)
// with the CPU references, for each storage type, at odd batch sizes (the middle sample is its own partner) and with
// the executor's padded channels.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "base/cuda_check.h"
#include "kernels/mix.cuh"
#include "kernels/mix.h"
#include "kernels/softmax_ce.cuh"
#include "kernels/softmax_ce.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

constexpr cudaStream_t kStream = nullptr;

template <typename T>
class GpuMix : public ::testing::Test {};
TYPED_TEST_SUITE(GpuMix, StorageTypes, StorageNames);

std::vector<BatchMix> mix_cases(int h, int w) {
  return {BatchMix{}, BatchMix{0.37f, 0, 0, 0, 0, 0}, cutmix_box(0.6f, h, w, 2, w - 3), cutmix_box(0.2f, h, w, 0, 0)};
}

// Both twins mix in fp32 with every product and sum rounded apart, so after rounding to T the device equals the CPU
// applied to the T-rounded batch, bit for bit.
TYPED_TEST(GpuMix, MixBatch) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int h = 7, w = 9;
  for (int n : {5, 6})
    for (int c : {3, 8})
      for (const BatchMix& m : mix_cases(h, w)) {
        const std::vector<float> x = rounded<T>(random_vec(static_cast<size_t>(n) * h * w * c, 31, -2.f, 2.f));
        std::vector<float> ref = x;
        cpu::mix_batch(n, h, w, c, &m, ref.data());
        auto dx = upload<T>(x);
        auto dm = upload_raw(std::vector<BatchMix>{m});
        cuda::mix_batch<T>(n, h, w, c, dm.get(), dx.get(), kStream);
        expect_bitwise(tag<T>(std::string(m.cutmix ? "cutmix" : "mixup") + " n " + std::to_string(n) + " c " +
                              std::to_string(c) + " lam " + std::to_string(m.lam)),
                       download(dx.get(), x.size()), rounded<T>(ref));
      }
}

TYPED_TEST(GpuMix, SoftmaxCrossEntropyMixed) {
  REQUIRE_GPU();
  using T = TypeParam;
  struct Case {
    int n, K;
    float smoothing, scale, lam;
  };
  for (const Case& cs :
       {Case{37, 10, 0.1f, 1.f, 0.3f}, Case{9, 1000, 0.f, 256.f, 0.8f}, Case{300, 6, 0.05f, 1.f, 1.f}}) {
    std::printf(" mixed softmax-CE n %d, K %d, smoothing %g, lam %g\n", cs.n, cs.K, static_cast<double>(cs.smoothing),
                static_cast<double>(cs.lam));
    const size_t nk = static_cast<size_t>(cs.n) * cs.K;
    const auto z = rounded<T>(random_vec(nk, 82, -4.f, 4.f));
    std::vector<int32_t> labels(static_cast<size_t>(cs.n));
    for (int i = 0; i < cs.n; ++i) labels[static_cast<size_t>(i)] = (i * 7 + 3) % cs.K;
    const BatchMix m{cs.lam, 0, 0, 0, 0, 0};
    auto dz = upload<T>(z);
    auto dl = upload_raw(labels);
    auto dm = upload_raw(std::vector<BatchMix>{m});
    DeviceBuffer<T> dgrad(nk);
    DeviceBuffer<float> dlosses(static_cast<size_t>(cs.n)), dmean(1);
    DeviceBuffer<int32_t> dcorrect(1);
    DeviceBuffer<char> ws(static_cast<size_t>(cuda::softmax_ce_workspace_bytes(cs.n)));
    cuda::softmax_cross_entropy_mixed<T>(cs.n, cs.K, dz.get(), dl.get(), dm.get(), cs.smoothing, cs.scale,
                                         dlosses.get(), dgrad.get(), dmean.get(), dcorrect.get(), ws.get(), kStream);
    std::vector<float> losses(static_cast<size_t>(cs.n)), grad(nk);
    int64_t correct = 0;
    const float mean = cpu::softmax_cross_entropy_mixed(cs.n, cs.K, z.data(), labels.data(), &m, cs.smoothing, cs.scale,
                                                        losses.data(), grad.data(), &correct);
    expect_close(tag<T>("mixed CE per-row loss"), download(dlosses.get(), losses.size()), losses, Tol<float>::rtol);
    expect_close(tag<T>("mixed CE mean loss"), download(dmean.get(), 1), {mean}, Tol<float>::rtol);
    EXPECT_EQ(download_raw(dcorrect.get(), 1)[0], correct);
    expect_close(tag<T>("mixed CE dlogits"), download(dgrad.get(), nk), grad, Tol<T>::rtol);
  }
}

}  // namespace
}  // namespace stoke
