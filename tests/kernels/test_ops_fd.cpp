// Finite-difference checks of every op's backward.
//
// Each op is wrapped into a scalar objective L = sum_i out_i * R_i with a fixed random R (so dL/dout = R,
// which is handed to backward as dy). Each input or parameter element v is moved to float(v + h) and
// float(v - h); L is evaluated in double from the fp32 outputs and the numeric derivative is
// (L+ - L-) / (v+ - v-) with the actually representable step. Agreement criterion, per element:
//
//   |analytic - numeric| <= kAtol + kRtol * max(|analytic|, |numeric|)
//
// with h = 1e-2, kAtol = 1e-3 and kRtol = 1e-3 by default (Caffe's check: step 1e-2, threshold 1e-3 scaled
// by max(|g|, 1)). Inputs are O(1); shapes are tiny and awkward (odd sizes, channels 3 and 4...).
// Measured headroom: every check here still passes with atol = rtol = 1e-4 except a single conv dw element
// (7x7 s2 p3) off by 1.2e-4, so the 1e-3 criterion has about 10x margin over fp32 rounding noise, while
// the real bugs tried on it (a wrong col2im offset, a dropped BN term, smoothing ignored in the CE
// gradient, a lost reduction chunk) miss by orders of magnitude.
//
// Besides the values, the tests check the README's contract: parameter gradients accumulate (a second
// backward doubles them on top of what was there), activation gradients are assigned (they start as NaN
// and must come out clean), and null gradient pointers are skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"
#include "kernels/pool.h"
#include "kernels/softmax_ce.h"
#include "kernels/tensor_ops.h"
#include "tests/kernels/test_util.h"

