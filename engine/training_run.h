// The parts of one training run, in the order train() (engine/trainer.cpp) calls them. Internal to the trainer.
// Each part is a method that reads as one step of the story and makes one named value that the later parts read:
// the plan (engine/run_plan.h: world, device, data, batch, normalisation) and the model's first state, the run
// folder (engine/run_folder.h), the backend, the input (RunInput), and in the loop the step meter
// (engine/step_meter.h) and the steps in flight.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/console.h"
#include "base/shape.h"
#include "engine/augment_plan.h"
#include "engine/backend.h"
#include "engine/dist/communicator.h"
#include "engine/interrupt.h"
#include "engine/metrics.h"
#include "engine/optimizer.h"
#include "engine/run_folder.h"
#include "engine/run_plan.h"
#include "engine/step_meter.h"
#include "engine/train_config.h"
#include "io/pipeline/decoded_batches.h"
#include "io/pipeline/decoded_cache.h"
#include "io/pipeline/input_pipeline.h"

namespace stoke {

// An evaluation-style pipeline: dataset order, no augmentation, the last batch padded (use b.valid).
io::PipelineConfig eval_pipeline_config(Shape3 shape, int batch, int decoders, bool strict,
                                        const std::string& quarantine);
// The learning-rate schedule of a run of `epochs` epochs.
Schedule schedule_for(const TrainConfig& cfg, int64_t steps_per_epoch, int epochs);

// report.html must never stop a run: a failure is a warning.
void refresh_report(const std::string& run_dir, Console& console);

// The user's flags, checked before anything is opened. Throws UserError.
void check_train_config(const TrainConfig& cfg);

// start_input: where the run's batches come from.
struct RunInput {
  std::unique_ptr<io::DecodedCache> train_cache, val_cache;  // --cache decoded|gpu
  // The decoder ring, or batches gathered from the decoded cache (pixels, or sample ids once the backend holds the
  // set): io/pipeline/batch_source.h. Declared after the caches it gathers from, so it goes first.
  std::unique_ptr<io::BatchSource> train_batches;
  int acquired = 0;                         // batches taken from train_batches and not yet released
  io::InputPipeline* train_ring = nullptr;  // train_batches when it is the decoder ring (its statistics)
  // Validation's batches, one epoch each time: an evaluation ring, or batches gathered from the decoded cache.
  std::unique_ptr<io::BatchSource> val_batches;
  io::InputPipeline* val_ring = nullptr;  // val_batches when it is the decoder ring (its statistics)
  bool held = false;           // --cache gpu took: the backend holds the training set, a step hands over sample ids
  BatchTransforms transforms;  // an active recipe: each training batch's, drawn at submit, kept until its release
};

// Steps handed to the backend whose results have not come back (the submitted counts run ahead of the meter's).
struct InFlight {
  struct Step {
    float lr;
    int n;  // images: the global batch
  };
  int64_t batch = 0, step = 0;    // the epoch's next batch and the global steps submitted
  std::deque<Step> steps;         // in order
  std::vector<int64_t> released;  // collect()'s lists, kept to reuse their memory
  std::vector<StepResult> results;
};

class TrainingRun {
 public:
  TrainingRun(const TrainConfig& cfg, const ModelFactory& build_model);
  ~TrainingRun();

  // ---- plan (training_run.cpp) ----
  void join_world();
  void join_nccl();  // choose_device's part for a CUDA run started by a launcher
  void choose_device();
  void open_data();
  void build_model_and_batch();
  void open_run_folder();  // training_folder.cpp
  void agree_across_ranks();
  void start_backend();
  void announce();
  // ---- train (training_loop.cpp) ----
  void start_input();
  void pipeline_configs(io::PipelineConfig& tpc, io::PipelineConfig& vpc);
  void say_input(bool decoders_augment, bool trains);
  void train_epochs();
  // ---- summary (training_summary.cpp) ----
  TrainResult finish();

