// Synchronised batch norm (--sync-bn) without MPI: two "processes" are two threads, each holding half of a batch,
// and their all-reduce is an exchange through shared memory. With the exchange, each half must be normalised, and
// must get the gradients, exactly as the whole batch in one process (within float rounding); without it the halves
// use their own statistics and differ (so the comparison can fail). The same over MPI processes, end to end:
// tests/dist (case syncbn).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/cpu/executor.h"
#include "kernels/batchnorm.h"
#include "models/models.h"
#include "tests/engine/thread_world.h"
#include "tests/kernels/test_util.h"

namespace stoke {
namespace {

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  float worst = 0.f;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / (1.f + std::fabs(b[i])));
  EXPECT_LE(worst, tol) << what;
}

// The halves of x differ in mean and spread, so per-half statistics are far from the whole batch's.
struct Batch {
  int rows = 96, C = 5;
  std::vector<float> x, dy, gamma, beta;
  Batch() {
    x = test::random_vec(static_cast<size_t>(rows * C), 11, -1.f, 1.f);
    for (int r = rows / 2; r < rows; ++r)
      for (int c = 0; c < C; ++c) x[static_cast<size_t>(r * C + c)] = 3.f * x[static_cast<size_t>(r * C + c)] + 2.f;
    dy = test::random_vec(x.size(), 12);
    gamma = test::random_vec(static_cast<size_t>(C), 13, 0.5f, 1.5f);
    beta = test::random_vec(static_cast<size_t>(C), 14);
  }
};

struct BnResult {
  std::vector<float> y, dx, dgamma, dbeta, running_mean, running_var;
};

// Forward (training) and backward of rows [r0, r1) of the batch, with `across` (or alone when null).
BnResult run_rows(const Batch& b, int r0, int r1, const cpu::ChannelAllReduce* across) {
  const int rows = r1 - r0, C = b.C;
  const size_t n = static_cast<size_t>(rows * C);
  BnResult o;
  o.y.resize(n);
  o.dx.resize(n);
  o.dgamma.assign(static_cast<size_t>(C), 0.f);
  o.dbeta.assign(static_cast<size_t>(C), 0.f);
  o.running_mean.assign(static_cast<size_t>(C), 0.25f);
  o.running_var.assign(static_cast<size_t>(C), 2.f);
  std::vector<float> mean(static_cast<size_t>(C)), invstd(static_cast<size_t>(C));
  const float* x = b.x.data() + r0 * C;
  cpu::batchnorm_forward_train(rows, C, x, b.gamma.data(), b.beta.data(), 1e-5f, 0.1f, o.running_mean.data(),
                               o.running_var.data(), o.y.data(), mean.data(), invstd.data(), across);
  cpu::batchnorm_backward(rows, C, x, b.gamma.data(), mean.data(), invstd.data(), b.dy.data() + r0 * C, o.dx.data(),
                          o.dgamma.data(), o.dbeta.data(), across);
  return o;
}

std::vector<float> rows_of(const std::vector<float>& v, int C, int r0, int r1) {
  return {v.begin() + r0 * C, v.begin() + r1 * C};
}

TEST(SyncBatchNorm, TwoHalvesWithTheExchangeAreTheWholeBatch) {
  test::ThreadsGuard one(1);
  const Batch b;
  const int half = b.rows / 2;
  const BnResult whole = run_rows(b, 0, b.rows, nullptr);
  test::ThreadWorld world(2);
  BnResult part[2];
  world.run([&](int r) {
    const cpu::ChannelAllReduce across = test::bn_sums_over(world.rank(r));
    part[r] = run_rows(b, r * half, (r + 1) * half, &across);
  });
  for (int r = 0; r < 2; ++r) {
    SCOPED_TRACE(r);
    expect_close(part[r].y, rows_of(whole.y, b.C, r * half, (r + 1) * half), 2e-6f, "y");
    expect_close(part[r].dx, rows_of(whole.dx, b.C, r * half, (r + 1) * half), 2e-6f, "dx");
    // The running statistics come from the whole batch (the unbiased variance counts every rank's rows).
    expect_close(part[r].running_mean, whole.running_mean, 1e-6f, "running mean");
    expect_close(part[r].running_var, whole.running_var, 1e-6f, "running variance");
  }
  // dgamma and dbeta stay each rank's share: the gradient all-reduce adds them up to the whole batch's.
  std::vector<float> dg(static_cast<size_t>(b.C)), db(static_cast<size_t>(b.C));
  for (int c = 0; c < b.C; ++c) {
    dg[static_cast<size_t>(c)] = part[0].dgamma[static_cast<size_t>(c)] + part[1].dgamma[static_cast<size_t>(c)];
    db[static_cast<size_t>(c)] = part[0].dbeta[static_cast<size_t>(c)] + part[1].dbeta[static_cast<size_t>(c)];
  }
  expect_close(dg, whole.dgamma, 2e-5f, "dgamma");
  expect_close(db, whole.dbeta, 2e-5f, "dbeta");
}

