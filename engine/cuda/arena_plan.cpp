#include "engine/cuda/arena_plan.h"

#include <algorithm>

#include "base/error.h"
#include "engine/op_traits.h"

namespace stoke::cuda {

namespace {

// kernels/channel_reduce.cuh: chunks_for.
int64_t reduce_chunks(int64_t rows) { return std::clamp<int64_t>((rows + 255) / 256, 1, 1024); }

}  // namespace

int64_t bias_workspace(int64_t rows, int c) { return 8 * 3 * reduce_chunks(rows) * c; }
int64_t batchnorm_workspace(int64_t rows, int c) {
  return 8 * (3 * reduce_chunks(rows) * c + 4 * int64_t{c} + 1) + 4 * 3 * int64_t{c};
}

const char* memory_row_name(MemoryRow r) {
  switch (r) {
    case MemoryRow::parameters: return "parameters";
    case MemoryRow::gradients: return "gradients";
    case MemoryRow::optimizer_state: return "optimizer state";
    case MemoryRow::input: return "input staging";
    case MemoryRow::activations: return "activations";
    case MemoryRow::workspaces: return "workspaces";
    case MemoryRow::other: return "other";
  }
  return "?";
}

MemoryRow memory_row_of(Region r) {
  switch (r) {
    case Region::master_weights:
    case Region::half_weights:
    case Region::padded_filter:
    case Region::bn_buffers: return MemoryRow::parameters;
    case Region::gradients:
    case Region::first_conv_dw:
    case Region::conv_dw_half:
    case Region::linear_dw_half: return MemoryRow::gradients;
    case Region::optimizer_state: return MemoryRow::optimizer_state;
    case Region::pixels:
    case Region::labels:
    case Region::flips: return MemoryRow::input;
    case Region::activations: return MemoryRow::activations;
    case Region::reduce_workspace:
    case Region::conv_workspace:
    case Region::cublaslt_workspace:
    case Region::softmax_ce_workspace: return MemoryRow::workspaces;
    case Region::chunk_table:
    case Region::step_state:
    case Region::step_control: return MemoryRow::other;
  }
  return MemoryRow::other;
}

int padded_input_channels(bool half_storage, int channels, bool only_convolutions) {
  if (!half_storage || !only_convolutions || channels % 8 == 0) return channels;
  return (channels + 7) / 8 * 8;
}

bool only_convolutions_read_input(const Graph& graph) {
  for (const Node& nd : graph.nodes())
    for (int j : nd.inputs)
      if (j == 0 && nd.op != Op::conv) return false;
  return true;
}

int64_t ArenaPlan::total_bytes() const {
  int64_t t = 0;
  for (const ArenaRegion& r : regions) t += arena_rounded(r.bytes);
  return t;
}

int64_t ArenaPlan::row_bytes(MemoryRow row) const {
  int64_t t = 0;
  for (const ArenaRegion& r : regions)
    if (memory_row_of(r.id) == row) t += arena_rounded(r.bytes);
  return t;
}

int64_t ArenaPlan::region_bytes(Region id) const {
  int64_t t = 0;
  for (const ArenaRegion& r : regions)
    if (r.id == id) t += arena_rounded(r.bytes);
  return t;
}

int64_t ArenaPlan::offset_of(int tensor) const {
  return tensor < 0 ? -1 : activations.tensors[static_cast<size_t>(tensor)].offset;
}

ArenaPlan plan_arena(const Graph& g, int max_batch, const ArenaPlanOptions& o) {
  STOKE_CHECK(max_batch >= 1 && (o.element_bytes == 2 || o.element_bytes == 4), "batch ", max_batch, ", ",
              o.element_bytes, "-byte storage");
  ArenaPlan p;
  p.batch = max_batch;
  p.element_bytes = o.element_bytes;
  const int64_t mb = max_batch, eb = o.element_bytes;
  const Shape3 in = g.input_shape();
  const auto& nodes = g.nodes();
  p.input_channels = padded_input_channels(eb < 4, in.c, only_convolutions_read_input(g));
  for (const ParamInfo& pi : g.params()) {
    p.param_elems += (pi.size + kParamAlignElems - 1) / kParamAlignElems * kParamAlignElems;
    p.chunks += (pi.size + kOptimizerChunkElems - 1) / kOptimizerChunkElems;
  }
  bool any_conv = false;
  int64_t largest_padded = 0;
  std::vector<ArenaRegion> filters;
  for (size_t i = 1; i < nodes.size(); ++i) {
    const Node& nd = nodes[i];
    const Shape3& x = g.node(nd.inputs[0]).out;
    if (nd.op == Op::conv) {
      any_conv = true;
      const int c = nd.inputs[0] == 0 ? p.input_channels : x.c;
      p.largest_conv_weight = std::max(p.largest_conv_weight, int64_t{nd.k} * nd.r * nd.s * c);
      if (nd.bias >= 0)
        p.reduce_workspace = std::max(p.reduce_workspace, bias_workspace(mb * nd.out.h * nd.out.w, nd.k));
      if (nd.inputs[0] == 0 && p.input_channels != in.c) {
        const int64_t w = g.params()[static_cast<size_t>(nd.weight)].size;
        filters.push_back({Region::padded_filter, static_cast<int>(i), w / in.c * p.input_channels * eb,
                           "zero-padded first-conv filter"});
        largest_padded = std::max(largest_padded, w);
      }
    } else if (nd.op == Op::batchnorm) {
      p.reduce_workspace = std::max(p.reduce_workspace, batchnorm_workspace(mb * x.h * x.w, x.c));
    } else if (nd.op == Op::linear) {
      if (nd.bias >= 0) p.reduce_workspace = std::max(p.reduce_workspace, bias_workspace(mb, nd.out_features));
      p.largest_linear_weight = std::max(p.largest_linear_weight, int64_t{nd.in_features} * nd.out_features);
    }
  }

  // Activations: plan_memory over the schedule the executor runs (fused groups at their output node).
  p.fusion = plan_fusion(g);
  MemoryPlanOptions mo;
  mo.mode = PlanMode::train;  // a superset of what evaluation needs
  mo.element_bytes = o.element_bytes;
  mo.alignment = 256;
  mo.share_concat = false;  // the CUDA concat copies into a dense tensor
  PlanSchedule sched;
  sched.scratch_slots = 2;
  sched.input_channels = p.input_channels;
  sched.runs_at.reserve(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) sched.runs_at.push_back(static_cast<int>(i));
  for (const FusionGroup& gr : p.fusion.groups)
    for (int m : {gr.bn, gr.add, gr.relu})
      if (m >= 0) sched.runs_at[static_cast<size_t>(m)] = gr.out;
  p.activations = plan_memory(g, max_batch, mo, sched);

  // The regions, in the order the executor allocates them.
  auto add = [&](Region id, int64_t bytes, const char* what) { p.regions.push_back({id, -1, bytes, what}); };
  const int64_t P = p.param_elems;
  add(Region::master_weights, P * 4, "fp32 master weights");
  if (eb < 4) add(Region::half_weights, P * eb, "half-precision weights");
  add(Region::gradients, P * 4, "gradients");
  if (o.state_sets > 0) add(Region::optimizer_state, o.state_sets * P * 4, "optimizer state");
  add(Region::bn_buffers, std::max<int64_t>(g.num_buffers(), 1) * 4, "BN running statistics");
  add(Region::chunk_table, std::max<int64_t>(p.chunks, 1) * kOptimizerChunkBytes, "optimizer chunk table");
  add(Region::pixels, mb * in.size(), "input pixels");
  add(Region::labels, mb * 4, "labels");
  add(Region::flips, mb, "flip flags");
  p.regions.insert(p.regions.end(), filters.begin(), filters.end());
  if (largest_padded > 0) add(Region::first_conv_dw, largest_padded * eb, "first-conv dW (unpadded)");
  add(Region::activations, p.activations.arena_bytes, "activations, gradients and saved tensors (planned)");
  add(Region::reduce_workspace, std::max<int64_t>(p.reduce_workspace, 8), "reduction workspace");
  if (any_conv && o.conv_workspace > 0) add(Region::conv_workspace, o.conv_workspace, "cuDNN workspace");
  add(Region::cublaslt_workspace, kCublasLtWorkspace, "cuBLASLt workspace");
  if (eb < 4 && p.largest_conv_weight > 0) add(Region::conv_dw_half, p.largest_conv_weight * eb, "conv dW (half)");
  if (eb < 4 && p.largest_linear_weight > 0)
    add(Region::linear_dw_half, p.largest_linear_weight * eb, "linear dW (half)");
  add(Region::softmax_ce_workspace, mb * 8 + 16, "softmax-CE workspace");
  add(Region::step_state, kStepStructBytes, "step state");
  add(Region::step_control, kStepStructBytes, "step control");
  return p;
}

}  // namespace stoke::cuda
