// Known answers: hand-computed small cases, a naive direct convolution, BatchNorm statistics, and
// bit-reproducibility of the reductions across thread counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/gather.h"
#include "kernels/linear.h"
#include "kernels/pool.h"
#include "kernels/softmax_ce.h"
#include "kernels/tensor_ops.h"
#include "tests/kernels/test_util.h"

namespace stoke {
namespace {

using test::bitwise_equal;
using test::random_vec;
using test::ThreadsGuard;

ConvShape conv(int n, int h, int w, int c, int k, int r, int s, int stride, int pad) {
  ConvShape sh;
  sh.n = n, sh.h = h, sh.w = w, sh.c = c, sh.k = k, sh.r = r, sh.s = s, sh.stride = stride, sh.pad = pad;
  return sh;
}

PoolShape pool(int n, int h, int w, int c, int kernel, int stride, int pad) {
  PoolShape sh;
  sh.n = n, sh.h = h, sh.w = w, sh.c = c, sh.kernel = kernel, sh.stride = stride, sh.pad = pad;
  return sh;
}

// --------------------------------------------------------------------------------------------------
// Convolution by hand

// x = [1 2 3; 4 5 6; 7 8 9], w = [1 2; 3 4], pad 1, stride 2, bias 0.5: the 2x2 output windows start at
// (-1,-1), (-1,1), (1,-1), (1,1) of the input, so
//   y00 = 1*4 + .5 = 4.5            y01 = 2*3 + 3*4 + .5 = 18.5
//   y10 = 4*2 + 7*4 + .5 = 36.5     y11 = 5*1 + 6*2 + 8*3 + 9*4 + .5 = 77.5
// With dy = 1: each input pixel lies in exactly one window (kernel 2 = stride 2), so dx picks the filter tap
// that covers it: dx = [4 3 4; 2 1 2; 4 3 4]. dw[r][s] sums the inputs each tap saw:
//   dw = [5 4+6; 2+8 1+3+7+9] = [5 10; 10 20], db = 4.
TEST(ConvKnown, HandComputedPadStride) {
  const ConvShape sh = conv(1, 3, 3, 1, 1, 2, 2, 2, 1);
  ASSERT_EQ(sh.p(), 2);
  ASSERT_EQ(sh.q(), 2);
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4}, b = {0.5f};
  std::vector<float> y(4);
  cpu::conv2d_forward(sh, x.data(), w.data(), b.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{4.5f, 18.5f, 36.5f, 77.5f}));

  const std::vector<float> dy(4, 1.f);
  std::vector<float> dx(9), dw(4, 0.f), db(1, 0.f);
  cpu::conv2d_backward(sh, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
  EXPECT_EQ(dx, (std::vector<float>{4, 3, 4, 2, 1, 2, 4, 3, 4}));
  EXPECT_EQ(dw, (std::vector<float>{5, 10, 10, 20}));
  EXPECT_EQ(db, (std::vector<float>{4}));
}

// Two channels in, two filters out, 1x1: y = x * W^T per pixel (the direct, no-im2col path).
TEST(ConvKnown, HandComputedPointwise) {
  const ConvShape sh = conv(1, 1, 2, 2, 2, 1, 1, 1, 0);
  const std::vector<float> x = {1, 2, 3, 4};        // pixel 0: (1, 2), pixel 1: (3, 4)
  const std::vector<float> w = {1, -1, 0.5f, 2};    // filter 0: (1, -1), filter 1: (0.5, 2)
  std::vector<float> y(4);
  cpu::conv2d_forward(sh, x.data(), w.data(), nullptr, y.data());
  EXPECT_EQ(y, (std::vector<float>{-1, 4.5f, -1, 9.5f}));
}

// The seven loops, in double, straight from the definition.
struct NaiveConv {
  ConvShape sh;
  std::vector<double> y, dx, dw, db;

