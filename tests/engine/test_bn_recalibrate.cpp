// --bn-recalibrate's mechanism (engine/bn_recalibrate.h) on the CPU backend: after a few training steps the running
// statistics are the exact average of the batches' own statistics (the exponential average is not), they do not
// depend on the statistics or the steps before, weights and optimizer state come back untouched, and only the running
// statistics cross the backend interface per batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "engine/backend.h"
#include "engine/bn_recalibrate.h"
#include "engine/graph.h"

using namespace stoke;

namespace {

constexpr int kH = 6, kW = 5, kC = 2, kN = 7, kClasses = 3, kBatches = 3;

// bn0 normalises the (normalised) input itself, so its batch statistics can be computed here exactly; bn1 sits
// behind a conv.
Graph two_bn_graph() {
  Graph g({kH, kW, kC}, "two-bn");
  int x = g.relu(g.batchnorm(g.input(), "bn0"));
  x = g.batchnorm(g.conv(x, 4, 3, 1, 1, false, "conv"), "bn1");
  g.linear(g.global_avgpool(g.relu(x)), kClasses, "fc");
  return g;
}

struct Batches {
  std::vector<std::vector<uint8_t>> px;
  std::vector<std::vector<int32_t>> labels;
  explicit Batches(uint64_t seed) {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<uint8_t> p(static_cast<size_t>(kN * kH * kW * kC));
      // Each batch its own brightness, so the per-batch statistics differ and their average matters.
      for (size_t i = 0; i < p.size(); ++i)
        p[i] = static_cast<uint8_t>(40 * b + static_cast<int>(uniform_below(seed, i + 1000 * b, 120)));
      std::vector<int32_t> l(kN);
      for (int i = 0; i < kN; ++i) l[static_cast<size_t>(i)] = (i + b) % kClasses;
      px.push_back(std::move(p));
      labels.push_back(std::move(l));
    }
  }
  StepRequest request(int k) const {
    StepRequest r;
    r.batch.tag = 100 + k;
    r.batch.size = kN;
    r.batch.pixels = px[static_cast<size_t>(k)].data();
    r.batch.labels = labels[static_cast<size_t>(k)].data();
    return r;
  }
};

BackendOptions options() {
  BackendOptions o;
  o.max_batch = kN;
  o.optimizer.kind = OptimizerKind::sgd;
  o.mean = {0.3f, 0.4f};
  o.stdev = {0.2f, 0.25f};
  return o;
}

struct State {
  std::vector<float> params, buffers, opt;
  int64_t steps = 0;
};
State state_of(TrainingBackend& b) {
  State s;
  b.get_state(s.params, s.buffers, s.opt, s.steps);
  return s;
}

const float* buffer(const Graph& g, const State& s, const char* name) {
  return s.buffers.data() + g.buffers()[static_cast<size_t>(g.find_buffer(name))].offset;
}

// A CPU backend initialised from `seed` and trained for kBatches steps (lr 0.05).
std::unique_ptr<TrainingBackend> trained_backend(const Graph& g, const Batches& data, const BackendOptions& o,
                                                 uint64_t seed) {
  std::unique_ptr<TrainingBackend> b = make_cpu_backend(g, o);
  State s;
  s.params.resize(static_cast<size_t>(g.num_params()));
  s.buffers.resize(static_cast<size_t>(g.num_buffers()));
  g.initialize(s.params.data(), s.buffers.data(), seed);
  s.opt.assign(static_cast<size_t>(g.num_params()), 0.f);
  b->set_state(s.params, s.buffers, s.opt, 0);
  for (int k = 0; k < kBatches; ++k) {
    StepRequest r = data.request(k);
    r.lr = 0.05f;
    b->train_step(r);
  }
  return b;
}

}  // namespace

