// The communication share of a data-parallel step: the CPU backend times its gradient all-reduce and counts its
// bytes (through a communicator of world 2 that takes a known time and sums nothing), the tally turns them into
// metrics fields only when something was all-reduced, and the verdict names communication when it dominates.
// The all-reduce over real MPI processes is tested end to end in tests/dist (case comm).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "engine/backend.h"
#include "engine/dist/communicator.h"
#include "engine/run_verdict.h"
#include "models/models.h"

namespace stoke {
namespace {

// A world of 2 whose all-reduce leaves the data as it is (the other rank "adds zeros") after a fixed delay.
class SlowComm final : public dist::Communicator {
 public:
  explicit SlowComm(double seconds) : seconds_(seconds) {}
  int rank() const override { return 0; }
  int world() const override { return 2; }
  int local_rank() const override { return 0; }
  std::string transport() const override { return "test (delayed identity)"; }
  void allreduce_sum(float*, size_t n) override {
    floats_ += n;
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds_));
  }
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  size_t floats_ = 0;

 private:
  double seconds_;
};

constexpr int kBatch = 4;
const Shape3 kShape{12, 12, 1};

StepResult one_step(const Graph& g, dist::Communicator* comm) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.mean = {0.4f};
  o.stdev = {0.3f};
  o.comm = comm;
  auto be = make_cpu_backend(g, o);
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 5);
  std::vector<float> p, b, state;
  int64_t steps = 0;
  be->get_state(p, b, state, steps);
  be->set_state(params, buffers, state, 0);
  std::vector<uint8_t> px(static_cast<size_t>(kBatch * kShape.size()), 100);
  std::vector<int32_t> labels = {0, 1, 2, 0};
  return be->train_step(kBatch, px.data(), labels.data(), nullptr, 0.01f);
}

TEST(DistCommShare, TheCpuBackendTimesItsAllReduceAndCountsItsBytes) {
  const Graph g = small_cnn(kShape, 3, 8);
  SlowComm comm(0.05);
  const StepResult r = one_step(g, &comm);
  ASSERT_TRUE(r.applied);
  EXPECT_GE(r.comm_seconds, 0.05);
  EXPECT_LT(r.comm_seconds, 5.0);
  // The gradients and the 4 step sums (loss x n, correct, n, stop), one all-reduce of 4-byte floats.
  EXPECT_EQ(r.allreduce_bytes, (g.num_params() + 4) * 4);
  EXPECT_EQ(static_cast<int64_t>(comm.floats_) * 4, r.allreduce_bytes);
}

TEST(DistCommShare, OneProcessAllReducesNothing) {
  const Graph g = small_cnn(kShape, 3, 8);
  const StepResult r = one_step(g, nullptr);
  EXPECT_EQ(r.comm_seconds, 0.0);
  EXPECT_EQ(r.allreduce_bytes, 0);
}

TEST(DistCommShare, TheTallyWritesTheShareOnlyWhenSomethingWasAllReduced) {
  CommTally t;
  nlohmann::json line = nlohmann::json::object();
  t.add(StepResult{});  // a single-process step
  t.add_to(line, 1.0);
  EXPECT_TRUE(line.empty()) << line.dump();
  StepResult s;
  s.comm_seconds = 0.25;
  s.allreduce_bytes = 1000;
  t.add(s);
  t.add(s);
  t.add_to(line, 2.0);
  EXPECT_DOUBLE_EQ(line["comm_s"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(line["comm_share"].get<double>(), 0.25);
  EXPECT_EQ(line["allreduce_bytes"].get<int64_t>(), 1000);  // per step, not summed
  // Bytes without a time (CUDA for now): the share is left out rather than written as 0.
  CommTally untimed;
  s.comm_seconds = 0;
  untimed.add(s);
  nlohmann::json l2 = nlohmann::json::object();
  untimed.add_to(l2, 1.0);
  EXPECT_FALSE(l2.contains("comm_share"));
  EXPECT_EQ(l2["allreduce_bytes"].get<int64_t>(), 1000);
}

VerdictInputs inputs(double stall, double comm) {
  VerdictInputs in;
  in.input_stall = stall;
  in.comm_share = comm;
  in.decoders = 3;
  in.backend = "cpu";
  return in;
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

TEST(DistCommShare, TheVerdictNamesCommunicationWhenItDominates) {
  const std::string v = run_verdict(inputs(0.02, 0.45));
  EXPECT_TRUE(starts_with(v, "communication-bound: the all-reduce took 45% of the step time")) << v;
  // At the threshold it counts; just below it the step is compute, with the share named.
  EXPECT_TRUE(starts_with(run_verdict(inputs(0.0, kCommBoundShare)), "communication-bound")) << kCommBoundShare;
  const std::string below = run_verdict(inputs(0.01, 0.29));
  EXPECT_TRUE(starts_with(below, "compute-bound")) << below;
  EXPECT_NE(below.find("the all-reduce 29% of the step time"), std::string::npos) << below;
  // Input waiting longer than the all-reduce is the first thing to fix.
  EXPECT_TRUE(starts_with(run_verdict(inputs(0.50, 0.40)), "strongly input-bound")) << run_verdict(inputs(0.5, 0.4));
  // From the decoded cache there is no input wait: communication still can dominate.
  VerdictInputs cached = inputs(0.9, 0.35);
  cached.decoded_cache = true;
  EXPECT_TRUE(starts_with(run_verdict(cached), "communication-bound")) << run_verdict(cached);
  // One process (share 0): the verdict is as it always was, and says nothing of an all-reduce.
  const std::string single = run_verdict(inputs(0.01, 0.0));
  EXPECT_TRUE(starts_with(single, "compute-bound: the input pipeline kept up")) << single;
  EXPECT_EQ(single.find("all-reduce"), std::string::npos) << single;
}

}  // namespace
}  // namespace stoke
