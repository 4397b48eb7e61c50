// The running sums of a training run's finished steps: the logged window (a metrics.jsonl train line), the epoch
// (its line, and what a mid-epoch checkpoint carries) and the run (summary.json and the verdict). Only the
// steps with a finite loss count their loss, correct answers and images; every step counts its device time and
// all-reduce. The loop adds each result once (StepMeter::add) and reads the sums by name.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/run_verdict.h"

namespace stoke {

using TrainClock = std::chrono::steady_clock;
double seconds_since(TrainClock::time_point t0);

struct StepSums {
  double loss = 0;  // loss x images
  int64_t correct = 0, seen = 0;
  double device_s = 0;  // device busy time (CUDA events; 0 elsewhere)
  CommTally comm;       // the gradient all-reduce (data parallel)
  void add(const StepResult& r, int n, bool counted);
  double mean_loss() const { return loss / static_cast<double>(std::max<int64_t>(seen, 1)); }
  double accuracy() const { return static_cast<double>(correct) / static_cast<double>(std::max<int64_t>(seen, 1)); }
};

struct StepMeter {
  // the run (this process's session)
  int64_t step = 0;  // global steps finished
  TrainClock::time_point loop_start;
  int64_t loop_first_step = 0;
  double total_wait = 0, total_train_s = 0;  // input wait and training time over the finished epochs
  double total_device_s = 0;
  CommTally total_comm;
  // the epoch
  int64_t epoch_step = 0;  // steps of this epoch finished (counted from its start, also before a resume)
  StepSums epoch;
  int64_t seen_at_start = 0;        // images the epoch had seen when this session took it up
  double epoch_seconds_before = 0;  // time already spent in the epoch a mid-epoch checkpoint interrupted
  TrainClock::time_point epoch_start;
  double wait_at_start = 0;  // the input's wait counter at the epoch's start
  // the logged window
  StepSums window;
  TrainClock::time_point window_t0;
  double window_wait0 = 0;

  void start_run(int64_t first_step);
  // From batch `cursor`, with the sums a mid-epoch checkpoint carried (null: none) and the input's wait counter now.
  void start_epoch(int64_t cursor, const nlohmann::json* resumed, double input_wait);
  // One finished step of n images (the global batch).
  void add(const StepResult& r, int n);
  // The epoch's time and wait go to the run's totals; its sums start again (a checkpoint then carries none).
  void close_epoch(double train_seconds, double input_wait);
  // The epoch's sums, as a mid-epoch checkpoint saves them.
  nlohmann::json epoch_sums() const;
};

}  // namespace stoke
