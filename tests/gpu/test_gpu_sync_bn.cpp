// --sync-bn on the device: the batch-norm kernels' cross-process sums against the CPU reference over the whole
// batch of two ranks. This process's GPU holds one part of the rows; the other rank holds rows from another
// distribution (so the global mean, the deviation term and the backward sums all differ from this rank's own) and
// is played on the host (HostSecondRank). The executor's wiring of every batch norm through the sums:
// test_gpu_executor.cpp (GpuExecutorSyncBn.TwoRanksGpuAndCpuHaveTheGradientsOfOneRank).
#include <gtest/gtest.h>

#include <cmath>
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

// --sync-bn in one process: the cross-process sum of a world of 2 whose other rank holds different rows (x2, with
// loss gradients dy2), played on the host for one batch-norm layer. The kernels' calls are told apart by their
// length: C + 1 (forward: per-channel sums, rows), C (forward: squared deviations from the global mean, which the
// first call revealed), 2C + 1 (backward: sum dy, sum dy * xhat, rows, with xhat from the global statistics).
// share_dgamma/share_dbeta: the other rank's dgamma/dbeta (the gradient all-reduce would add them).
struct HostSecondRank {
  int rows2 = 0, C = 0;
  std::vector<float> x2, dy2;
  float eps = 1e-5f;
  std::vector<double> mean, var, share_dgamma, share_dbeta;

  void add(double* d, int n) {
    const size_t Cs = static_cast<size_t>(C);
    if (n == C + 1) {
      for (int r = 0; r < rows2; ++r)
        for (size_t c = 0; c < Cs; ++c) d[c] += x2[static_cast<size_t>(r) * Cs + c];
      d[C] += rows2;
      mean.assign(Cs, 0.0);
      for (size_t c = 0; c < Cs; ++c) mean[c] = d[c] / d[C];
      total = d[C];
    } else if (n == C) {
      for (int r = 0; r < rows2; ++r)
        for (size_t c = 0; c < Cs; ++c) {
          const double e = x2[static_cast<size_t>(r) * Cs + c] - mean[c];
          d[c] += e * e;
        }
      var.assign(Cs, 0.0);
      for (size_t c = 0; c < Cs; ++c) var[c] = d[c] / total;
    } else {
      ASSERT_EQ(n, 2 * C + 1);
      share_dgamma.assign(Cs, 0.0);
      share_dbeta.assign(Cs, 0.0);
      for (int r = 0; r < rows2; ++r)
        for (size_t c = 0; c < Cs; ++c) {
          // The saved statistics are floats: use them as the kernels do.
          const float m = static_cast<float>(mean[c]);
          const float invstd = static_cast<float>(1.0 / std::sqrt(var[c] + static_cast<double>(eps)));
          const size_t k = static_cast<size_t>(r) * Cs + c;
          const double xhat = (static_cast<double>(x2[k]) - m) * invstd;
          share_dbeta[c] += dy2[k];
          share_dgamma[c] += dy2[k] * xhat;
        }
      for (size_t c = 0; c < Cs; ++c) {
        d[c] += share_dbeta[c];
        d[Cs + c] += share_dgamma[c];
      }
      d[2 * C] += rows2;
    }
  }
  cuda::DeviceChannelAllReduce on_device() {
    return through_host([this](double* d, int n) { add(d, n); });
  }

 private:
  double total = 0;
};

std::vector<float> first_rows(const std::vector<float>& v, int rows, int C) {
  return {v.begin(), v.begin() + static_cast<std::ptrdiff_t>(rows) * C};
}

