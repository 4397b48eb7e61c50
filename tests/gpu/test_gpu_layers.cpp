// cuDNN convolution and cuBLASLt linear layers against the CPU reference ops, per storage type, at awkward shapes
// (1 input channel as MNIST's first layer, odd sizes, strides, 1x1 and 5x5 filters), forward and backward.
#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "engine/cuda/context.h"
#include "engine/cuda/conv.h"
#include "engine/cuda/linear.h"
#include "engine/cuda/param_layout.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"
#include "kernels/tensor_ops.cuh"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

// fp32 parity means fp32 arithmetic: keep TF32 tensor cores out of cuDNN and cuBLAS for this process (read by the
// libraries when their handles are created, so it must be set before any test runs).
const bool kNoTf32 = [] { return ::setenv("NVIDIA_TF32_OVERRIDE", "0", 1) == 0; }();

template <typename T>
class GpuLayers : public ::testing::Test {};
TYPED_TEST_SUITE(GpuLayers, StorageTypes, StorageNames);

ConvShape conv_shape(int n, int h, int w, int c, int k, int r, int stride, int pad) {
  ConvShape sh;
  sh.n = n, sh.h = h, sh.w = w, sh.c = c, sh.k = k, sh.r = r, sh.s = r, sh.stride = stride, sh.pad = pad;
  return sh;
}

const ConvShape kConvCases[] = {
    conv_shape(3, 13, 11, 5, 7, 3, 1, 1),   // odd everything
    conv_shape(2, 9, 10, 3, 6, 3, 2, 1),    // stride 2, RGB-like
    conv_shape(4, 7, 7, 8, 16, 1, 1, 0),    // 1x1 (pointwise)
    conv_shape(5, 12, 12, 1, 16, 3, 1, 1),  // one input channel (MNIST's first layer)
    conv_shape(2, 8, 9, 13, 9, 5, 2, 2),    // 5x5, stride 2
};

// Inner dimension `c` of rows of `from` channels -> `to` channels: zero-padded (to > from) or cut (to < from).
std::vector<float> rechannel(const std::vector<float>& v, int from, int to) {
  const size_t rows = v.size() / static_cast<size_t>(from);
  std::vector<float> r(rows * static_cast<size_t>(to), 0.f);
  for (size_t i = 0; i < rows; ++i)
    for (int c = 0; c < std::min(from, to); ++c)
      r[i * static_cast<size_t>(to) + static_cast<size_t>(c)] =
          v[i * static_cast<size_t>(from) + static_cast<size_t>(c)];
  return r;
}