  NaiveConv(const ConvShape& s, const std::vector<float>& x, const std::vector<float>& w,
            const std::vector<float>& b, const std::vector<float>& dyv)
      : sh(s) {
    const int P = sh.p(), Q = sh.q();
    y.assign(static_cast<size_t>(sh.n) * P * Q * sh.k, 0.0);
    dx.assign(x.size(), 0.0);
    dw.assign(w.size(), 0.0);
    db.assign(sh.k, 0.0);
    for (int n = 0; n < sh.n; ++n)
      for (int p = 0; p < P; ++p)
        for (int q = 0; q < Q; ++q)
          for (int k = 0; k < sh.k; ++k) {
            const size_t yi = ((static_cast<size_t>(n) * P + p) * Q + q) * sh.k + k;
            double acc = b.empty() ? 0.0 : b[k];
            db[k] += dyv[yi];
            for (int r = 0; r < sh.r; ++r)
              for (int s2 = 0; s2 < sh.s; ++s2)
                for (int c = 0; c < sh.c; ++c) {
                  const int ih = p * sh.stride - sh.pad + r, iw = q * sh.stride - sh.pad + s2;
                  if (ih < 0 || ih >= sh.h || iw < 0 || iw >= sh.w) continue;
                  const size_t xi = ((static_cast<size_t>(n) * sh.h + ih) * sh.w + iw) * sh.c + c;
                  const size_t wi = ((static_cast<size_t>(k) * sh.r + r) * sh.s + s2) * sh.c + c;
                  acc += double{x[xi]} * w[wi];
                  dx[xi] += double{dyv[yi]} * w[wi];
                  dw[wi] += double{dyv[yi]} * x[xi];
                }
            y[yi] = acc;
          }
  }
};

void expect_close(const std::string& what, const std::vector<float>& got, const std::vector<double>& ref,
                  double tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - ref[i]) <= tol * (1.0 + std::fabs(ref[i]))) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", expected " << ref[i];
  EXPECT_EQ(bad, 0) << what;
}

TEST(ConvKnown, MatchesNaiveSevenLoopConvolution) {
  const ConvShape shapes[] = {
      conv(2, 5, 7, 3, 4, 3, 3, 1, 1),   conv(3, 9, 11, 5, 6, 7, 7, 2, 3),  conv(2, 8, 8, 16, 8, 1, 1, 1, 0),
      conv(2, 8, 8, 16, 8, 1, 1, 2, 0),  conv(4, 6, 7, 3, 17, 2, 3, 2, 1),  conv(1, 13, 5, 1, 33, 5, 3, 3, 2),
      conv(40, 7, 7, 9, 20, 3, 3, 1, 1), conv(19, 14, 14, 16, 32, 3, 3, 1, 1), conv(33, 3, 3, 2, 5, 3, 3, 2, 1),
  };
  uint32_t seed = 1000;
  for (const ConvShape& sh : shapes) {
    SCOPED_TRACE(::testing::Message() << "N" << sh.n << " H" << sh.h << " W" << sh.w << " C" << sh.c << " K" << sh.k
                                      << " R" << sh.r << " S" << sh.s << " stride " << sh.stride << " pad " << sh.pad);
    const auto x = random_vec(static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, ++seed);
    const auto w = random_vec(static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c, ++seed);
    const auto b = random_vec(sh.k, ++seed);
    const auto dy = random_vec(static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k, ++seed);
    const NaiveConv ref(sh, x, w, b, dy);
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size(), 0.f), db(sh.k, 0.f);
    cpu::conv2d_forward(sh, x.data(), w.data(), b.data(), y.data());
    cpu::conv2d_backward(sh, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    expect_close("y", y, ref.y, 1e-5);
    expect_close("dx", dx, ref.dx, 1e-5);
    expect_close("dw", dw, ref.dw, 1e-4);  // sums over N*P*Q terms
    expect_close("db", db, ref.db, 1e-4);
  }
}

