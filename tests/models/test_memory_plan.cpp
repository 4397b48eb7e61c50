// The activation memory planner: no two live tensors share bytes (brute force over all pairs, every model,
// train and eval, with and without zero-copy concat), every read and write of a step falls inside the
// tensor's planned lifetime and lifetimes are tight (checked against an independent list of accesses),
// shared concat buffers are laid out as documented, and the plans beat the naive sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/graph.h"
#include "engine/memory_plan.h"
#include "models/models.h"

using namespace stoke;

namespace {

struct ModelAt {
  std::string model;
  Shape3 in;
};

std::vector<ModelAt> all_models() {
  return {{"small-cnn", {28, 28, 1}},  {"small-cnn-wide", {28, 28, 1}}, {"resnet18", {64, 64, 3}},
          {"resnet18", {224, 224, 3}}, {"resnet34", {96, 96, 3}},        {"resnet50", {64, 64, 1}},
          {"resnet50", {224, 224, 3}}, {"densenet121", {64, 64, 1}},     {"densenet121", {224, 224, 3}}};
}

// A graph with every routing oddity: fan-out, a residual add, a concat repeating an input, a dead branch.
Graph routing_graph() {
  Graph g({7, 6, 3}, "routing");
  int x = g.conv(g.input(), 5, 3, 1, 1, true, "c1");
  x = g.batchnorm(x, "bn1");
  int y = g.relu(g.conv(x, 5, 3, 1, 1, false, "c2"));
  int r = g.add(x, y);
  int a = g.conv(r, 4, 1, 1, 0, false, "c3");
  int cat = g.concat({r, a, r});
  int p = g.maxpool(cat, 2, 2, 1);
  int gp = g.global_avgpool(p);
  g.linear(p, 3, "fc_dead");
  g.linear(gp, 3, "fc");
  return g;
}

// Pairs of allocations live in the same step must not share a byte.
void expect_no_overlap(const MemoryPlan& plan, const std::string& what) {
  const auto& T = plan.tensors;
  int64_t pairs = 0;
  for (size_t a = 0; a < T.size(); ++a) {
    if (!T[a].is_allocation()) continue;
    ASSERT_GE(T[a].offset, 0) << what;
    ASSERT_EQ(T[a].offset % plan.alignment, 0) << what;
    ASSERT_LE(T[a].offset + plan.allocated_size(T[a]), plan.arena_bytes) << what;
    for (size_t b = a + 1; b < T.size(); ++b) {
      if (!T[b].is_allocation()) continue;
      const bool live_together = T[a].first <= T[b].last && T[b].first <= T[a].last;
      if (!live_together) continue;
      ++pairs;
      const bool disjoint = T[a].offset + plan.allocated_size(T[a]) <= T[b].offset ||
                            T[b].offset + plan.allocated_size(T[b]) <= T[a].offset;
      ASSERT_TRUE(disjoint) << what << ": " << T[a].name << " [" << T[a].first << "," << T[a].last << "] and "
                            << T[b].name << " [" << T[b].first << "," << T[b].last << "] overlap";
    }
  }
  EXPECT_GT(pairs, 0) << what;
}

// Views: inside their buffer in channels and in time, at the documented address; the writers of one buffer
// (its non-concat members) own disjoint slices that tile it, and every concat member is a prefix.
void expect_views_consistent(const Graph& g, const MemoryPlan& plan, int element_bytes, const std::string& what) {
  const auto& T = plan.tensors;
  for (size_t b = 0; b < T.size(); ++b) {
    if (T[b].kind != TensorKind::shared_buffer) continue;
    std::vector<int> owner(static_cast<size_t>(T[b].channels), -1);
    for (size_t v = 0; v < T.size(); ++v) {
      const PlannedTensor& t = T[v];
      if (t.view_of != static_cast<int>(b)) continue;
      EXPECT_TRUE(t.kind == TensorKind::activation || t.kind == TensorKind::gradient) << what;
      EXPECT_GE(t.first, T[b].first) << what << " " << t.name;
      EXPECT_LE(t.last, T[b].last) << what << " " << t.name;
      EXPECT_EQ(t.row_channels, T[b].channels) << what;
      EXPECT_EQ(t.channels, g.node(t.node).out.c) << what;
      EXPECT_LE(t.channel_offset + t.channels, T[b].channels) << what << " " << t.name;
      EXPECT_EQ(t.offset, T[b].offset + int64_t{t.channel_offset} * element_bytes) << what;
      if (g.node(t.node).op == Op::concat) {
        EXPECT_EQ(t.channel_offset, 0) << what << " " << t.name;
        continue;
      }
      for (int c = t.channel_offset; c < t.channel_offset + t.channels; ++c) {
        EXPECT_EQ(owner[static_cast<size_t>(c)], -1)
            << what << ": channel " << c << " of " << T[b].name << " written by two nodes";
        owner[static_cast<size_t>(c)] = t.node;
      }
    }
    for (int o : owner) EXPECT_GE(o, 0) << what << ": a channel of " << T[b].name << " nobody writes";
  }
}

// Every tensor access of one step, listed from the ops' semantics (independently of the planner), must lie
// inside the tensor's lifetime — and the first and last access must be its lifetime's ends (no waste).
void expect_lifetimes_cover_accesses(const Graph& g, const MemoryPlan& plan, bool train, const std::string& what) {
  const auto& nodes = g.nodes();
  const int N = static_cast<int>(nodes.size()), out = g.output();
  std::vector<char> live(nodes.size(), 0);  // backward runs for nodes feeding the output
  live[static_cast<size_t>(out)] = 1;
  for (int j = out; j >= 0; --j)
    if (live[static_cast<size_t>(j)])
      for (int i : nodes[static_cast<size_t>(j)].inputs) live[static_cast<size_t>(i)] = 1;

  std::vector<int> lo(plan.tensors.size(), 1 << 30), hi(plan.tensors.size(), -1);
  auto touch = [&](int tensor, int step) {
    ASSERT_GE(tensor, 0) << what << ": a tensor accessed at step " << step << " is not planned";
    lo[static_cast<size_t>(tensor)] = std::min(lo[static_cast<size_t>(tensor)], step);
    hi[static_cast<size_t>(tensor)] = std::max(hi[static_cast<size_t>(tensor)], step);
  };
  auto nm = [&](int i) { return plan.nodes[static_cast<size_t>(i)]; };
  touch(nm(0).activation, 0);
  for (int i = 1; i < N; ++i) {
    const Node& nd = nodes[static_cast<size_t>(i)];
    for (int x : nd.inputs) touch(nm(x).activation, i);
    touch(nm(i).activation, i);
    if (nd.op == Op::maxpool) touch(nm(i).argmax, i);
    if (train && nd.op == Op::batchnorm) touch(nm(i).bn_stats, i);
  }
  touch(nm(out).activation, N);  // the loss (or the caller) reads the logits
  if (train) {
    touch(nm(out).gradient, N);
    for (int j = out; j >= 1; --j) {
      if (!live[static_cast<size_t>(j)]) continue;
      const Node& nd = nodes[static_cast<size_t>(j)];
      const int s = 2 * N - j;
      touch(nm(j).gradient, s);
      if (nd.op == Op::conv || nd.op == Op::linear || nd.op == Op::batchnorm) touch(nm(nd.inputs[0]).activation, s);
      if (nd.op == Op::batchnorm) touch(nm(j).bn_stats, s);
      if (nd.op == Op::relu) touch(nm(j).activation, s);
      if (nd.op == Op::maxpool) touch(nm(j).argmax, s);
      for (int x : nd.inputs)
        if (x > 0) touch(nm(x).gradient, s);
    }
  }
  for (size_t t = 0; t < plan.tensors.size(); ++t) {
    const PlannedTensor& pt = plan.tensors[t];
    if (pt.kind == TensorKind::shared_buffer || pt.kind == TensorKind::grad_scratch) continue;
    ASSERT_GE(hi[t], 0) << what << ": " << pt.name << " is planned but never accessed";
    EXPECT_EQ(pt.first, lo[t]) << what << ": " << pt.name;
    EXPECT_EQ(pt.last, hi[t]) << what << ": " << pt.name;
  }
  for (int i = 1; i < N; ++i)  // dead branches have no gradient; everything feeding the loss has one
    if (train) {
      EXPECT_EQ(nm(i).gradient >= 0, live[static_cast<size_t>(i)] != 0) << what << " node " << i;
    }
}

}  // namespace

