// The train subcommand's flags (and --tta, which eval and predict share in their own form).
#include "apps/train_flags.h"

#include <cmath>
#include <functional>
#include <string>
#include <utility>

#include "base/error.h"
#include "base/format.h"
#include "engine/backend.h"
#include "engine/device.h"

namespace stoke {

// --tta flip (test-time augmentation): the only choice so far, so a flag with a value for what comes next.
void add_tta(CLI::App* app, const char* what, bool follows_run, std::function<void(bool)> set) {
  app->add_option_function<std::string>(
         "--tta", [set = std::move(set)](const std::string& v) { set(v == "flip"); },
         str("Test-time augmentation in ", what,
             ": flip averages the class probabilities of each image and its left-right mirror; none: off",
             follows_run ? "; unset: what the run's own validation used (its config.json)" : ""))
      ->check(CLI::IsMember({"none", "flip"}))
      ->type_name("none|flip")
      ->default_str(follows_run ? "as the run" : "none");
}

namespace {

// What to train on and for how long: the data, the model, epochs and batch size.
void add_data_flags(CLI::App* t, TrainConfig& cfg) {
  t->add_option("--data", cfg.data, "Training images: DIR/<class>/*.jpg (required unless --resume)");
  t->add_option("--val", cfg.val, "Validation images, same classes (evaluated after each epoch)");
  t->add_option("--model", cfg.model,
                "Model: small-cnn, small-cnn-wide, small-cnn-nobn, resnet18, resnet34, resnet50, densenet121")
      ->capture_default_str();
  t->add_option("--epochs", cfg.epochs,
                "Passes over the training data (0 with --init: evaluate the imported weights, no step)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option_function<std::string>(
       "--batch-size", [&cfg](const std::string& v) { cfg.batch_size = parse_batch_size("--batch-size", v); },
       "Images per step, or auto: the largest multiple of 8 whose planned memory fits")
      ->type_name("N|auto")
      ->default_str(std::to_string(cfg.batch_size));
}

// The optimizer, its learning-rate schedule and the loss's label smoothing.
void add_optimizer_flags(CLI::App* t, TrainConfig& cfg, std::string& optimizer, std::string& schedule) {
  t->add_option("--lr", cfg.lr, "Peak learning rate")->capture_default_str()->check(kPositive);
  t->add_option("--optimizer", optimizer, "sgd | adamw")->capture_default_str()->check(CLI::IsMember({"sgd", "adamw"}));
  t->add_option("--momentum", cfg.optimizer.momentum, "SGD momentum")
      ->capture_default_str()
      ->check(finite_range(0.0, 1.0));
  t->add_flag("--nesterov,!--no-nesterov", cfg.optimizer.nesterov,
              "Nesterov momentum (SGD); --no-nesterov: plain momentum")
      ->default_str(cfg.optimizer.nesterov ? "true" : "false");  // capture_default_str() captures nothing for a flag
  t->add_option("--weight-decay", cfg.optimizer.weight_decay, "Weight decay (decoupled for AdamW); not on BN or biases")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--schedule", schedule, "Learning-rate schedule: constant | cosine | onecycle")
      ->capture_default_str()
      ->check(CLI::IsMember({"constant", "cosine", "onecycle"}));
  t->add_option("--warmup-epochs", cfg.warmup_epochs, "Linear warm-up length (constant and cosine schedules)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--label-smoothing", cfg.label_smoothing, "Label smoothing")
      ->capture_default_str()
      ->check(finite_range(0.0, 0.99));
}

// Where the weights start (seed, --init for fine-tuning), what stays frozen, and the input normalisation.
void add_init_flags(CLI::App* t, TrainConfig& cfg) {
  t->add_option("--seed", cfg.seed, "Seed for initialisation and sample order")->capture_default_str();
  t->add_option("--init", cfg.init,
                "Start from these weights: a safetensors file (PyTorch's state_dict names and layout: torchvision, "
                "timm, MONAI, stoke export) or a stoke run or checkpoint folder; another class count gets a fresh "
                "classifier, colour weights on grey data a summed first convolution (docs/FINE-TUNING.md)");
  t->add_flag("--init-partial", cfg.init_partial,
              "With --init: load the tensors that fit and initialise the rest, listing both sides (default: any "
              "difference stops the run, naming each tensor)");
  add_choice(
      t, "--freeze", cfg.freeze, parse_freeze, {"none", "backbone"},
      "none | backbone: train only the classifier (the last linear layer); the backbone's weights and batch-norm "
      "statistics stay as loaded, and backward stops at the classifier");
  t->add_flag("--freeze-bn", cfg.freeze_bn,
              "Every batch norm in eval mode while training: running statistics used, not updated (gamma and beta "
              "still train)");
  t->add_option("--lr-backbone-mult", cfg.lr_backbone_mult,
                "The backbone's lr is this times the scheduled lr; the classifier's is the lr itself")
      ->capture_default_str()
      ->check(kPositive);
  t->add_option("--normalize", cfg.normalize,
                "Input mean/std of pixel/255: data (estimated from 2,000 training images; the default) | imagenet | "
                "none | MEAN,STD, or per channel M1:M2:M3,S1:S2:S3; with --init of a file the default is imagenet, "
                "of a stoke run that run's own");
}

// The run folder, resuming, checkpoints, and the guards that clip or stop a diverging run.
void add_run_flags(CLI::App* t, TrainConfig& cfg) {
  t->add_option("--out", cfg.out,
                "Run folder for metrics.jsonl, config.json, summary.json (default runs/<model>-<time>, "
                "or <time>-2, -3, ... when a run started in the same second holds it)");
  t->add_flag("--overwrite", cfg.overwrite, "Reuse an --out folder that already holds a run");
  t->add_option("--resume", cfg.resume,
                "Continue the run in this folder from its latest checkpoint: its settings are reused "
                "(the same flags again are accepted; --epochs extends it; --device, --threads, --decoders, --cache, "
                "--quiet and the logging flags may change)");
  t->add_flag("--force", cfg.force,
              "With --resume: continue even though training files were added or removed since the "
              "checkpoint (they are named either way)");
  t->add_option("--checkpoint-every", cfg.checkpoint_every,
                "Also checkpoint every N steps (0: at each epoch's end only)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--keep-checkpoints", cfg.keep_checkpoints, "Newest checkpoints kept (the best is always kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  t->add_option("--clip-grad-norm", cfg.clip_grad_norm, "Clip the global gradient L2 norm (0 = off)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--max-nonfinite-steps", cfg.max_nonfinite_steps, "Stop after this many consecutive non-finite losses")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
}

// CPU threads and JPEG decoder threads.
void add_worker_flags(CLI::App* t, TrainConfig& cfg, std::string& decoders) {
  t->add_option("--threads", cfg.threads, "CPU backend threads (0 = all cores)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--decoders,--workers,--num-workers", decoders,
                "JPEG decoder threads: auto (from the cores and a measured decode rate) or N")
      ->capture_default_str()
      ->check(decoders_check());
}

// How the CUDA backend runs the step: precision, batch-norm sync, determinism, graphs.
void add_cuda_flags(CLI::App* t, TrainConfig& cfg) {
  add_choice(t, "--precision", cfg.precision, parse_precision_flag, kPrecisions,
             "CUDA backend: auto (bf16 on sm_80+, fp16 below) | bf16 | fp16 | fp32");
  t->add_flag("--sync-bn", cfg.sync_bn,
              "Data parallel: batch norm normalises with the statistics of the whole global batch, summed over the "
              "processes (PyTorch's SyncBatchNorm); by default each process uses its own slice's, as DDP does");
  t->add_flag("--deterministic", cfg.deterministic,
              "CUDA backend: only deterministic cuDNN algorithms (bit-reproducible runs)");
  t->add_flag(
      "!--no-graphs", cfg.graphs,
      "CUDA backend: run every step uncaptured (by default the step is captured once as a CUDA graph and replayed)");
}

// The input pipeline: decoding, where augmentation runs, caching, subsets and image size.
void add_input_flags(CLI::App* t, TrainConfig& cfg) {
  t->add_flag(
      "!--no-exif-orientation", cfg.exif_orientation,
      "Decode JPEGs as stored, ignoring their EXIF orientation (by default they are turned as viewers show them)");
  add_choice(t, "--augment-on", cfg.augment_on, parse_augment_on, {"auto", "decoders", "step"},
             "Where the recipe's transforms run (rotate ... erase): decoders = on the decoder threads, the geometry in "
             "the resize, as torchvision transforms in DataLoader workers (noise stays in the step) | step = in the "
             "step, from the uint8 batch (the CUDA kernel on a GPU) | auto: decoders on the CPU backend when "
             "streaming (no decoded cache), else step");
  add_choice(t, "--cache", cfg.cache, parse_cache, {"auto", "files", "decoded", "gpu", "none"},
             "auto (files, for folders) | files: read each file once, keep its JPEG bytes in memory | decoded: decode "
             "every image once into memory, then train from there | gpu: decoded, then the training set is uploaded "
             "to the GPU once and each batch gathered there (falls back to decoded, said, when it does not fit; on "
             "the CPU backend it is decoded) | none");
  t->add_option("--cache-budget-mb", cfg.cache_budget_mb,
                "Largest cache allowed (0 = files: a quarter of the available memory, at most 4 GiB; decoded and gpu: "
                "half, in host memory)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--watchdog", cfg.watchdog_seconds,
                "Report every decoder's state when a batch is this many seconds late")
      ->capture_default_str()
      ->check(kPositive);
  t->add_option("--limit-train", cfg.limit_train, "Train on a seeded random subset of N images (0 = all)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--limit-val", cfg.limit_val, "Validate on a seeded random subset of N images (0 = all)")
      ->capture_default_str()
      ->check(kNonNegative);
  t->add_option("--image-size", cfg.image_size, "Resize inputs to SxS (0 = the data's own size)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
}

// Validation and logging cadence, the final weights (batch-norm recalibration, EMA), the best checkpoint, TTA.
void add_validation_flags(CLI::App* t, TrainConfig& cfg) {
  t->add_option("--eval-every", cfg.eval_every, "Validate every N epochs (and after the last)")
      ->capture_default_str()
      ->check(kPositive);
  t->add_option("--log-every", cfg.log_every, "metrics.jsonl: a train line (loss, accuracy, img/s) every N steps")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  t->add_option_function<std::string>(
       "--bn-recalibrate",
       [&cfg](const std::string& v) {
         char* end = nullptr;
         const long n = v == "auto" ? -1 : std::strtol(v.c_str(), &end, 10);
         if (v != "auto" && (v.empty() || *end != '\0' || n < 0 || n > (1 << 30)))
           throw CLI::ValidationError("--bn-recalibrate",
                                      "must be auto or a number of batches (0: off), got '" + v + "'");
         cfg.bn_recalibrate = static_cast<int>(n);
       },
       "Before the final evaluation and checkpoint, recompute every batch-norm running mean and variance over N "
       "training batches (at most an epoch's) with the final weights, so they do not depend on how many steps ran "
       "(with --ema also the EMA's statistics, under the EMA's weights); auto: 20 when the run takes fewer than 100 "
       "steps, else off; 0: off")
      ->type_name("N|auto")
      ->default_str("auto");
  add_choice(t, "--best-metric", cfg.best_metric, parse_best_metric, {"val_acc", "val_auc", "val_loss"},
             "What the best checkpoint maximises: val_acc | val_auc | val_loss");
  t->add_option("--ema", cfg.ema,
                "Keep an exponential moving average of the weights and batch-norm statistics, ema = DECAY ema + (1 - "
                "DECAY) w after every update (timm's ModelEmaV2, e.g. 0.999); validation, checkpoints/best and eval, "
                "predict, export of the run use it (docs/AUGMENTATION.md)")
      ->type_name("DECAY")
      ->default_str("off")
      ->check(open_range(0.0, 1.0));
  t->add_flag("--ema-warmup", cfg.ema_warmup,
              "With --ema: warm the decay up as timm does (ModelEmaV3 use_warmup; named after timm's "
              "--model-ema-warmup, as --ema DECAY stands for its --model-ema-decay): update t uses min(DECAY, "
              "1 - t^(-2/3)), so the first update copies the weights and early ones are not swamped by the initial "
              "weights; counted over the whole run, --resume included");
  add_tta(t, "validation", false, [&cfg](bool flip) { cfg.tta_flip = flip; });
}

// Corrupt images, console and TensorBoard output, and the test, profiling and tracing hooks.
void add_output_and_debug_flags(CLI::App* t, TrainConfig& cfg) {
  t->add_flag("--strict", cfg.strict, "Stop at the first corrupt image instead of skipping it");
  t->add_flag("--quiet", cfg.quiet, "No progress output");
  t->add_flag("--tensorboard", cfg.tensorboard, "Also write TensorBoard event files to RUNDIR/tensorboard");
  // Tests: stop at a step boundary after N steps, as Ctrl-C would (a checkpoint to resume from). Not in --help.
  t->add_option("--interrupt-after-steps", cfg.interrupt_after_steps)->group("");
  // A:B (global steps, 1-based, inclusive) or A (one step), for --profile-steps and --trace-steps.
  auto step_window = [](const char* flag, int64_t& first, int64_t& last) {
    return [flag, &first, &last](const std::string& v) {
      const size_t colon = v.find(':');
      auto number = [&](const std::string& s) -> int64_t {
        char* end = nullptr;
        const long long x = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || x < 1)
          throw CLI::ValidationError(flag, "must be A:B with steps 1 <= A <= B, got '" + v + "'");
        return x;
      };
      first = number(v.substr(0, colon));
      last = colon == std::string::npos ? first : number(v.substr(colon + 1));
      if (last < first) throw CLI::ValidationError(flag, "must be A:B with steps 1 <= A <= B, got '" + v + "'");
    };
  };
  t->add_option_function<std::string>("--profile-steps",
                                      step_window("--profile-steps", cfg.profile_first, cfg.profile_last),
                                      "Profile global steps A..B: an NVTX range 'profiled steps' and, on CUDA, "
                                      "cudaProfilerStart/Stop around them (nsys --capture-range=cudaProfilerApi; "
                                      "docs/PROFILING.md)")
      ->type_name("A:B");
  t->add_option("--trace", cfg.trace_file,
                "Write a timeline of the --trace-steps window (decoders, ring waits, copies, steps on every thread) as "
                "Chrome-trace JSON to FILE: open it in ui.perfetto.dev or chrome://tracing")
      ->type_name("FILE");
  t->add_option_function<std::string>("--trace-steps", step_window("--trace-steps", cfg.trace_first, cfg.trace_last),
                                      "The steps --trace records")
      ->type_name("A:B")
      ->default_str(str(cfg.trace_first, ":", cfg.trace_last));
}

}  // namespace

void add_train(CLI::App& app, TrainConfig& cfg, AugmentFlags& augment, std::string& optimizer, std::string& schedule,
               std::string& decoders) {
  auto* t = app.add_subcommand("train", "Train a CNN classifier on an ImageFolder of JPEGs (DIR/<class>/*.jpg)");
  // Declaration order is --help's order: keep it when moving a flag between these.
  add_data_flags(t, cfg);
  add_optimizer_flags(t, cfg, optimizer, schedule);
  add_init_flags(t, cfg);
  add_choice(t, "--device", cfg.device, parse_device, kDevices, "auto | cpu | cuda");
  add_run_flags(t, cfg);
  add_worker_flags(t, cfg, decoders);
  add_augment_flags(t, augment);
  add_mix_flags(t, cfg.mix, cfg.mix_off_epochs);
  add_cuda_flags(t, cfg);
  add_input_flags(t, cfg);
  add_validation_flags(t, cfg);
  add_output_and_debug_flags(t, cfg);
}

}  // namespace stoke
