#include "engine/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "base/error.h"
#include "engine/op_traits.h"

namespace stoke {

const char* tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::activation: return "activation";
    case TensorKind::gradient: return "gradient";
    case TensorKind::argmax: return "argmax";
    case TensorKind::bn_stats: return "bn_stats";
    case TensorKind::grad_scratch: return "grad_scratch";
    case TensorKind::shared_buffer: return "shared_buffer";
  }
  return "?";
}

namespace {

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

// One zero-copy concat chain under construction.
struct Share {
  int used = 0;              // channels assigned so far
  std::vector<int> members;  // nodes, in the order they were given slices
  std::vector<int> offsets;  // their channel offsets
};

// Greedy best fit, largest first: each allocation goes into the smallest gap (between the allocations already
// placed that are live at the same time) that holds it, else on top of them.
int64_t place(std::vector<PlannedTensor>& ts, const MemoryPlan& plan) {
  std::vector<int> order;
  for (size_t i = 0; i < ts.size(); ++i)
    if (ts[i].is_allocation()) order.push_back(static_cast<int>(i));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const PlannedTensor &x = ts[static_cast<size_t>(a)], &y = ts[static_cast<size_t>(b)];
    if (x.bytes != y.bytes) return x.bytes > y.bytes;
    return x.first < y.first;
  });
  std::vector<int> placed;
  std::vector<std::pair<int64_t, int64_t>> busy;  // [begin, end) of the placed ones live alongside
  int64_t arena = 0;
  for (int idx : order) {
    PlannedTensor& t = ts[static_cast<size_t>(idx)];
    const int64_t size = plan.allocated_size(t);
    busy.clear();
    for (int p : placed) {
      const PlannedTensor& o = ts[static_cast<size_t>(p)];
      if (o.first <= t.last && t.first <= o.last) busy.emplace_back(o.offset, o.offset + plan.allocated_size(o));
    }
    std::sort(busy.begin(), busy.end());
    int64_t best = -1, best_gap = 0, cursor = 0;
    for (const auto& [b, e] : busy) {
      if (b > cursor) {
        const int64_t gap = b - cursor;
        if (gap >= size && (best < 0 || gap < best_gap)) best = cursor, best_gap = gap;
      }
      cursor = std::max(cursor, e);
    }
    t.offset = best >= 0 ? best : cursor;
    arena = std::max(arena, t.offset + size);
    placed.push_back(idx);
  }
  return arena;
}

// The zero-copy concat chains of a graph (see memory_plan.h): which node joins which chain (share_of, -1 for none)
// at which channel offset.
std::vector<Share> find_concat_chains(const std::vector<Node>& nodes, std::vector<int>& share_of,
                                      std::vector<int>& share_offset) {
  const int n_nodes = static_cast<int>(nodes.size());
  auto node_at = [&](int i) -> const Node& { return nodes[static_cast<size_t>(i)]; };
  std::vector<Share> shares;
  std::vector<int> in_concats(static_cast<size_t>(n_nodes), 0);
  for (const Node& nd : nodes)
    if (nd.op == Op::concat)
      for (int i : nd.inputs) ++in_concats[static_cast<size_t>(i)];
  auto free_member = [&](int i) {
    return i > 0 && in_concats[static_cast<size_t>(i)] == 1 && share_of[static_cast<size_t>(i)] < 0;
  };
  for (int c = 0; c < n_nodes; ++c) {
    const Node& nd = node_at(c);
    if (nd.op != Op::concat) continue;
    const int a = nd.inputs[0];
    bool rest_ok = true;
    for (size_t p = 1; p < nd.inputs.size(); ++p) rest_ok = rest_ok && free_member(nd.inputs[p]);
    if (!rest_ok) continue;
    int s = -1;
    const int sa = share_of[static_cast<size_t>(a)];
    if (node_at(a).op == Op::concat && sa >= 0 && in_concats[static_cast<size_t>(a)] == 1 &&
        shares[static_cast<size_t>(sa)].used == node_at(a).out.c && share_offset[static_cast<size_t>(a)] == 0) {
      s = sa;  // extend a's chain
    } else if (free_member(a)) {
      s = static_cast<int>(shares.size());
      shares.emplace_back();
      Share& sh = shares.back();
      sh.members.push_back(a);
      sh.offsets.push_back(0);
      sh.used = node_at(a).out.c;
      share_of[static_cast<size_t>(a)] = s;
    } else {
      continue;
    }
    Share& sh = shares[static_cast<size_t>(s)];
    for (size_t p = 1; p < nd.inputs.size(); ++p) {
      const int b = nd.inputs[p];
      sh.members.push_back(b);
      sh.offsets.push_back(sh.used);
      share_of[static_cast<size_t>(b)] = s;
      share_offset[static_cast<size_t>(b)] = sh.used;
      sh.used += node_at(b).out.c;
    }
    sh.members.push_back(c);  // the concat itself: the prefix [0, used)
    sh.offsets.push_back(0);
    share_of[static_cast<size_t>(c)] = s;
    share_offset[static_cast<size_t>(c)] = 0;
  }
  return shares;
}