 private:
  // training_run.cpp
  void check_memory() const;  // the planned step (and the decoded cache) fit this machine
  int64_t memory_budget(std::string& what) const;
  int requested_batch_size();
  std::string fitting_batch_advice() const;
  double run_elapsed() const { return folder_.elapsed_before + seconds_since(t_start_); }  // across every session
  void check_profile_window() const;  // prints the window it will profile (through the mutable console)
  void write_run_info();
  // training_folder.cpp
  void check_free_space();
  void resume_from_checkpoint();
  void check_resumed_data(const nlohmann::json& state);
  std::string schedule_change(int planned_epochs) const;
  // training_loop.cpp
  void hold_train_set();
  io::Batch next_train(int64_t epoch, int64_t index);
  void release(int64_t tag);
  bool train_epoch(int64_t epoch);  // false when interrupted
  void at_step_boundary(int64_t epoch);
  void submit(const io::Batch& rb);
  void end_epoch(int64_t epoch, double train_seconds, double input_wait);
  void evaluate_imported();  // --epochs 0
  ClassificationReport evaluate();
  void on_result(const StepResult& r, int64_t epoch);
  void log_step(int64_t epoch, float lr);
  // The decoder ring's wait counter (0 for batches from the decoded cache: nothing to wait for).
  double input_wait_seconds() const {
    return input_.train_ring ? input_.train_ring->stats().consumer_wait_seconds : 0.0;
  }
  void take(bool wait, int64_t epoch);
  void settle(int64_t epoch);
  void write_checkpoint(int64_t epoch, int64_t cursor, bool best);
  double window_stall(double window_s);  // the input wait's share of this logged window (ring only; 0 from a cache)
  void start_profile();
  void stop_profile();
  void finish_trace();
  void warn(const std::string& m);
  // Whether to stop after the steps submitted so far: a signal to this process (one process), or the step every
  // rank agreed on (a data-parallel job), or the test hook's step.
  bool stop_now() const {
    return (plan_.world.size == 1 && interrupt_requested() != 0) || (stop_at_ >= 0 && flight_.step >= stop_at_);
  }
  // training_summary.cpp
  std::string verdict(double run_stall) const;
  void say_summary(const io::FileCacheSource::Stats& fc, const std::string& verdict_text) const;
  // training_recalibrate.cpp: --bn-recalibrate
  int recalibration_batches() const;  // how many batches the end of this run recalibrates over (0: none)
  int recalibrate_batch_norm();       // does it, with the final weights; returns the batches used

  TrainConfig cfg_;          // a copy: ranks other than 0 run quiet
  mutable Console console_;  // every line the run prints goes through it (printing is not a change of state)
  const ModelFactory& build_model_;
  const TrainClock::time_point t_start_ = TrainClock::now();
  bool resuming_ = false;
  // A CUDA run started by a launcher talks over NCCL: comm_ is then the NCCL communicator, and bootstrap_ the
  // MPI one that handed it NCCL's unique id (null after a torchrun-style launch: the TCP rendezvous did).
  std::unique_ptr<dist::Communicator> bootstrap_;
  std::unique_ptr<dist::Communicator> comm_;  // null from join_world to choose_device after a torchrun-style launch
  RunPlan plan_;      // join_world .. build_model_and_batch (the normalisation: open_run_folder); read only after
  RunModel model_;    // the first state, handed to the backend by start_backend
  RunFolder folder_;  // open_run_folder, write_run_info; the epochs append to its history
  std::unique_ptr<TrainingBackend> backend_;
  RunInput input_;  // start_input
  // the loop
  StepMeter meter_;
  InFlight flight_;
  TrainResult result_;
  int nonfinite_run_ = 0;  // consecutive steps with a non-finite loss
  int64_t stop_at_ = -1;   // stop once this many steps have been submitted (-1: not asked)
  bool profiling_ = false;
};

}  // namespace stoke
