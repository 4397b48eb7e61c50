#include "engine/cuda/fusion.h"

namespace stoke::cuda {

namespace {

// Whether a batch norm other than `bn` lies between `bn` and `out`: fusing would move bn's collectives past it.
bool batchnorm_between(const std::vector<Node>& nodes, int bn, int out) {
  for (int i = bn + 1; i < out; ++i)
    if (nodes[static_cast<size_t>(i)].op == Op::batchnorm) return true;
  return false;
}

}  // namespace

// Decides which batch norms run fused with what follows them (the graph itself is not changed).
FusionPlan plan_fusion(const Graph& g) {
  FusionPlan p;
  const auto& nodes = g.nodes();
  const size_t N = nodes.size();
  std::vector<std::vector<int>> users(N);
  for (size_t i = 0; i < N; ++i)
    for (int j : nodes[i].inputs) users[static_cast<size_t>(j)].push_back(static_cast<int>(i));
  p.group_at_out.assign(N, -1);
  p.interior.assign(N, 0);
  std::vector<char> claimed(N, 0);
  for (size_t b = 1; b < N; ++b) {
    if (nodes[b].op != Op::batchnorm || users[b].size() != 1) continue;
    const int c = users[b][0];
    const Node& cn = nodes[static_cast<size_t>(c)];
    if (claimed[static_cast<size_t>(c)]) continue;
    FusionGroup gr;
    gr.bn = static_cast<int>(b);
    if (cn.op == Op::relu) {
      gr.relu = gr.out = c;
    } else if (cn.op == Op::add && cn.inputs.size() == 2 && cn.inputs[0] != cn.inputs[1]) {
      gr.add = gr.out = c;
      gr.residual = cn.inputs[0] == gr.bn ? cn.inputs[1] : cn.inputs[0];
      const auto& au = users[static_cast<size_t>(c)];
      if (au.size() == 1 && nodes[static_cast<size_t>(au[0])].op == Op::relu) gr.relu = gr.out = au[0];
    } else {
      continue;
    }
    // A residual branch with its own batch norm after this one (a ResNet shortcut built after the main branch):
    // leave this one plain; that batch norm, the later of the two, fuses with the add instead.
    if (batchnorm_between(nodes, gr.bn, gr.out)) continue;
    claimed[static_cast<size_t>(c)] = 1;
    if (gr.relu >= 0) claimed[static_cast<size_t>(gr.relu)] = 1;
    p.interior[b] = 1;
    if (gr.add >= 0 && gr.out != gr.add) p.interior[static_cast<size_t>(gr.add)] = 1;
    p.group_at_out[static_cast<size_t>(gr.out)] = static_cast<int>(p.groups.size());
    p.groups.push_back(gr);
  }
  return p;
}

std::vector<BnExchange> fused_bn_exchanges(const Graph& g, const FusionPlan& p) {
  const auto& nodes = g.nodes();
  // The batch norm whose statistics the executor computes at node i, or -1.
  auto bn_at = [&](size_t i) {
    if (p.interior[i]) return -1;
    if (const int gi = p.group_at_out[i]; gi >= 0) return p.groups[static_cast<size_t>(gi)].bn;
    return nodes[i].op == Op::batchnorm ? static_cast<int>(i) : -1;
  };
  std::vector<BnExchange> out;
  for (size_t i = 1; i < nodes.size(); ++i)
    if (const int b = bn_at(i); b >= 0) {
      const int c = g.node(b).out.c;
      out.push_back({b, false, c + 1});
      out.push_back({b, false, c});
    }
  for (size_t i = nodes.size(); i-- > 1;)
    if (const int b = bn_at(i); b >= 0) out.push_back({b, true, 2 * g.node(b).out.c + 1});
  return out;
}

}  // namespace stoke::cuda
