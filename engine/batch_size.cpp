#include "engine/batch_size.h"

#include <algorithm>
#include <cstdio>

#include "base/error.h"
#include "base/format.h"
#include "engine/memory_plan.h"
#include "engine/op_traits.h"

namespace stoke {

namespace {

constexpr int64_t kAlign = 256;
int64_t round_up(int64_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

}  // namespace

int64_t planned_training_bytes(const Graph& graph, int batch, const MemoryTarget& t) {
  STOKE_CHECK(batch >= 1, "batch ", batch);
  const int64_t P = graph.num_params(), B = batch, eb = t.element_bytes;
  const int64_t in = graph.input_shape().size();
  int64_t state = 0;
  if (t.optimizer.kind == OptimizerKind::adamw) state = 2 * P;
  else if (t.optimizer.momentum != 0.f) state = P;
  int64_t total = round_up(P * 4) * 2 + round_up(state * 4) + round_up(std::max<int64_t>(graph.num_buffers(), 1) * 4);
  if (!t.cuda) {
    MemoryPlanOptions o;
    o.mode = PlanMode::train;
    o.element_bytes = 4;
    o.share_concat = false;  // the CPU executor runs dense tensors
    total += plan_memory(graph, batch, o).arena_bytes;
    total += round_up(B * in * 4);  // the normalised input
    return total;
  }
  if (eb < 4) total += round_up(P * eb);  // half-precision weights
  total += round_up(B * in) + round_up(B * 4) + round_up(B) + round_up(B * in * eb);  // pixels, labels, flips, input
  int64_t largest = 0, max_conv_w = 0, max_linear_w = 0;
  const auto& nodes = graph.nodes();
  for (size_t i = 1; i < nodes.size(); ++i) {
    const Node& nd = nodes[i];
    const int64_t count = B * nd.out.size();
    largest = std::max(largest, count);
    total += 2 * round_up(count * eb);                         // activation and its gradient
    if (op_traits(nd.op).saves_argmax) total += round_up(count * 4);
    if (op_traits(nd.op).saves_channel_stats) total += 2 * round_up(int64_t{nd.out.c} * 4);
    if (nd.op == Op::conv) max_conv_w = std::max(max_conv_w, graph.params()[static_cast<size_t>(nd.weight)].size);
    if (nd.op == Op::linear) max_linear_w = std::max(max_linear_w, int64_t{nd.in_features} * nd.out_features);
  }
  total += 2 * round_up(largest * eb);                  // gradient scratches
  total += int64_t{256} << 20;                          // cuDNN workspace limit
  total += int64_t{32} << 20;                           // cuBLASLt workspace
  total += round_up(largest * 4);                       // reductions (BN, bias), at most one value per element
  if (eb < 4) total += round_up(max_conv_w * eb) + round_up(max_linear_w * eb);
  return total;
}

BatchChoice choose_batch_size(const Graph& graph, const MemoryTarget& target, int64_t budget, const std::string& budget_what,
                              int64_t cap, const std::string& cap_why) {
  BatchChoice c;
  auto fits = [&](int64_t b) { return planned_training_bytes(graph, static_cast<int>(b), target) <= budget; };
  if (!fits(1)) {
    c.why = str("not even one sample fits: ", format_bytes(static_cast<size_t>(planned_training_bytes(graph, 1, target))), " planned at batch 1, ",
                format_bytes(static_cast<size_t>(budget)), " available (", budget_what, ")");
    return c;
  }
  // Largest fitting multiple of 8 (planned bytes grow with the batch): grow by doubling, then bisect.
  int64_t best = 0;
  if (fits(8)) {
    int64_t lo = 1, hi = 2;  // in units of 8
    const int64_t limit = int64_t{1} << 20;  // a million samples: more than any cap
    while (hi < limit && fits(hi * 8)) lo = hi, hi *= 2;
    if (hi >= limit && fits(hi * 8)) lo = hi;
    else
      while (hi - lo > 1) {
        const int64_t mid = (lo + hi) / 2;
        (fits(mid * 8) ? lo : hi) = mid;
      }
    best = lo * 8;
  } else {
    best = 1;
    while (best < 7 && fits(best + 1)) ++best;
  }
  c.fits = best;
  int64_t chosen = best;
  std::string decided = str("the largest multiple of 8 that fits");
  if (cap >= 1 && cap < chosen) {
    chosen = cap >= 8 ? cap / 8 * 8 : cap;
    decided = str("capped: ", cap_why, "; ", best, " would fit");
  }
  c.batch = static_cast<int>(chosen);
  c.bytes = planned_training_bytes(graph, c.batch, target);
  c.why = str(c.batch, " (", decided, "; planned ", format_bytes(static_cast<size_t>(c.bytes)), " of ", format_bytes(static_cast<size_t>(budget)), " = ", budget_what, ")");
  return c;
}

int64_t max_batch_within_int32(const Graph& graph) {
  int64_t largest = graph.input_shape().size();
  for (const Node& nd : graph.nodes()) largest = std::max<int64_t>(largest, nd.out.size());
  return std::max<int64_t>(int64_t{INT32_MAX} / std::max<int64_t>(largest, 1), 1);
}

}  // namespace stoke