TEST(SyncBatchNorm, WithoutTheExchangeTheHalvesDiffer) {
  const Batch b;
  const int half = b.rows / 2;
  const BnResult whole = run_rows(b, 0, b.rows, nullptr);
  const BnResult alone = run_rows(b, half, b.rows, nullptr);
  const std::vector<float> expect = rows_of(whole.y, b.C, half, b.rows);
  float worst = 0.f;
  for (size_t i = 0; i < expect.size(); ++i) worst = std::max(worst, std::fabs(alone.y[i] - expect[i]));
  EXPECT_GT(worst, 0.1f) << "per-half statistics should normalise this half differently from the whole batch";
}

// The executor routes every batch norm of a model through the exchange, forward and backward: two executors on
// half a batch each give the parameter gradients of one executor on the whole batch (each half's loss gradient
// being the whole batch's rows, the shares add up).
TEST(SyncBatchNorm, AModelOnTwoRanksHasTheGradientsOfOneRank) {
  test::ThreadsGuard one(1);
  const Shape3 shape{12, 12, 1};
  const Graph g = build_model("small-cnn", shape, 3);
  const int n = 8, half = n / 2;
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 7);
  const std::vector<float> x = test::random_vec(static_cast<size_t>(n * shape.size()), 21);
  const int outs = static_cast<int>(g.nodes().back().out.size());
  const std::vector<float> dout = test::random_vec(static_cast<size_t>(n * outs), 22, -0.1f, 0.1f);

  std::vector<float> whole_grads(params.size(), 0.f), whole_buffers = buffers;
  CpuExecutor whole(g, n);
  whole.forward(n, x.data(), params.data(), whole_buffers.data(), true);
  whole.backward(params.data(), whole_grads.data(), dout.data());

  auto run_split = [&](bool sync, std::vector<float>& grads, std::vector<float> (&bufs)[2]) {
    test::ThreadWorld world(2);
    std::vector<float> g2[2];
    world.run([&](int r) {
      CpuExecutor ex(g, half);
      if (sync) ex.set_sync_batchnorm(test::bn_sums_over(world.rank(r)));
      bufs[r] = buffers;
      g2[r].assign(params.size(), 0.f);
      ex.forward(half, x.data() + r * half * shape.size(), params.data(), bufs[r].data(), true);
      ex.backward(params.data(), g2[r].data(), dout.data() + r * half * outs);
    });
    grads.resize(params.size());
    for (size_t i = 0; i < grads.size(); ++i) grads[i] = g2[0][i] + g2[1][i];
  };
  std::vector<float> synced, apart, b_sync[2], b_apart[2];
  run_split(true, synced, b_sync);
  run_split(false, apart, b_apart);
  expect_close(synced, whole_grads, 1e-4f, "parameter gradients with --sync-bn");
  expect_close(b_sync[0], whole_buffers, 1e-5f, "running statistics of rank 0");
  expect_close(b_sync[1], whole_buffers, 1e-5f, "running statistics of rank 1");
  float worst = 0.f;
  for (size_t i = 0; i < apart.size(); ++i) worst = std::max(worst, std::fabs(apart[i] - whole_grads[i]));
  EXPECT_GT(worst, 1e-3f)
      << "without the exchange the gradients should differ (or the comparison above proves nothing)";
}

}  // namespace
}  // namespace stoke
