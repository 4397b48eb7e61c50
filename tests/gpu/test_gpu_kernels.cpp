// Parity of every handwritten CUDA kernel with its CPU reference, for each storage type (fp32, bf16, fp16), at
// awkward shapes (not multiples of 8 or 32) and with misaligned pointers (the scalar path of vectorised kernels).
// Inputs are rounded to the storage type before the CPU sees them, so differences are the GPU's own.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "base/cuda_check.h"
#include "kernels/activation.cuh"
#include "kernels/activation.h"
#include "kernels/batchnorm.cuh"
#include "kernels/batchnorm.h"
#include "kernels/cast.cuh"
#include "kernels/metrics.cuh"
#include "kernels/optimizer.cuh"
#include "kernels/pool.cuh"
#include "kernels/pool.h"
#include "kernels/softmax_ce.cuh"
#include "kernels/softmax_ce.h"
#include "kernels/tensor_ops.cuh"
#include "kernels/tensor_ops.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

template <typename T>
class GpuOps : public ::testing::Test {};
TYPED_TEST_SUITE(GpuOps, StorageTypes, StorageNames);

constexpr cudaStream_t kStream = nullptr;

// ---- ReLU -------------------------------------------------------------------------------------------------------
TYPED_TEST(GpuOps, Relu) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int64_t n = 10007;
  const auto x = rounded<T>(random_vec(n + 1, 1));
  const auto dy = rounded<T>(random_vec(n + 1, 2));
  auto dx_ = upload<T>(x), ddy = upload<T>(dy);
  DeviceBuffer<T> dyo(n + 1), ddx(n + 1);
  for (int off : {0, 1}) {  // 1: misaligned, the scalar path
    cuda::relu_forward<T>(n, dx_.get() + off, dyo.get() + off, kStream);
    std::vector<float> y(n), g(n);
    cpu::relu_forward(n, x.data() + off, y.data());
    expect_close(tag<T>("relu forward off " + std::to_string(off)), download(dyo.get() + off, n), y, Tol<T>::rtol);
    cuda::relu_backward<T>(n, dyo.get() + off, ddy.get() + off, ddx.get() + off, kStream);
    cpu::relu_backward(n, y.data(), dy.data() + off, g.data());
    expect_close(tag<T>("relu backward off " + std::to_string(off)), download(ddx.get() + off, n), g, Tol<T>::rtol);
  }
}

// ---- batch norm -------------------------------------------------------------------------------------------------
struct BnCase {
  int rows, C;
};
const BnCase kBnCases[] = {{105, 13}, {1122, 67}, {3001, 3}, {9, 40}};

TYPED_TEST(GpuOps, BatchNormTrainForwardAndBackward) {
  REQUIRE_GPU();
  using T = TypeParam;
  for (const BnCase& bc : kBnCases) {
    const int rows = bc.rows, C = bc.C;
    const size_t n = static_cast<size_t>(rows) * C;
    std::printf(" rows %d, C %d\n", rows, C);
    const auto x = rounded<T>(random_vec(n, 11, -2.f, 3.f));  // a mean well away from 0
    const auto gamma = random_vec(C, 12, 0.5f, 1.5f), beta = random_vec(C, 13);
    std::vector<float> rm = random_vec(C, 14), rv = random_vec(C, 15, 0.5f, 2.f);
    auto dx_ = upload<T>(x);
    auto dg = upload<float>(gamma), db = upload<float>(beta), drm = upload<float>(rm), drv = upload<float>(rv);
    DeviceBuffer<T> dyo(n);
    DeviceBuffer<float> dsm(C), dsi(C);
    DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
    cuda::batchnorm_forward_train<T>(rows, C, dx_.get(), dg.get(), db.get(), 1e-5f, 0.1f, drm.get(), drv.get(),
                                     dyo.get(), dsm.get(), dsi.get(), ws.get(), kStream);
    std::vector<float> y(n), sm(C), si(C);
    cpu::batchnorm_forward_train(rows, C, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1f, rm.data(), rv.data(),
                                 y.data(), sm.data(), si.data());
    expect_close(tag<T>("bn train y"), download(dyo.get(), n), y, Tol<T>::rtol);
    // Statistics are fp32 whatever the storage type: fp32 tolerance.
    expect_close(tag<T>("bn saved mean"), download(dsm.get(), C), sm, Tol<float>::rtol);
    expect_close(tag<T>("bn saved invstd"), download(dsi.get(), C), si, Tol<float>::rtol);
    expect_close(tag<T>("bn running mean"), download(drm.get(), C), rm, Tol<float>::rtol);
    expect_close(tag<T>("bn running var"), download(drv.get(), C), rv, Tol<float>::rtol);

    // Backward from the CPU's saved statistics (isolates the backward pass); parameter grads accumulate.
    const auto dy = rounded<T>(random_vec(n, 16));
    std::vector<float> dgam = random_vec(C, 17), dbet = random_vec(C, 18), dxr(n);
    auto ddy = upload<T>(dy), dsm2 = upload<float>(sm), dsi2 = upload<float>(si);
    auto ddg = upload<float>(dgam), ddb = upload<float>(dbet);
    DeviceBuffer<T> ddx(n);
    cuda::batchnorm_backward<T>(rows, C, dx_.get(), dg.get(), dsm2.get(), dsi2.get(), ddy.get(), ddx.get(), ddg.get(),
                                ddb.get(), ws.get(), kStream);
    cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), sm.data(), si.data(), dy.data(), dxr.data(), dgam.data(),
                            dbet.data());
    expect_close(tag<T>("bn dx"), download(ddx.get(), n), dxr, Tol<T>::rtol);
    expect_close(tag<T>("bn dgamma (+=)"), download(ddg.get(), C), dgam, Tol<float>::rtol);
    expect_close(tag<T>("bn dbeta (+=)"), download(ddb.get(), C), dbet, Tol<float>::rtol);
  }
}

