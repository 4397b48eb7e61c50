// The CUDA executor's device arena, described without a device: which regions it allocates, in which order,
// with how many bytes, and where each activation, gradient and saved tensor lives inside the one activation
// region. The executor allocates exactly this list (engine/cuda/arena.h, allocate_plan); `--batch-size auto`
// and `stoke plan` read the same list, so what fits is decided by one description, also in a CPU-only build.
//
// Activations come from plan_memory (engine/memory_plan.h) at the storage precision, over the schedule the
// executor really runs: a fused batch-norm group (engine/cuda/fusion.h) computes its nodes at its output node,
// forward and backward, so its interior nodes have no tensors and its inputs' gradients are born at that step.
// Concats stay dense (the CUDA concat copies). Backward takes a second gradient contribution into the step's
// scratch (slot 1 beside slot 0 for an add's or a group's second input).
//
// cuDNN's workspace cannot be known without a device: a plan made without one counts the limit the executor
// gives cuDNN (kConvWorkspaceLimit); the executor plans with what cuDNN chose at construction (at most that).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/cuda/fusion.h"
#include "engine/graph.h"
#include "engine/memory_plan.h"

namespace stoke::cuda {

inline constexpr int64_t kConvWorkspaceLimit = int64_t{256} << 20;  // CudaExecutorOptions::conv_workspace_limit
inline constexpr int64_t kCublasLtWorkspace = int64_t{32} << 20;    // LinearRunner::kDefaultWorkspace
inline constexpr int32_t kOptimizerChunkElems = 8192;               // kernels/optimizer.cuh: kOptimizerChunk
inline constexpr int64_t kOptimizerChunkBytes = 24;                 // sizeof(OptimizerChunk)
inline constexpr int64_t kStepStructBytes = 256;                    // at least sizeof(StepState), sizeof(StepControl)
inline constexpr int64_t kParamAlignElems = 64;                     // DeviceParamLayout::kParamAlignElems

// What a region is for: the executor keeps one pointer per kind (its switch has no default).
enum class Region {
  master_weights,
  half_weights,
  gradients,
  optimizer_state,
  bn_buffers,
  chunk_table,
  pixels,
  labels,
  flips,
  padded_filter,
  first_conv_dw,
  activations,
  reduce_workspace,
  conv_workspace,
  cublaslt_workspace,
  conv_dw_half,
  linear_dw_half,
  softmax_ce_workspace,
  step_state,
  step_control,
};

// The lines `stoke plan` prints.
enum class MemoryRow { parameters, gradients, optimizer_state, input, activations, workspaces, other };
const char* memory_row_name(MemoryRow r);
MemoryRow memory_row_of(Region r);

struct ArenaRegion {
  Region id = Region::master_weights;
  int node = -1;      // padded_filter: the convolution reading the input
  int64_t bytes = 0;  // asked of the arena (which rounds every request up to 256 bytes)
  const char* what = "";
};

struct ArenaPlanOptions {
  int element_bytes = 2;                         // storage: 4 fp32, 2 bf16/fp16
  int state_sets = 0;                            // optimizer state arrays: 0, 1 (SGD momentum) or 2 (AdamW m and v)
  int64_t conv_workspace = kConvWorkspaceLimit;  // cuDNN's: the executor's choice, or the limit (see above)
};

struct ArenaPlan {
  int batch = 0, element_bytes = 0;
  int input_channels = 0;   // the normalised input on the device (padded to 8 in half precision, see below)
  int64_t param_elems = 0;  // the padded device layout of the parameters (DeviceParamLayout::total)
  int64_t chunks = 0;       // optimizer chunk table entries
  int64_t reduce_workspace = 0, largest_conv_weight = 0, largest_linear_weight = 0;
  FusionPlan fusion;
  MemoryPlan activations;            // offsets inside the activations region
  std::vector<ArenaRegion> regions;  // in allocation order

  int64_t total_bytes() const;  // what the executor's arena holds
  int64_t row_bytes(MemoryRow r) const;
  int64_t region_bytes(Region r) const;  // the sum over regions of that kind, rounded as the arena does
  // Where each planned tensor lives in the activation region (-1: none): the executor's pointers.
  int64_t offset_of(int tensor) const;
};

ArenaPlan plan_arena(const Graph& graph, int max_batch, const ArenaPlanOptions& options);

// The kernels' reduction workspaces (kernels/tensor_ops.cuh bias_backward_workspace_bytes, kernels/batchnorm.cuh
// batchnorm_workspace_bytes), counted here without them; tests/gpu/test_arena_layout.cpp compares the two.
int64_t bias_workspace(int64_t rows, int c);
int64_t batchnorm_workspace(int64_t rows, int c);

// The rule of the half-precision input padding (engine/cuda/param_layout.h, device_input_channels).
int padded_input_channels(bool half_storage, int channels, bool only_convolutions_read_input);
// Whether only convolutions read the graph input (then it may be padded).
bool only_convolutions_read_input(const Graph& graph);

// The arena's rounding: every request takes a multiple of 256 bytes.
constexpr int64_t arena_rounded(int64_t bytes) { return ((bytes == 0 ? 1 : bytes) + 255) / 256 * 256; }

}  // namespace stoke::cuda