TEST(MemoryPlan, NoTwoLiveTensorsOverlapInAnyModel) {
  std::vector<ModelAt> setups = all_models();
  for (const ModelAt& s : setups) {
    Graph g = build_model(s.model, s.in, 6);
    for (PlanMode mode : {PlanMode::train, PlanMode::eval})
      for (bool share : {true, false}) {
        MemoryPlanOptions o;
        o.mode = mode;
        o.share_concat = share;
        o.element_bytes = share ? 4 : 2;
        const std::string what = s.model + "@" + std::to_string(s.in.h) +
                                 (mode == PlanMode::train ? " train" : " eval") + (share ? " shared" : " dense");
        MemoryPlan p = plan_memory(g, 3, o);
        expect_no_overlap(p, what);
        expect_views_consistent(g, p, o.element_bytes, what);
        expect_lifetimes_cover_accesses(g, p, mode == PlanMode::train, what);
        EXPECT_LE(p.arena_bytes, p.naive_bytes) << what;
        EXPECT_GE(p.arena_bytes, p.peak_live_bytes) << what;
      }
  }
}

TEST(MemoryPlan, RoutingGraph) {
  Graph g = routing_graph();
  for (PlanMode mode : {PlanMode::train, PlanMode::eval}) {
    MemoryPlanOptions o;
    o.mode = mode;
    o.alignment = 4;  // tiny tensors: make reuse visible
    MemoryPlan p = plan_memory(g, 2, o);
    const std::string what = mode == PlanMode::train ? "routing train" : "routing eval";
    expect_no_overlap(p, what);
    expect_lifetimes_cover_accesses(g, p, mode == PlanMode::train, what);
    EXPECT_LT(p.arena_bytes, p.naive_bytes) << what;
    for (const PlannedTensor& t : p.tensors)
      EXPECT_TRUE(t.is_allocation()) << "concat({r, a, r}) repeats r: no sharing";
  }
  // r reaches the loss through the add's consumer c3 and the concat (twice): its second and third
  // contributions need scratch; the concat's step needs scratch of r's size.
  MemoryPlan p = plan_memory(g, 2);
  int scratch = 0;
  for (const PlannedTensor& t : p.tensors) scratch += t.kind == TensorKind::grad_scratch;
  EXPECT_GE(scratch, 2);
}

