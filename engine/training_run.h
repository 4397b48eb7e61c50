// The parts of one training run, in the order train() (engine/trainer.cpp) calls them. Internal to the trainer:
// the state a run carries from one part to the next lives here, each part is a method that reads as one step of
// the story (plan the device, the data, the model and batch; open or resume the run folder; start the backend;
// start the input; the epochs; the summary).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/console.h"
#include "base/shape.h"
#include "engine/backend.h"
#include "engine/batch_size.h"
#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "engine/graph.h"
#include "engine/interrupt.h"
#include "engine/metrics.h"
#include "engine/optimizer.h"
#include "engine/run_verdict.h"
#include "engine/train_config.h"
#include "io/pipeline/decoded_batches.h"
#include "io/pipeline/decoded_cache.h"
#include "io/pipeline/input_pipeline.h"
#include "io/pipeline/sampler.h"
#include "io/source/file_cache.h"
#include "io/source/source.h"
#include "report/tensorboard.h"

namespace stoke {

using TrainClock = std::chrono::steady_clock;
double seconds_since(TrainClock::time_point t0);

// metrics.jsonl, and the same numbers as TensorBoard scalars when asked (--tensorboard).
class JsonlWriter {
 public:
  JsonlWriter(const std::string& path, const std::string& tensorboard_dir);
  void write(const nlohmann::json& j);
  void flush();

 private:
  std::ofstream f_;
  std::optional<TensorBoardWriter> tb_;
};

// An evaluation-style pipeline: dataset order, no augmentation, the last batch padded (use b.valid).
io::PipelineConfig eval_pipeline_config(Shape3 shape, int batch, int decoders, bool strict, const std::string& quarantine);
// The learning-rate schedule of a run of `epochs` epochs.
Schedule schedule_for(const TrainConfig& cfg, int64_t steps_per_epoch, int epochs);

// report.html must never stop a run: a failure is a warning.
void refresh_report(const std::string& run_dir, Console& console);

// The user's flags, checked before anything is opened. Throws UserError.
void check_train_config(const TrainConfig& cfg);

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
  void train_epochs();
  // ---- summary (training_summary.cpp) ----
  TrainResult finish();

 private:
  // training_run.cpp
  int64_t memory_budget(std::string& what) const;
  int requested_batch_size();
  std::string fitting_batch_advice() const;
  double run_elapsed() const { return elapsed_before_ + seconds_since(t_start_); }  // across every session
  void check_profile_window() const;  // prints the window it will profile (through the mutable console)
  void write_run_info();
  void write_left_out() const;
  // training_folder.cpp
  void resume_from_checkpoint();
  void check_resumed_data(const nlohmann::json& state);
  std::string schedule_change(int planned_epochs) const;
  // training_loop.cpp
  void hold_train_set();
  io::Batch next_train(int64_t epoch, int64_t index);
  void release(int64_t tag);
  bool train_epoch(int64_t epoch);  // false when interrupted
  void end_epoch(int64_t epoch, double train_seconds, double input_wait);
  ClassificationReport evaluate();
  void on_result(const StepResult& r, int64_t epoch);
  void take(bool wait, int64_t epoch);
  void settle(int64_t epoch);
  void write_checkpoint(int64_t epoch, int64_t cursor, bool best);
  double window_stall();
  void start_profile();
  void stop_profile();
  void finish_trace();
  void warn(const std::string& m);
  // Whether to stop after the steps submitted so far: a signal to this process (one process), or the step every
  // rank agreed on (a data-parallel job), or the test hook's step.
  bool stop_now() const { return (world_ == 1 && interrupt_requested() != 0) || (stop_at_ >= 0 && sub_step_ >= stop_at_); }
  // training_summary.cpp
  std::string verdict(double run_stall) const;
  // training_recalibrate.cpp: --bn-recalibrate
  int recalibration_batches() const;  // how many batches the end of this run recalibrates over (0: none)
  int recalibrate_batch_norm();       // does it, with the final weights; returns the batches used

  TrainConfig cfg_;  // a copy: ranks other than 0 run quiet
  mutable Console console_;  // every line the run prints goes through it (printing is not a change of state)
  const ModelFactory& build_model_;
  const TrainClock::time_point t_start_ = TrainClock::now();
  bool resuming_ = false;