TYPED_TEST(GpuOps, BatchNormEval) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int rows = 1122, C = 67;
  const size_t n = static_cast<size_t>(rows) * C;
  const auto x = rounded<T>(random_vec(n, 21, -2.f, 3.f));
  const auto gamma = random_vec(C, 22, 0.5f, 1.5f), beta = random_vec(C, 23);
  const auto rm = random_vec(C, 24), rv = random_vec(C, 25, 0.5f, 2.f);
  auto dx_ = upload<T>(x);
  auto dg = upload<float>(gamma), db = upload<float>(beta), drm = upload<float>(rm), drv = upload<float>(rv);
  DeviceBuffer<T> dyo(n);
  DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
  cuda::batchnorm_forward_eval<T>(rows, C, dx_.get(), dg.get(), db.get(), drm.get(), drv.get(), 1e-5f, dyo.get(),
                                  ws.get(), kStream);
  std::vector<float> y(n);
  cpu::batchnorm_forward_eval(rows, C, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5f, y.data());
  expect_close(tag<T>("bn eval y"), download(dyo.get(), n), y, Tol<T>::rtol);
}

// The eval-mode backward (--freeze-bn with a trainable backbone): the running statistics are constants. Plain, and
// fused after a residual add and ReLU (dz masked by the GPU's own forward output); dgamma and dbeta accumulate.
TYPED_TEST(GpuOps, BatchNormEvalBackward) {
  REQUIRE_GPU();
  using T = TypeParam;
  for (const BnCase& bc : kBnCases) {
    const int rows = bc.rows, C = bc.C;
    const size_t n = static_cast<size_t>(rows) * C;
    std::printf(" rows %d, C %d\n", rows, C);
    const auto x = rounded<T>(random_vec(n, 41, -2.f, 3.f));
    const auto r = rounded<T>(random_vec(n, 42));
    const auto dy = rounded<T>(random_vec(n, 43));
    const auto gamma = random_vec(C, 44, 0.5f, 1.5f), rm = random_vec(C, 45), rv = random_vec(C, 46, 0.5f, 2.f);
    const auto beta = random_vec(C, 47);
    auto dx_ = upload<T>(x), dr = upload<T>(r), ddy = upload<T>(dy);
    auto dg = upload<float>(gamma), db = upload<float>(beta), drm = upload<float>(rm), drv = upload<float>(rv);
    DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
    DeviceBuffer<T> ddx(n), ddr(n), dyo(n);
    {  // plain: dx = dy * gamma / sqrt(running_var + eps), dgamma += sum(dy * xhat), dbeta += sum(dy)
      std::vector<float> dgam = random_vec(C, 48), dbet = random_vec(C, 49), dxr(n);
      auto ddg = upload<float>(dgam), ddb = upload<float>(dbet);
      cuda::batchnorm_backward_eval<T>(rows, C, dx_.get(), dg.get(), drm.get(), drv.get(), 1e-5f, ddy.get(), ddx.get(),
                                       ddg.get(), ddb.get(), ws.get(), kStream);
      cpu::batchnorm_backward_eval(rows, C, x.data(), gamma.data(), rm.data(), rv.data(), 1e-5f, dy.data(), dxr.data(),
                                   dgam.data(), dbet.data());
      expect_close(tag<T>("bn eval dx"), download(ddx.get(), n), dxr, Tol<T>::rtol);
      expect_close(tag<T>("bn eval dgamma (+=)"), download(ddg.get(), C), dgam, Tol<float>::rtol);
      expect_close(tag<T>("bn eval dbeta (+=)"), download(ddb.get(), C), dbet, Tol<float>::rtol);
    }
    {  // fused: y = relu(bn_eval(x) + r)
      cuda::batchnorm_add_relu_forward_eval<T>(rows, C, dx_.get(), dr.get(), true, dg.get(), db.get(), drm.get(),
                                               drv.get(), 1e-5f, dyo.get(), ws.get(), kStream);
      const auto ygpu = download(dyo.get(), n);
      std::vector<float> dz(n), dxr(n), dgam(C, 0.f), dbet(C, 0.f);
      cpu::relu_backward(static_cast<int64_t>(n), ygpu.data(), dy.data(), dz.data());
      cpu::batchnorm_backward_eval(rows, C, x.data(), gamma.data(), rm.data(), rv.data(), 1e-5f, dz.data(), dxr.data(),
                                   dgam.data(), dbet.data());
      DeviceBuffer<float> ddg(C), ddb(C);
      CUDA_CHECK(cudaMemset(ddg.get(), 0, C * sizeof(float)));
      CUDA_CHECK(cudaMemset(ddb.get(), 0, C * sizeof(float)));
      cuda::batchnorm_add_relu_backward_eval<T>(rows, C, dx_.get(), dg.get(), drm.get(), drv.get(), 1e-5f, dyo.get(),
                                                ddy.get(), true, ddx.get(), ddr.get(), ddg.get(), ddb.get(), ws.get(),
                                                kStream);
      expect_close(tag<T>("fused eval dx"), download(ddx.get(), n), dxr, Tol<T>::rtol);
      expect_close(tag<T>("fused eval dresidual"), download(ddr.get(), n), dz, Tol<T>::rtol);
      expect_close(tag<T>("fused eval dgamma"), download(ddg.get(), C), dgam, Tol<float>::rtol);
      expect_close(tag<T>("fused eval dbeta"), download(ddb.get(), C), dbet, Tol<float>::rtol);
    }
  }
}