namespace stoke {
namespace {

using test::random_vec;

constexpr double kStep = 1e-2;
constexpr double kAtol = 1e-3;
constexpr double kRtol = 1e-3;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

double dot(const std::vector<float>& out, const std::vector<float>& r) {
  double s = 0;
  for (size_t i = 0; i < out.size(); ++i) s += double{out[i]} * r[i];
  return s;
}

// Compares `analytic` with central differences of `loss` with respect to every element of `v`
// (skip(i) excludes elements where the objective is not smooth within the step).
void check_grad(const std::string& what, std::vector<float>& v, const std::vector<float>& analytic,
                const std::function<double()>& loss, const std::function<bool(size_t)>& skip = {},
                double h = kStep, double atol = kAtol, double rtol = kRtol) {
  ASSERT_EQ(v.size(), analytic.size()) << what;
  int bad = 0, checked = 0;
  double max_abs = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (skip && skip(i)) continue;
    const float orig = v[i];
    const float up = static_cast<float>(orig + h), down = static_cast<float>(orig - h);
    v[i] = up;
    const double lp = loss();
    v[i] = down;
    const double lm = loss();
    v[i] = orig;
    const double num = (lp - lm) / (double{up} - double{down});
    const double a = analytic[i];
    ++checked;
    max_abs = std::max(max_abs, std::fabs(a));
    if (!(std::fabs(a - num) <= atol + rtol * std::max(std::fabs(a), std::fabs(num))) && bad++ < 8)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << a << " vs numeric " << num;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << checked << " elements disagree";
  EXPECT_GT(checked, static_cast<int>(v.size() / 2)) << what << ": most elements were skipped";
  EXPECT_GT(max_abs, 1e-2) << what << ": the gradient is all but zero, the check proves nothing";
}

// After prefilling a parameter gradient with `base` and running backward twice, it must read base + 2g.
void expect_accumulated_twice(const std::string& what, const std::vector<float>& twice, float base,
                              const std::vector<float>& g) {
  ASSERT_EQ(twice.size(), g.size());
  for (size_t i = 0; i < g.size(); ++i)
    ASSERT_NEAR(twice[i], base + 2.f * g[i], 1e-4f * (1.f + std::fabs(g[i]))) << what << "[" << i << "]";
}

// --------------------------------------------------------------------------------------------------
// Convolution

struct ConvCase {
  ConvShape sh;
  const char* name;
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class ConvFd : public ::testing::TestWithParam<ConvCase> {};

TEST_P(ConvFd, GradientsMatchFiniteDifferences) {
  const ConvShape sh = GetParam().sh;
  const size_t nx = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c;
  const size_t nw = static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c;
  const size_t ny = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k;
  auto x = random_vec(nx, 1), w = random_vec(nw, 2), b = random_vec(sh.k, 3);
  const auto R = random_vec(ny, 4);
  std::vector<float> y(ny);
  auto loss = [&] {
    cpu::conv2d_forward(sh, x.data(), w.data(), b.data(), y.data());
    return dot(y, R);
  };

  std::vector<float> dx(nx, kNaN), dw(nw, 0.f), db(sh.k, 0.f);
  cpu::conv2d_backward(sh, x.data(), w.data(), R.data(), dx.data(), dw.data(), db.data());
  for (float v : dx) ASSERT_FALSE(std::isnan(v)) << "dx must be assigned, not accumulated";

  check_grad("conv dx", x, dx, loss);
  check_grad("conv dw", w, dw, loss);
  check_grad("conv db", b, db, loss);

  // Accumulation: dw, db += ; dx = (a second call with a dirty dx gives the same dx).
  std::vector<float> dw2(nw, 0.5f), db2(sh.k, 0.5f), dx2(nx, 123.f);
  cpu::conv2d_backward(sh, x.data(), w.data(), R.data(), dx2.data(), dw2.data(), db2.data());
  cpu::conv2d_backward(sh, x.data(), w.data(), R.data(), dx2.data(), dw2.data(), db2.data());
  expect_accumulated_twice("conv dw", dw2, 0.5f, dw);
  expect_accumulated_twice("conv db", db2, 0.5f, db);
  EXPECT_EQ(dx2, dx);

  // Null pointers skip their part and leave the others unchanged.
  std::vector<float> dw3(nw, 0.f);
  cpu::conv2d_backward(sh, x.data(), w.data(), R.data(), nullptr, dw3.data(), nullptr);
  EXPECT_EQ(dw3, dw);
  std::vector<float> dx3(nx, kNaN);
  cpu::conv2d_backward(sh, x.data(), w.data(), R.data(), dx3.data(), nullptr, nullptr);
  EXPECT_EQ(dx3, dx);
}

ConvShape conv(int n, int h, int w, int c, int k, int r, int s, int stride, int pad) {
  ConvShape sh;
  sh.n = n, sh.h = h, sh.w = w, sh.c = c, sh.k = k, sh.r = r, sh.s = s, sh.stride = stride, sh.pad = pad;
  return sh;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvFd,
    ::testing::Values(ConvCase{conv(2, 5, 7, 3, 4, 3, 3, 1, 1), "k3s1p1"},
                      ConvCase{conv(2, 5, 7, 3, 4, 3, 3, 2, 0), "k3s2p0"},
                      ConvCase{conv(2, 6, 5, 3, 4, 3, 3, 2, 1), "k3s2p1"},
                      ConvCase{conv(2, 5, 7, 3, 4, 2, 3, 1, 0), "k2x3s1p0"},
                      ConvCase{conv(2, 5, 7, 3, 4, 1, 1, 1, 0), "k1s1p0_direct"},
                      ConvCase{conv(2, 5, 7, 3, 4, 1, 1, 2, 0), "k1s2p0"},
                      ConvCase{conv(2, 9, 11, 3, 4, 7, 7, 2, 3), "k7s2p3"},
                      ConvCase{conv(1, 4, 4, 2, 3, 3, 3, 3, 2), "k3s3p2"},
                      ConvCase{conv(1, 3, 3, 1, 1, 3, 3, 1, 0), "k3_whole_image"},
                      // Enough images for multi-image sub-batches and several reduction chunks.
                      ConvCase{conv(37, 3, 3, 2, 3, 3, 3, 1, 1), "many_images"},
                      ConvCase{conv(37, 3, 3, 2, 3, 1, 1, 1, 0), "many_images_direct"}),
    [](const auto& p) { return std::string(p.param.name); });

// --------------------------------------------------------------------------------------------------
// Batch normalisation (training mode)

TEST(BatchNormFd, TrainGradientsMatchFiniteDifferences) {
  const int rows = 2 * 3 * 5, C = 4;
  const float eps = 1e-5f, momentum = 0.1f;
  auto x = random_vec(static_cast<size_t>(rows) * C, 10, -2.f, 2.f);
  for (int r = 0; r < rows; ++r) x[static_cast<size_t>(r) * C + 1] += 3.f;  // a channel with a mean far from 0
  auto gamma = random_vec(C, 11, 0.5f, 1.5f), beta = random_vec(C, 12);
  const auto R = random_vec(x.size(), 13);
  std::vector<float> y(x.size()), mean(C), invstd(C), rm(C), rv(C);
  auto loss = [&] {
    std::fill(rm.begin(), rm.end(), 0.f);
    std::fill(rv.begin(), rv.end(), 1.f);
    cpu::batchnorm_forward_train(rows, C, x.data(), gamma.data(), beta.data(), eps, momentum, rm.data(), rv.data(),
                                 y.data(), mean.data(), invstd.data());
    return dot(y, R);
  };
  loss();  // saves mean / invstd of the unperturbed input
  std::vector<float> dx(x.size(), kNaN), dgamma(C, 0.f), dbeta(C, 0.f);
  cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), mean.data(), invstd.data(), R.data(), dx.data(),
                          dgamma.data(), dbeta.data());
  for (float v : dx) ASSERT_FALSE(std::isnan(v));
  check_grad("bn dx", x, dx, loss);
  check_grad("bn dgamma", gamma, dgamma, loss);
  check_grad("bn dbeta", beta, dbeta, loss);

