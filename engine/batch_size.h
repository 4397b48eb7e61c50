// --batch-size auto: the planned memory of a training step at a batch size, and the largest batch that fits.
//
// The estimate is what each backend's executor allocates, asked of the layout it allocates from: for the CPU
// backend the memory planner's arena (engine/memory_plan.h, what CpuExecutor allocates) beside the fp32 weights,
// gradients, optimizer state and input; for the CUDA backend its whole arena, region by region
// (engine/cuda/arena_plan.h: the executor allocates exactly that list), with cuDNN's workspace at the limit the
// executor gives cuDNN. It is planned, not measured: the CUDA backend checks the real arena against free memory
// when it allocates, and an out-of-memory error names a batch that fits.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/optimizer.h"

namespace stoke {

struct MemoryTarget {
  bool cuda = false;
  int element_bytes = 4;  // activations: 4 fp32, 2 bf16/fp16
  OptimizerConfig optimizer;
};

// What a training step of `graph` at `batch` holds on `target`, line by line (what `stoke plan` prints).
struct MemoryLine {
  std::string what;  // parameters, gradients, optimizer state, input staging, activations, workspaces, other
  int64_t bytes = 0;
};
struct TrainingMemory {
  std::vector<MemoryLine> lines;
  int64_t total = 0;
  int64_t activations = 0;            // the planned activation arena (activations, gradients, saved tensors)
  int64_t activations_peak_live = 0;  // the most bytes live at one step: no placement can beat it
  int64_t per_node_activations = 0;   // every tensor in its own buffer (what an executor without a plan holds)
  std::string note;                   // what is an upper bound, and why (empty: exact)
};
TrainingMemory training_memory(const Graph& graph, int batch, const MemoryTarget& target);

// Bytes a training step of `graph` at `batch` needs on `target` (training_memory's total).
int64_t planned_training_bytes(const Graph& graph, int batch, const MemoryTarget& target);

// The --batch-size auto budget of a GPU with `free_bytes` free: less 10% and 768 MiB (the CUDA context,
// cuDNN/cuBLAS handles, fragmentation). `what` says so.
int64_t device_memory_budget(int64_t free_bytes, std::string& what);

struct BatchChoice {
  int batch = 0;      // 0: not even one sample fits
  int64_t bytes = 0;  // planned bytes at that batch
  int64_t fits = 0;   // the largest multiple of 8 that fits the budget (before the caps)
  std::string why;    // one line: the budget and which limit decided
};

// The largest multiple of 8 (or, when 8 does not fit, the largest batch >= 1) whose planned bytes fit `budget`,
// then capped at `cap` (rounded down to a multiple of 8 when it is at least 8). `budget_what` describes the budget
// for the message ("71.0 GiB free device memory less a 10% + 768 MiB margin"); cap_why says why the cap exists.
BatchChoice choose_batch_size(const Graph& graph, const MemoryTarget& target, int64_t budget,
                              const std::string& budget_what, int64_t cap, const std::string& cap_why);

// The largest batch at which every tensor of `graph` (the input and each node's output) holds at most 2^31 - 1
// elements: cuDNN's legacy descriptors and the CUDA kernels' row counts are int, so the CUDA backend runs no
// larger batch (--batch-size auto caps at it, a number above it is refused).
int64_t max_batch_within_int32(const Graph& graph);

}  // namespace stoke