// y = relu(bn(x) + r) against the CPU ops composed; backward against the CPU composition with the GPU's own
// forward output as the ReLU mask (so a value that rounds to zero in fp16 cannot flip the comparison).
TYPED_TEST(GpuOps, BatchNormAddReluFused) {
  REQUIRE_GPU();
  using T = TypeParam;
  for (bool with_residual : {true, false}) {
    const int rows = 1122, C = 19;
    const size_t n = static_cast<size_t>(rows) * C;
    const auto x = rounded<T>(random_vec(n, 31, -1.f, 2.f));
    const auto r = rounded<T>(random_vec(n, 32));
    const auto gamma = random_vec(C, 33, 0.5f, 1.5f), beta = random_vec(C, 34);
    std::vector<float> rm(C, 0.f), rv(C, 1.f);
    auto dx_ = upload<T>(x), dr = upload<T>(r);
    auto dg = upload<float>(gamma), db = upload<float>(beta), drm = upload<float>(rm), drv = upload<float>(rv);
    DeviceBuffer<T> dyo(n);
    DeviceBuffer<float> dsm(C), dsi(C);
    DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
    const T* res = with_residual ? dr.get() : nullptr;
    cuda::batchnorm_add_relu_forward_train<T>(rows, C, dx_.get(), res, true, dg.get(), db.get(), 1e-5f, 0.1f, drm.get(),
                                              drv.get(), dyo.get(), dsm.get(), dsi.get(), ws.get(), kStream);
    std::vector<float> y(n), sm(C), si(C);
    cpu::batchnorm_forward_train(rows, C, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1f, rm.data(), rv.data(),
                                 y.data(), sm.data(), si.data());
    if (with_residual) cpu::add_forward(static_cast<int64_t>(n), y.data(), r.data(), y.data());
    cpu::relu_forward(static_cast<int64_t>(n), y.data(), y.data());
    const auto ygpu = download(dyo.get(), n);
    expect_close(tag<T>(with_residual ? "bn+add+relu y" : "bn+relu y"), ygpu, y, Tol<T>::rtol);

    const auto dy = rounded<T>(random_vec(n, 35));
    std::vector<float> dz(n), dxr(n), dgam(C, 0.f), dbet(C, 0.f);
    cpu::relu_backward(static_cast<int64_t>(n), ygpu.data(), dy.data(), dz.data());
    cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), sm.data(), si.data(), dz.data(), dxr.data(), dgam.data(),
                            dbet.data());
    auto ddy = upload<T>(dy), dsm2 = upload<float>(sm), dsi2 = upload<float>(si);
    DeviceBuffer<T> ddx(n), ddr(n);
    DeviceBuffer<float> ddg(C), ddb(C);
    CUDA_CHECK(cudaMemset(ddg.get(), 0, C * sizeof(float)));
    CUDA_CHECK(cudaMemset(ddb.get(), 0, C * sizeof(float)));
    cuda::batchnorm_add_relu_backward<T>(rows, C, dx_.get(), dg.get(), dsm2.get(), dsi2.get(), dyo.get(), ddy.get(),
                                         true, ddx.get(), with_residual ? ddr.get() : nullptr, ddg.get(), ddb.get(),
                                         ws.get(), kStream);
    expect_close(tag<T>("fused dx"), download(ddx.get(), n), dxr, Tol<T>::rtol);
    if (with_residual) expect_close(tag<T>("fused dresidual"), download(ddr.get(), n), dz, Tol<T>::rtol);
    expect_close(tag<T>("fused dgamma"), download(ddg.get(), C), dgam, Tol<float>::rtol);
    expect_close(tag<T>("fused dbeta"), download(ddb.get(), C), dbet, Tol<float>::rtol);
  }
}

