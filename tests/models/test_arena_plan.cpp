// The CUDA executor's arena plan (engine/cuda/arena_plan.h), checked without a device: the executor's real
// read/write schedule, fused batch-norm groups included, is played step by step here (independently of the
// planner) and no two tensors it keeps live at the same step may share a byte of the planned layout.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "base/error.h"
#include "engine/batch_size.h"
#include "engine/cuda/arena_plan.h"
#include "engine/op_traits.h"
#include "models/models.h"
#include "tests/gpu/every_op_graph.h"

using namespace stoke;
using cuda::ArenaPlan;

namespace {

// One tensor the executor touches: (what, node or step, scratch slot).
enum class Kind { act, grad, argmax, stats, scratch };
using Key = std::tuple<Kind, int, int>;

// Plays CudaExecutor's forward, loss and backward (engine/cuda/executor_passes.cpp) and records, per tensor, the
// first and last step it is read or written, and how many bytes are touched.
struct Schedule {
  std::map<Key, std::pair<int, int>> live;
  std::map<Key, int64_t> bytes;
  void touch(Key k, int step, int64_t b) {
    auto [it, fresh] = live.try_emplace(k, step, step);
    if (!fresh) it->second = {std::min(it->second.first, step), std::max(it->second.second, step)};
    bytes[k] = std::max(bytes[k], b);
  }
};

Schedule play(const Graph& g, const ArenaPlan& p, int batch) {
  Schedule s;
  const auto& nodes = g.nodes();
  const int N = static_cast<int>(nodes.size());
  const cuda::FusionPlan& f = p.fusion;
  auto size = [&](int i) {
    const Shape3& o = g.node(i).out;
    return int64_t{batch} * o.h * o.w * (i == 0 ? p.input_channels : o.c) * p.element_bytes;
  };
  auto act = [&](int i, int step) { s.touch({Kind::act, i, 0}, step, size(i)); };
  auto stats = [&](int i, int step) { s.touch({Kind::stats, i, 0}, step, int64_t{2} * g.node(i).out.c * 4); };
  act(0, 0);  // augment writes the input
  for (int i = 1; i < N; ++i) {
    if (f.interior[static_cast<size_t>(i)]) continue;
    if (const int gi = f.group_at_out[static_cast<size_t>(i)]; gi >= 0) {
      const cuda::FusionGroup& gr = f.groups[static_cast<size_t>(gi)];
      act(g.node(gr.bn).inputs[0], i);
      if (gr.residual >= 0) act(gr.residual, i);
      stats(gr.bn, i);
      act(i, i);
      continue;
    }
    for (int x : nodes[static_cast<size_t>(i)].inputs) act(x, i);
    act(i, i);
    if (op_traits(nodes[static_cast<size_t>(i)].op).saves_argmax)
      s.touch({Kind::argmax, i, 0}, i, int64_t{batch} * g.node(i).out.size() * 4);
    if (op_traits(nodes[static_cast<size_t>(i)].op).saves_channel_stats) stats(i, i);
  }
  const int out = g.output();
  act(out, N);  // the loss reads the logits and writes their gradient
  s.touch({Kind::grad, out, 0}, N, size(out));
  std::vector<char> has(static_cast<size_t>(N), 0);
  has[static_cast<size_t>(out)] = 1;
  for (int node = out; node >= 1; --node) {
    const int step = 2 * N - node;
    if (!has[static_cast<size_t>(node)]) continue;
    auto take = [&](int x, int slot) {
      if (x == 0) return;
      if (!has[static_cast<size_t>(x)]) {
        has[static_cast<size_t>(x)] = 1;
        s.touch({Kind::grad, x, 0}, step, size(x));
        return;
      }
      s.touch({Kind::scratch, step, slot}, step, size(x));  // then added into the gradient
      s.touch({Kind::grad, x, 0}, step, size(x));
    };
    s.touch({Kind::grad, node, 0}, step, size(node));  // dy
    const Node& nd = nodes[static_cast<size_t>(node)];
    if (const int gi = f.group_at_out[static_cast<size_t>(node)]; gi >= 0) {
      const cuda::FusionGroup& gr = f.groups[static_cast<size_t>(gi)];
      const int x0 = g.node(gr.bn).inputs[0];
      act(x0, step);
      stats(gr.bn, step);
      if (gr.relu >= 0) act(node, step);
      take(x0, 0);
      if (gr.residual >= 0) take(gr.residual, 1);
      continue;
    }
    const int x0 = nd.inputs[0];
    switch (nd.op) {
      case Op::conv:
      case Op::linear:
        act(x0, step);
        take(x0, 0);
        break;
      case Op::batchnorm:
        act(x0, step);
        stats(node, step);
        take(x0, 0);
        break;
      case Op::relu:
        act(node, step);
        take(x0, 0);
        break;
      case Op::maxpool:
        s.touch({Kind::argmax, node, 0}, step, int64_t{batch} * nd.out.size() * 4);
        take(x0, 0);
        break;
      case Op::avgpool:
      case Op::global_avgpool: take(x0, 0); break;
      case Op::add:
        take(nd.inputs[0], 0);
        take(nd.inputs[1], 1);
        break;
      case Op::concat:
        for (int part : nd.inputs) take(part, 0);
        break;
      case Op::input: break;
    }
  }
  return s;
}

// The planned tensor behind a key, or -1.
int planned(const ArenaPlan& p, const Key& k) {
  const auto& [kind, i, slot] = k;
  const MemoryPlan& m = p.activations;
  const int N = static_cast<int>(m.nodes.size());
  switch (kind) {
    case Kind::act: return m.nodes[static_cast<size_t>(i)].activation;
    case Kind::grad: return m.nodes[static_cast<size_t>(i)].gradient;
    case Kind::argmax: return m.nodes[static_cast<size_t>(i)].argmax;
    case Kind::stats: return m.nodes[static_cast<size_t>(i)].bn_stats;
    case Kind::scratch:
      for (size_t t = 0; t < m.tensors.size(); ++t)
        if (m.tensors[t].kind == TensorKind::grad_scratch && m.tensors[t].first == i && m.tensors[t].slot == slot)
          return static_cast<int>(t);
      (void)N;
      return -1;
  }
  return -1;
}

// Every tensor the schedule touches is planned, large enough, and apart from all it is live beside.
void expect_schedule_fits(const Graph& g, int batch, int element_bytes, const std::string& what) {
  cuda::ArenaPlanOptions o;
  o.element_bytes = element_bytes;
  const ArenaPlan p = cuda::plan_arena(g, batch, o);
  const Schedule s = play(g, p, batch);
  struct Placed {
    Key key;
    int first, last;
    int64_t begin, end;
  };
  std::vector<Placed> placed;
  for (const auto& [k, range] : s.live) {
    const int t = planned(p, k);
    ASSERT_GE(t, 0) << what << ": an executor tensor without a plan (kind " << static_cast<int>(std::get<0>(k)) << ", "
                    << std::get<1>(k) << ")";
    const PlannedTensor& pt = p.activations.tensors[static_cast<size_t>(t)];
    ASSERT_GE(pt.bytes, s.bytes.at(k)) << what << ": " << pt.name;
    placed.push_back({k, range.first, range.second, pt.offset, pt.offset + s.bytes.at(k)});
  }
  int64_t pairs = 0;
  for (size_t a = 0; a < placed.size(); ++a)
    for (size_t b = a + 1; b < placed.size(); ++b) {
      const Placed &x = placed[a], &y = placed[b];
      if (x.first > y.last || y.first > x.last) continue;
      ++pairs;
      ASSERT_TRUE(x.end <= y.begin || y.end <= x.begin)
          << what << ": " << p.activations.tensors[static_cast<size_t>(planned(p, x.key))].name << " (steps " << x.first
          << ".." << x.last << ") and " << p.activations.tensors[static_cast<size_t>(planned(p, y.key))].name
          << " (steps " << y.first << ".." << y.last << ") share bytes";
    }
  EXPECT_GT(pairs, 0) << what;
  std::printf("%-24s %zu tensors, %lld live pairs apart; activations %.1f MiB (a buffer each: %.1f MiB)\n",
              what.c_str(), placed.size(), static_cast<long long>(pairs),
              static_cast<double>(p.activations.arena_bytes) / 1048576.0,
              static_cast<double>(p.activations.naive_bytes) / 1048576.0);
}

// What the executor held before it was planned: every non-interior node an activation and a gradient, saved
// tensors, the input, and two scratches as large as the largest activation.
int64_t per_node_bytes(const Graph& g, const ArenaPlan& p) {
  auto r = [](int64_t b) { return cuda::arena_rounded(b); };
  const int64_t B = p.batch, eb = p.element_bytes;
  const Shape3 in = g.input_shape();
  int64_t sum = r(B * in.h * in.w * p.input_channels * eb), largest = 0;
  for (size_t i = 1; i < g.nodes().size(); ++i) {
    const Node& nd = g.nodes()[i];
    const int64_t count = B * nd.out.size();
    largest = std::max(largest, count);
    if (!p.fusion.interior[i]) sum += 2 * r(count * eb);
    if (op_traits(nd.op).saves_argmax) sum += r(count * 4);
    if (op_traits(nd.op).saves_channel_stats) sum += 2 * r(int64_t{nd.out.c} * 4);
  }
  return sum + 2 * r(largest * eb);
}

}  // namespace

