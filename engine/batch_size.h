// --batch-size auto: the planned memory of a training step at a batch size, and the largest batch that fits.
//
// The estimate adds what each backend allocates: the fp32 master weights, gradients and optimizer state (plus
// the half-precision weight copy on CUDA), the staged input, and the activations — for the CPU backend the memory
// planner's arena (engine/memory_plan.h, exactly what CpuExecutor allocates), for the CUDA backend the same sum
// its arena layout makes (an activation and a gradient per op at the element size, max-pool argmaxes, two gradient
// scratches) plus the cuDNN and cuBLASLt workspace limits. It is planned, not measured: the CUDA backend checks
// the real arena against free memory when it allocates, and an out-of-memory error names a batch that fits.
#pragma once

#include <cstdint>
#include <string>

#include "engine/graph.h"
#include "engine/optimizer.h"

namespace stoke {

struct MemoryTarget {
  bool cuda = false;
  int element_bytes = 4;  // activations: 4 fp32, 2 bf16/fp16
  OptimizerConfig optimizer;
};

// Bytes a training step of `graph` at `batch` needs on `target`.
int64_t planned_training_bytes(const Graph& graph, int batch, const MemoryTarget& target);

struct BatchChoice {
  int batch = 0;          // 0: not even one sample fits
  int64_t bytes = 0;      // planned bytes at that batch
  int64_t fits = 0;       // the largest multiple of 8 that fits the budget (before the caps)
  std::string why;        // one line: the budget and which limit decided
};

// The largest multiple of 8 (or, when 8 does not fit, the largest batch >= 1) whose planned bytes fit `budget`,
// then capped at `cap` (rounded down to a multiple of 8 when it is at least 8). `budget_what` describes the budget
// for the message ("71.0 GiB free device memory less a 10% + 768 MiB margin"); cap_why says why the cap exists.
BatchChoice choose_batch_size(const Graph& graph, const MemoryTarget& target, int64_t budget, const std::string& budget_what,
                              int64_t cap, const std::string& cap_why);

// The largest batch at which every tensor of `graph` (the input and each node's output) holds at most 2^31 - 1
// elements: cuDNN's legacy descriptors and the CUDA kernels' row counts are int, so the CUDA backend runs no
// larger batch (--batch-size auto caps at it, a number above it is refused).
int64_t max_batch_within_int32(const Graph& graph);

}  // namespace stoke