int add_tensor(std::vector<PlannedTensor>& T, const std::vector<Node>& nodes, TensorKind kind, std::string name,
               int node, int64_t bytes, int first, int last) {
  PlannedTensor t;
  t.kind = kind;
  t.name = std::move(name);
  t.node = node;
  t.bytes = bytes;
  t.first = first;
  t.last = last;
  if (node >= 0) t.channels = t.row_channels = nodes[static_cast<size_t>(node)].out.c;
  T.push_back(std::move(t));
  return static_cast<int>(T.size()) - 1;
}

// Zero-copy concat chains: one allocation per chain (and one for its gradients), whose members become views at
// their channel offsets.
void view_concat_chains(MemoryPlan& plan, const std::vector<Node>& nodes, const std::vector<Share>& shares,
                        const std::vector<int>& share_offset, int batch, int element_bytes) {
  auto& T = plan.tensors;
  for (const Share& sh : shares) {
    const Shape3 sp = nodes[static_cast<size_t>(sh.members.front())].out;
    const int64_t bytes = int64_t{sp.h} * sp.w * sh.used * batch * element_bytes;
    for (TensorKind which : {TensorKind::activation, TensorKind::gradient}) {
      int first = plan.steps, last = -1;
      std::vector<int> views;
      for (int m : sh.members) {
        const NodeMemory& nm = plan.nodes[static_cast<size_t>(m)];
        const int v = which == TensorKind::activation ? nm.activation : nm.gradient;
        if (v < 0) continue;
        views.push_back(v);
        first = std::min(first, T[static_cast<size_t>(v)].first);
        last = std::max(last, T[static_cast<size_t>(v)].last);
      }
      if (views.empty()) continue;
      const std::string name = str(which == TensorKind::activation ? "" : "d ", "shared ",
                                   nodes[static_cast<size_t>(sh.members.front())].name, " .. ",
                                   nodes[static_cast<size_t>(sh.members.back())].name);
      const int buf = add_tensor(T, nodes, TensorKind::shared_buffer, name, -1, bytes, first, last);
      T[static_cast<size_t>(buf)].channels = T[static_cast<size_t>(buf)].row_channels = sh.used;
      for (int v : views) {
        PlannedTensor& t = T[static_cast<size_t>(v)];
        t.view_of = buf;
        t.channel_offset = share_offset[static_cast<size_t>(t.node)];
        t.row_channels = sh.used;
      }
    }
  }
}

// Offsets for every allocation (place), then for the views inside them, and the peak of live bytes over the steps.
void lay_out(MemoryPlan& plan, int element_bytes) {
  auto& T = plan.tensors;
  plan.arena_bytes = place(T, plan);
  for (PlannedTensor& t : T)
    if (!t.is_allocation())
      t.offset = T[static_cast<size_t>(t.view_of)].offset + int64_t{t.channel_offset} * element_bytes;
  std::vector<int64_t> live(static_cast<size_t>(plan.steps) + 1, 0);
  for (const PlannedTensor& t : T)
    if (t.is_allocation())
      for (int s = t.first; s <= t.last; ++s) live[static_cast<size_t>(s)] += plan.allocated_size(t);
  for (int64_t b : live) plan.peak_live_bytes = std::max(plan.peak_live_bytes, b);
}

// The gradients a backward step writes, in the order it writes them: the inputs of its op, or for a fused group
// (nodes running at step j) the inputs from outside the group, member by member.
std::vector<int> gradient_targets(const std::vector<Node>& nodes, const std::vector<int>& at, int j) {
  std::vector<int> targets;
  for (int m = 0; m <= j; ++m) {
    if (at[static_cast<size_t>(m)] != j) continue;
    for (int x : nodes[static_cast<size_t>(m)].inputs)
      if (at[static_cast<size_t>(x)] != j) targets.push_back(x);
  }
  return targets;
}

}  // namespace

int64_t MemoryPlan::allocated_size(const PlannedTensor& t) const { return round_up(t.bytes, alignment); }

