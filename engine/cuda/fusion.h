// Which batch norms the CUDA executor runs fused with what follows them: batch norm followed by ReLU, or by a
// residual add (and maybe a ReLU after it), becomes one kernel pass forward and one backward. The graph itself is
// not changed; the plan only says which nodes are produced inside a group (no buffers of their own) and which
// node ends one. Host-only: no device needed to plan.
//
// A group runs at its output node, later than the batch norm's own place in the graph. Under --sync-bn that moves
// the batch norm's collectives, so a group is formed only when no other batch norm lies between the two: the
// collectives then keep the graph's order (engine/backend.h, sync_batchnorm_exchanges), the CPU executor's.
#pragma once

#include <vector>

#include "engine/backend.h"
#include "engine/graph.h"

namespace stoke::cuda {

struct FusionGroup {
  int bn = -1, add = -1, relu = -1, residual = -1, out = -1;  // node indices; -1 = not part of this group
};

struct FusionPlan {
  std::vector<FusionGroup> groups;
  std::vector<int> group_at_out;  // per node: the group that ends at it, or -1
  std::vector<char> interior;     // per node: produced inside a group (the BN, an add followed by its ReLU)
};

FusionPlan plan_fusion(const Graph& g);

// The --sync-bn exchanges in the order the CUDA executor issues them with plan `p`: its forward visits the nodes
// that are not interior upwards (a group at its output), its backward the same downwards.
std::vector<BnExchange> fused_bn_exchanges(const Graph& g, const FusionPlan& p);

}  // namespace stoke::cuda