TEST(ConvKnown, RejectsImpossibleShapes) {
  std::vector<float> buf(64);
  EXPECT_THROW(cpu::conv2d_forward(conv(1, 2, 2, 1, 1, 3, 3, 1, 0), buf.data(), buf.data(), nullptr, buf.data()),
               Error);
  EXPECT_THROW(cpu::conv2d_forward(conv(1, 4, 4, 1, 1, 3, 3, 0, 0), buf.data(), buf.data(), nullptr, buf.data()),
               Error);
}

// --------------------------------------------------------------------------------------------------
// BatchNorm

TEST(BatchNormKnown, HandComputedSingleChannel) {
  // x = 1 2 3 4: mean 2.5, biased var 1.25, unbiased var 5/3.
  const std::vector<float> x = {1, 2, 3, 4}, gamma = {2}, beta = {0.5f};
  std::vector<float> y(4), mean(1), invstd(1), rm = {1.f}, rv = {3.f};
  cpu::batchnorm_forward_train(4, 1, x.data(), gamma.data(), beta.data(), 0.f, 0.25f, rm.data(), rv.data(), y.data(),
                               mean.data(), invstd.data());
  EXPECT_FLOAT_EQ(mean[0], 2.5f);
  EXPECT_FLOAT_EQ(invstd[0], static_cast<float>(1 / std::sqrt(1.25)));
  const double s = std::sqrt(1.25);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i], 2 * (x[i] - 2.5) / s + 0.5, 1e-6);
  EXPECT_FLOAT_EQ(rm[0], 0.75f * 1.f + 0.25f * 2.5f);
  EXPECT_FLOAT_EQ(rv[0], static_cast<float>(0.75 * 3.0 + 0.25 * 5.0 / 3.0));
}

TEST(BatchNormKnown, TrainNormalisesAndUpdatesRunningStats) {
  const int rows = 3 * 7 * 5, C = 6;
  auto x = random_vec(static_cast<size_t>(rows) * C, 7, -1.f, 3.f);
  for (int r = 0; r < rows; ++r) x[static_cast<size_t>(r) * C + 2] = 100.f + 0.01f * static_cast<float>(r % 13);
  const std::vector<float> ones(C, 1.f), zeros(C, 0.f);
  std::vector<float> y(x.size()), mean(C), invstd(C), rm(C, 0.5f), rv(C, 2.f);
  const float eps = 1e-5f, momentum = 0.1f;
  cpu::batchnorm_forward_train(rows, C, x.data(), ones.data(), zeros.data(), eps, momentum, rm.data(), rv.data(),
                               y.data(), mean.data(), invstd.data());
  for (int c = 0; c < C; ++c) {
    double m = 0, v = 0, ym = 0, yv = 0;
    for (int r = 0; r < rows; ++r) m += x[static_cast<size_t>(r) * C + c];
    m /= rows;
    for (int r = 0; r < rows; ++r) v += std::pow(x[static_cast<size_t>(r) * C + c] - m, 2);
    v /= rows;
    for (int r = 0; r < rows; ++r) ym += y[static_cast<size_t>(r) * C + c];
    ym /= rows;
    for (int r = 0; r < rows; ++r) yv += std::pow(y[static_cast<size_t>(r) * C + c] - ym, 2);
    yv /= rows;
    // The saved mean is fp32: its rounding (half an ulp of the mean) shifts the output by up to that much
    // times invstd, which matters for channel 2 (mean 100, spread 0.04).
    const double mean_rounding = 0.5 * std::nextafter(static_cast<float>(std::fabs(m)), 1e30f) -
                                 0.5 * static_cast<float>(std::fabs(m));
    EXPECT_NEAR(ym, 0.0, 1e-5 + mean_rounding / std::sqrt(v + eps)) << "channel " << c;
    EXPECT_NEAR(yv, v / (v + eps), 2e-4) << "channel " << c;  // var 1 up to eps
    EXPECT_NEAR(mean[c], m, 1e-5 * (1 + std::fabs(m)));
    EXPECT_NEAR(invstd[c], 1 / std::sqrt(v + eps), 1e-5 / std::sqrt(v + eps));
    EXPECT_NEAR(rm[c], 0.9 * 0.5 + 0.1 * m, 1e-5 * (1 + std::fabs(m)));
    EXPECT_NEAR(rv[c], 0.9 * 2.0 + 0.1 * v * rows / (rows - 1), 1e-5);
  }
}

