// What a training run plans before it opens anything it writes: the processes of the job, the device, the data, the
// model's first state and the batch. Each part is made by one step of TrainingRun (engine/training_run.h) and only
// read after it, so a later step names what it uses (plan_.data.shape, plan_.batch.local) instead of finding it
// among the run's other state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/shape.h"
#include "engine/batch_size.h"
#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "engine/graph.h"
#include "engine/optimizer.h"
#include "engine/train_config.h"
#include "io/source/file_cache.h"
#include "io/source/source.h"

namespace stoke {

// join_world: this process's place in the job (one process: rank 0 of 1); choose_device adds the transport.
struct RunWorld {
  dist::LaunchInfo launch;
  int rank = 0, size = 1;
  bool writer = true;       // rank 0 owns the run folder: checkpoints, metrics, config, summary, report
  bool nccl = false;        // a CUDA run started by a launcher: the gradients travel over NCCL
  bool user_quiet = false;  // the user's --quiet (ranks other than 0 run quiet whatever it says)
};

// open_data: the sources (all images, and the seeded subsets that train), the input shape and the classes.
struct RunData {
  std::shared_ptr<const io::Source> train_all, val_all, train_src, val_src;
  std::shared_ptr<const io::FileCacheSource> train_files, val_files;  // --cache auto|files over a folder
  bool has_val = false;
  std::vector<std::string> class_names;
  int classes = 0;
  Shape3 shape;
  std::string shape_note;  // how the input size was chosen when the images differ in size
  int64_t train_count = 0, val_count = 0;
  std::string fingerprint;  // of the training samples: a resumed run refuses data that differ
};
RunData open_run_data(const TrainConfig& cfg);

// build_model_and_batch: the model and its first state (initialised, or the checkpoint's once the folder is opened).
struct RunModel {
  Graph graph{Shape3{}};  // replaced by the model once the data gave its input shape
  std::vector<float> params, buffers, opt_state;
  int64_t opt_steps = 0;
  std::vector<float> ema_params, ema_buffers;  // --ema, resumed (empty: the EMA starts at params and buffers)
  std::vector<std::string> notes;  // --init and --normalize: what was loaded, adapted and chosen (announce says them)
};

// build_model_and_batch: the batch that runs, what it needs, and the schedule over it.
struct RunBatch {
  MemoryTarget target;
  int global = 0;  // --batch-size as it runs
  int local = 0;   // this rank's slice of it: global / world
  int64_t steps_per_epoch = 0;
  Schedule schedule;
  std::string auto_note;  // --batch-size auto: what it chose, and why
  std::string fit_note;   // a batch larger than the data, or images each epoch leaves out (drop_last)
};
// The one line that says how the batch meets the training set (empty when the batch divides it).
std::string batch_fit_note(int64_t requested, bool given, int64_t batch, int64_t images);

// --normalize as values for `channels` channels: imagenet (torchvision's (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225);
// on 1-channel data the mean of each three), none (0 / 1), or MEAN,STD (one pair for every channel, or
// M1:M2:M3,S1:S2:S3 one per channel). False for data (estimated when the run folder opens). Throws UserError for
// anything else; channels 0 checks the syntax only.
bool fixed_normalization(const std::string& spec, int channels, std::vector<float>& mean, std::vector<float>& stdev);
// The MEAN,STD spelling of values (read back exactly), averaged over the channels for 1-channel data.
std::string normalization_spec(const std::vector<float>& mean, const std::vector<float>& stdev, int channels);

struct RunPlan {
  RunWorld world;
  DeviceChoice device;
  RunData data;
  RunBatch batch;
  std::vector<float> mean, stdev;  // the normalisation: estimated for a new run, the checkpoint's on resume
};

}  // namespace stoke