MemoryPlan plan_memory(const Graph& graph, int batch, const MemoryPlanOptions& opt, const PlanSchedule& sched) {
  STOKE_CHECK(batch >= 1 && opt.element_bytes >= 1 && opt.alignment >= 1);
  STOKE_CHECK(sched.scratch_slots == 1 || sched.scratch_slots == 2, "scratch_slots ", sched.scratch_slots);
  const auto& nodes = graph.nodes();
  const int n_nodes = static_cast<int>(nodes.size());
  const int out = graph.output();
  const bool train = opt.mode == PlanMode::train;
  const int loss_step = n_nodes;
  auto node_at = [&](int i) -> const Node& { return nodes[static_cast<size_t>(i)]; };
  // at[i]: the node whose steps compute node i (fused groups run at their output node).
  std::vector<int> at = sched.runs_at;
  if (at.empty())
    for (int i = 0; i < n_nodes; ++i) at.push_back(i);
  STOKE_CHECK(static_cast<int>(at.size()) == n_nodes, "runs_at of ", at.size(), " nodes for ", n_nodes);
  for (int i = 0; i < n_nodes; ++i) {
    const int a = at[static_cast<size_t>(i)];
    STOKE_CHECK(a >= i && a < n_nodes && at[static_cast<size_t>(a)] == a, "node ", i, " runs at ", a);
  }
  auto fused = [&](int i) { return at[static_cast<size_t>(i)] != i; };
  auto fwd = [&](int i) { return at[static_cast<size_t>(i)]; };
  auto bwd = [&](int i) { return 2 * n_nodes - at[static_cast<size_t>(i)]; };
  auto dense_bytes = [&](int i) {
    const Shape3& s = node_at(i).out;
    const int64_t c = i == 0 && sched.input_channels > 0 ? sched.input_channels : s.c;
    return int64_t{s.h} * s.w * c * batch * opt.element_bytes;
  };

  MemoryPlan plan;
  plan.mode = opt.mode;
  plan.batch = batch;
  plan.alignment = opt.alignment;
  plan.steps = train ? 2 * n_nodes : n_nodes + 1;
  plan.nodes.assign(static_cast<size_t>(n_nodes), NodeMemory{});

  // Who reads what: consumers in order, and which nodes' backward runs (those that reach the output).
  std::vector<std::vector<int>> consumers(static_cast<size_t>(n_nodes));
  for (int j = 0; j < n_nodes; ++j)
    for (int i : node_at(j).inputs) consumers[static_cast<size_t>(i)].push_back(j);
  std::vector<char> reach(static_cast<size_t>(n_nodes), 0);
  reach[static_cast<size_t>(out)] = 1;
  for (int j = out; j >= 0; --j)
    if (reach[static_cast<size_t>(j)])
      for (int i : node_at(j).inputs) reach[static_cast<size_t>(i)] = 1;
  auto needs_grad = [&](int i) { return train && i > 0 && reach[static_cast<size_t>(i)] && !fused(i); };

  // ---- zero-copy concat chains -------------------------------------------------------------------------
  std::vector<int> share_of(static_cast<size_t>(n_nodes), -1), share_offset(static_cast<size_t>(n_nodes), 0);
  const std::vector<Share> shares =
      opt.share_concat ? find_concat_chains(nodes, share_of, share_offset) : std::vector<Share>{};

  // ---- lifetimes ---------------------------------------------------------------------------------------
  auto& T = plan.tensors;
  auto add = [&](TensorKind kind, std::string name, int node, int64_t bytes, int first, int last) {
    return add_tensor(T, nodes, kind, std::move(name), node, bytes, first, last);
  };

  for (int i = 0; i < n_nodes; ++i) {
    const Node& nd = node_at(i);
    NodeMemory& nm = plan.nodes[static_cast<size_t>(i)];
    // The activation: from its forward to its last reader.
    if (!fused(i)) {
      int last = i;
      for (int j : consumers[static_cast<size_t>(i)]) {
        last = std::max(last, fwd(j));
        if (train && reach[static_cast<size_t>(j)] && op_traits(node_at(j).op).backward_reads_input)
          last = std::max(last, bwd(j));
      }
      if (i == out) last = std::max(last, loss_step);
      if (train && reach[static_cast<size_t>(i)] && op_traits(nd.op).backward_reads_output)
        last = std::max(last, bwd(i));
      nm.activation = add(TensorKind::activation, nd.name, i, dense_bytes(i), i, last);
    }

    if (op_traits(nd.op).saves_argmax)  // int32 winners; in eval only scratch for the op
      nm.argmax = add(TensorKind::argmax, nd.name + ".argmax", i, nd.out.size() * batch * 4, fwd(i),
                      train && reach[static_cast<size_t>(i)] ? bwd(i) : fwd(i));
    if (train && op_traits(nd.op).saves_channel_stats)
      nm.bn_stats = add(TensorKind::bn_stats, nd.name + ".saved", i, int64_t{2} * nd.out.c * 4, fwd(i),
                        reach[static_cast<size_t>(i)] ? bwd(i) : fwd(i));

    // The gradient: from the backward of its last reaching consumer (the loss for the output) to its own.
    if (needs_grad(i)) {
      int born = i == out ? loss_step : bwd(i);
      for (int j : consumers[static_cast<size_t>(i)])
        if (reach[static_cast<size_t>(j)]) born = std::min(born, bwd(j));
      nm.gradient = add(TensorKind::gradient, "d " + nd.name, i, dense_bytes(i), born, bwd(i));
    }
  }

  // Per backward step (per slot), the largest second contribution to a gradient that already holds one.
  if (train) {
    for (int j = out; j >= 1; --j) {
      if (!reach[static_cast<size_t>(j)] || fused(j)) continue;
      int64_t need[2] = {0, 0};
      const std::vector<int> ins = gradient_targets(nodes, at, j);
      const bool one_slot = sched.scratch_slots == 1 || (node_at(j).op == Op::concat && ins == node_at(j).inputs);
      for (size_t p = 0; p < ins.size(); ++p) {
        const int i = ins[p];
        if (!needs_grad(i)) continue;
        if (node_at(j).op == Op::concat && share_of[static_cast<size_t>(j)] >= 0 &&
            share_of[static_cast<size_t>(i)] == share_of[static_cast<size_t>(j)])
          continue;  // a shared concat's backward is a no-op: its inputs' gradients are slices of its own
        bool earlier = std::find(ins.begin(), ins.begin() + static_cast<std::ptrdiff_t>(p), i) !=
                       ins.begin() + static_cast<std::ptrdiff_t>(p);
        for (int k : consumers[static_cast<size_t>(i)])
          earlier = earlier || (fwd(k) > j && reach[static_cast<size_t>(k)]);
        const size_t slot = one_slot ? 0 : std::min<size_t>(p, 1);
        if (earlier) need[slot] = std::max(need[slot], dense_bytes(i));
      }
      for (int slot = 0; slot < 2; ++slot) {
        if (need[slot] == 0) continue;
        const int s = 2 * n_nodes - j;
        const int t = add(TensorKind::grad_scratch, str("scratch @", s, slot > 0 ? " #1" : ""), -1, need[slot], s, s);
        T[static_cast<size_t>(t)].slot = slot;
      }
    }
  }

  // Naive: everything above in its own buffer (concats dense), and one scratch as large as the largest
  // gradient — before any sharing rewrites the table.
  {
    int64_t naive = 0, largest_grad = 0;
    for (const PlannedTensor& t : T) {
      if (t.kind == TensorKind::grad_scratch) continue;
      naive += plan.allocated_size(t);
      if (t.kind == TensorKind::gradient) largest_grad = std::max(largest_grad, t.bytes);
    }
    plan.naive_bytes = naive + (train ? round_up(largest_grad, opt.alignment) : 0);
  }

  // ---- shared buffers, then the layout ------------------------------------------------------------------
  view_concat_chains(plan, nodes, shares, share_offset, batch, opt.element_bytes);
  lay_out(plan, opt.element_bytes);
  return plan;
}