TEST(BnRecalibrate, RunningStatisticsBecomeTheAverageOfTheBatchStatistics) {
  const Graph g = two_bn_graph();
  const Batches data(5);
  std::unique_ptr<TrainingBackend> backend = trained_backend(g, data, options(), 3);
  const State trained = state_of(*backend);

  std::vector<int64_t> released;
  recalibrate_batchnorm(
      *backend, g, kBatches, [&](int k) { return data.request(k); }, [&](int64_t tag) { released.push_back(tag); });
  const State after = state_of(*backend);
  EXPECT_EQ(released, (std::vector<int64_t>{100, 101, 102}));
  EXPECT_EQ(after.params, trained.params);  // bit for bit: no update, no decay
  EXPECT_EQ(after.opt, trained.opt);
  EXPECT_EQ(after.steps, trained.steps);

  // bn0's input is the normalised batch: x = px * 1/(255 std) - mean/std, per channel, as the backend computes it.
  const BackendOptions o = options();
  const int rows = kN * kH * kW;
  double worst = 0, ema_off = 0;
  for (int c = 0; c < kC; ++c) {
    const float scale = 1.f / (255.f * o.stdev[static_cast<size_t>(c)]);
    const float shift = -o.mean[static_cast<size_t>(c)] / o.stdev[static_cast<size_t>(c)];
    double mean_avg = 0, var_avg = 0;
    for (int b = 0; b < kBatches; ++b) {
      double s = 0, s2 = 0;
      for (int r = 0; r < rows; ++r) {
        const double x =
            static_cast<float>(data.px[static_cast<size_t>(b)][static_cast<size_t>(r * kC + c)]) * scale + shift;
        s += x;
        s2 += x * x;
      }
      const double m = s / rows;
      mean_avg += m / kBatches;
      var_avg += (s2 / rows - m * m) * rows / (rows - 1) / kBatches;  // unbiased, as PyTorch's running_var
    }
    const double got_mean = buffer(g, after, "bn0.running_mean")[c], got_var = buffer(g, after, "bn0.running_var")[c];
    worst =
        std::max({worst, std::abs(got_mean - mean_avg) / std::abs(mean_avg), std::abs(got_var - var_avg) / var_avg});
    // What training left: 0.9^3 of the start (0 and 1) plus the exponential average, far from the plain one.
    ema_off = std::max(ema_off, std::abs(buffer(g, trained, "bn0.running_var")[c] - var_avg) / var_avg);
  }
  EXPECT_LT(worst, 5e-7) << "relative error of the recalibrated bn0 statistics";
  EXPECT_GT(ema_off, 0.2) << "the exponential average should be far from the batch average here";
  std::printf("recalibrated bn0: worst relative error %.1e (%.0f%% of 5e-7); the exponential average was %.0f%% off\n",
              worst, 100 * worst / 5e-7, 100 * ema_off);
}

// The result depends on the weights and the batches only: not on the running statistics before, nor on how many
// skipped-update steps (which move them, not the weights) ran before it.
TEST(BnRecalibrate, ResultDoesNotDependOnTheStatisticsBefore) {
  const Graph g = two_bn_graph();
  const Batches data(9);
  std::vector<std::vector<float>> results;
  for (int extra = 0; extra < 3; ++extra) {
    std::unique_ptr<TrainingBackend> backend = make_cpu_backend(g, options());
    State s;
    s.params.resize(static_cast<size_t>(g.num_params()));
    s.buffers.resize(static_cast<size_t>(g.num_buffers()));
    g.initialize(s.params.data(), s.buffers.data(), 4);
    for (size_t i = 0; i < s.buffers.size(); ++i) s.buffers[i] += 0.5f * static_cast<float>(extra);
    s.opt.assign(static_cast<size_t>(g.num_params()), 0.f);
    backend->set_state(s.params, s.buffers, s.opt, 0);
    for (int k = 0; k < extra; ++k) {
      StepRequest r = data.request(k);
      r.skip = true;  // moves the running statistics only
      backend->train_step(r);
    }
    recalibrate_batchnorm(
        *backend, g, kBatches, [&](int k) { return data.request(k); }, [](int64_t) {});
    results.push_back(state_of(*backend).buffers);
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
  const State none = [&] {
    State s;
    s.buffers.resize(static_cast<size_t>(g.num_buffers()));
    s.params.resize(static_cast<size_t>(g.num_params()));
    g.initialize(s.params.data(), s.buffers.data(), 4);
    return s;
  }();
  EXPECT_NE(results[0], none.buffers);  // it did change them
}

namespace {

// Forwards everything to a CPU backend and counts what crosses the backend interface. With own_buffers false it
// leaves get_buffers/set_buffers to TrainingBackend's defaults (through get_state/set_state), as a backend without
// its own would.
class Counting final : public TrainingBackend {
 public:
  Counting(std::unique_ptr<TrainingBackend> inner, bool own_buffers) : b_(std::move(inner)), own_(own_buffers) {}
  int state_sets = 0, state_gets = 0, ema_sets = 0, ema_gets = 0, steps = 0;

  std::string name() const override { return b_->name(); }
  std::string describe() const override { return b_->describe(); }
  void set_state(const std::vector<float>& p, const std::vector<float>& b, const std::vector<float>& o,
                 int64_t t) override {
    ++state_sets;
    b_->set_state(p, b, o, t);
  }
  void get_state(std::vector<float>& p, std::vector<float>& b, std::vector<float>& o, int64_t& t) override {
    ++state_gets;
    b_->get_state(p, b, o, t);
  }
  void get_buffers(std::vector<float>& b) override { own_ ? b_->get_buffers(b) : TrainingBackend::get_buffers(b); }
  void set_buffers(const std::vector<float>& b) override {
    own_ ? b_->set_buffers(b) : TrainingBackend::set_buffers(b);
  }
  void submit(const StepRequest& r) override {
    ++steps;
    b_->submit(r);
  }
  void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait) override {
    b_->collect(released, results, wait);
  }
  void drain() override { b_->drain(); }
  int in_flight() const override { return b_->in_flight(); }
  int max_in_flight() const override { return b_->max_in_flight(); }
  const float* eval_batch(int n, const uint8_t* px, const int32_t* labels, float* loss) override {
    return b_->eval_batch(n, px, labels, loss);
  }
  void set_ema(const std::vector<float>& p, const std::vector<float>& b) override {
    ++ema_sets;
    b_->set_ema(p, b);
  }
  void get_ema(std::vector<float>& p, std::vector<float>& b) override {
    ++ema_gets;
    b_->get_ema(p, b);
  }
  void use_ema(bool on) override { b_->use_ema(on); }

 protected:
  StepResult run_step(const StepRequest&) override { throw Error("not used: submit forwards"); }

 private:
  std::unique_ptr<TrainingBackend> b_;
  bool own_;
};

// A backend after three training steps with --ema, its weights, EMA and optimizer state all apart.
std::unique_ptr<TrainingBackend> trained_with_ema(const Graph& g, const Batches& data) {
  BackendOptions o = options();
  o.ema_decay = 0.5f;
  return trained_backend(g, data, o, 6);
}

}  // namespace

