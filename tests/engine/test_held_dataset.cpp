// --cache gpu's protocol on the CPU backend, its reference: a backend holding the data set (hold_dataset) and
// steps named by sample ids (StepRequest::held_ids(): a batch with null pixels) give the same losses, correct
// counts, applied flags and weights, bit for bit, as the same batches handed over as pixels — with flips, a partial
// last batch and an injected skip.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "base/error.h"
#include "engine/backend.h"
#include "engine/graph.h"
#include "models/models.h"

namespace stoke {
namespace {

constexpr int kBatch = 8;
constexpr int kSamples = 37;
const Shape3 kShape{12, 12, 1};

struct DataSet {
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
};

DataSet make_set() {
  DataSet d;
  d.pixels.resize(static_cast<size_t>(kSamples * kShape.size()));
  for (size_t i = 0; i < d.pixels.size(); ++i) d.pixels[i] = static_cast<uint8_t>((i * 37 + i / 11) % 251);
  for (int i = 0; i < kSamples; ++i) d.labels.push_back(i % 3);
  return d;
}

// Step k: a fixed scramble of sample ids (repeats allowed, as the sampler's padding repeats), flips on some.
struct Step {
  std::vector<int64_t> ids;
  std::vector<uint8_t> flips;
  float lr = 0.f;
  bool skip = false;
};

std::vector<Step> make_steps() {
  std::vector<Step> out;
  for (int k = 0; k < 7; ++k) {
    Step s;
    const int n = k == 6 ? 5 : kBatch;
    for (int i = 0; i < n; ++i) {
      s.ids.push_back((k * 13 + i * 7 + i * i) % kSamples);
      s.flips.push_back(static_cast<uint8_t>((i + k) % 3 == 0));
    }
    s.lr = 0.05f * static_cast<float>(1 + k % 2);
    s.skip = k == 4;
    out.push_back(std::move(s));
  }
  return out;
}

struct Trace {
  std::vector<StepResult> results;
  std::vector<float> params;
};

std::unique_ptr<TrainingBackend> make(const Graph& g) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.optimizer.momentum = 0.9f;
  o.mean = {0.4f};
  o.stdev = {0.3f};
  auto be = make_cpu_backend(g, o);
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 5);
  std::vector<float> p, b, state;
  int64_t steps = 0;
  be->get_state(p, b, state, steps);
  be->set_state(params, buffers, state, 0);
  return be;
}

// Every step submitted back to back (two in flight), the request's memory overwritten as soon as it is released:
// the held path must not read the trainer's ids after their release, as the pixel path must not read pixels.
Trace run(const Graph& g, const DataSet& d, bool held) {
  auto be = make(g);
  if (held) {
    std::string why;
    EXPECT_TRUE(be->hold_dataset(d.pixels.data(), d.labels.data(), kSamples, kShape.size(), &why)) << why;
  }
  std::vector<Step> steps = make_steps();
  std::vector<std::vector<uint8_t>> px(steps.size());
  std::vector<std::vector<int32_t>> lab(steps.size());
  Trace t;
  std::vector<int64_t> released;
  for (size_t k = 0; k < steps.size(); ++k) {
    Step& s = steps[k];
    StepRequest r;
    r.batch.tag = static_cast<int64_t>(k);
    r.batch.size = static_cast<int>(s.ids.size());
    r.batch.flips = s.flips.data();
    r.lr = s.lr;
    r.skip = s.skip;
    if (held) {
      r.batch.ids = s.ids.data();
    } else {  // the host gather --cache decoded does
      for (int64_t id : s.ids) {
        px[k].insert(px[k].end(), d.pixels.begin() + id * kShape.size(), d.pixels.begin() + (id + 1) * kShape.size());
        lab[k].push_back(d.labels[static_cast<size_t>(id)]);
      }
      r.batch.pixels = px[k].data();
      r.batch.labels = lab[k].data();
    }
    be->submit(r);
    be->collect(released, t.results, false);
    for (int64_t tag : released) {
      std::fill(steps[static_cast<size_t>(tag)].ids.begin(), steps[static_cast<size_t>(tag)].ids.end(), 0);
      std::fill(px[static_cast<size_t>(tag)].begin(), px[static_cast<size_t>(tag)].end(), uint8_t{0});
    }
    released.clear();
  }
  be->drain();
  be->collect(released, t.results, false);
  std::vector<float> b, state;
  int64_t n = 0;
  be->get_state(t.params, b, state, n);
  return t;
}

TEST(BackendHeldSet, StepsByIdMatchStepsByPixelsBitForBit) {
  const Graph g = small_cnn(kShape, 3, 8);
  const DataSet d = make_set();
  const Trace pixels = run(g, d, false), ids = run(g, d, true);
  ASSERT_EQ(pixels.results.size(), make_steps().size());
  ASSERT_EQ(ids.results.size(), pixels.results.size());
  for (size_t k = 0; k < ids.results.size(); ++k) {
    const StepResult &a = pixels.results[k], &b = ids.results[k];
    EXPECT_EQ(a.tag, b.tag);
    if (std::isfinite(a.loss))
      EXPECT_EQ(a.loss, b.loss) << "step " << k;
    else
      EXPECT_FALSE(std::isfinite(b.loss)) << "step " << k;
    EXPECT_EQ(a.correct, b.correct) << "step " << k;
    EXPECT_EQ(a.applied, b.applied) << "step " << k;
  }
  EXPECT_FALSE(ids.results[4].applied);  // the injected skip
  ASSERT_EQ(pixels.params.size(), ids.params.size());
  for (size_t i = 0; i < ids.params.size(); ++i) ASSERT_EQ(pixels.params[i], ids.params[i]) << "parameter " << i;
}

TEST(BackendHeldSet, AnIdOutsideTheSetOrNoSetIsAnError) {
  const Graph g = small_cnn(kShape, 3, 8);
  const DataSet d = make_set();
  std::vector<int64_t> ids(kBatch, 1);
  const auto by_ids = [&] {  // a step that names its samples by id (no pixels)
    StepRequest r;
    r.batch.tag = 0;
    r.batch.size = kBatch;
    r.batch.ids = ids.data();
    r.lr = 0.1f;
    return r;
  };
  {
    auto be = make(g);
    EXPECT_THROW(be->train_step(by_ids()), Error);
  }
  auto be = make(g);
  std::string why;
  ASSERT_TRUE(be->hold_dataset(d.pixels.data(), d.labels.data(), kSamples, kShape.size(), &why)) << why;
  ids[3] = kSamples;
  EXPECT_THROW(be->train_step(by_ids()), Error);
}

// A backend without a held-set implementation says so instead of pretending.
TEST(BackendHeldSet, TheDefaultBackendDeclinesWithAReason) {
  struct Plain final : TrainingBackend {
    std::string name() const override { return "plain"; }
    std::string describe() const override { return "plain"; }
    void set_state(const std::vector<float>&, const std::vector<float>&, const std::vector<float>&, int64_t) override {}
    void get_state(std::vector<float>&, std::vector<float>&, std::vector<float>&, int64_t&) override {}
    const float* eval_batch(int, const uint8_t*, const int32_t*, float*) override { return nullptr; }
    StepResult run_step(const StepRequest&) override { return {}; }
  } plain;
  const uint8_t px[4] = {};
  const int32_t lab[1] = {};
  std::string why;
  EXPECT_FALSE(plain.hold_dataset(px, lab, 1, 4, &why));
  EXPECT_NE(why.find("plain"), std::string::npos) << why;
}

}  // namespace
}  // namespace stoke