std::string MemoryPlan::sharing_summary(const Graph& g) const {
  std::ostringstream os;
  for (size_t b = 0; b < tensors.size(); ++b) {
    const PlannedTensor& buf = tensors[b];
    if (buf.kind != TensorKind::shared_buffer) continue;
    int h = 0, w = 0;
    std::ostringstream members;
    for (const PlannedTensor& t : tensors) {
      if (t.view_of != static_cast<int>(b)) continue;
      h = g.node(t.node).out.h;
      w = g.node(t.node).out.w;
      members << "  " << g.node(t.node).name << " [" << t.channel_offset << "," << t.channel_offset + t.channels << ")";
    }
    os << buf.name << " (" << h << "x" << w << "x" << buf.channels << ", " << buf.bytes << " B):" << members.str()
       << "\n";
  }
  return os.str();
}

std::string MemoryPlan::summary() const {
  auto mb = [](int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  char line[256];
  std::snprintf(line, sizeof line, "%s plan, batch %d: arena %.1f MB (live peak %.1f MB), naive %.1f MB (%.2fx)",
                mode == PlanMode::train ? "train" : "eval", batch, mb(arena_bytes), mb(peak_live_bytes),
                mb(naive_bytes),
                arena_bytes > 0 ? static_cast<double>(naive_bytes) / static_cast<double>(arena_bytes) : 0.0);
  return line;
}

}  // namespace stoke