  std::vector<float> dg2(C, 0.5f), db2(C, 0.5f), dx2(x.size(), 7.f);
  for (int i = 0; i < 2; ++i)
    cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), mean.data(), invstd.data(), R.data(), dx2.data(),
                            dg2.data(), db2.data());
  expect_accumulated_twice("bn dgamma", dg2, 0.5f, dgamma);
  expect_accumulated_twice("bn dbeta", db2, 0.5f, dbeta);
  EXPECT_EQ(dx2, dx);

  // dx alone (parameter grads skipped) gives the same dx.
  std::vector<float> dx3(x.size(), kNaN);
  cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), mean.data(), invstd.data(), R.data(), dx3.data(), nullptr,
                          nullptr);
  EXPECT_EQ(dx3, dx);
}

// --------------------------------------------------------------------------------------------------
// ReLU

TEST(ReluFd, GradientMatchesAwayFromTheKink) {
  auto x = random_vec(2 * 5 * 7 * 3, 20);
  const auto R = random_vec(x.size(), 21);
  std::vector<float> y(x.size());
  auto loss = [&] {
    cpu::relu_forward(static_cast<int64_t>(x.size()), x.data(), y.data());
    return dot(y, R);
  };
  loss();
  std::vector<float> dx(x.size(), kNaN);
  cpu::relu_backward(static_cast<int64_t>(x.size()), y.data(), R.data(), dx.data());
  const auto x0 = x;
  check_grad("relu dx", x, dx, loss, [&](size_t i) { return std::fabs(x0[i]) < 2 * kStep; });
  // In place: y aliases x, dx aliases dy.
  auto xy = x0;
  cpu::relu_forward(static_cast<int64_t>(xy.size()), xy.data(), xy.data());
  EXPECT_EQ(xy, y);
  auto g = R;
  cpu::relu_backward(static_cast<int64_t>(g.size()), y.data(), g.data(), g.data());
  EXPECT_EQ(g, dx);
}

// --------------------------------------------------------------------------------------------------
// Pooling

PoolShape pool(int n, int h, int w, int c, int kernel, int stride, int pad) {
  PoolShape sh;
  sh.n = n, sh.h = h, sh.w = w, sh.c = c, sh.kernel = kernel, sh.stride = stride, sh.pad = pad;
  return sh;
}