TEST(MemoryPlan, LifetimesFollowWhatBackwardNeeds) {
  Graph g = build_model("resnet18", {64, 64, 3}, 10);
  const int N = static_cast<int>(g.nodes().size());
  MemoryPlan train = plan_memory(g, 8);
  MemoryPlan eval = plan_memory(g, 8, {PlanMode::eval});
  auto act = [&](const MemoryPlan& p, int i) {
    return p.tensors[static_cast<size_t>(p.nodes[static_cast<size_t>(i)].activation)];
  };
  // Nodes 1..3: conv1, bn1, relu. The image stays for conv1's weight gradient, the conv output for bn1's
  // backward; bn1's output (the ReLU's input) dies at the ReLU, whose own output stays for its backward.
  ASSERT_EQ(g.node(1).op, Op::conv);
  ASSERT_EQ(g.node(2).op, Op::batchnorm);
  ASSERT_EQ(g.node(3).op, Op::relu);
  EXPECT_EQ(act(train, 0).last, 2 * N - 1);
  EXPECT_EQ(act(train, 1).last, 2 * N - 2);
  EXPECT_EQ(act(train, 2).last, 3);
  EXPECT_EQ(act(train, 3).last, 2 * N - 3);
  EXPECT_EQ(act(eval, 0).last, 1);
  EXPECT_EQ(act(eval, 1).last, 2);
  EXPECT_EQ(act(eval, 2).last, 3);
  EXPECT_EQ(eval.nodes[1].gradient, -1);
  EXPECT_EQ(train.tensors[static_cast<size_t>(train.nodes[1].gradient)].first, 2 * N - 2);  // from bn1's backward
}

