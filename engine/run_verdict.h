// What limited a training run, from its measured shares of time: the verdict of summary.json and the run's last
// lines. Kept apart from the trainer so the rule can be tested with plain numbers.
//
// The data-parallel communication share is the time the steps spent in the gradient all-reduce over the training
// wall time. On the CPU backend the all-reduce blocks the step, so all of it is step time; backward keeps no work
// aside to hide it. Above kCommBoundShare, adding processes mostly adds waiting: the run is called
// communication-bound, unless waiting for input took a larger share (then input is the first thing to fix).
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/backend.h"

namespace stoke {

// 30%: below it the all-reduce is a cost every data-parallel job pays, and a larger share of compute is still
// what adding processes divides; above it nearly a third of each step is spent talking, which is where scaling
// out stops paying (the same ballpark as the 20% input stall that makes a run strongly input-bound).
constexpr double kCommBoundShare = 0.30;

struct VerdictInputs {
  bool decoded_cache = false;  // the data came from the decoded cache: no input stage to wait for
  double input_stall = 0;      // the share of training time spent waiting for batches
  int decoders = 0;
  std::string backend;         // "cpu" | "cuda"
  double gpu_busy = 0;         // 0: not measured
  double comm_share = 0;       // the all-reduce's share of training time; 0: one process, or not measured
};

std::string run_verdict(const VerdictInputs& in);

// The all-reduce's time and bytes over some steps (a logged window, an epoch, the run), as StepResult reports
// them. add_to writes comm_s, comm_share (over `wall_seconds` of training) and allreduce_bytes (per step) into a
// metrics line, only when something was all-reduced: a single-process run's lines stay as they were.
struct CommTally {
  double seconds = 0;
  int64_t bytes_per_step = 0;
  void add(const StepResult& r) {
    seconds += r.comm_seconds;
    if (r.allreduce_bytes > 0) bytes_per_step = r.allreduce_bytes;
  }
  double share(double wall_seconds) const;
  void add_to(nlohmann::json& line, double wall_seconds) const;
};

}  // namespace stoke