// Distinct values at least 0.05 apart (more than 2 steps), so no perturbation changes a window's winner.
std::vector<float> well_separated(size_t n, uint32_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.05f * static_cast<float>(i) - 0.025f * static_cast<float>(n);
  std::mt19937 gen(seed);
  std::shuffle(v.begin(), v.end(), gen);
  return v;
}

TEST(MaxPoolFd, GradientMatches) {
  for (PoolShape sh : {pool(2, 5, 7, 3, 2, 2, 0), pool(2, 5, 7, 3, 3, 2, 1), pool(1, 6, 5, 4, 3, 1, 1)}) {
    SCOPED_TRACE("kernel " + std::to_string(sh.kernel) + " stride " + std::to_string(sh.stride) + " pad " +
                 std::to_string(sh.pad));
    auto x = well_separated(static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, 30);
    const size_t ny = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.c;
    const auto R = random_vec(ny, 31);
    std::vector<float> y(ny);
    std::vector<int32_t> am(ny);
    auto loss = [&] {
      cpu::maxpool_forward(sh, x.data(), y.data(), am.data());
      return dot(y, R);
    };
    loss();
    std::vector<float> dx(x.size(), kNaN);
    cpu::maxpool_backward(sh, am.data(), R.data(), dx.data());
    // Elements no window takes have gradient 0 exactly: the check covers them too.
    check_grad("maxpool dx", x, dx, loss);
  }
}

TEST(MaxPoolFd, SkipsNearTiesWithRandomInput) {
  const PoolShape sh = pool(2, 5, 7, 3, 3, 2, 1);
  auto x = random_vec(static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, 32);
  const size_t ny = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.c;
  const auto R = random_vec(ny, 33);
  std::vector<float> y(ny);
  std::vector<int32_t> am(ny);
  auto loss = [&] {
    cpu::maxpool_forward(sh, x.data(), y.data(), am.data());
    return dot(y, R);
  };
  loss();
  std::vector<float> dx(x.size());
  cpu::maxpool_backward(sh, am.data(), R.data(), dx.data());
  // Skip an input whose value is within 2 steps of another value of the same image and channel
  // (a coarse but safe notion of "near a tie in some window").
  const auto x0 = x;
  const int64_t hwc = int64_t{sh.h} * sh.w * sh.c;
  auto near_tie = [&](size_t i) {
    const int64_t n = static_cast<int64_t>(i) / hwc, c = static_cast<int64_t>(i) % sh.c;
    for (int64_t j = n * hwc + c; j < (n + 1) * hwc; j += sh.c)
      if (j != static_cast<int64_t>(i) && std::fabs(x0[static_cast<size_t>(j)] - x0[i]) < 2 * kStep) return true;
    return false;
  };
  check_grad("maxpool dx (random)", x, dx, loss, near_tie);
}

TEST(AvgPoolFd, GradientMatches) {
  for (PoolShape sh : {pool(2, 5, 7, 3, 2, 2, 0), pool(2, 5, 7, 3, 3, 2, 1), pool(1, 4, 6, 2, 3, 1, 1)}) {
    SCOPED_TRACE("kernel " + std::to_string(sh.kernel) + " stride " + std::to_string(sh.stride) + " pad " +
                 std::to_string(sh.pad));
    auto x = random_vec(static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, 40);
    const size_t ny = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.c;
    const auto R = random_vec(ny, 41, -4.f, 4.f);
    std::vector<float> y(ny);
    auto loss = [&] {
      cpu::avgpool_forward(sh, x.data(), y.data());
      return dot(y, R);
    };
    std::vector<float> dx(x.size(), kNaN);
    cpu::avgpool_backward(sh, R.data(), dx.data());
    check_grad("avgpool dx", x, dx, loss);
  }
}

