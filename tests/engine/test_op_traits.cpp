// engine/op_traits.h is the one place that says what each op's backward reads and what it saves. Checked here
// against what the CPU executor really reads: with poison_dead, every tensor becomes NaN the moment the memory
// plan (built from the table) says it is dead. If a row claimed less than the op's backward reads, that
// backward would read NaN and the gradients would differ from a run without poisoning.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "base/rng.h"
#include "engine/cpu/executor.h"
#include "engine/graph.h"
#include "engine/op_traits.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"

namespace stoke {
namespace {

// Every op, and every op's output consumed by something whose backward runs.
Graph every_op_graph(int classes) {
  Graph g({9, 8, 3}, "every-op");
  int x = g.conv(g.input(), 8, 3, 1, 1, true, "stem");
  x = g.batchnorm(x, "bn1");
  x = g.relu(x);
  int m = g.maxpool(x, 2, 2);                   // 9x8 -> 4x4
  int y = g.conv(m, 8, 3, 1, 1, false, "c2");
  y = g.batchnorm(y, "bn2");
  int r = g.relu(g.add(m, y));                  // residual
  int a = g.avgpool(r, 2, 1);                   // 4x4 -> 3x3
  int b = g.conv(a, 4, 1, 1, 0, true, "c3");
  int cat = g.concat({a, b});
  g.linear(g.global_avgpool(cat), classes, "fc");
  return g;
}

std::vector<float> gradients(const Graph& g, bool poison, int n, int classes) {
  std::vector<float> params(static_cast<size_t>(g.num_params())), grads(params.size(), 0.f),
      buffers(static_cast<size_t>(std::max<int64_t>(g.num_buffers(), 1)));
  g.initialize(params.data(), buffers.data(), 5);
  std::vector<float> x(static_cast<size_t>(n * g.input_shape().size()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = normal01(17, i);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % classes;
  CpuExecutor ex(g, n, poison);
  const float* logits = ex.forward(n, x.data(), params.data(), buffers.data(), true);
  std::vector<float> dlogits(static_cast<size_t>(n * classes));
  cpu::softmax_cross_entropy(n, classes, logits, labels.data(), 0.f, 1.f, nullptr, dlogits.data(), nullptr);
  ex.backward(params.data(), grads.data(), dlogits.data());
  return grads;
}

void expect_same_gradients(const Graph& g, int n, int classes) {
  const std::vector<float> plain = gradients(g, false, n, classes), poisoned = gradients(g, true, n, classes);
  ASSERT_EQ(plain.size(), poisoned.size());
  int64_t finite = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    ASSERT_TRUE(std::isfinite(poisoned[i])) << g.name() << ": gradient " << i << " read a tensor the plan let die";
    ASSERT_EQ(plain[i], poisoned[i]) << g.name() << ": gradient " << i;
    finite += plain[i] != 0.f;
  }
  EXPECT_GT(finite, static_cast<int64_t>(plain.size() / 2)) << "most gradients are non-zero, so they were computed";
}

TEST(OpTraits, EveryOpHasARowAndTheGraphUsesThemAll) {
  const Graph g = every_op_graph(5);
  std::set<Op> used;
  for (const Node& nd : g.nodes()) used.insert(nd.op);
  for (Op op : {Op::input, Op::conv, Op::batchnorm, Op::relu, Op::maxpool, Op::avgpool, Op::global_avgpool,
                Op::linear, Op::add, Op::concat}) {
    EXPECT_STRNE(op_traits(op).name, "?");
    EXPECT_STREQ(op_name(op), op_traits(op).name);
    EXPECT_TRUE(used.count(op)) << op_name(op) << " is missing from the every-op graph";
    EXPECT_EQ(op_traits(op).has_params, op == Op::conv || op == Op::batchnorm || op == Op::linear);
  }
}

TEST(OpTraits, NoBackwardReadsATensorThePlanLetDie) {
  expect_same_gradients(every_op_graph(5), 6, 5);
}

TEST(OpTraits, NoBackwardReadsATensorThePlanLetDieInTheZoo) {
  for (const char* model : {"small-cnn", "resnet18"}) expect_same_gradients(build_model(model, {32, 32, 3}, 4), 3, 4);
  expect_same_gradients(build_model("densenet121", {32, 32, 1}, 3), 2, 3);
}

}  // namespace
}  // namespace stoke