// The reductions are deterministic: the same inputs give the same bits, run after run.
TYPED_TEST(GpuOps, BatchNormIsBitReproducible) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int rows = 50000, C = 37;
  const size_t n = static_cast<size_t>(rows) * C;
  auto dx_ = upload<T>(random_vec(n, 41)), ddy = upload<T>(random_vec(n, 42));
  auto dg = upload<float>(random_vec(C, 43)), db = upload<float>(random_vec(C, 44));
  DeviceBuffer<T> dyo(n), ddx(n);
  DeviceBuffer<float> dsm(C), dsi(C), ddg(C), ddb(C);
  DeviceBuffer<char> ws(static_cast<size_t>(cuda::batchnorm_workspace_bytes(rows, C)));
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    CUDA_CHECK(cudaMemset(ddg.get(), 0, C * sizeof(float)));
    cuda::batchnorm_forward_train<T>(rows, C, dx_.get(), dg.get(), db.get(), 1e-5f, 0.1f, nullptr, nullptr, dyo.get(),
                                     dsm.get(), dsi.get(), ws.get(), kStream);
    cuda::batchnorm_backward<T>(rows, C, dx_.get(), dg.get(), dsm.get(), dsi.get(), ddy.get(), ddx.get(), ddg.get(),
                                ddb.get(), ws.get(), kStream);
    std::vector<float> all = download(dsi.get(), C);
    for (float v : download(ddg.get(), C)) all.push_back(v);
    for (float v : download(ddx.get(), n)) all.push_back(v);
    if (run == 0)
      first = all;
    else
      expect_bitwise(tag<T>("bn run " + std::to_string(run) + " vs run 0"), all, first);
  }
}

// ---- pooling ----------------------------------------------------------------------------------------------------
PoolShape pool_shape(int n, int h, int w, int c, int k, int s, int p) {
  PoolShape sh;
  sh.n = n, sh.h = h, sh.w = w, sh.c = c, sh.kernel = k, sh.stride = s, sh.pad = p;
  return sh;
}

TYPED_TEST(GpuOps, MaxAndAvgPool) {
  REQUIRE_GPU();
  using T = TypeParam;
  for (const PoolShape& sh :
       {pool_shape(3, 13, 11, 7, 3, 2, 1), pool_shape(2, 9, 14, 5, 2, 2, 0), pool_shape(1, 7, 7, 33, 3, 1, 1)}) {
    std::printf(" pool %dx%dx%dx%d k%d s%d p%d\n", sh.n, sh.h, sh.w, sh.c, sh.kernel, sh.stride, sh.pad);
    const size_t nin = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c;
    const size_t nout = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.c;
    const auto x = rounded<T>(random_vec(nin, 51));
    const auto dy = rounded<T>(random_vec(nout, 52));
    auto dx_ = upload<T>(x), ddy = upload<T>(dy);
    DeviceBuffer<T> dyo(nout), ddx(nin);
    DeviceBuffer<int32_t> darg(nout);

    std::vector<float> y(nout), dx(nin);
    std::vector<int32_t> arg(nout);
    cuda::maxpool_forward<T>(sh, dx_.get(), dyo.get(), darg.get(), kStream);
    cpu::maxpool_forward(sh, x.data(), y.data(), arg.data());
    expect_close(tag<T>("maxpool y"), download(dyo.get(), nout), y, Tol<T>::rtol);
    EXPECT_EQ(download_raw(darg.get(), nout), arg) << "argmax";
    cuda::maxpool_backward<T>(sh, darg.get(), ddy.get(), ddx.get(), kStream);
    cpu::maxpool_backward(sh, arg.data(), dy.data(), dx.data());
    expect_close(tag<T>("maxpool dx"), download(ddx.get(), nin), dx, Tol<T>::rtol);

    cuda::avgpool_forward<T>(sh, dx_.get(), dyo.get(), kStream);
    cpu::avgpool_forward(sh, x.data(), y.data());
    expect_close(tag<T>("avgpool y"), download(dyo.get(), nout), y, Tol<T>::rtol);
    cuda::avgpool_backward<T>(sh, ddy.get(), ddx.get(), kStream);
    cpu::avgpool_backward(sh, dy.data(), dx.data());
    expect_close(tag<T>("avgpool dx"), download(ddx.get(), nin), dx, Tol<T>::rtol);
  }
  // Global average pooling.
  const int n = 3, hw = 13 * 11, c = 37;
  const auto x = rounded<T>(random_vec(static_cast<size_t>(n) * hw * c, 53));
  const auto dy = rounded<T>(random_vec(static_cast<size_t>(n) * c, 54));
  auto dx_ = upload<T>(x), ddy = upload<T>(dy);
  DeviceBuffer<T> dyo(static_cast<size_t>(n) * c), ddx(x.size());
  std::vector<float> y(static_cast<size_t>(n) * c), dx(x.size());
  cuda::global_avgpool_forward<T>(n, hw, c, dx_.get(), dyo.get(), kStream);
  cpu::global_avgpool_forward(n, hw, c, x.data(), y.data());
  expect_close(tag<T>("global avgpool y"), download(dyo.get(), y.size()), y, Tol<T>::rtol);
  cuda::global_avgpool_backward<T>(n, hw, c, ddy.get(), ddx.get(), kStream);
  cpu::global_avgpool_backward(n, hw, c, dy.data(), dx.data());
  expect_close(tag<T>("global avgpool dx"), download(ddx.get(), dx.size()), dx, Tol<T>::rtol);
}