TEST(GlobalAvgPoolFd, GradientMatches) {
  const int n = 3, hw = 5 * 7, c = 4;
  auto x = random_vec(static_cast<size_t>(n) * hw * c, 50);
  const auto R = random_vec(static_cast<size_t>(n) * c, 51, -10.f, 10.f);
  std::vector<float> y(R.size());
  auto loss = [&] {
    cpu::global_avgpool_forward(n, hw, c, x.data(), y.data());
    return dot(y, R);
  };
  std::vector<float> dx(x.size(), kNaN);
  cpu::global_avgpool_backward(n, hw, c, R.data(), dx.data());
  check_grad("global avgpool dx", x, dx, loss);
}

// --------------------------------------------------------------------------------------------------
// Linear

TEST(LinearFd, GradientsMatch) {
  const int n = 3, in = 7, out = 5;
  auto x = random_vec(static_cast<size_t>(n) * in, 60), w = random_vec(static_cast<size_t>(out) * in, 61);
  auto b = random_vec(out, 62);
  const auto R = random_vec(static_cast<size_t>(n) * out, 63);
  std::vector<float> y(R.size());
  auto loss = [&] {
    cpu::linear_forward(n, in, out, x.data(), w.data(), b.data(), y.data());
    return dot(y, R);
  };
  std::vector<float> dx(x.size(), kNaN), dw(w.size(), 0.f), db(out, 0.f);
  cpu::linear_backward(n, in, out, x.data(), w.data(), R.data(), dx.data(), dw.data(), db.data());
  for (float v : dx) ASSERT_FALSE(std::isnan(v));
  check_grad("linear dx", x, dx, loss);
  check_grad("linear dw", w, dw, loss);
  check_grad("linear db", b, db, loss);

  std::vector<float> dw2(w.size(), 0.5f), db2(out, 0.5f);
  for (int i = 0; i < 2; ++i)
    cpu::linear_backward(n, in, out, x.data(), w.data(), R.data(), nullptr, dw2.data(), db2.data());
  expect_accumulated_twice("linear dw", dw2, 0.5f, dw);
  expect_accumulated_twice("linear db", db2, 0.5f, db);

  // Without a bias the forward is x * W^T alone.
  std::vector<float> y_nob(R.size());
  cpu::linear_forward(n, in, out, x.data(), w.data(), nullptr, y_nob.data());
  cpu::linear_forward(n, in, out, x.data(), w.data(), b.data(), y.data());
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < out; ++j)
      EXPECT_FLOAT_EQ(y[static_cast<size_t>(i) * out + j], y_nob[static_cast<size_t>(i) * out + j] + b[j]);
}

// --------------------------------------------------------------------------------------------------
// Add and concat

TEST(AddFd, GradientsMatch) {
  const int64_t n = 2 * 5 * 7 * 3;
  auto a = random_vec(n, 70), b = random_vec(n, 71);
  const auto R = random_vec(n, 72);
  std::vector<float> y(n);
  auto loss = [&] {
    cpu::add_forward(n, a.data(), b.data(), y.data());
    return dot(y, R);
  };
  std::vector<float> da(n, kNaN), db(n, kNaN);
  cpu::add_backward(n, R.data(), da.data(), db.data());
  check_grad("add da", a, da, loss);
  check_grad("add db", b, db, loss);
  std::vector<float> only_b(n, kNaN);
  cpu::add_backward(n, R.data(), nullptr, only_b.data());
  EXPECT_EQ(only_b, R);
  // y may alias a.
  auto inplace = a;
  cpu::add_forward(n, inplace.data(), b.data(), inplace.data());
  cpu::add_forward(n, a.data(), b.data(), y.data());
  EXPECT_EQ(inplace, y);
}