TYPED_TEST(GpuSyncBn, KernelsMatchTheCpuReferenceOverBothRanksRows) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int rows = 1122, rows2 = 517, C = 67;
  const size_t n = static_cast<size_t>(rows) * C, n2 = static_cast<size_t>(rows2) * C;
  const auto x = rounded<T>(random_vec(n, 41, -2.f, 3.f));
  const auto dy = rounded<T>(random_vec(n, 46));
  HostSecondRank other;
  other.rows2 = rows2;
  other.C = C;
  other.x2 = rounded<T>(random_vec(n2, 47, 1.f, 7.f));  // another mean and spread than this rank's rows
  other.dy2 = rounded<T>(random_vec(n2, 48));
  const auto gamma = random_vec(C, 42, 0.5f, 1.5f), beta = random_vec(C, 43);
  const std::vector<float> rm0 = random_vec(C, 44), rv0 = random_vec(C, 45, 0.5f, 2.f);

  // The reference: one process holding both ranks' rows.
  std::vector<float> xw = x, dyw = dy;
  xw.insert(xw.end(), other.x2.begin(), other.x2.end());
  dyw.insert(dyw.end(), other.dy2.begin(), other.dy2.end());
  const int rw = rows + rows2;
  std::vector<float> yw(xw.size()), sm(C), si(C), rm = rm0, rv = rv0, dxw(xw.size()), dgw(C, 0.f), dbw(C, 0.f);
  cpu::batchnorm_forward_train(rw, C, xw.data(), gamma.data(), beta.data(), 1e-5f, 0.1f, rm.data(), rv.data(),
                               yw.data(), sm.data(), si.data());
  cpu::batchnorm_backward(rw, C, xw.data(), gamma.data(), sm.data(), si.data(), dyw.data(), dxw.data(), dgw.data(),
                          dbw.data());

  auto dx_ = upload<T>(x), ddy = upload<T>(dy);
  auto dg = upload<float>(gamma), db = upload<float>(beta), drm = upload<float>(rm0), drv = upload<float>(rv0);
  DeviceBuffer<T> dyo(n), ddx(n);
  DeviceBuffer<float> dsm(C), dsi(C);
  auto ddg = upload<float>(std::vector<float>(C, 0.f)), ddb = upload<float>(std::vector<float>(C, 0.f));
  DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
  const cuda::DeviceChannelAllReduce across = other.on_device();
  cuda::batchnorm_forward_train<T>(rows, C, dx_.get(), dg.get(), db.get(), 1e-5f, 0.1f, drm.get(), drv.get(), dyo.get(),
                                   dsm.get(), dsi.get(), ws.get(), kStream, &across);
  expect_close(tag<T>("synced bn y"), download(dyo.get(), n), first_rows(yw, rows, C), Tol<T>::rtol);
  expect_close(tag<T>("synced bn saved mean"), download(dsm.get(), C), sm, Tol<float>::rtol);
  expect_close(tag<T>("synced bn saved invstd"), download(dsi.get(), C), si, Tol<float>::rtol);
  expect_close(tag<T>("synced bn running mean"), download(drm.get(), C), rm, Tol<float>::rtol);
  expect_close(tag<T>("synced bn running var"), download(drv.get(), C), rv, Tol<float>::rtol);

  cuda::batchnorm_backward<T>(rows, C, dx_.get(), dg.get(), dsm.get(), dsi.get(), ddy.get(), ddx.get(), ddg.get(),
                              ddb.get(), ws.get(), kStream, &across);
  expect_close(tag<T>("synced bn dx"), download(ddx.get(), n), first_rows(dxw, rows, C), Tol<T>::rtol);
  // This rank's dgamma/dbeta plus the other rank's share: the whole batch's.
  std::vector<float> dgsum = download(ddg.get(), C), dbsum = download(ddb.get(), C);
  for (int c = 0; c < C; ++c) {
    dgsum[static_cast<size_t>(c)] += static_cast<float>(other.share_dgamma[static_cast<size_t>(c)]);
    dbsum[static_cast<size_t>(c)] += static_cast<float>(other.share_dbeta[static_cast<size_t>(c)]);
  }
  expect_close(tag<T>("synced bn dgamma, both shares"), dgsum, dgw, Tol<T>::rtol);
  expect_close(tag<T>("synced bn dbeta, both shares"), dbsum, dbw, Tol<T>::rtol);

  // Without the sums this rank's rows are normalised with their own statistics: far from the reference.
  cuda::batchnorm_forward_train<T>(rows, C, dx_.get(), dg.get(), db.get(), 1e-5f, 0.1f, drm.get(), drv.get(), dyo.get(),
                                   dsm.get(), dsi.get(), ws.get(), kStream);
  const std::vector<float> alone = download(dyo.get(), n), ref = first_rows(yw, rows, C);
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::fabs(static_cast<double>(alone[i]) - ref[i]));
  EXPECT_GT(worst, 0.5) << "the comparison above could not tell synchronised statistics from local ones";
}

}  // namespace
}  // namespace stoke