// ---- add, concat, bias ------------------------------------------------------------------------------------------
TYPED_TEST(GpuOps, AddConcatBias) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int64_t n = 4099;
  const auto a = rounded<T>(random_vec(n + 1, 61)), b = rounded<T>(random_vec(n + 1, 62));
  auto da = upload<T>(a), db = upload<T>(b);
  DeviceBuffer<T> dyo(n + 1);
  for (int off : {0, 1}) {
    cuda::add_forward<T>(n, da.get() + off, db.get() + off, dyo.get() + off, kStream);
    std::vector<float> y(n);
    cpu::add_forward(n, a.data() + off, b.data() + off, y.data());
    expect_close(tag<T>("add off " + std::to_string(off)), download(dyo.get() + off, n), y, Tol<T>::rtol);
  }

  // Concat of three parts with awkward channel counts, and its backward (each part's slice of dy).
  const int64_t rows = 37;
  const std::vector<int> cs = {3, 8, 5};
  const int total = 16;
  std::vector<std::vector<float>> parts;
  std::vector<DeviceBuffer<T>> dparts;
  std::vector<const T*> dptrs;
  std::vector<const float*> hptrs;
  for (size_t i = 0; i < cs.size(); ++i) {
    parts.push_back(rounded<T>(random_vec(static_cast<size_t>(rows * cs[i]), 63 + static_cast<uint32_t>(i))));
    dparts.push_back(upload<T>(parts.back()));
  }
  for (size_t i = 0; i < cs.size(); ++i) {
    dptrs.push_back(dparts[i].get());
    hptrs.push_back(parts[i].data());
  }
  DeviceBuffer<T> dcat(static_cast<size_t>(rows * total));
  std::vector<float> cat(static_cast<size_t>(rows * total));
  cuda::concat_forward<T>(rows, 3, dptrs.data(), cs.data(), dcat.get(), kStream);
  cpu::concat_forward(rows, 3, hptrs.data(), cs.data(), cat.data());
  expect_close(tag<T>("concat forward"), download(dcat.get(), cat.size()), cat, Tol<T>::rtol);
  std::vector<DeviceBuffer<T>> dgrads;
  std::vector<T*> dgptrs;
  std::vector<std::vector<float>> grads;
  std::vector<float*> hgptrs;
  for (int c : cs) {
    dgrads.emplace_back(static_cast<size_t>(rows * c));
    grads.emplace_back(static_cast<size_t>(rows * c));
  }
  for (size_t i = 0; i < cs.size(); ++i) {
    dgptrs.push_back(i == 1 ? nullptr : dgrads[i].get());  // a skipped part
    hgptrs.push_back(i == 1 ? nullptr : grads[i].data());
  }
  cuda::concat_backward<T>(rows, 3, dcat.get(), cs.data(), dgptrs.data(), kStream);
  cpu::concat_backward(rows, 3, cat.data(), cs.data(), hgptrs.data());
  for (size_t i : {size_t{0}, size_t{2}})
    expect_close(tag<T>("concat backward part " + std::to_string(i)), download(dgrads[i].get(), grads[i].size()),
                 grads[i], Tol<T>::rtol);

  // Per-channel bias forward (+=) and backward (db += column sums).
  const int brows = 1122, C = 13;
  const auto y0 = rounded<T>(random_vec(static_cast<size_t>(brows) * C, 71));
  const auto bias = random_vec(C, 72);
  auto dyb = upload<T>(y0), dbias = upload<float>(bias);
  cuda::bias_forward<T>(brows, C, dbias.get(), dyb.get(), kStream);
  std::vector<float> yb(y0);
  for (int r = 0; r < brows; ++r)
    for (int c = 0; c < C; ++c) yb[static_cast<size_t>(r) * C + c] += bias[static_cast<size_t>(c)];
  expect_close(tag<T>("bias forward"), download(dyb.get(), yb.size()), yb, Tol<T>::rtol);
  std::vector<float> dbr = random_vec(C, 73);
  auto ddbias = upload<float>(dbr);
  DeviceBuffer<char> ws(static_cast<size_t>(cuda::bias_backward_workspace_bytes(brows, C)));
  auto dyg = upload<T>(y0);
  cuda::bias_backward<T>(brows, C, dyg.get(), ddbias.get(), ws.get(), kStream);
  for (int c = 0; c < C; ++c) {
    double s = 0;
    for (int r = 0; r < brows; ++r) s += y0[static_cast<size_t>(r) * C + c];
    dbr[static_cast<size_t>(c)] += static_cast<float>(s);
  }
  expect_close(tag<T>("bias backward (+=)"), download(ddbias.get(), C), dbr, Tol<float>::rtol);
}

