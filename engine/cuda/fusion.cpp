#include "engine/cuda/fusion.h"

namespace stoke::cuda {

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
    claimed[static_cast<size_t>(c)] = 1;
    if (gr.relu >= 0) claimed[static_cast<size_t>(gr.relu)] = 1;
    p.interior[b] = 1;
    if (gr.add >= 0 && gr.out != gr.add) p.interior[static_cast<size_t>(gr.add)] = 1;
    p.group_at_out[static_cast<size_t>(gr.out)] = static_cast<int>(p.groups.size());
    p.groups.push_back(gr);
  }
  return p;
}

}  // namespace stoke::cuda
