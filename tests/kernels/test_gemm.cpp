// sgemm / sgemm_parallel against the double-accumulating triple loop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/gemm.h"
#include "base/parallel.h"
#include "tests/kernels/test_util.h"

namespace stoke {
namespace {

using test::bitwise_equal;
using test::random_vec;
using test::ThreadsGuard;

using GemmFn = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int);

struct Problem {
  bool ta, tb;
  int M, N, K;
  int pad;  // extra leading-dimension slack, so lda/ldb/ldc differ from the logical widths
  std::vector<float> A, B, C;
  int lda, ldb, ldc;

  Problem(bool ta_, bool tb_, int M_, int N_, int K_, int pad_, uint32_t seed)
      : ta(ta_), tb(tb_), M(M_), N(N_), K(K_), pad(pad_) {
    const int a_rows = ta ? K : M, a_cols = ta ? M : K;
    const int b_rows = tb ? N : K, b_cols = tb ? K : N;
    lda = a_cols + pad;
    ldb = b_cols + pad;
    ldc = N + pad;
    A = random_vec(static_cast<size_t>(a_rows) * lda, seed);
    B = random_vec(static_cast<size_t>(b_rows) * ldb, seed + 1);
    C = random_vec(static_cast<size_t>(M) * ldc, seed + 2);
  }

  std::vector<float> run(GemmFn fn, float alpha, float beta, std::vector<float> c) const {
    fn(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, c.data(), ldc);
    return c;
  }

  float a(int i, int k) const { return ta ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k]; }
  float b(int k, int j) const { return tb ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j]; }

  // A bound on the rounding error of C[i, j]: fp32 accumulation over K terms, plus the beta term.
  double tolerance(int i, int j, float alpha, float beta) const {
    double mag = 0;
    for (int k = 0; k < K; ++k) mag += std::fabs(double{a(i, k)} * b(k, j));
    mag = std::fabs(alpha) * mag + std::fabs(beta) * std::fabs(C[static_cast<size_t>(i) * ldc + j]);
    return 1e-30 + 2.0 * (K + 4) * std::numeric_limits<float>::epsilon() * mag;
  }
};

std::string describe(const Problem& p, float alpha, float beta) {
  return "ta=" + std::to_string(p.ta) + " tb=" + std::to_string(p.tb) + " M=" + std::to_string(p.M) +
         " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) + " alpha=" + std::to_string(alpha) +
         " beta=" + std::to_string(beta);
}

// Compares fn against sgemm_naive on p; the ldc slack beyond N must be left untouched.
void expect_matches_naive(const Problem& p, GemmFn fn, float alpha, float beta) {
  const auto ref = p.run(sgemm_naive, alpha, beta, p.C);
  const auto got = p.run(fn, alpha, beta, p.C);
  int bad = 0;
  for (int i = 0; i < p.M; ++i) {
    for (int j = 0; j < p.ldc; ++j) {
      const size_t idx = static_cast<size_t>(i) * p.ldc + j;
      if (j >= p.N) {
        if (!(got[idx] == p.C[idx]) && bad++ < 5) ADD_FAILURE() << describe(p, alpha, beta) << " wrote ldc slack";
        continue;
      }
      const double tol = p.tolerance(i, j, alpha, beta);
      if (!(std::fabs(double{got[idx]} - ref[idx]) <= tol) && bad++ < 5)
        ADD_FAILURE() << describe(p, alpha, beta) << " C[" << i << "," << j << "] = " << got[idx] << ", expected "
                      << ref[idx] << " (tol " << tol << ")";
    }
  }
  EXPECT_EQ(bad, 0) << describe(p, alpha, beta);
}

// Each awkward size appears in each of M, N and K; the large ones cross the 6x16 tile, MC = 96,
// KC = 256 blocks and the sgemm_parallel threshold.
std::vector<std::tuple<int, int, int>> awkward_sizes() {
  const int sizes[] = {1, 5, 7, 17, 33, 100, 257, 300};
  std::vector<std::tuple<int, int, int>> out;
  for (int s : sizes) {
    out.emplace_back(s, 17, 33);
    out.emplace_back(7, s, 100);
    out.emplace_back(33, 5, s);
  }
  out.emplace_back(300, 257, 300);
  out.emplace_back(257, 33, 513);
  out.emplace_back(100, 300, 257);
  out.emplace_back(1, 300, 300);
  out.emplace_back(300, 1, 300);
  return out;
}

class GemmVsNaive : public ::testing::TestWithParam<std::tuple<bool, bool>> {};

