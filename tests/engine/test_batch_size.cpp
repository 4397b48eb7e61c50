// --batch-size auto: the planned training memory per backend and the choice of the largest batch that fits.
#include <gtest/gtest.h>

#include "engine/batch_size.h"
#include "engine/cpu/executor.h"
#include "engine/memory_plan.h"
#include "models/models.h"

using namespace stoke;

namespace {

MemoryTarget cpu_target() {
  MemoryTarget t;
  t.optimizer.kind = OptimizerKind::sgd;
  return t;
}

}  // namespace

TEST(BatchSize, CpuPlanIsWhatTheCpuBackendAllocates) {
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const int64_t P = g.num_params();
  for (int batch : {1, 7, 64}) {
    CpuExecutor ex(g, batch);
    const int64_t fixed =
        planned_training_bytes(g, batch, cpu_target()) - ex.activation_bytes() - int64_t{batch} * 28 * 28 * 4;
    // weights, gradients, SGD momentum, BN statistics: 3 fp32 copies of the parameters and the buffers, aligned
    EXPECT_GE(fixed, 3 * P * 4 + g.num_buffers() * 4) << batch;
    EXPECT_LE(fixed, 3 * P * 4 + g.num_buffers() * 4 + 4 * 256 + 255) << batch;
  }
  MemoryTarget adam = cpu_target();
  adam.optimizer.kind = OptimizerKind::adamw;
  EXPECT_GE(planned_training_bytes(g, 8, adam) - planned_training_bytes(g, 8, cpu_target()), P * 4)
      << "AdamW's second moment";
}

TEST(BatchSize, PlannedBytesGrowWithTheBatchAndShrinkWithHalfPrecision) {
  const Graph g = build_model("resnet18", {64, 64, 3}, 6);
  MemoryTarget cuda_bf16 = cpu_target(), cuda_fp32 = cpu_target();
  cuda_bf16.cuda = cuda_fp32.cuda = true;
  cuda_bf16.element_bytes = 2;
  int64_t prev = 0;
  for (int b : {1, 2, 8, 33, 128}) {
    const int64_t c = planned_training_bytes(g, b, cpu_target()), h = planned_training_bytes(g, b, cuda_bf16),
                  f = planned_training_bytes(g, b, cuda_fp32);
    EXPECT_GT(c, prev) << b;
    prev = c;
    // Below 8 samples the bf16 copy of the weights outweighs the halved activations (both are in the arena).
    if (b >= 8) {
      EXPECT_LT(h, f) << b;
    }
  }
  // The CUDA plan holds the cuDNN and cuBLASLt workspaces whatever the batch.
  EXPECT_GE(planned_training_bytes(g, 1, cuda_bf16), (int64_t{256} + 32) << 20);
  // Per sample, bf16 activations cost about half of fp32 ones.
  const double per_h =
      static_cast<double>(planned_training_bytes(g, 129, cuda_bf16) - planned_training_bytes(g, 1, cuda_bf16)) / 128;
  const double per_f =
      static_cast<double>(planned_training_bytes(g, 129, cuda_fp32) - planned_training_bytes(g, 1, cuda_fp32)) / 128;
  EXPECT_NEAR(per_h / per_f, 0.5, 0.05);
}

TEST(BatchSize, ChoosesTheLargestMultipleOfEightThatFits) {
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const MemoryTarget t = cpu_target();
  auto plan = [&](int b) { return planned_training_bytes(g, b, t); };

  BatchChoice c = choose_batch_size(g, t, plan(64), "a test budget", 0, "");
  EXPECT_EQ(c.batch, 64);
  EXPECT_EQ(c.fits, 64);
  EXPECT_EQ(c.bytes, plan(64));
  EXPECT_NE(c.why.find("the largest multiple of 8 that fits"), std::string::npos) << c.why;
  EXPECT_NE(c.why.find("a test budget"), std::string::npos) << c.why;

  c = choose_batch_size(g, t, plan(64) - 1, "b", 0, "");
  EXPECT_EQ(c.batch, 56) << "64 no longer fits";
  EXPECT_LE(c.bytes, plan(64) - 1);

  c = choose_batch_size(g, t, plan(1000), "b", 100, "a cap of 100");
  EXPECT_EQ(c.batch, 96) << "the cap, rounded down to a multiple of 8";
  EXPECT_GE(c.fits, 1000 / 8 * 8);
  EXPECT_NE(c.why.find("a cap of 100"), std::string::npos) << c.why;

  c = choose_batch_size(g, t, plan(5), "b", 0, "");
  EXPECT_EQ(c.batch, 5) << "below 8: the largest batch that fits";

  c = choose_batch_size(g, t, plan(1) - 1, "tiny", 0, "");
  EXPECT_EQ(c.batch, 0);
  EXPECT_NE(c.why.find("not even one sample fits"), std::string::npos) << c.why;

  // Very large budgets end at the search limit rather than looping.
  c = choose_batch_size(g, t, int64_t{1} << 50, "huge", 4096, "4096 at most");
  EXPECT_EQ(c.batch, 4096);
}

// cuDNN's legacy descriptors take int sizes: on a large GPU --batch-size auto would otherwise pick a batch whose
// largest activation passes 2^31 elements. 512 x 512 x 64 is 16 Mi elements a sample: 127 samples fit below 2^31.
TEST(BatchSize, TheCudaBatchKeepsEveryTensorWithinInt32) {
  Graph g({512, 512, 3}, "wide");
  g.linear(g.global_avgpool(g.conv(g.input(), 64, 3, 1, 1, false, "c")), 10, "head");
  const int64_t cap = max_batch_within_int32(g);
  EXPECT_EQ(cap, 127);
  EXPECT_LE(cap * 512 * 512 * 64, int64_t{INT32_MAX});
  EXPECT_GT((cap + 1) * 512 * 512 * 64, int64_t{INT32_MAX});
  // A budget that would fit thousands: the cap decides, rounded down to a multiple of 8, and the line says so.
  MemoryTarget t;
  t.cuda = false;
  const BatchChoice c = choose_batch_size(g, t, int64_t{1} << 40, "a very large machine", cap, "within 2^31 elements");
  EXPECT_EQ(c.batch, 120);
  EXPECT_GT(c.fits, 1000);
  EXPECT_NE(c.why.find("capped: within 2^31 elements"), std::string::npos) << c.why;
}