TEST(BatchNormKnown, EvalUsesRunningStats) {
  // eps = 0 keeps the numbers exact: channel 0 has mean 1, std 2; channel 1 mean -2, std 0.5.
  const std::vector<float> x = {3, -2, -1, -1.5f}, gamma = {2, 1}, beta = {0.5f, -1}, rm = {1, -2}, rv = {4, 0.25f};
  std::vector<float> y(4);
  cpu::batchnorm_forward_eval(2, 2, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 0.f, y.data());
  EXPECT_EQ(y, (std::vector<float>{2.5f, -1.f, -1.5f, 0.f}));
}

// --------------------------------------------------------------------------------------------------
// Pooling

TEST(PoolKnown, MaxPoolTwoByTwo) {
  // 4x4, one channel, kernel 2 stride 2.
  const std::vector<float> x = {1, 5, 2, 0,   //
                                3, 4, 7, 7,   //
                                -1, -2, 0, 9, //
                                -3, -4, 9, 1};
  const PoolShape sh = pool(1, 4, 4, 1, 2, 2, 0);
  std::vector<float> y(4);
  std::vector<int32_t> am(4);
  cpu::maxpool_forward(sh, x.data(), y.data(), am.data());
  EXPECT_EQ(y, (std::vector<float>{5, 7, -1, 9}));
  EXPECT_EQ(am, (std::vector<int32_t>{1, 6, 8, 11}));  // ties (7, 7) and (9, 9) keep the first
  const std::vector<float> dy = {1, 2, 3, 4};
  std::vector<float> dx(16, -1.f);
  cpu::maxpool_backward(sh, am.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{0, 1, 0, 0, 0, 0, 2, 0, 3, 0, 0, 4, 0, 0, 0, 0}));
}

TEST(PoolKnown, MaxPoolPaddingNeverWinsAndOverlapsAdd) {
  // All-negative 3x3 input, kernel 3, stride 2, pad 1: a zero pad must not win.
  const std::vector<float> x = {-1, -2, -3, -4, -5, -6, -7, -8, -9};
  const PoolShape sh = pool(1, 3, 3, 1, 3, 2, 1);
  ASSERT_EQ(sh.p(), 2);
  std::vector<float> y(4);
  std::vector<int32_t> am(4);
  cpu::maxpool_forward(sh, x.data(), y.data(), am.data());
  EXPECT_EQ(y, (std::vector<float>{-1, -2, -4, -5}));
  EXPECT_EQ(am, (std::vector<int32_t>{0, 1, 3, 4}));
  // A full tie takes the first pixel of each window.
  const std::vector<float> same(9, 2.f);
  cpu::maxpool_forward(sh, same.data(), y.data(), am.data());
  EXPECT_EQ(am, (std::vector<int32_t>{0, 1, 3, 4}));
  // Overlapping windows: the centre wins all four and collects all four gradients.
  const std::vector<float> centre = {0, 0, 0, 0, 10, 0, 0, 0, 0};
  cpu::maxpool_forward(sh, centre.data(), y.data(), am.data());
  EXPECT_EQ(am, (std::vector<int32_t>{4, 4, 4, 4}));
  std::vector<float> dx(9, 42.f);
  const std::vector<float> dy = {1, 10, 100, 1000};
  cpu::maxpool_backward(sh, am.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{0, 0, 0, 0, 1111, 0, 0, 0, 0}));
}

