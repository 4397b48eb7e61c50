// The asynchronous CUDA step (engine/cuda/cuda_backend.cpp) against the synchronous executor path, bit for bit in
// fp32 deterministic mode: the same batches, learning rates and an injected skip, trained through
// submit/collect with two steps in flight — with CUDA graphs (captured after the warm-up, one per input buffer,
// replayed with changing lr) and without — and step by step through CudaExecutor (forward, loss, backward,
// step(lr), stats()). Losses, correct counts, applied flags, the step count and the final weights must match.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda/executor.h"
#include "engine/graph.h"
#include "models/models.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/synthetic_digits.h"

namespace stoke {
namespace {

using namespace stoke::test;

constexpr int kBatch = 16;

struct Batch {
  int n = 0;
  std::vector<uint8_t> pixels, flips;
  std::vector<int32_t> labels;
  float lr = 0.f;
  bool skip = false;
};

// 9 full batches (past the warm-up, so both slots' graphs are captured and replayed) and a partial last one
// (uncaptured); learning rates change every step; step 6 is an injected skip.
std::vector<Batch> make_batches() {
  std::vector<Batch> out;
  const DigitSet d = make_digits(10 * kBatch, 77);
  const size_t px = static_cast<size_t>(DigitSet::kSize) * DigitSet::kSize;
  for (int k = 0; k < 10; ++k) {
    Batch b;
    b.n = k == 9 ? 11 : kBatch;
    const size_t first = static_cast<size_t>(k) * kBatch;
    b.pixels.assign(d.pixels.begin() + static_cast<std::ptrdiff_t>(first * px),
                    d.pixels.begin() + static_cast<std::ptrdiff_t>((first + static_cast<size_t>(b.n)) * px));
    b.labels.assign(d.labels.begin() + static_cast<std::ptrdiff_t>(first),
                    d.labels.begin() + static_cast<std::ptrdiff_t>(first + static_cast<size_t>(b.n)));
    b.flips.resize(static_cast<size_t>(b.n));
    for (int i = 0; i < b.n; ++i) b.flips[static_cast<size_t>(i)] = static_cast<uint8_t>((i + k) % 3 == 0);
    b.lr = 0.02f * static_cast<float>(1 + k % 3);
    b.skip = k == 6;
    out.push_back(std::move(b));
  }
  return out;
}

struct Trace {
  std::vector<float> losses, params;
  std::vector<int64_t> correct;
  std::vector<bool> applied;
  int64_t steps = 0;
};

OptimizerConfig optimizer_config() {
  OptimizerConfig c;  // SGD with Nesterov momentum and weight decay: every per-step argument is exercised
  c.momentum = 0.9f;
  return c;
}

Trace run_executor(const Graph& g, const std::vector<Batch>& batches) {
  CudaExecutorOptions o;
  o.precision = cuda::Precision::fp32;
  o.deterministic = true;
  o.optimizer = optimizer_config();
  CudaExecutor ex(g, kBatch, o);
  ex.set_normalization({0.5f}, {0.25f});
  Trace r;
  for (const Batch& b : batches) {
    copy_to_device(ex.device_pixels(), b.pixels.data(), b.pixels.size(), ex.stream());
    copy_to_device(ex.device_labels(), b.labels.data(), b.labels.size() * sizeof(int32_t), ex.stream());
    copy_to_device(ex.device_flips(), b.flips.data(), b.flips.size(), ex.stream());
    ex.normalize(b.n, ex.device_pixels(), ex.device_flips());
    ex.forward(b.n, true);
    ex.loss(b.n, ex.device_labels(), 0.f, true);
    ex.backward();
    ex.step(b.lr);  // the reference never skips: the injected skip is compared between the backend's two paths
    const CudaStepStats st = ex.stats();
    r.losses.push_back(st.loss);
    r.correct.push_back(st.correct);
    r.applied.push_back(st.step_applied);
  }
  r.params.resize(static_cast<size_t>(g.num_params()));
  ex.download_params(r.params.data());
  r.steps = ex.optimizer_steps();
  return r;
}

Trace run_backend(const Graph& g, const std::vector<Batch>& batches, bool graphs, bool with_skip) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.optimizer = optimizer_config();
  o.mean = {0.5f};
  o.stdev = {0.25f};
  o.precision = PrecisionRequest::fp32;
  o.deterministic = true;
  o.graphs = graphs;
  std::unique_ptr<TrainingBackend> be = make_cuda_backend(g, o);
  Trace r;
  std::vector<int64_t> released;
  std::vector<StepResult> results;
  int max_in_flight = 0;
  double submit_seconds = 0;
  for (size_t k = 0; k < batches.size(); ++k) {
    const Batch& b = batches[k];
    StepRequest q;
    q.batch.tag = static_cast<int64_t>(k);
    q.batch.size = b.n;
    q.batch.pixels = b.pixels.data();
    q.batch.labels = b.labels.data();
    q.batch.flips = b.flips.data();
    q.lr = b.lr;
    q.skip = with_skip && b.skip;
    const auto t0 = std::chrono::steady_clock::now();
    be->submit(q);
    if (k >= 4 && k + 1 < batches.size())  // warm, full batches: the host's cost of a step (a benchmark number)
      submit_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    max_in_flight = std::max(max_in_flight, be->in_flight());
    be->collect(released, results, false);
    // A result is never reported before its batch's release.
    EXPECT_GE(released.size(), results.size());
  }
  EXPECT_LE(max_in_flight, 2);
  std::printf("  %s: host time per submit %.1f us (steps 4..%zu; includes waiting when 2 are in flight)\n",
              graphs ? "graphs" : "no graphs", 1e6 * submit_seconds / static_cast<double>(batches.size() - 5),
              batches.size() - 2);
  be->drain();
  EXPECT_EQ(be->in_flight(), 0);
  be->collect(released, results, false);
  EXPECT_EQ(released.size(), batches.size());
  EXPECT_EQ(results.size(), batches.size());
  for (size_t k = 0; k < results.size() && k < released.size(); ++k) {
    EXPECT_EQ(released[k], static_cast<int64_t>(k));
    EXPECT_EQ(results[k].tag, static_cast<int64_t>(k));
    EXPECT_GT(results[k].device_seconds, 0.0) << k;
    r.losses.push_back(results[k].loss);
    r.correct.push_back(results[k].correct);
    r.applied.push_back(results[k].applied);
  }
  std::vector<float> buffers, state;
  be->get_state(r.params, buffers, state, r.steps);
  return r;
}

void expect_same(const Trace& a, const Trace& b, const char* what) {
  ASSERT_EQ(a.losses.size(), b.losses.size()) << what;
  for (size_t k = 0; k < a.losses.size(); ++k) {
    EXPECT_EQ(a.losses[k], b.losses[k]) << what << ": loss of step " << k;
    EXPECT_EQ(a.correct[k], b.correct[k]) << what << ": correct of step " << k;
    EXPECT_EQ(a.applied[k], b.applied[k]) << what << ": applied of step " << k;
  }
  EXPECT_EQ(a.steps, b.steps) << what;
  expect_bitwise(what, a.params, b.params);
}

TEST(GpuAsyncStep, MatchesTheSynchronousExecutorBitForBit) {
  REQUIRE_GPU();
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const std::vector<Batch> batches = make_batches();
  const Trace sync = run_executor(g, batches);
  EXPECT_EQ(sync.steps, static_cast<int64_t>(batches.size()));
  expect_same(run_backend(g, batches, /*graphs=*/false, /*with_skip=*/false), sync, "asynchronous, no graphs");
  expect_same(run_backend(g, batches, /*graphs=*/true, /*with_skip=*/false), sync, "asynchronous, CUDA graphs");
}

// The injected skip is decided on the device inside the (captured) step: its loss is reported non-finite, the
// update does not happen, t does not count it, and graphs and no graphs agree to the bit.
TEST(GpuAsyncStep, InjectedSkipIsDecidedOnTheDevice) {
  REQUIRE_GPU();
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const std::vector<Batch> batches = make_batches();
  const Trace eager = run_backend(g, batches, false, true);
  const Trace graphs = run_backend(g, batches, true, true);
  expect_same(graphs, eager, "injected skip, graphs vs none");
  ASSERT_EQ(eager.applied.size(), batches.size());
  for (size_t k = 0; k < batches.size(); ++k) {
    EXPECT_EQ(eager.applied[k], !batches[k].skip) << k;
    if (batches[k].skip) {
      EXPECT_TRUE(std::isinf(eager.losses[k])) << k;
    }
  }
  EXPECT_EQ(eager.steps, static_cast<int64_t>(batches.size()) - 1);
}

}  // namespace
}  // namespace stoke