  // the processes of a data-parallel job (world 1: this one)
  dist::LaunchInfo launch_;
  // A CUDA run started by a launcher talks over NCCL: comm_ is then the NCCL communicator, and bootstrap_ the
  // MPI one that handed it NCCL's unique id (null after a torchrun-style launch: the TCP rendezvous did).
  std::unique_ptr<dist::Communicator> bootstrap_;
  std::unique_ptr<dist::Communicator> comm_;  // null from join_world to choose_device after a torchrun-style launch
  int rank_ = 0, world_ = 1;
  bool nccl_ = false;
  bool writer_ = true;     // rank 0 owns the run folder: checkpoints, metrics, config, summary, report
  bool user_quiet_ = false;
  // device
  DeviceProbe dev_;
  bool use_cuda_ = false;
  // data
  std::shared_ptr<const io::Source> train_all_, val_all_, train_src_, val_src_;
  std::shared_ptr<const io::FileCacheSource> train_files_, val_files_;
  bool has_val_ = false;
  std::vector<std::string> class_names_;
  Shape3 shape_;
  std::string shape_note_;  // how the input size was chosen when the images differ in size
  int classes_ = 0;
  int64_t train_count_ = 0, val_count_ = 0;
  std::string fingerprint_;
  // model and batch
  Graph graph_{Shape3{}};  // replaced by the model once the data gave its input shape
  std::vector<float> params_, buffers_, opt_state_;
  int64_t opt_steps_ = 0;
  MemoryTarget mem_target_;
  std::string batch_note_;      // --batch-size auto: what it chose, and why
  std::string batch_fit_note_;  // a batch larger than the data, or images each epoch leaves out (drop_last)
  int batch_ = 0;        // the global batch (--batch-size)
  int local_batch_ = 0;  // this rank's slice of it: batch_ / world_
  int64_t steps_per_epoch_ = 0;
  // run folder
  std::string run_dir_, metrics_path_, resumed_from_;
  int64_t start_epoch_ = 0, start_cursor_ = 0, step_ = 0;
  std::string folder_note_, resume_note_;  // a run folder started again; a resume that is not a plain continuation
  double elapsed_before_ = 0;        // run time of the sessions before this one (from the checkpoint)
  double epoch_seconds_before_ = 0;  // time already spent in the epoch a mid-epoch checkpoint interrupted
  nlohmann::json resume_sums_, history_ = nlohmann::json::array(), config_;
  double best_score_ = 0;  // best value of cfg.best_metric (negated for val_loss); -inf before any evaluation
  ClassificationReport last_report_;
  std::vector<float> mean_, stdev_;
  std::unique_ptr<JsonlWriter> metrics_;
  // backend
  std::unique_ptr<TrainingBackend> backend_;
  // input
  Schedule sched_;
  std::unique_ptr<io::DecodedCache> train_cache_, val_cache_;
  // Where training batches come from (io/pipeline/batch_source.h): the decoder ring, or batches gathered from the
  // decoded cache (pixels, or sample ids once the backend holds the set).
  std::unique_ptr<io::BatchSource> train_batches_;
  int batches_held_ = 0;                   // acquired from train_batches_ and not yet released
  io::InputPipeline* train_in_ = nullptr;  // train_batches_ when it is the decoder ring (its statistics)
  std::unique_ptr<io::InputPipeline> val_in_;
  std::optional<io::Sampler> sampler_;
  bool held_ = false;  // --cache gpu took: the backend holds the training set, a step hands over sample ids
  std::vector<uint8_t> val_px_;
  std::vector<int32_t> val_labels_;
  // the loop
  TrainResult result_;
  TrainClock::time_point loop_start_;
  int64_t loop_first_step_ = 0;
  double total_wait_ = 0, total_train_seconds_ = 0;  // this process's input wait and training time
  double total_device_s_ = 0;                          // and the device's busy time (CUDA events; 0 elsewhere)
  CommTally total_comm_;                               // the gradient all-reduce (data parallel)
  int nonfinite_run_ = 0;
  int64_t stop_at_ = -1;  // stop once this many steps have been submitted (-1: not asked)
  bool profiling_ = false;
  // per epoch (a checkpoint mid-epoch carries the sums)
  double loss_sum_ = 0;
  int64_t correct_sum_ = 0, seen_ = 0, seen_at_start_ = 0;
  TrainClock::time_point epoch_start_;
  double wait_at_start_ = 0;
  double window_loss_ = 0, window_device_s_ = 0, epoch_device_s_ = 0;  // device busy time (CUDA events)
  CommTally window_comm_, epoch_comm_;
  int64_t window_correct_ = 0, window_seen_ = 0;
  double window_wait0_ = 0;
  TrainClock::time_point window_t0_;
  int64_t b_in_epoch_ = 0, sub_b_ = 0, sub_step_ = 0;  // finished and submitted steps
  struct Pending {
    float lr;
    int n;
  };
  std::deque<Pending> pending_;  // submitted steps not yet finished, in order
  std::vector<int64_t> released_;
  std::vector<StepResult> results_;
};

}  // namespace stoke