TEST(ArenaPlan, TheExecutorsScheduleNeverOverlapsLiveTensors) {
  for (int eb : {2, 4}) {
    expect_schedule_fits(every_op_graph(true), 5, eb, str("every-op ", eb));
    expect_schedule_fits(every_op_graph(false), 3, eb, str("every-op-avgpool ", eb));
  }
  expect_schedule_fits(build_model("resnet18", {64, 64, 3}, 10), 3, 2, "resnet18@64");
  expect_schedule_fits(build_model("resnet50", {64, 64, 3}, 10), 2, 2, "resnet50@64");
  expect_schedule_fits(build_model("densenet121", {64, 64, 1}, 6), 2, 2, "densenet121@64");
}

// The targets: at the MedNIST and ImageNet settings in bf16, activations at least 2x below a buffer per node.
TEST(ArenaPlan, ActivationsAtLeastHalveThePerNodeSum) {
  struct Case {
    const char* model;
    Shape3 in;
    int classes, batch;
  };
  for (const Case& c : {Case{"densenet121", {64, 64, 1}, 6, 300}, Case{"resnet50", {224, 224, 3}, 1000, 256}}) {
    const Graph g = build_model(c.model, c.in, c.classes);
    cuda::ArenaPlanOptions o;
    o.element_bytes = 2;
    o.state_sets = 1;
    const ArenaPlan p = cuda::plan_arena(g, c.batch, o);
    const int64_t before = per_node_bytes(g, p), after = p.activations.arena_bytes;
    std::printf(
        "%s %dx%dx%d batch %d bf16: activations %lld B (%.1f MiB), a buffer per node %lld B (%.1f MiB): %.2fx\n",
        c.model, c.in.h, c.in.w, c.in.c, c.batch, static_cast<long long>(after), after / 1048576.0,
        static_cast<long long>(before), before / 1048576.0, static_cast<double>(before) / after);
    EXPECT_LE(2 * after, before) << c.model;
    EXPECT_GE(after, p.activations.peak_live_bytes) << c.model;
    // --batch-size auto counts this very plan.
    MemoryTarget t;
    t.cuda = true;
    t.element_bytes = 2;
    EXPECT_EQ(planned_training_bytes(g, c.batch, t), p.total_bytes()) << c.model;
    EXPECT_EQ(training_memory(g, c.batch, t).activations, after) << c.model;
  }
}
