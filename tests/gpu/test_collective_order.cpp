// The order of a training step's collectives is a property of the graph, the same on both executors: ranks pair
// collectives by order, so a CUDA rank issuing two batch norms' --sync-bn sums in the other order than the CPU
// (or than another build) would normalise each layer with the other's statistics, silently when the widths match.
// Host-only: the CUDA executor's order is what its fusion plan makes it (fused_bn_exchanges, checked again when
// the executor is built); the CPU executor's is recorded through a communicator of one that only listens.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/cpu/executor.h"
#include "engine/cuda/fusion.h"
#include "engine/graph.h"
#include "models/models.h"
#include "tests/gpu/every_op_graph.h"

namespace stoke {

void PrintTo(const BnExchange& e, std::ostream* os) {
  *os << "{node " << e.node << (e.backward ? " backward " : " forward ") << e.values << "}";
}

namespace {

// One training step of `g` on the CPU executor at batch 2: every --sync-bn sum it makes, in order, with the batch
// norm it serves (the executor's running node). A world of one: the sums come back unchanged.
std::vector<BnExchange> recorded_cpu_exchanges(const Graph& g) {
  const int n = 2;
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 3);
  std::vector<float> x(static_cast<size_t>(n) * g.input_shape().size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) / 8.f - 1.f;
  CpuExecutor ex(g, n);
  std::vector<BnExchange> rec;
  bool backward = false;
  ex.set_sync_batchnorm([&](double*, int values) { rec.push_back({ex.running_node(), backward, values}); });
  ex.forward(n, x.data(), params.data(), buffers.data(), true);
  backward = true;
  std::vector<float> grads(params.size(), 0.f), dout(static_cast<size_t>(n * ex.outputs()), 0.25f);
  ex.backward(params.data(), grads.data(), dout.data());
  return rec;
}

void expect_one_order(const Graph& g) {
  SCOPED_TRACE(g.name());
  const std::vector<BnExchange> cpu = recorded_cpu_exchanges(g);
  int batchnorms = 0;
  for (const Node& nd : g.nodes()) batchnorms += nd.op == Op::batchnorm;
  ASSERT_EQ(cpu.size(), 3u * static_cast<size_t>(batchnorms));  // two sums forward, one backward, per batch norm
  EXPECT_EQ(cpu, sync_batchnorm_exchanges(g));
  const cuda::FusionPlan plan = cuda::plan_fusion(g);
  EXPECT_FALSE(plan.groups.empty());  // the order is kept with fusion on, not by turning it off
  EXPECT_EQ(cuda::fused_bn_exchanges(g, plan), cpu);
}

int node_named(const Graph& g, const std::string& name) {
  for (size_t i = 1; i < g.nodes().size(); ++i)
    if (g.nodes()[i].name == name) return static_cast<int>(i);
  ADD_FAILURE() << "no node " << name;
  return -1;
}

TEST(CollectiveOrder, EveryOpGraphExchangesBatchNormsInNodeOrderOnBothExecutors) {
  const Graph g = every_op_graph();
  expect_one_order(g);
  // The block whose shortcut batch norm comes after the main branch's: the later one fuses with the add.
  const int bn2 = node_named(g, "b2.bn2"), down = node_named(g, "b2.down.bn");
  ASSERT_LT(bn2, down);
  const cuda::FusionPlan plan = cuda::plan_fusion(g);
  EXPECT_FALSE(plan.interior[static_cast<size_t>(bn2)]);
  EXPECT_TRUE(plan.interior[static_cast<size_t>(down)]);
  int fused_with_add = 0;
  for (const cuda::FusionGroup& gr : plan.groups)
    if (gr.bn == down) {
      EXPECT_EQ(gr.residual, bn2);
      fused_with_add = 1;
    }
  EXPECT_EQ(fused_with_add, 1);
  // With equal widths the two layers' sums have equal sizes: only the order tells them apart.
  EXPECT_EQ(g.node(bn2).out.c, g.node(down).out.c);
}

TEST(CollectiveOrder, ResNetsAndDenseNetExchangeBatchNormsInNodeOrderOnBothExecutors) {
  expect_one_order(resnet(18, {32, 32, 3}, 10));
  expect_one_order(resnet(50, {32, 32, 3}, 10));
  expect_one_order(densenet121({32, 32, 1}, 6));
}

}  // namespace
}  // namespace stoke