TEST(ConcatFd, GradientsMatch) {
  const int64_t rows = 2 * 3 * 5;
  const int cs[] = {2, 3, 1};
  const int total = 6;
  std::vector<float> x0 = random_vec(rows * cs[0], 80), x1 = random_vec(rows * cs[1], 81),
                     x2 = random_vec(rows * cs[2], 82);
  const auto R = random_vec(static_cast<size_t>(rows) * total, 83);
  std::vector<float> y(R.size());
  auto loss = [&] {
    const float* xs[] = {x0.data(), x1.data(), x2.data()};
    cpu::concat_forward(rows, 3, xs, cs, y.data());
    return dot(y, R);
  };
  std::vector<float> d0(x0.size(), kNaN), d1(x1.size(), kNaN), d2(x2.size(), kNaN);
  float* dxs[] = {d0.data(), d1.data(), d2.data()};
  cpu::concat_backward(rows, 3, R.data(), cs, dxs);
  check_grad("concat dx0", x0, d0, loss);
  check_grad("concat dx1", x1, d1, loss);
  check_grad("concat dx2", x2, d2, loss);
  // A null part is skipped.
  std::vector<float> e1(x1.size(), kNaN);
  float* some[] = {nullptr, e1.data(), nullptr};
  cpu::concat_backward(rows, 3, R.data(), cs, some);
  EXPECT_EQ(e1, d1);
}

// --------------------------------------------------------------------------------------------------
// Softmax cross-entropy

TEST(SoftmaxCeFd, GradientOfTheMeanLossMatches) {
  const int n = 5, K = 7;
  for (float smoothing : {0.f, 0.1f}) {
    SCOPED_TRACE("smoothing " + std::to_string(smoothing));
    auto z = random_vec(static_cast<size_t>(n) * K, 90, -3.f, 3.f);
    const std::vector<int32_t> labels = {0, 6, 3, 3, 1};
    auto loss = [&] {
      return double{cpu::softmax_cross_entropy(n, K, z.data(), labels.data(), smoothing, 1.f, nullptr, nullptr,
                                               nullptr)};
    };
    std::vector<float> dz(z.size(), kNaN), losses(n);
    const float mean = cpu::softmax_cross_entropy(n, K, z.data(), labels.data(), smoothing, 1.f, losses.data(),
                                                  dz.data(), nullptr);
    EXPECT_NEAR(mean, std::accumulate(losses.begin(), losses.end(), 0.0) / n, 1e-6);
    // The objective here is the returned mean loss itself (dL/dlogits is what dlogits holds).
    check_grad("softmax-ce dlogits", z, dz, loss);
    // grad_scale multiplies the gradient (and only the gradient).
    std::vector<float> dz8(z.size());
    const float mean8 = cpu::softmax_cross_entropy(n, K, z.data(), labels.data(), smoothing, 8.f, nullptr,
                                                   dz8.data(), nullptr);
    EXPECT_EQ(mean8, mean);
    for (size_t i = 0; i < dz.size(); ++i) EXPECT_NEAR(dz8[i], 8.f * dz[i], 1e-6f);
  }
}

// Against mixed targets (mixup, cutmix): row i's target weighs its own smoothed label by lam and row n-1-i's by
// 1 - lam. An odd batch (the middle row is its own partner), a repeated label, lam on both sides of 0.5.
TEST(SoftmaxCeFd, MixedTargetGradientMatches) {
  const int n = 5, K = 7;
  const std::vector<int32_t> labels = {0, 6, 3, 3, 1};
  for (float smoothing : {0.f, 0.1f})
    for (float lam : {0.3f, 0.85f}) {
      SCOPED_TRACE("smoothing " + std::to_string(smoothing) + ", lam " + std::to_string(lam));
      const BatchMix mix{lam, 0, 0, 0, 0, 0};
      auto z = random_vec(static_cast<size_t>(n) * K, 91, -3.f, 3.f);
      auto loss = [&] {
        return double{cpu::softmax_cross_entropy_mixed(n, K, z.data(), labels.data(), &mix, smoothing, 1.f, nullptr,
                                                       nullptr, nullptr)};
      };
      std::vector<float> dz(z.size(), kNaN);
      cpu::softmax_cross_entropy_mixed(n, K, z.data(), labels.data(), &mix, smoothing, 1.f, nullptr, dz.data(),
                                       nullptr);
      check_grad("mixed softmax-ce dlogits", z, dz, loss);
    }
}

}  // namespace
}  // namespace stoke