TEST(MemoryPlan, EvalPlanIsMuchSmallerThanNaive) {
  Graph g = build_model("resnet50", {224, 224, 3}, 1000);
  MemoryPlan eval = plan_memory(g, 128, {PlanMode::eval});
  MemoryPlan train = plan_memory(g, 128);
  std::printf("resnet50@224 batch 128: %s\n                         %s\n", train.summary().c_str(),
              eval.summary().c_str());
  EXPECT_LT(eval.arena_bytes * 10, eval.naive_bytes);
  EXPECT_LT(train.arena_bytes * 10, train.naive_bytes * 6);  // training keeps most activations for backward
  EXPECT_LT(eval.arena_bytes * 5, train.arena_bytes);
  // The greedy placement stays close to the lower bound.
  EXPECT_LE(static_cast<double>(eval.arena_bytes), 1.25 * static_cast<double>(eval.peak_live_bytes));
  EXPECT_LE(static_cast<double>(train.arena_bytes), 1.25 * static_cast<double>(train.peak_live_bytes));
}

TEST(MemoryPlan, DenseNetConcatsShareOneBufferPerBlock) {
  Graph g = build_model("densenet121", {64, 64, 1}, 6);
  MemoryPlan p = plan_memory(g, 4);
  MemoryPlanOptions dense;
  dense.share_concat = false;
  MemoryPlan q = plan_memory(g, 4, dense);
  std::printf("densenet121@64 batch 4, shared concat: %s\n", p.summary().c_str());
  std::printf("densenet121@64 batch 4, dense concat:  %s\n", q.summary().c_str());
  const std::string sharing = p.sharing_summary(g);
  std::printf("%s ...\n", sharing.substr(0, sharing.find('\n')).substr(0, 300).c_str());
  EXPECT_LT(p.arena_bytes, q.arena_bytes);

  struct Want {
    int channels, hw;
  };
  const Want blocks[4] = {{256, 16}, {512, 8}, {1024, 4}, {1024, 2}};
  std::vector<const PlannedTensor*> act_bufs, grad_bufs;
  for (const PlannedTensor& t : p.tensors)
    if (t.kind == TensorKind::shared_buffer) (t.name.rfind("d ", 0) == 0 ? grad_bufs : act_bufs).push_back(&t);
  ASSERT_EQ(act_bufs.size(), 4u);
  ASSERT_EQ(grad_bufs.size(), 4u);
  for (int b = 0; b < 4; ++b) {
    EXPECT_EQ(act_bufs[static_cast<size_t>(b)]->channels, blocks[b].channels);
    EXPECT_EQ(act_bufs[static_cast<size_t>(b)]->bytes,
              int64_t{4} * blocks[b].hw * blocks[b].hw * blocks[b].channels * 4);
  }
  // Block 1: pool0's output at [0, 64), denselayer k's conv2 at [64 + 32 (k-1), +32), each concat a prefix.
  auto view = [&](const std::string& node_name) -> const PlannedTensor& {
    for (size_t i = 0; i < g.nodes().size(); ++i)
      if (g.node(static_cast<int>(i)).name == node_name) return p.tensors[static_cast<size_t>(p.nodes[i].activation)];
    throw std::runtime_error("no node " + node_name);
  };
  ASSERT_EQ(g.node(4).op, Op::maxpool);
  EXPECT_EQ(view("maxpool4").channel_offset, 0);
  EXPECT_FALSE(view("maxpool4").is_allocation());
  for (int k = 1; k <= 6; ++k) {
    const PlannedTensor& v = view(str("features.denseblock1.denselayer", k, ".layers.conv2"));
    EXPECT_EQ(v.channel_offset, 64 + 32 * (k - 1));
    EXPECT_EQ(v.row_channels, 256);
    EXPECT_EQ(v.view_of, view("maxpool4").view_of);  // pool0's output opens block 1's buffer
  }
  const PlannedTensor& conv2 = view("features.denseblock2.denselayer12.layers.conv2");
  EXPECT_EQ(conv2.channel_offset, 128 + 32 * 11);
  const PlannedTensor& trans_pool_in = view("features.transition1.conv");  // not a member: dense
  EXPECT_TRUE(trans_pool_in.is_allocation());
  // Every concat of the network is a view; nothing but concat members are.
  int concats = 0, views = 0;
  for (const Node& n : g.nodes()) concats += n.op == Op::concat;
  for (const PlannedTensor& t : p.tensors) views += t.kind == TensorKind::activation && !t.is_allocation();
  EXPECT_EQ(concats, 58);
  EXPECT_EQ(views, 58 * 2 + 4);  // each concat and its new features, plus each block's input
}