// ---- softmax cross-entropy --------------------------------------------------------------------------------------
TYPED_TEST(GpuOps, SoftmaxCrossEntropy) {
  REQUIRE_GPU();
  using T = TypeParam;
  struct Case {
    int n, K;
    float smoothing, scale;
  };
  for (const Case& cs : {Case{37, 10, 0.1f, 1.f}, Case{9, 1000, 0.f, 256.f}, Case{300, 6, 0.05f, 1024.f}}) {
    std::printf(" softmax-CE n %d, K %d, smoothing %g, grad scale %g\n", cs.n, cs.K, static_cast<double>(cs.smoothing),
                static_cast<double>(cs.scale));
    const size_t nk = static_cast<size_t>(cs.n) * cs.K;
    const auto z = rounded<T>(random_vec(nk, 81, -4.f, 4.f));
    std::vector<int32_t> labels(static_cast<size_t>(cs.n));
    for (int i = 0; i < cs.n; ++i) labels[static_cast<size_t>(i)] = (i * 7 + 3) % cs.K;
    auto dz = upload<T>(z);
    auto dl = upload_raw(labels);
    DeviceBuffer<T> dgrad(nk);
    DeviceBuffer<float> dlosses(static_cast<size_t>(cs.n)), dmean(1);
    DeviceBuffer<int32_t> dcorrect(1);
    DeviceBuffer<char> ws(static_cast<size_t>(cuda::softmax_ce_workspace_bytes(cs.n)));
    cuda::softmax_cross_entropy<T>(cs.n, cs.K, dz.get(), dl.get(), cs.smoothing, cs.scale, dlosses.get(), dgrad.get(),
                                   dmean.get(), dcorrect.get(), ws.get(), kStream);
    std::vector<float> losses(static_cast<size_t>(cs.n)), grad(nk);
    int64_t correct = 0;
    const float mean = cpu::softmax_cross_entropy(cs.n, cs.K, z.data(), labels.data(), cs.smoothing, cs.scale,
                                                  losses.data(), grad.data(), &correct);
    expect_close(tag<T>("CE per-row loss"), download(dlosses.get(), losses.size()), losses, Tol<float>::rtol);
    expect_close(tag<T>("CE mean loss"), download(dmean.get(), 1), {mean}, Tol<float>::rtol);
    EXPECT_EQ(download_raw(dcorrect.get(), 1)[0], correct);
    expect_close(tag<T>("CE dlogits"), download(dgrad.get(), nk), grad, Tol<T>::rtol);
  }
}

// ---- optimizer --------------------------------------------------------------------------------------------------
// Hand-made parameter table: sizes straddling the chunk size, decay on some.
struct FakeParam {
  int64_t offset, size;
  bool decay;
};
std::vector<FakeParam> fake_params() {
  std::vector<FakeParam> ps;
  int64_t off = 0;
  for (auto [size, decay] :
       {std::pair<int64_t, bool>{7, false}, {1000, true}, {33, false}, {9000, true}, {8192, true}}) {
    ps.push_back({off, size, decay});
    off += size;
  }
  return ps;
}
std::vector<cuda::OptimizerChunk> chunks_of(const std::vector<FakeParam>& ps, float wd) {
  std::vector<cuda::OptimizerChunk> cs;
  for (const FakeParam& p : ps)
    for (int64_t b = 0; b < p.size; b += cuda::kOptimizerChunk)
      cs.push_back({p.offset + b, static_cast<int32_t>(std::min<int64_t>(cuda::kOptimizerChunk, p.size - b)),
                    p.decay ? wd : 0.f});
  return cs;
}

