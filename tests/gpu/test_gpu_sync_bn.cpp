// --sync-bn on the device: the batch-norm kernels' cross-process sums, and the executor that routes every batch norm
// (plain and fused) through them, against the CPU reference given the same sums. The executor's whole-step parity
// with a synchronised batch norm is in test_gpu_executor.cpp (SyncedBatchNormStepMatchesTheCpuBackend).
#include <gtest/gtest.h>

#include <vector>

#include "kernels/batchnorm.cuh"
#include "kernels/batchnorm.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

template <typename T>
class GpuSyncBn : public ::testing::Test {};
TYPED_TEST_SUITE(GpuSyncBn, StorageTypes, StorageNames);

constexpr cudaStream_t kStream = nullptr;

template <typename T>
std::string tag(const std::string& what) {
  return std::string(Tol<T>::name) + " " + what;
}

// --sync-bn: the statistics summed across processes through `across`. Here the other process holds the same rows
// (its sum doubles every value: a world of 2 where both halves are x), on the device and in the CPU reference
// alike (the CPU path is itself tested against one process holding the whole batch, tests/engine/test_sync_bn.cpp).
TYPED_TEST(GpuSyncBn, KernelsMatchTheCpuReference) {
  REQUIRE_GPU();
  using T = TypeParam;
  const cpu::ChannelAllReduce cpu_mirror = cpu_mirror_sum();
  const cuda::DeviceChannelAllReduce gpu_mirror = gpu_mirror_sum();
  const int rows = 1122, C = 67;
  const size_t n = static_cast<size_t>(rows) * C;
  const auto x = rounded<T>(random_vec(n, 41, -2.f, 3.f));
  const auto gamma = random_vec(C, 42, 0.5f, 1.5f), beta = random_vec(C, 43);
  std::vector<float> rm = random_vec(C, 44), rv = random_vec(C, 45, 0.5f, 2.f);
  auto dx_ = upload<T>(x);
  auto dg = upload<float>(gamma), db = upload<float>(beta), drm = upload<float>(rm), drv = upload<float>(rv);
  DeviceBuffer<T> dyo(n);
  DeviceBuffer<float> dsm(C), dsi(C);
  DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
  cuda::batchnorm_forward_train<T>(rows, C, dx_.get(), dg.get(), db.get(), 1e-5f, 0.1f, drm.get(), drv.get(), dyo.get(),
                                   dsm.get(), dsi.get(), ws.get(), kStream, &gpu_mirror);
  std::vector<float> y(n), sm(C), si(C);
  cpu::batchnorm_forward_train(rows, C, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1f, rm.data(), rv.data(), y.data(),
                               sm.data(), si.data(), &cpu_mirror);
  expect_close(tag<T>("synced bn y"), download(dyo.get(), n), y, Tol<T>::rtol);
  expect_close(tag<T>("synced bn saved mean"), download(dsm.get(), C), sm, Tol<float>::rtol);
  expect_close(tag<T>("synced bn saved invstd"), download(dsi.get(), C), si, Tol<float>::rtol);
  // The unbiased running variance counts both processes' rows (2 x rows - 1): only the sync path gets this right.
  expect_close(tag<T>("synced bn running var"), download(drv.get(), C), rv, Tol<float>::rtol);

  const auto dy = rounded<T>(random_vec(n, 46));
  std::vector<float> dgam(C, 0.f), dbet(C, 0.f), dxr(n);
  auto ddy = upload<T>(dy), dsm2 = upload<float>(sm), dsi2 = upload<float>(si);
  auto ddg = upload<float>(dgam), ddb = upload<float>(dbet);
  DeviceBuffer<T> ddx(n);
  cuda::batchnorm_backward<T>(rows, C, dx_.get(), dg.get(), dsm2.get(), dsi2.get(), ddy.get(), ddx.get(), ddg.get(),
                              ddb.get(), ws.get(), kStream, &gpu_mirror);
  cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), sm.data(), si.data(), dy.data(), dxr.data(), dgam.data(),
                          dbet.data(), &cpu_mirror);
  expect_close(tag<T>("synced bn dx"), download(ddx.get(), n), dxr, Tol<T>::rtol);
  expect_close(tag<T>("synced bn dgamma (own share)"), download(ddg.get(), C), dgam, Tol<float>::rtol);
  expect_close(tag<T>("synced bn dbeta (own share)"), download(ddb.get(), C), dbet, Tol<float>::rtol);
}

}  // namespace
}  // namespace stoke
