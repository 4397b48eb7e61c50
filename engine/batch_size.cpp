#include "engine/batch_size.h"

#include <algorithm>
#include <cstdio>

#include "base/error.h"
#include "base/format.h"
#include "engine/cuda/arena_plan.h"
#include "engine/memory_plan.h"

namespace stoke {

namespace {

constexpr int64_t kAlign = 256;
int64_t round_up(int64_t b) { return (b + kAlign - 1) / kAlign * kAlign; }

}  // namespace

TrainingMemory training_memory(const Graph& graph, int batch, const MemoryTarget& t) {
  STOKE_CHECK(batch >= 1, "batch ", batch);
  TrainingMemory m;
  const int sets = t.optimizer.kind == OptimizerKind::adamw ? 2 : t.optimizer.momentum != 0.f ? 1 : 0;
  if (t.cuda) {
    cuda::ArenaPlanOptions o;
    o.element_bytes = t.element_bytes;
    o.state_sets = sets;
    const cuda::ArenaPlan p = cuda::plan_arena(graph, batch, o);
    for (cuda::MemoryRow r :
         {cuda::MemoryRow::parameters, cuda::MemoryRow::gradients, cuda::MemoryRow::optimizer_state,
          cuda::MemoryRow::input, cuda::MemoryRow::activations, cuda::MemoryRow::workspaces, cuda::MemoryRow::other})
      m.lines.push_back({cuda::memory_row_name(r), p.row_bytes(r)});
    m.total = p.total_bytes();
    m.activations = p.activations.arena_bytes;
    m.activations_peak_live = p.activations.peak_live_bytes;
    m.per_node_activations = p.activations.naive_bytes;
    if (p.region_bytes(cuda::Region::conv_workspace) > 0)
      m.note = str("cuDNN's workspace is counted at the limit the executor gives it (",
                   format_bytes(static_cast<size_t>(cuda::kConvWorkspaceLimit)),
                   "): what cuDNN chooses is known only on a device, and never more");
    return m;
  }
  const int64_t P = graph.num_params();
  MemoryPlanOptions o;
  o.mode = PlanMode::train;
  o.element_bytes = 4;
  o.share_concat = false;  // the CPU executor runs dense tensors
  const MemoryPlan plan = plan_memory(graph, batch, o);
  m.lines = {{"parameters", round_up(P * 4) + round_up(std::max<int64_t>(graph.num_buffers(), 1) * 4)},
             {"gradients", round_up(P * 4)},
             {"optimizer state", round_up(sets * P * 4)},
             {"input staging", round_up(int64_t{batch} * graph.input_shape().size() * 4)},  // the normalised input
             {"activations", plan.arena_bytes}};
  for (const MemoryLine& l : m.lines) m.total += l.bytes;
  m.activations = plan.arena_bytes;
  m.activations_peak_live = plan.peak_live_bytes;
  m.per_node_activations = plan.naive_bytes;
  return m;
}

int64_t planned_training_bytes(const Graph& graph, int batch, const MemoryTarget& t) {
  return training_memory(graph, batch, t).total;
}

int64_t device_memory_budget(int64_t free_bytes, std::string& what) {
  what = str("free device memory ", free_bytes >> 20, " MiB less 10% and 768 MiB");
  return std::max<int64_t>(free_bytes / 10 * 9 - (int64_t{768} << 20), 0);
}

BatchChoice choose_batch_size(const Graph& graph, const MemoryTarget& target, int64_t budget,
                              const std::string& budget_what, int64_t cap, const std::string& cap_why) {
  BatchChoice c;
  auto fits = [&](int64_t b) { return planned_training_bytes(graph, static_cast<int>(b), target) <= budget; };
  if (!fits(1)) {
    c.why =
        str("not even one sample fits: ", format_bytes(static_cast<size_t>(planned_training_bytes(graph, 1, target))),
            " planned at batch 1, ", format_bytes(static_cast<size_t>(budget)), " available (", budget_what, ")");
    return c;
  }
  // Largest fitting multiple of 8 (planned bytes grow with the batch): grow by doubling, then bisect.
  int64_t best = 0;
  if (fits(8)) {
    int64_t lo = 1, hi = 2;                  // in units of 8
    const int64_t limit = int64_t{1} << 20;  // a million samples: more than any cap
    while (hi < limit && fits(hi * 8)) lo = hi, hi *= 2;
    if (hi >= limit && fits(hi * 8))
      lo = hi;
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
  c.why = str(c.batch, " (", decided, "; planned ", format_bytes(static_cast<size_t>(c.bytes)), " of ",
              format_bytes(static_cast<size_t>(budget)), " = ", budget_what, ")");
  return c;
}

int64_t max_batch_within_int32(const Graph& graph) {
  int64_t largest = graph.input_shape().size();
  for (const Node& nd : graph.nodes()) largest = std::max<int64_t>(largest, nd.out.size());
  return std::max<int64_t>(int64_t{INT32_MAX} / std::max<int64_t>(largest, 1), 1);
}

}  // namespace stoke
