// Fine-tuning on the CUDA backend against the CPU backend (BackendOptions::lr_mult and bn_eval, from
// fine_tune_plan), on the every-op graph (plain and fused batch norms): a frozen backbone stays bit for bit on the
// device, statistics included, while the classifier moves as on the CPU; --freeze-bn with a trainable backbone (the
// eval-mode batch-norm backward) trains every weight as the CPU does and keeps the running statistics bit for bit.
// Six steps: past the backend's warm-up, so the last ones replay a captured CUDA graph.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/init_weights.h"
#include "tests/gpu/every_op_graph.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

constexpr int kBatch = 12, kSteps = 6;

struct Trace {
  std::vector<float> losses, params, buffers;
};

struct Start {
  std::vector<float> params, buffers;
};

// Initial weights and running statistics away from (0, 1), so eval-mode normalisation is not the identity.
Start start_state(const Graph& g) {
  Start s;
  s.params.resize(static_cast<size_t>(g.num_params()));
  s.buffers.resize(static_cast<size_t>(g.num_buffers()));
  g.initialize(s.params.data(), s.buffers.data(), 5);
  for (const ParamInfo& b : g.buffers())
    for (int64_t i = 0; i < b.size; ++i)
      s.buffers[static_cast<size_t>(b.offset + i)] =
          b.init == Init::ones ? 0.6f + 0.1f * static_cast<float>(i % 9) : 0.05f * static_cast<float>(i % 5) - 0.1f;
  return s;
}

Trace run(bool cuda, const Graph& g, const FineTunePlan& plan, const Start& start) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.mean = {0.5f, 0.45f, 0.4f};
  o.stdev = {0.25f, 0.2f, 0.3f};
  o.precision = PrecisionRequest::fp32;
  o.deterministic = true;
  o.lr_mult = plan.lr_mult;
  o.bn_eval = plan.bn_eval;
  std::unique_ptr<TrainingBackend> be = cuda ? make_cuda_backend(g, o) : make_cpu_backend(g, o);
  std::vector<float> p, b, state;
  int64_t t = 0;
  be->get_state(p, b, state, t);
  be->set_state(start.params, start.buffers, state, 0);
  const Shape3 shape = g.node(0).out;
  Trace tr;
  for (int k = 0; k < kSteps; ++k) {
    std::vector<uint8_t> px(static_cast<size_t>(kBatch * shape.size()));
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 31 + k * 11 + i / 7) % 253);
    std::vector<int32_t> labels;
    for (int i = 0; i < kBatch; ++i) labels.push_back((i * 3 + k) % 7);
    StepRequest r;
    r.batch.tag = k;
    r.batch.size = kBatch;
    r.batch.pixels = px.data();
    r.batch.labels = labels.data();
    r.lr = 0.05f;
    tr.losses.push_back(be->train_step(r).loss);
  }
  be->get_state(tr.params, tr.buffers, state, t);
  return tr;
}

std::vector<float> slice(const std::vector<float>& v, const ParamInfo& p) {
  return {v.begin() + p.offset, v.begin() + p.offset + p.size};
}

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

TEST(GpuFineTune, FrozenBackboneStaysOnTheDeviceAndTheClassifierMatchesTheCpu) {
  REQUIRE_GPU();
  const Graph g = every_op_graph();
  const FineTunePlan plan = fine_tune_plan(g, Freeze::backbone, false, 1.f);
  const Start start = start_state(g);
  const Trace cpu = run(false, g, plan, start), gpu = run(true, g, plan, start);
  test::expect_model_close<float>("frozen-backbone losses", gpu.losses, cpu.losses);
  int trained = 0;
  for (size_t i = 0; i < g.params().size(); ++i) {
    const ParamInfo& p = g.params()[i];
    if (plan.lr_mult[i] == 0.f) {
      EXPECT_EQ(slice(gpu.params, p), slice(start.params, p)) << p.name << " is frozen but moved on the device";
      continue;
    }
    ++trained;
    EXPECT_NE(slice(gpu.params, p), slice(start.params, p)) << p.name << " did not train on the device";
    test::expect_model_close<float>("classifier update " + p.name, minus(slice(gpu.params, p), slice(start.params, p)),
                                    minus(slice(cpu.params, p), slice(start.params, p)));
  }
  EXPECT_EQ(trained, 2) << "the classifier's weight and bias";
  EXPECT_EQ(gpu.buffers, start.buffers) << "a frozen backbone's running statistics moved on the device";
}

TEST(GpuFineTune, FrozenBatchNormTrainsTheBackboneAsTheCpuDoes) {
  REQUIRE_GPU();
  const Graph g = every_op_graph();
  const FineTunePlan plan = fine_tune_plan(g, Freeze::none, true, 0.5f);
  const Start start = start_state(g);
  const Trace cpu = run(false, g, plan, start), gpu = run(true, g, plan, start);
  test::expect_model_close<float>("--freeze-bn losses", gpu.losses, cpu.losses);
  const double update_rms = test::rms_of(minus(cpu.params, start.params));  // the noise floor of every update
  for (const ParamInfo& p : g.params()) {
    EXPECT_NE(slice(gpu.params, p), slice(start.params, p)) << p.name << " did not train on the device";
    test::expect_model_close<float>("--freeze-bn update " + p.name, minus(slice(gpu.params, p), slice(start.params, p)),
                                    minus(slice(cpu.params, p), slice(start.params, p)), update_rms);
  }
  EXPECT_EQ(gpu.buffers, start.buffers) << "--freeze-bn: running statistics moved on the device";
}

}  // namespace
}  // namespace stoke