// A first-layer-like convolution (fewer than 8 input channels) runs as the executor runs it: in bf16/fp16 the
// input and the filter are zero-padded to 8 channels (engine/cuda/param_layout.h); the CPU reference stays
// unpadded, and the padded filter slices' dW must come out exactly zero.
template <typename T>
void conv_case(const ConvShape& sh, bool deterministic, bool benchmark) {
  cuda::CudaContext ctx(0);
  cuda::ConvOptions opt;
  opt.deterministic = deterministic;
  opt.benchmark = benchmark;
  cuda::ConvRunner conv(ctx, cuda::precision_of<T>(), opt);
  const size_t nx = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, nw = static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c,
               ny = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k;
  const auto x = rounded<T>(random_vec(nx, 201)), w = rounded<T>(random_vec(nw, 202, -0.5f, 0.5f)),
             dy = rounded<T>(random_vec(ny, 203));
  ConvShape dev = sh;  // what cuDNN sees
  dev.c = cuda::device_input_channels(cuda::precision_of<T>(), sh.c, sh.c < 8);
  if (dev.c != sh.c) std::printf(" input padded from %d to %d channels\n", sh.c, dev.c);
  const size_t nxd = nx / static_cast<size_t>(sh.c) * static_cast<size_t>(dev.c),
               nwd = nw / static_cast<size_t>(sh.c) * static_cast<size_t>(dev.c);
  auto dxb = upload<T>(rechannel(x, sh.c, dev.c)), dwb = upload<T>(rechannel(w, sh.c, dev.c)), ddy = upload<T>(dy);
  DeviceBuffer<T> dyo(ny), ddx(nxd), ddw_half(nwd);
  size_t ws_bytes = 0;
  DeviceBuffer<char> bench_ws(benchmark ? opt.workspace_limit : 1);
  if (benchmark) {
    DeviceBuffer<T> by(ny), bdx(nxd), bdw(nwd);
    cuda::ConvBenchBuffers b{dxb.get(), dwb.get(), by.get(), bdx.get(), bdw.get(), bench_ws.get(), opt.workspace_limit};
    ws_bytes = conv.prepare(dev, opt.workspace_limit, &b);
  } else {
    ws_bytes = conv.prepare(dev, opt.workspace_limit);
  }
  DeviceBuffer<char> ws(ws_bytes);
  std::printf(" %s", conv.describe().c_str());

  std::vector<float> y(ny), dx(nx), dw = random_vec(nw, 204);  // dw starts non-zero: backward accumulates
  const std::vector<float> dw0 = dw;
  cpu::conv2d_forward(sh, x.data(), w.data(), nullptr, y.data());
  cpu::conv2d_backward(sh, x.data(), w.data(), dy.data(), dx.data(), dw.data(), nullptr);

  conv.forward(dev, dxb.get(), dwb.get(), dyo.get(), ws.get(), ws_bytes);
  expect_close(std::string(Tol<T>::name) + " conv forward", download(dyo.get(), ny), y, Tol<T>::rtol);
  conv.backward_data(dev, dwb.get(), ddy.get(), ddx.get(), ws.get(), ws_bytes);
  expect_close(std::string(Tol<T>::name) + " conv dx", rechannel(download(ddx.get(), nxd), dev.c, sh.c), dx,
               Tol<T>::rtol);
  if constexpr (std::is_same_v<T, float>) {
    auto ddw = upload<float>(dw0);  // finished before the context's (non-blocking) stream reads it: beta = 1
    conv.backward_filter(dev, dxb.get(), ddy.get(), ddw.get(), 1.f, ws.get(), ws_bytes);
    expect_close("fp32 conv dw (+=)", download(ddw.get(), nw), dw, Tol<T>::rtol);
  } else {
    // Half: dW in the storage type (beta 0), compared with the CPU's dW alone.
    conv.backward_filter(dev, dxb.get(), ddy.get(), ddw_half.get(), 0.f, ws.get(), ws_bytes);
    std::vector<float> only(nw);
    for (size_t i = 0; i < nw; ++i) only[i] = dw[i] - dw0[i];
    const std::vector<float> got = download(ddw_half.get(), nwd);
    expect_close(std::string(Tol<T>::name) + " conv dw", rechannel(got, dev.c, sh.c), only, Tol<T>::rtol);
    if (dev.c != sh.c) {
      size_t nonzero = 0;  // == 0.f, so a -0 (a sum of 0 * negative) counts as zero
      for (size_t i = 0; i < got.size(); ++i)
        if (static_cast<int>(i % static_cast<size_t>(dev.c)) >= sh.c && got[i] != 0.f) ++nonzero;
      std::printf("  %s conv dw of the zero channels: %zu non-zero\n", Tol<T>::name, nonzero);
      EXPECT_EQ(nonzero, 0u);
    }
  }
}

TYPED_TEST(GpuLayers, ConvMatchesTheCpuReference) {
  REQUIRE_GPU();
  for (const ConvShape& sh : kConvCases) conv_case<TypeParam>(sh, false, false);
}

TYPED_TEST(GpuLayers, ConvDeterministicAndBenchmarkedAlgorithms) {
  REQUIRE_GPU();
  conv_case<TypeParam>(kConvCases[0], true, false);
  conv_case<TypeParam>(kConvCases[1], false, true);
}

// Deterministic mode: the same backward twice gives the same bits.
TYPED_TEST(GpuLayers, ConvDeterministicModeIsBitReproducible) {
  REQUIRE_GPU();
  using T = TypeParam;
  const ConvShape sh = conv_shape(16, 14, 14, 16, 32, 3, 1, 1);
  cuda::CudaContext ctx(0);
  cuda::ConvOptions opt;
  opt.deterministic = true;
  cuda::ConvRunner conv(ctx, cuda::precision_of<T>(), opt);
  const size_t nx = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, nw = static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c,
               ny = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k;
  auto x = upload<T>(random_vec(nx, 211)), dy = upload<T>(random_vec(ny, 212)), w = upload<T>(random_vec(nw, 213));
  const size_t ws_bytes = conv.prepare(sh, opt.workspace_limit);
  DeviceBuffer<char> ws(ws_bytes);
  DeviceBuffer<T> dw(nw), dx(nx);
  std::vector<float> first;
  for (int run = 0; run < 3; ++run) {
    conv.backward_filter(sh, x.get(), dy.get(), dw.get(), 0.f, ws.get(), ws_bytes);
    conv.backward_data(sh, w.get(), dy.get(), dx.get(), ws.get(), ws_bytes);
    std::vector<float> all = download(dw.get(), nw);
    for (float v : download(dx.get(), nx)) all.push_back(v);
    if (run == 0)
      first = all;
    else
      expect_bitwise(std::string(Tol<T>::name) + " deterministic conv backward", all, first);
  }
}

