// The activation memory planner: where every activation, activation gradient and saved tensor of one
// training (or inference) step lives inside ONE arena, with memory reused once a tensor is dead.
//
// Time is counted in steps over the graph's N nodes: the forward of node i is step i (the input exists at
// step 0), the loss is step N, the backward of node i is step 2N - i. A tensor is live over the inclusive
// step range [first, last]; two tensors whose ranges meet may not share bytes (an op reads its inputs and
// writes its output in the same step, so they never alias).
//
// What backward keeps alive (training plans): conv and linear keep their input (weight gradient), batch norm
// its input and per-channel saved mean/inv-std, ReLU its output, max pooling its argmax; average pooling,
// add and concat keep nothing. In an eval plan every activation dies after its last consumer.
//
// Gradients follow the CPU executor's convention (docs/ARCHITECTURE.md, "The graph and executor"): a node's output
// gradient is born at the backward of its last reaching consumer and dies after its own backward; when a
// second consumer contributes, the op writes into a per-step scratch tensor that is then added.
//
// Zero-copy concat (share_concat, DenseNet's memory-efficient concatenation): a chain of concats where each
// extends the previous one, cat([cat([x0, n1]), n2]), ..., is backed by ONE shared buffer with the final
// channel count. x0 and every n_k are written straight into their channel slice, and each concat output is a
// prefix slice [0, C_k) of the same buffer, so concat costs neither memory nor a copy (and in training the
// gradients share a buffer the same way). Views are NHWC channel slices: rows of `channels` values every
// `row_channels` values, so executing such a plan needs ops that take a row stride (the CPU executor and the
// kernels today assume dense tensors: the plan describes, it does not run). A node joins a shared buffer only
// when that is unambiguous: it is not the graph input and appears in exactly one concat input list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/graph.h"

namespace stoke {

enum class PlanMode { train, eval };

struct MemoryPlanOptions {
  PlanMode mode = PlanMode::train;
  int element_bytes = 4;     // activations and their gradients: 4 fp32, 2 bf16/fp16 (argmax int32, BN stats fp32)
  int64_t alignment = 256;   // every allocation's offset and size are multiples of this (cudaMalloc's alignment)
  bool share_concat = true;  // zero-copy concat chains (see above)
};

// How the executor really runs the graph, when it is not one node per step (the CUDA executor's fused
// batch-norm groups, engine/cuda/fusion.h). The default is the CPU executor's.
struct PlanSchedule {
  // Per node, the node at whose forward and backward steps it runs; a node running at another's step has no
  // tensors of its own, and its inputs' gradients are born at that step. Empty: every node at its own step.
  std::vector<int> runs_at;
  // 2: a two-input backward (add, a fused group's residual) puts its second input's extra contribution in a
  // second scratch (slot 1), live beside the first; 1: one scratch per step, the largest contribution.
  int scratch_slots = 1;
  int input_channels = 0;  // the graph input as the executor stores it (0: the graph's own channel count)
};

enum class TensorKind {
  activation,     // a node's output
  gradient,       // the gradient of the loss w.r.t. a node's output
  argmax,         // max pooling's saved winners (int32, one per output value)
  bn_stats,       // batch norm's saved mean and inv-std (fp32, 2 x C, independent of the batch)
  grad_scratch,   // one backward step's space for a second gradient contribution before it is added
  shared_buffer,  // the allocation behind a zero-copy concat chain (activations or gradients)
};
const char* tensor_kind_name(TensorKind k);

struct PlannedTensor {
  TensorKind kind = TensorKind::activation;
  std::string name;
  int node = -1;            // the node it belongs to (-1 for scratch and shared buffers)
  int64_t bytes = 0;        // exact size (for a view: what a dense copy would take)
  int first = 0, last = 0;  // live steps, inclusive
  int slot = 0;             // grad_scratch: which of the step's scratches (PlanSchedule::scratch_slots)
  // Where it lives. An allocation (view_of == -1) owns [offset, offset + round_up(bytes, alignment)). A view
  // is channels [channel_offset, channel_offset + channels) of shared buffer tensors[view_of]: its first
  // element is at offset, and its rows are row_channels elements apart.
  int64_t offset = -1;
  int view_of = -1;
  int channel_offset = 0, channels = 0, row_channels = 0;
  bool is_allocation() const { return view_of < 0; }
};

// Per node: indices into MemoryPlan::tensors (-1 when absent).
struct NodeMemory {
  int activation = -1, gradient = -1, argmax = -1, bn_stats = -1;
};

struct MemoryPlan {
  PlanMode mode = PlanMode::train;
  int batch = 0, steps = 0;  // steps: the largest step index + 1 (2N in training, N + 1 in eval)
  int64_t alignment = 256;
  std::vector<PlannedTensor> tensors;
  std::vector<NodeMemory> nodes;
  int64_t arena_bytes = 0;      // the planned arena
  int64_t naive_bytes = 0;      // every activation, gradient and saved tensor in its own (aligned) buffer, concats
                                // copied, one largest-gradient scratch: what a plan-less executor allocates
  int64_t peak_live_bytes = 0;  // max over steps of the live allocations' sizes: no placement can beat it

  int64_t allocated_size(const PlannedTensor& t) const;  // bytes rounded up to the alignment
  // Nodes writing into each shared buffer, one line per buffer: "buffer (HxWxC) <- node [c0, c1) ...".
  std::string sharing_summary(const Graph& g) const;
  std::string summary() const;  // totals in MB
};

// Plans the activation memory of `graph` for `batch` samples.
MemoryPlan plan_memory(const Graph& graph, int batch, const MemoryPlanOptions& options = {},
                       const PlanSchedule& schedule = {});

}  // namespace stoke
