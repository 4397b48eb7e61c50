// The CUDA executor's arena, allocated without a device: allocate_plan (the function the executor lays its arena
// out with) on a counting arena takes exactly what the plan, `--batch-size auto` and `stoke plan` count, and the
// plan's workspace arithmetic is the kernels' own.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "engine/batch_size.h"
#include "engine/cuda/arena.h"
#include "engine/cuda/arena_plan.h"
#include "kernels/batchnorm.cuh"
#include "kernels/softmax_ce.cuh"
#include "kernels/tensor_ops.cuh"
#include "models/models.h"
#include "tests/gpu/every_op_graph.h"

using namespace stoke;

namespace {

struct Case {
  std::string name;
  Graph graph;
  int batch;
};

std::vector<Case> setups() {
  std::vector<Case> s;
  s.push_back({"every-op", every_op_graph(true), 5});
  s.push_back({"small-cnn", build_model("small-cnn", {28, 28, 1}, 10), 64});
  s.push_back({"resnet50@224", build_model("resnet50", {224, 224, 3}, 1000), 256});
  s.push_back({"densenet121@64", build_model("densenet121", {64, 64, 1}, 6), 300});
  return s;
}

}  // namespace

TEST(ArenaLayout, CountingArenaTakesWhatPlanAndAutoCount) {
  for (const Case& s : setups())
    for (int eb : {2, 4})
      for (int sets : {0, 1, 2}) {
        const std::string what = str(s.name, " eb ", eb, " state ", sets);
        cuda::ArenaPlanOptions o;
        o.element_bytes = eb;
        o.state_sets = sets;
        const cuda::ArenaPlan p = cuda::plan_arena(s.graph, s.batch, o);
        cuda::DeviceArena a = cuda::DeviceArena::counting();
        const cuda::PlannedPointers at = cuda::allocate_plan(p, a, false);
        EXPECT_EQ(static_cast<int64_t>(a.used()), p.total_bytes()) << what;
        int64_t rows = 0;
        for (cuda::MemoryRow r : {cuda::MemoryRow::parameters, cuda::MemoryRow::gradients,
                                  cuda::MemoryRow::optimizer_state, cuda::MemoryRow::input,
                                  cuda::MemoryRow::activations, cuda::MemoryRow::workspaces, cuda::MemoryRow::other})
          rows += p.row_bytes(r);
        EXPECT_EQ(rows, p.total_bytes()) << what;
        // Every planned tensor sits inside the one activation region, at its planned offset.
        size_t region = 0;
        while (p.regions[region].id != cuda::Region::activations) ++region;
        const auto* base = static_cast<const std::byte*>(at.regions[region]);
        for (size_t t = 0; t < p.activations.tensors.size(); ++t) {
          const PlannedTensor& pt = p.activations.tensors[t];
          EXPECT_EQ(static_cast<const std::byte*>(at.tensors[t]) - base, pt.offset) << what << " " << pt.name;
          EXPECT_LE(pt.offset + pt.bytes, p.activations.arena_bytes) << what << " " << pt.name;
        }
        // Debug mode: a block per planned tensor instead of the shared region.
        cuda::DeviceArena d = cuda::DeviceArena::counting();
        cuda::allocate_plan(p, d, true);
        int64_t each = 0;
        for (const PlannedTensor& pt : p.activations.tensors)
          if (pt.is_allocation()) each += cuda::arena_rounded(pt.bytes);
        EXPECT_EQ(static_cast<int64_t>(d.used()), p.total_bytes() - p.region_bytes(cuda::Region::activations) + each)
            << what;
        EXPECT_GT(each, p.activations.arena_bytes) << what << ": the shared region reuses memory";
        if (eb == 2 && sets == 1) {  // --batch-size auto and `stoke plan` (SGD with momentum, half precision)
          MemoryTarget t;
          t.cuda = true;
          t.element_bytes = eb;
          EXPECT_EQ(planned_training_bytes(s.graph, s.batch, t), static_cast<int64_t>(a.used())) << what;
        }
      }
}

TEST(ArenaLayout, WorkspacesAreTheKernelsOwn) {
  for (int64_t rows : std::vector<int64_t>{1, 255, 256, 257, 4096, 300 * 64 * 64, 256 * 112 * 112, int64_t{1} << 30})
    for (int c : {1, 5, 64, 1000}) {
      EXPECT_EQ(cuda::bias_workspace(rows, c), cuda::bias_backward_workspace_bytes(rows, c)) << rows << " x " << c;
      EXPECT_EQ(cuda::batchnorm_workspace(rows, c), cuda::batchnorm_workspace_bytes(rows, c)) << rows << " x " << c;
    }
  for (const Case& s : setups()) {
    int64_t reduce = 0;
    for (const Node& nd : s.graph.nodes()) {  // as the executor's constructor asks the kernels
      if (nd.op == Op::input) continue;
      const Shape3& in = s.graph.node(nd.inputs[0]).out;
      if (nd.op == Op::conv && nd.bias >= 0)
        reduce = std::max(reduce, cuda::bias_backward_workspace_bytes(int64_t{s.batch} * nd.out.h * nd.out.w, nd.k));
      if (nd.op == Op::batchnorm)
        reduce = std::max(reduce, cuda::batchnorm_workspace_bytes(int64_t{s.batch} * in.h * in.w, in.c));
      if (nd.op == Op::linear && nd.bias >= 0)
        reduce = std::max(reduce, cuda::bias_backward_workspace_bytes(s.batch, nd.out_features));
    }
    const cuda::ArenaPlan p = cuda::plan_arena(s.graph, s.batch, {});
    EXPECT_EQ(p.reduce_workspace, reduce) << s.name;
    EXPECT_EQ(p.region_bytes(cuda::Region::softmax_ce_workspace),
              cuda::arena_rounded(cuda::softmax_ce_workspace_bytes(s.batch)))
        << s.name;
  }
}