TYPED_TEST(GpuLayers, LinearMatchesTheCpuReference) {
  REQUIRE_GPU();
  using T = TypeParam;
  cuda::CudaContext ctx(0);
  DeviceBuffer<char> lt_ws(cuda::LinearRunner::kDefaultWorkspace);
  cuda::LinearRunner lin(ctx, cuda::precision_of<T>(), lt_ws.get(), cuda::LinearRunner::kDefaultWorkspace);
  struct Case {
    int n, in, out, bias_offset;  // bias_offset 1: a misaligned bias pointer (the separate bias kernel)
  };
  for (const Case& c : {Case{37, 71, 10, 0}, Case{5, 576, 13, 1}, Case{64, 576, 10, 0}, Case{3, 17, 1000, 1}}) {
    std::printf(" linear n %d, in %d, out %d, bias %s\n", c.n, c.in, c.out, c.bias_offset ? "misaligned" : "aligned");
    const size_t nx = static_cast<size_t>(c.n) * c.in, nw = static_cast<size_t>(c.out) * c.in,
                 ny = static_cast<size_t>(c.n) * c.out;
    const auto x = rounded<T>(random_vec(nx, 221)), w = rounded<T>(random_vec(nw, 222, -0.3f, 0.3f)),
               dy = rounded<T>(random_vec(ny, 223));
    std::vector<float> b(static_cast<size_t>(c.out) + 1);
    {
      const auto r = rounded<T>(random_vec(b.size(), 224));
      b.assign(r.begin(), r.end());
    }
    auto dxb = upload<T>(x), dwb = upload<T>(w), ddy = upload<T>(dy), dbT = upload<T>(b), dbF = upload<float>(b);
    DeviceBuffer<T> dyo(ny), ddx(nx), scratch(nw);
    std::vector<float> y(ny), dx(nx), dw = random_vec(nw, 225), db = random_vec(static_cast<size_t>(c.out), 226);
    const std::vector<float> dw0 = dw, db0 = db;
    const float* bias = b.data() + c.bias_offset;
    cpu::linear_forward(c.n, c.in, c.out, x.data(), w.data(), bias, y.data());
    cpu::linear_backward(c.n, c.in, c.out, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());

    lin.forward(c.n, c.in, c.out, dxb.get(), dwb.get(), dbT.get() + c.bias_offset, dbF.get() + c.bias_offset,
                dyo.get());
    expect_close(std::string(Tol<T>::name) + " linear forward", download(dyo.get(), ny), y, Tol<T>::rtol);
    lin.backward_data(c.n, c.in, c.out, dwb.get(), ddy.get(), ddx.get());
    expect_close(std::string(Tol<T>::name) + " linear dx", download(ddx.get(), nx), dx, Tol<T>::rtol);
    auto ddw = upload<float>(dw0), ddb = upload<float>(db0);
    lin.backward_weight(c.n, c.in, c.out, dxb.get(), ddy.get(), ddw.get(), scratch.get());
    // fp32 output from half inputs: the GPU's only rounding is fp32's, so the fp32 tolerance applies (unless the
    // half-output fallback ran, which the half tolerance covers).
    expect_close(std::string(Tol<T>::name) + " linear dW (+=)", download(ddw.get(), nw), dw, Tol<T>::rtol);
    DeviceBuffer<char> rws(static_cast<size_t>(cuda::bias_backward_workspace_bytes(c.n, c.out)));
    cuda::bias_backward<T>(c.n, c.out, ddy.get(), ddb.get(), rws.get(), ctx.stream());
    expect_close(std::string(Tol<T>::name) + " linear db (+=)", download(ddb.get(), db.size()), db, Tol<float>::rtol);
  }
}

}  // namespace
}  // namespace stoke
