// What a training run is asked to do (TrainConfig, saved as config.json and in every checkpoint) and what it hands
// back (EpochStats, TrainResult). Its own header so the trainer's parts, resume and the CLI can name a run's
// settings without the trainer itself.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/optimizer.h"
#include "engine/options.h"
#include "io/pipeline/input_pipeline.h"
#include "kernels/augment.h"
#include "kernels/mix.h"

namespace stoke {

struct TrainConfig {
  std::string data;  // training ImageFolder
  std::string val;   // validation ImageFolder ("" = none)
  std::string model = "small-cnn";
  std::string out;         // run directory ("" = runs/<model>-<time>)
  bool overwrite = false;  // allow an --out that already holds a run
  std::string resume;      // continue the run in this folder from its latest checkpoint
  bool force = false;      // resume even though training files were added or removed since the checkpoint
  DeviceRequest device = DeviceRequest::automatic;  // --device auto | cpu | cuda
  int epochs = 3;
  int batch_size = 128;
  float lr = 0.1f;
  OptimizerConfig optimizer;
  ScheduleKind schedule = ScheduleKind::onecycle;
  float warmup_epochs = 0.f;  // linear warm-up (constant and cosine schedules)
  float label_smoothing = 0.f;
  float clip_grad_norm = 0.f;  // clip the global gradient L2 norm to this (0 = off)
  uint64_t seed = 0;
  std::string init;           // --init: start from these weights (a safetensors file, a stoke run or checkpoint folder)
  bool init_partial = false;  // --init-partial: load the tensors that fit, initialise the rest (listed)
  // Fine-tuning: --freeze backbone trains only the classifier (the last linear layer; the backbone's batch norms in
  // eval mode too); --freeze-bn runs every batch norm in eval mode; --lr-backbone-mult scales the backbone's lr.
  Freeze freeze = Freeze::none;
  bool freeze_bn = false;
  float lr_backbone_mult = 1.f;
  // --normalize: data (estimated from 2,000 training images) | imagenet | none | MEAN,STD (per channel
  // M1:M2:M3,S1:S2:S3).
  // "" = data, or with --init imagenet (a file) or the run's own (a stoke run); a run records what it resolved to.
  std::string normalize;
  int threads = 0;                  // CPU backend threads (0 = all cores)
  int decoders = 0;                 // JPEG decoder threads (0 = auto: from the cores and a measured decode rate)
  Augment augment = Augment::none;  // the decoders' part: none | flip | crop-flip (random-resized-crop + flip),
                                    // decided per sample by (seed, epoch, sample id)
  // --augment monai | imagenet | cifar and the individual flags, resolved (engine/augment_plan.h): the preset's name
  // ("" = none) and the recipe the backends apply. An active recipe takes the flip over from the decoders.
  std::string augment_preset;
  AugmentRecipe augment_recipe;
  // --augment-on: where the recipe's per-sample transforms run. auto: on the decoder threads when the CPU backend
  // streams its input (the step's cores are the compute), else in the backend's normalize phase (the CUDA op; the
  // caches, which decode once). A session flag, as --cache: it changes rounding, not the draws.
  AugmentOn augment_on = AugmentOn::automatic;
  // --mixup, --cutmix, --mix-prob, --mix-switch-prob: batch mixing (kernels/mix.h), drawn per batch from (seed, epoch,
  // batch index); --mix-off-epochs: none in the last N epochs.
  MixRecipe mix;
  int mix_off_epochs = 0;
  double watchdog_seconds = 30;  // report every decoder's state when a batch is this late
  // CUDA: auto (bf16 on sm_80+, fp16 below) | bf16 | fp16 | fp32
  PrecisionRequest precision = PrecisionRequest::automatic;
  bool deterministic = false;    // CUDA backend: deterministic cuDNN algorithms
  bool sync_bn = false;          // data parallel: batch-norm statistics over the global batch (all ranks), not per rank
  bool graphs = true;            // CUDA backend: capture the step as a CUDA graph after warm-up (--no-graphs: off)
  bool exif_orientation = true;  // turn JPEGs as their EXIF orientation says (as every viewer shows them)
  // auto (= files for folders) | files: keep each file's bytes after its first read | decoded: decode every image
  // once into memory | gpu: decoded, and the training set held by the backend (device memory), batches gathered
  // there by id | none
  CacheMode cache = CacheMode::automatic;
  int cache_budget_mb = 0;       // largest cache allowed (0 = half the available memory)
  int64_t limit_train = 0;       // use a seeded random subset of this many training images (0 = all)
  int64_t limit_val = 0;         // likewise for validation
  int image_size = 0;            // resize inputs to this square size (0 = the data's own size)
  bool strict = false;           // a corrupt image stops the run
  bool quiet = false;            // no progress line (tests)
  bool tensorboard = false;      // also write RUNDIR/tensorboard/ event files
  int64_t checkpoint_every = 0;  // also checkpoint every N steps (0: at the end of each epoch only)
  int keep_checkpoints = 3;      // newest step checkpoints kept (the best one is always kept)
  int max_nonfinite_steps = 5;   // stop after this many consecutive steps with a non-finite loss
  int64_t profile_first = 0;     // --profile-steps A:B: global steps A..B (1-based, inclusive) are profiled
  int64_t profile_last = 0;      // (0: no profile window)
  std::string trace_file;        // --trace: write the timeline of steps trace_first..trace_last here ("" = none)
  int64_t trace_first = 1, trace_last = 50;
  int eval_every = 1;  // validate every N epochs (and always after the last)
  int log_every = 50;  // metrics.jsonl: a train line every N steps (and at each epoch's end)
  // --bn-recalibrate: before the last epoch's evaluation and checkpoint, recompute every batch-norm running mean and
  // variance over this many training batches with the final weights (engine/bn_recalibrate.h). -1 (auto): 20 batches
  // when the run takes fewer than 100 steps, else none; 0: none. At most one epoch's batches.
  int bn_recalibrate = -1;
  BestMetric best_metric = BestMetric::val_acc;  // what the best checkpoint maximises
  // --ema DECAY: an exponential moving average of the weights (and batch-norm statistics) after every applied update;
  // evaluation, checkpoints/best and eval/predict/export of the run use it. 0: off.
  float ema = 0.f;
  // --ema-warmup: the decay of applied update t is min(ema, 1 - t^(-2/3)) (timm's ModelEmaV3 warm-up,
  // engine/optimizer.h ema_decay_at), t counted from the run's start; needs --ema.
  bool ema_warmup = false;
  bool tta_flip = false;  // --tta flip: evaluation averages the class probabilities of each image and its mirror
  // Test hooks (no flags): behave as if SIGINT arrived after this many steps of this process (0 = never);
  // make the loss of these global steps non-finite; call before_input once the data is indexed, before the
  // decoders start (a test deletes files there).
  int64_t interrupt_after_steps = 0;
  std::vector<int64_t> inject_nonfinite_steps;
  std::function<void()> before_input;
};

// The settings that define a run (everything but where and how fast it runs), as saved in config.json and
// every checkpoint; config_from_json restores them.
nlohmann::json config_to_json(const TrainConfig& cfg);
TrainConfig config_from_json(const nlohmann::json& j);

struct EpochStats {
  int epoch = 0;
  double train_loss = 0, train_acc = 0;
  double val_loss = 0, val_acc = 0, val_auc = 0;  // NaN without validation (or when not evaluated)
  double seconds = 0, images_per_s = 0;
};

struct TrainResult {
  std::string run_dir;
  std::string backend;             // "cpu" | "cuda"
  std::vector<EpochStats> epochs;  // those completed by this process
  std::vector<float> step_losses;  // the loss of every step this process trained, in order
  int64_t first_step = 0;          // global step of step_losses[0] (non-zero after --resume)
  double seconds = 0;
  int64_t steps = 0;            // global steps completed
  int64_t corrupt_images = 0;   // distinct files that could not be read or decoded (train and val)
  int64_t vanished_images = 0;  // distinct files deleted or renamed after indexing
  int64_t skipped_steps = 0;    // steps whose update was skipped (non-finite loss)
  int64_t params = 0;
  bool interrupted = false;
  std::string last_checkpoint;  // folder of the newest checkpoint written
  double final_val_acc() const { return epochs.empty() ? 0.0 : epochs.back().val_acc; }
};

// Builds the model named in the config for an input shape and class count (models/ provides build_model;
// the engine does not depend on the model zoo).
using ModelFactory = std::function<Graph(const std::string& name, Shape3 input, int classes)>;

// The training input pipeline's settings for a run (input size, batch, decoders, seed, augmentation, drop_last).
io::PipelineConfig training_pipeline_config(const TrainConfig& cfg, Shape3 shape, int batch);

}  // namespace stoke