// The CPU reference of engine/optimizer.cpp, restated per element (kept identical operation by operation).
TYPED_TEST(GpuOps, OptimizerStepsMatchTheCpuBitForBit) {
  REQUIRE_GPU();
  using T = TypeParam;
  const auto ps = fake_params();
  const int64_t N = ps.back().offset + ps.back().size;
  const float wd = 5e-4f;
  const auto chunks = chunks_of(ps, wd);
  auto dchunks = upload_raw(chunks);
  for (int kind = 0; kind < 3; ++kind) {  // 0: SGD Nesterov, 1: SGD without momentum, 2: AdamW
    std::vector<float> p = random_vec(static_cast<size_t>(N), 91), buf(static_cast<size_t>(N), 0.f),
                       m(static_cast<size_t>(N), 0.f), v(static_cast<size_t>(N), 0.f);
    auto dp = upload<float>(p), dbuf = upload<float>(buf), dm = upload<float>(m), dv = upload<float>(v);
    DeviceBuffer<T> dhalf(static_cast<size_t>(N));
    for (int t = 1; t <= 3; ++t) {
      const auto g = random_vec(static_cast<size_t>(N), 92 + static_cast<uint32_t>(t), -0.1f, 0.1f);
      auto dg = upload<float>(g);
      const float lr = 0.05f * static_cast<float>(t);
      if (kind < 2) {
        cuda::SgdArgs a;
        a.lr = lr;
        a.momentum = kind == 0 ? 0.9f : 0.f;
        a.nesterov = kind == 0;
        a.first = t == 1;
        cuda::sgd_step<T>(dchunks.get(), static_cast<int>(chunks.size()), dp.get(),
                          std::is_same_v<T, float> ? nullptr : dhalf.get(), dg.get(), dbuf.get(), a, nullptr, kStream);
        for (const FakeParam& fp : ps)
          for (int64_t i = fp.offset; i < fp.offset + fp.size; ++i) {
            const float w = fp.decay ? wd : 0.f;
            if (a.momentum == 0.f) {
              p[static_cast<size_t>(i)] -= lr * (g[static_cast<size_t>(i)] + w * p[static_cast<size_t>(i)]);
              continue;
            }
            const float gi = g[static_cast<size_t>(i)] + w * p[static_cast<size_t>(i)];
            buf[static_cast<size_t>(i)] = a.first ? gi : a.momentum * buf[static_cast<size_t>(i)] + gi;
            const float d = a.nesterov ? gi + a.momentum * buf[static_cast<size_t>(i)] : buf[static_cast<size_t>(i)];
            p[static_cast<size_t>(i)] -= lr * d;
          }
      } else {
        cuda::AdamwArgs a;
        a.lr = lr;
        a.one_minus_beta1 = 1.f - a.beta1;
        a.one_minus_beta2 = 1.f - a.beta2;
        const double bc1 = 1.0 - std::pow(static_cast<double>(a.beta1), t);
        const double bc2 = 1.0 - std::pow(static_cast<double>(a.beta2), t);
        a.step_size = static_cast<float>(lr / bc1);
        a.inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
        cuda::adamw_step<T>(dchunks.get(), static_cast<int>(chunks.size()), dp.get(),
                            std::is_same_v<T, float> ? nullptr : dhalf.get(), dg.get(), dm.get(), dv.get(), a, nullptr,
                            kStream);
        for (const FakeParam& fp : ps)
          for (int64_t j = fp.offset; j < fp.offset + fp.size; ++j) {
            const size_t i = static_cast<size_t>(j);
            const float w = fp.decay ? wd : 0.f;
            p[i] -= lr * w * p[i];
            m[i] = a.beta1 * m[i] + (1.f - a.beta1) * g[i];
            v[i] = a.beta2 * v[i] + (1.f - a.beta2) * g[i] * g[i];
            p[i] -= a.step_size * m[i] / (std::sqrt(v[i]) * a.inv_sqrt_bc2 + a.eps);
          }
      }
    }
    const char* names[] = {"sgd nesterov", "sgd plain", "adamw"};
    expect_bitwise(tag<T>(std::string(names[kind]) + " masters after 3 steps"), download(dp.get(), p.size()), p);
    if (kind == 0) expect_bitwise(tag<T>("sgd momentum buffer"), download(dbuf.get(), buf.size()), buf);
    if (kind == 2) expect_bitwise(tag<T>("adamw second moment"), download(dv.get(), v.size()), v);
    if (!std::is_same_v<T, float>)
      expect_bitwise(tag<T>(std::string(names[kind]) + " half copy"), download(dhalf.get(), p.size()), rounded<T>(p));
  }
}