TEST(PoolKnown, MaxPoolChannelsAreIndependent) {
  // 2x2 image, two channels, one 2x2 window: the winners differ per channel; argmax holds the pixel index.
  const PoolShape sh = pool(1, 2, 2, 2, 2, 2, 0);
  const std::vector<float> x = {1, 8, 3, 2, 0, 9, 5, -1};  // pixels (1,8) (3,2) (0,9) (5,-1)
  std::vector<float> y(2);
  std::vector<int32_t> am(2);
  cpu::maxpool_forward(sh, x.data(), y.data(), am.data());
  EXPECT_EQ(y, (std::vector<float>{5, 9}));
  EXPECT_EQ(am, (std::vector<int32_t>{3, 2}));
}

TEST(PoolKnown, MaxPoolPropagatesNaNAndAllowsNullArgmax) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 2x4 image, kernel 2 stride 2: the windows hold {1, nan, 5, 6} and {3, 4, 7, 8}.
  const std::vector<float> x = {1, nan, 3, 4, 5, 6, 7, 8};
  const PoolShape sh = pool(1, 2, 4, 1, 2, 2, 0);
  std::vector<float> y(2), y_null(2);
  std::vector<int32_t> am(2);
  cpu::maxpool_forward(sh, x.data(), y.data(), am.data());
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(am[0], 1);
  EXPECT_EQ(y[1], 8.f);
  EXPECT_EQ(am[1], 7);
  cpu::maxpool_forward(sh, x.data(), y_null.data(), nullptr);
  EXPECT_TRUE(std::isnan(y_null[0]));
  EXPECT_EQ(y_null[1], 8.f);
}

TEST(PoolKnown, AvgPool) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<float> y(4);
  cpu::avgpool_forward(pool(1, 3, 3, 1, 2, 1, 0), x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{3, 4, 6, 7}));
  // Pad 1, kernel 2, stride 2: the padded zeros count in the divisor (count_include_pad).
  cpu::avgpool_forward(pool(1, 3, 3, 1, 2, 2, 1), x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{0.25f, 1.25f, 2.75f, 7.f}));
  std::vector<float> dx(9, -5.f);
  const std::vector<float> dy = {4, 8, 12, 16};
  cpu::avgpool_backward(pool(1, 3, 3, 1, 2, 2, 1), dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{1, 2, 2, 3, 4, 4, 3, 4, 4}));
}

TEST(PoolKnown, GlobalAvgPool) {
  // Two images, hw = 3, two channels.
  const std::vector<float> x = {1, 10, 2, 20, 3, 30, -1, 0, -2, 0, -6, 3};
  std::vector<float> y(4);
  cpu::global_avgpool_forward(2, 3, 2, x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{2, 20, -3, 1}));
  std::vector<float> dx(12);
  const std::vector<float> dy = {3, 6, 9, -3};
  cpu::global_avgpool_backward(2, 3, 2, dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{1, 2, 1, 2, 1, 2, 3, -1, 3, -1, 3, -1}));
}

// --------------------------------------------------------------------------------------------------
// Softmax cross-entropy