// Per batch only the running statistics may move (for ResNet-50 on a GPU the whole state is ~400 MB of PCIe): the
// parameters, the optimizer state and the EMA's parameters are set at most once per weight set, whatever the number
// of batches. Counted through the interface, with --ema (the pass that needs the EMA's weights in place per batch).
TEST(BnRecalibrate, MovesOnlyTheBuffersPerBatch) {
  const Graph g = two_bn_graph();
  const Batches data(13);
  for (int batches : {1, kBatches}) {
    Counting b(trained_with_ema(g, data), true);
    recalibrate_batchnorm(
        b, g, batches, [&](int k) { return data.request(k); }, [](int64_t) {}, true);
    EXPECT_EQ(b.steps, 2 * batches) << "one step under the weights and one under the EMA per batch";
    EXPECT_LE(b.state_sets, 1) << batches << " batches";
    EXPECT_LE(b.ema_sets, 1) << batches << " batches";
    EXPECT_LE(b.state_gets, 1) << batches << " batches";
    EXPECT_LE(b.ema_gets, 1) << batches << " batches";
  }
}

// TrainingBackend's default get_buffers/set_buffers (through get_state/set_state) give the same result as the CPU
// backend's own, so a backend without them keeps working.
TEST(BnRecalibrate, TheDefaultBufferTransfersGiveTheSameStatistics) {
  const Graph g = two_bn_graph();
  const Batches data(17);
  std::vector<std::vector<float>> got;
  for (bool own : {true, false}) {
    BackendOptions o = options();
    Counting b(make_cpu_backend(g, o), own);
    State s;
    s.params.resize(static_cast<size_t>(g.num_params()));
    s.buffers.resize(static_cast<size_t>(g.num_buffers()));
    g.initialize(s.params.data(), s.buffers.data(), 8);
    s.opt.assign(static_cast<size_t>(g.num_params()), 0.f);
    b.set_state(s.params, s.buffers, s.opt, 0);
    recalibrate_batchnorm(
        b, g, kBatches, [&](int k) { return data.request(k); }, [](int64_t) {});
    got.push_back(state_of(b).buffers);
    EXPECT_NE(got.back(), s.buffers);
  }
  EXPECT_EQ(got[0], got[1]);
}