TYPED_TEST(GpuOps, OptimizerSkipsTheStepWhenTheFiniteCheckFails) {
  REQUIRE_GPU();
  using T = TypeParam;
  const auto ps = fake_params();
  const int64_t N = ps.back().offset + ps.back().size;
  const auto chunks = chunks_of(ps, 0.f);
  auto dchunks = upload_raw(chunks);
  const auto p = random_vec(static_cast<size_t>(N), 101);
  auto g = random_vec(static_cast<size_t>(N), 102);
  auto dp = upload<float>(p), dbuf = upload<float>(std::vector<float>(static_cast<size_t>(N), 0.f));
  DeviceBuffer<int32_t> flag(1);

  // All finite: the flag stays 0.
  auto dg = upload<float>(g);
  CUDA_CHECK(cudaMemset(flag.get(), 0, sizeof(int32_t)));
  cuda::check_finite(N, dg.get(), flag.get(), kStream);
  EXPECT_EQ(download_raw(flag.get(), 1)[0], 0);
  // One infinity far into the array (and a NaN): flagged, and the step changes nothing.
  g[static_cast<size_t>(N - 5)] = INFINITY;
  g[17] = NAN;
  dg = upload<float>(g);
  cuda::check_finite(N, dg.get(), flag.get(), kStream);
  EXPECT_EQ(download_raw(flag.get(), 1)[0], 1);
  cuda::SgdArgs a;
  a.lr = 0.1f;
  a.momentum = 0.9f;
  a.first = true;
  cuda::sgd_step<T>(dchunks.get(), static_cast<int>(chunks.size()), dp.get(), nullptr, dg.get(), dbuf.get(), a,
                    flag.get(), kStream);
  expect_bitwise(tag<T>("params after a skipped step"), download(dp.get(), p.size()), p);
}

// ---- casts, accumulation, metrics --------------------------------------------------------------------------------
TYPED_TEST(GpuOps, CastAccumulateConfusion) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int64_t n = 1001;
  const auto x = random_vec(static_cast<size_t>(n) + 1, 111, -100.f, 100.f);
  auto dx_ = upload<float>(x);
  DeviceBuffer<T> dh(static_cast<size_t>(n) + 1);
  DeviceBuffer<float> back(static_cast<size_t>(n) + 1);
  for (int off : {0, 1}) {
    cuda::cast<float, T>(n, dx_.get() + off, dh.get() + off, kStream);
    cuda::cast<T, float>(n, dh.get() + off, back.get() + off, kStream);
    expect_bitwise(tag<T>("cast round trip off " + std::to_string(off)), download(back.get() + off, n),
                   rounded<T>(std::vector<float>(x.begin() + off, x.begin() + off + n)));
  }
  auto acc = upload<float>(x);
  cuda::accumulate<T>(n, dh.get(), acc.get(), kStream);
  std::vector<float> ref(x.begin(), x.begin() + n);
  const auto xr = rounded<T>(std::vector<float>(x.begin(), x.begin() + n));
  for (size_t i = 0; i < ref.size(); ++i) ref[i] += xr[i];
  expect_bitwise(tag<T>("accumulate y += float(x)"), download(acc.get(), ref.size()), ref);

  const int rows = 50, K = 7;
  const auto z = rounded<T>(random_vec(static_cast<size_t>(rows) * K, 112));
  std::vector<int32_t> labels(rows);
  for (int i = 0; i < rows; ++i) labels[static_cast<size_t>(i)] = (i * 3) % K;
  labels[4] = K;  // out of range: not counted
  auto dz = upload<T>(z);
  auto dl = upload_raw(labels);
  DeviceBuffer<int32_t> counts(static_cast<size_t>(K) * K);
  CUDA_CHECK(cudaMemset(counts.get(), 0, sizeof(int32_t) * K * K));
  cuda::confusion_update<T>(rows, K, dz.get(), dl.get(), counts.get(), kStream);
  std::vector<int32_t> ref_counts(static_cast<size_t>(K) * K, 0);
  for (int i = 0; i < rows; ++i) {
    if (labels[static_cast<size_t>(i)] >= K) continue;
    int am = 0;
    for (int k = 1; k < K; ++k)
      if (z[static_cast<size_t>(i) * K + k] > z[static_cast<size_t>(i) * K + am]) am = k;
    ++ref_counts[static_cast<size_t>(labels[static_cast<size_t>(i)]) * K + am];
  }
  EXPECT_EQ(download_raw(counts.get(), ref_counts.size()), ref_counts);
}

}  // namespace
}  // namespace stoke