TEST(SoftmaxCeKnown, HandComputed) {
  // Row 0: logits (0, ln 2, ln 5) -> softmax (1/8, 2/8, 5/8), label 2: loss ln(8/5), arg-max right.
  // Row 1: three equal huge logits (stability) -> uniform, label 0: loss ln 3, arg-max 0 (first on ties).
  // Row 2: row 0's logits with label 0: loss ln 8, arg-max wrong.
  const float l2 = std::log(2.f), l5 = std::log(5.f);
  const std::vector<float> z = {0, l2, l5, 1000, 1000, 1000, 0, l2, l5};
  const std::vector<int32_t> labels = {2, 0, 0};
  std::vector<float> losses(3), dz(9);
  int64_t correct = -1;
  const float mean =
      cpu::softmax_cross_entropy(3, 3, z.data(), labels.data(), 0.f, 1.f, losses.data(), dz.data(), &correct);
  EXPECT_NEAR(losses[0], std::log(8.0 / 5.0), 1e-6);
  EXPECT_NEAR(losses[1], std::log(3.0), 1e-6);
  EXPECT_NEAR(losses[2], std::log(8.0), 1e-6);
  EXPECT_NEAR(mean, (std::log(8.0 / 5.0) + std::log(3.0) + std::log(8.0)) / 3, 1e-6);
  EXPECT_EQ(correct, 2);
  const double third = 1.0 / 3;
  const double expect_dz[] = {1. / 8 * third,  2. / 8 * third, (5. / 8 - 1) * third,  //
                              (third - 1) * third, third * third, third * third,    //
                              (1. / 8 - 1) * third, 2. / 8 * third, 5. / 8 * third};
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(dz[i], expect_dz[i], 1e-6) << i;
}

TEST(SoftmaxCeKnown, LabelSmoothing) {
  // K = 3, e = 0.3: t = (0.1, 0.1, 0.8) for label 2; loss = -(0.1 ln 1/8 + 0.1 ln 2/8 + 0.8 ln 5/8).
  const float l2 = std::log(2.f), l5 = std::log(5.f);
  const std::vector<float> z = {0, l2, l5};
  const std::vector<int32_t> labels = {2};
  std::vector<float> dz(3);
  const float loss = cpu::softmax_cross_entropy(1, 3, z.data(), labels.data(), 0.3f, 2.f, nullptr, dz.data(), nullptr);
  EXPECT_NEAR(loss, -(0.1 * std::log(1. / 8) + 0.1 * std::log(2. / 8) + 0.8 * std::log(5. / 8)), 1e-6);
  // grad_scale 2, N = 1: 2 * (p - t).
  EXPECT_NEAR(dz[0], 2 * (1. / 8 - 0.1), 1e-6);
  EXPECT_NEAR(dz[1], 2 * (2. / 8 - 0.1), 1e-6);
  EXPECT_NEAR(dz[2], 2 * (5. / 8 - 0.8), 1e-6);
}

TEST(SoftmaxCeKnown, LabelOutOfRangeIsAnInternalError) {
  const std::vector<float> z(6, 0.f);
  std::vector<float> dz(6);
  for (int32_t bad : {3, -1, 1 << 30}) {
    const std::vector<int32_t> labels = {0, bad};
    EXPECT_THROW(cpu::softmax_cross_entropy(2, 3, z.data(), labels.data(), 0.f, 1.f, nullptr, dz.data(), nullptr),
                 Error)
        << bad;
  }
}

// --------------------------------------------------------------------------------------------------
// Element-wise ops

TEST(ElementwiseKnown, ReluAddConcat) {
  const std::vector<float> x = {-1, 0, 2, -0.f, 3};
  std::vector<float> y(5), dx(5);
  cpu::relu_forward(5, x.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{0, 0, 2, 0, 3}));
  const std::vector<float> dy = {1, 2, 3, 4, 5};
  cpu::relu_backward(5, y.data(), dy.data(), dx.data());
  EXPECT_EQ(dx, (std::vector<float>{0, 0, 3, 0, 5}));  // the kink at 0 takes gradient 0

  std::vector<float> s(5);
  cpu::add_forward(5, x.data(), dy.data(), s.data());
  EXPECT_EQ(s, (std::vector<float>{0, 2, 5, 4, 8}));

  // rows = 2: parts of 1 and 2 channels.
  const std::vector<float> a = {1, 2}, b = {10, 11, 20, 21};
  const float* xs[] = {a.data(), b.data()};
  const int cs[] = {1, 2};
  std::vector<float> cat(6);
  cpu::concat_forward(2, 2, xs, cs, cat.data());
  EXPECT_EQ(cat, (std::vector<float>{1, 10, 11, 2, 20, 21}));
  std::vector<float> da(2), db(4);
  float* dxs[] = {da.data(), db.data()};
  cpu::concat_backward(2, 2, cat.data(), cs, dxs);
  EXPECT_EQ(da, a);
  EXPECT_EQ(db, b);
}

