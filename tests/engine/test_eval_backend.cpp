// BackendOptions::evaluation_only (eval, predict, export): the CPU backend holds no optimizer state, takes an empty
// one in set_state, refuses a training step, and evaluates bit for bit as a training backend holding the same weights.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/backend.h"
#include "engine/graph.h"
#include "models/models.h"

namespace stoke {
namespace {

TEST(EvalBackend, HoldsNoOptimizerStateAndEvaluatesAsATrainingBackend) {
  const Shape3 shape{12, 12, 1};
  const Graph g = small_cnn(shape, 3);
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 7);
  BackendOptions o;
  o.max_batch = 4;
  o.mean = {0.5f};
  o.stdev = {0.25f};
  const std::unique_ptr<TrainingBackend> train = make_cpu_backend(g, o);
  o.evaluation_only = true;
  const std::unique_ptr<TrainingBackend> eval = make_cpu_backend(g, o);

  std::vector<float> p, b, state;
  int64_t steps = -1;
  train->get_state(p, b, state, steps);
  ASSERT_EQ(state.size(), params.size()) << "SGD with momentum: one value per parameter";
  train->set_state(params, buffers, state, 0);
  EXPECT_THROW(eval->set_state(params, buffers, state, 0), Error) << "an optimizer state it has no room for";
  eval->set_state(params, buffers, {}, 0);
  eval->get_state(p, b, state, steps);
  EXPECT_TRUE(state.empty()) << state.size() << " values of optimizer state";
  EXPECT_EQ(p, params);

  std::vector<uint8_t> pixels(static_cast<size_t>(4 * shape.size()));
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 37 + i / 5) % 251);
  const std::vector<int32_t> labels = {0, 1, 2, 1};
  float loss_train = 0, loss_eval = 0;
  const float* lt = train->eval_batch(4, pixels.data(), labels.data(), &loss_train);
  const std::vector<float> logits_train(lt, lt + 4 * 3);
  const float* le = eval->eval_batch(4, pixels.data(), labels.data(), &loss_eval);
  EXPECT_EQ(std::memcmp(logits_train.data(), le, logits_train.size() * sizeof(float)), 0);
  EXPECT_EQ(loss_train, loss_eval);

  try {
    eval->submit(StepRequest{});
    ADD_FAILURE() << "a training step on an evaluation-only backend";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("evaluation-only backend"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace stoke