TEST_P(GemmVsNaive, AwkwardSizesAlphaBeta) {
  const auto [ta, tb] = GetParam();
  const std::pair<float, float> alpha_beta[] = {{1.f, 0.f}, {1.f, 1.f}, {-0.75f, 0.5f}, {2.5f, -1.f}};
  uint32_t seed = 100;
  for (auto [M, N, K] : awkward_sizes()) {
    for (int pad : {0, 3}) {
      Problem p(ta, tb, M, N, K, pad, seed += 7);
      for (auto [alpha, beta] : alpha_beta) {
        expect_matches_naive(p, sgemm, alpha, beta);
        expect_matches_naive(p, sgemm_parallel, alpha, beta);
      }
    }
  }
}

TEST_P(GemmVsNaive, BetaZeroIgnoresNaNInC) {
  const auto [ta, tb] = GetParam();
  for (GemmFn fn : {GemmFn{sgemm}, GemmFn{sgemm_parallel}}) {
    Problem p(ta, tb, 37, 45, 29, 0, 5);
    std::fill(p.C.begin(), p.C.end(), std::numeric_limits<float>::quiet_NaN());
    const auto got = p.run(fn, 1.5f, 0.f, p.C);
    const auto ref = p.run(sgemm_naive, 1.5f, 0.f, std::vector<float>(p.C.size(), 0.f));
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got[i])) << "NaN in C leaked through beta = 0 at " << i;
      ASSERT_NEAR(got[i], ref[i], 1e-4);
    }
    // alpha = 0 and beta = 0: C is cleared, NaN or not.
    const auto zero = p.run(fn, 0.f, 0.f, p.C);
    for (float v : zero) ASSERT_EQ(v, 0.f);
  }
}

TEST_P(GemmVsNaive, KZeroScalesC) {
  const auto [ta, tb] = GetParam();
  Problem p(ta, tb, 9, 20, 0, 1, 11);
  const auto got = p.run(sgemm, 1.f, 0.5f, p.C);
  for (int i = 0; i < p.M; ++i)
    for (int j = 0; j < p.N; ++j) {
      const size_t idx = static_cast<size_t>(i) * p.ldc + j;
      EXPECT_EQ(got[idx], 0.5f * p.C[idx]);
    }
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, GemmVsNaive,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool()),
                         [](const auto& p) {
                           return std::string(std::get<0>(p.param) ? "T" : "N") +
                                  (std::get<1>(p.param) ? "T" : "N");
                         });

// sgemm_parallel splits rows (M >= N) or columns (M < N) of C but never K: the result is the same
// bits for any pool size, and the same bits as the single-threaded sgemm.
TEST(Gemm, ParallelIsBitwiseIndependentOfThreadCount) {
  const std::tuple<int, int, int> shapes[] = {{300, 257, 300}, {50, 500, 200}, {513, 64, 129}, {64, 1000, 64}};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (auto [M, N, K] : shapes) {
        Problem p(ta, tb, M, N, K, 0, 77);
        std::vector<float> results[3];
        for (int t = 1; t <= 3; ++t) {
          ThreadsGuard g(t);
          results[t - 1] = p.run(sgemm_parallel, 1.f, 0.5f, p.C);
        }
        const auto serial = p.run(sgemm, 1.f, 0.5f, p.C);
        EXPECT_TRUE(bitwise_equal(results[0], results[1])) << describe(p, 1.f, 0.5f) << ": 1 vs 2 threads";
        EXPECT_TRUE(bitwise_equal(results[0], results[2])) << describe(p, 1.f, 0.5f) << ": 1 vs 3 threads";
        EXPECT_TRUE(bitwise_equal(results[0], serial)) << describe(p, 1.f, 0.5f) << ": parallel vs sgemm";
      }
}

// The pool really does run tasks on several threads and reports a task's exception.
TEST(ThreadPool, RunsEveryTaskOnceAndRethrows) {
  ThreadsGuard g(3);
  std::vector<int> hits(1000, 0);
  parallel_tasks(1000, [&](int64_t i) { hits[static_cast<size_t>(i)] += 1; });
  for (int h : hits) ASSERT_EQ(h, 1);
  std::vector<int> covered(12345, 0);
  parallel_for(12345, 100, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) covered[static_cast<size_t>(i)] += 1;
  });
  for (int h : covered) ASSERT_EQ(h, 1);
  EXPECT_THROW(parallel_tasks(64, [](int64_t i) {
                 if (i == 17) throw std::runtime_error("task 17");
               }),
               std::runtime_error);
  // Still usable afterwards.
  int64_t sum = 0;
  parallel_tasks(4, [&](int64_t i) {
    if (i == 0) sum = 1;
  });
  EXPECT_EQ(sum, 1);
}

}  // namespace
}  // namespace stoke