TEST(LinearKnown, HandComputed) {
  // x = [1 2], W = [[1 0], [0 1], [1 1]], b = (0, 1, -3): y = (1, 3, 0).
  const std::vector<float> x = {1, 2}, w = {1, 0, 0, 1, 1, 1}, b = {0, 1, -3};
  std::vector<float> y(3);
  cpu::linear_forward(1, 2, 3, x.data(), w.data(), b.data(), y.data());
  EXPECT_EQ(y, (std::vector<float>{1, 3, 0}));
  const std::vector<float> dy = {1, 2, 3};
  std::vector<float> dx(2), dw(6, 0.f), db(3, 0.f);
  cpu::linear_backward(1, 2, 3, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
  EXPECT_EQ(dx, (std::vector<float>{4, 5}));  // dy * W
  EXPECT_EQ(dw, (std::vector<float>{1, 2, 2, 4, 3, 6}));
  EXPECT_EQ(db, dy);
}

// --------------------------------------------------------------------------------------------------
// Bit-reproducibility across thread counts

template <typename F>
void expect_same_for_1_2_3_threads(const char* what, F run) {
  std::vector<std::vector<float>> out[3];
  for (int t = 1; t <= 3; ++t) {
    ThreadsGuard g(t);
    out[t - 1] = run();
  }
  for (int t = 1; t < 3; ++t) {
    ASSERT_EQ(out[t].size(), out[0].size());
    for (size_t i = 0; i < out[0].size(); ++i)
      EXPECT_TRUE(bitwise_equal(out[0][i], out[t][i]))
          << what << ": output " << i << " differs between 1 and " << t + 1 << " threads";
  }
}

TEST(Determinism, ConvBackwardIsBitwiseIndependentOfThreads) {
  for (const ConvShape& sh : {conv(20, 14, 14, 8, 16, 3, 3, 1, 1), conv(70, 7, 7, 16, 8, 1, 1, 1, 0),
                              conv(9, 28, 28, 1, 16, 3, 3, 1, 1), conv(40, 9, 9, 4, 6, 3, 3, 2, 1)}) {
    const auto x = random_vec(static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, 1);
    const auto w = random_vec(static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c, 2);
    const auto b = random_vec(sh.k, 3);
    const auto dy = random_vec(static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k, 4);
    expect_same_for_1_2_3_threads("conv", [&] {
      std::vector<float> y(dy.size()), dx(x.size()), dw(w.size(), 0.25f), db(sh.k, 0.25f);
      cpu::conv2d_forward(sh, x.data(), w.data(), b.data(), y.data());
      cpu::conv2d_backward(sh, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
      return std::vector<std::vector<float>>{y, dx, dw, db};
    });
  }
}

TEST(Determinism, BatchNormIsBitwiseIndependentOfThreads) {
  const int rows = 128 * 7 * 7 + 3, C = 12;  // many reduction chunks, an uneven last one
  const auto x = random_vec(static_cast<size_t>(rows) * C, 5, -2.f, 5.f);
  const auto dy = random_vec(x.size(), 6);
  const auto gamma = random_vec(C, 7, 0.5f, 1.5f), beta = random_vec(C, 8);
  expect_same_for_1_2_3_threads("batchnorm", [&] {
    std::vector<float> y(x.size()), mean(C), invstd(C), rm(C, 0.f), rv(C, 1.f), dx(x.size()), dg(C, 0.f),
        db(C, 0.f);
    cpu::batchnorm_forward_train(rows, C, x.data(), gamma.data(), beta.data(), 1e-5f, 0.1f, rm.data(), rv.data(),
                                 y.data(), mean.data(), invstd.data());
    cpu::batchnorm_backward(rows, C, x.data(), gamma.data(), mean.data(), invstd.data(), dy.data(), dx.data(),
                            dg.data(), db.data());
    return std::vector<std::vector<float>>{y, mean, invstd, rm, rv, dx, dg, db};
  });
}

TEST(Determinism, LinearSoftmaxPoolAreBitwiseIndependentOfThreads) {
  const int n = 128, in = 300, out = 200, K = 10;
  const auto x = random_vec(static_cast<size_t>(n) * in, 9), w = random_vec(static_cast<size_t>(out) * in, 10);
  const auto b = random_vec(out, 11), dy = random_vec(static_cast<size_t>(n) * out, 12);
  const auto z = random_vec(static_cast<size_t>(n) * K, 13, -5.f, 5.f);
  std::vector<int32_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = (i * 7) % K;
  const PoolShape ps = pool(n, 7, 7, 8, 3, 2, 1);
  const auto px = random_vec(static_cast<size_t>(n) * 7 * 7 * 8, 14);
  expect_same_for_1_2_3_threads("linear/softmax/pool", [&] {
    std::vector<float> y(dy.size()), dx(x.size()), dw(w.size(), 0.f), db(out, 0.f), dz(z.size()), loss(1);
    cpu::linear_forward(n, in, out, x.data(), w.data(), b.data(), y.data());
    cpu::linear_backward(n, in, out, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data());
    int64_t correct = 0;
    loss[0] = cpu::softmax_cross_entropy(n, K, z.data(), labels.data(), 0.1f, 1.f, nullptr, dz.data(), &correct);
    std::vector<float> py(static_cast<size_t>(n) * ps.p() * ps.q() * ps.c), pdx(px.size()), gy(n * 8), gdx(px.size());
    std::vector<int32_t> am(py.size());
    cpu::maxpool_forward(ps, px.data(), py.data(), am.data());
    cpu::maxpool_backward(ps, am.data(), py.data(), pdx.data());
    cpu::global_avgpool_forward(n, 49, 8, px.data(), gy.data());
    cpu::global_avgpool_backward(n, 49, 8, gy.data(), gdx.data());
    return std::vector<std::vector<float>>{y, dx, dw, db, dz, loss, py, pdx, gy, gdx,
                                           std::vector<float>{static_cast<float>(correct)}};
  });
}


// ---- gather (--cache gpu) ------------------------------------------------------------------------------------
TEST(GatherKnown, CopiesEachIdsSampleAndLabelInOrder) {
  const int64_t bytes = 5, samples = 4;  // 5-byte samples: the CUDA twin's byte path has the same reference
  std::vector<uint8_t> set(static_cast<size_t>(samples * bytes));
  for (size_t i = 0; i < set.size(); ++i) set[i] = static_cast<uint8_t>(10 * (i / bytes) + i % bytes);
  const std::vector<int32_t> labels = {7, 8, 9, 6};
  const std::vector<int64_t> ids = {3, 0, 3, 2};  // repeats, as the sampler's padding repeats
  std::vector<uint8_t> px(ids.size() * bytes, 0xEE);
  std::vector<int32_t> lab(ids.size(), -1);
  cpu::gather_samples(4, ids.data(), samples, bytes, set.data(), labels.data(), px.data(), lab.data());
  const std::vector<uint8_t> want = {30, 31, 32, 33, 34, 0, 1, 2, 3, 4, 30, 31, 32, 33, 34, 20, 21, 22, 23, 24};
  EXPECT_EQ(px, want);
  EXPECT_EQ(lab, (std::vector<int32_t>{6, 7, 6, 9}));
  const int64_t bad = samples;
  EXPECT_THROW(cpu::gather_samples(1, &bad, samples, bytes, set.data(), labels.data(), px.data(), lab.data()), Error);
}

}  // namespace
}  // namespace stoke
