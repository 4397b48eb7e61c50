// The input half of a run: the training and evaluation pipelines or the decoded cache, the batch a step takes, and
// the release of its ring slot.
#include <filesystem>

#include "base/error.h"
#include "base/format.h"
#include "engine/training_run.h"

namespace stoke {
namespace fs = std::filesystem;

// ---- the input ----------------------------------------------------------------------------------------------------
// The training and validation pipelines' settings: this rank's slice, the quarantine list, the watchdog's voice.
void TrainingRun::pipeline_configs(io::PipelineConfig& tpc, io::PipelineConfig& vpc) {
  const std::string quarantine =
      plan_.world.writer ? (fs::path(folder_.dir) / "quarantine.txt").string() : std::string();
  auto on_warning = [this](const std::string& m) { warn(m); };
  // The watchdog speaks even with --quiet: something is stuck.
  auto on_stall = [this](const std::string& report) { console_.alert(report); };
  // Data parallel: this rank's slice of every global batch (io/pipeline/sampler.h).
  tpc = training_pipeline_config(cfg_, plan_.data.shape, plan_.batch.local);
  tpc.rank = plan_.world.rank;
  tpc.world = plan_.world.size;
  tpc.end_epoch = cfg_.epochs + (recalibration_batches() > 0 ? 1 : 0);  // --bn-recalibrate reads the next epoch's
  tpc.strict = cfg_.strict;
  tpc.quarantine_path = quarantine;
  tpc.watchdog_seconds = cfg_.watchdog_seconds;
  tpc.on_warning = on_warning;
  tpc.on_stall = on_stall;
  vpc = eval_pipeline_config(plan_.data.shape, plan_.batch.local, cfg_.decoders, cfg_.strict, quarantine);
  // Validation is shared out too: rank r evaluates its slice of each global batch (the last one padded and masked),
  // and the ranks' rows are gathered before the metrics (evaluate()).
  vpc.rank = plan_.world.rank;
  vpc.world = plan_.world.size;
  vpc.watchdog_seconds = cfg_.watchdog_seconds;
  vpc.on_warning = on_warning;
  vpc.on_stall = on_stall;
}

void TrainingRun::start_input() {
  if (cfg_.before_input) cfg_.before_input();
  io::PipelineConfig tpc, vpc;
  pipeline_configs(tpc, vpc);
  // --cache decoded: decode everything once, then gather batches from memory in the pipeline's order. --cache gpu
  // the same, and then the training set goes to the backend, which gathers each batch itself (hold_train_set).
  // --epochs 0 (evaluation only) reads no training batch: no training input is made.
  const bool trains = cfg_.epochs > 0;
  // --augment-on: the recipe's transforms on the decoder threads (drawn there by the same rule) or in the step.
  const bool decoders_augment =
      augments_on_decoders(cfg_.augment_on, plan_.device.use_cuda, !decodes_once(cfg_.cache), cfg_.augment_recipe);
  if (decoders_augment) tpc.decoder_augment = decoder_augment_fn(cfg_.augment_recipe, plan_.data.shape, cfg_.seed);
  if (cfg_.augment_on == AugmentOn::decoders && !decoders_augment && recipe_active(cfg_.augment_recipe) && trains)
    warn(str("--augment-on decoders: --cache ", to_string(cfg_.cache),
             " decodes every image once, before the epochs, so the transforms run in the step"));
  if (decodes_once(cfg_.cache)) {
    if (trains) input_.train_cache = std::make_unique<io::DecodedCache>(plan_.data.train_src, plan_.data.shape, tpc);
    if (plan_.data.has_val)
      input_.val_cache = std::make_unique<io::DecodedCache>(plan_.data.val_src, plan_.data.shape, vpc);
    const io::DecodedCache* caches[] = {input_.train_cache.get(), input_.val_cache.get()};
    if (!cfg_.quiet && (caches[0] || caches[1])) {
      int64_t images = 0, bytes = 0;
      double seconds = 0;
      for (const io::DecodedCache* c : caches)
        if (c) images += c->size(), bytes += c->bytes(), seconds += c->seconds();
      console_.say("cache: decoded %s images once into %.1f MiB of memory in %.1f s\n",
                   format_count(static_cast<double>(images)).c_str(), static_cast<double>(bytes) / 1048576.0, seconds);
    }
    if (trains && cfg_.cache == CacheMode::gpu) hold_train_set();
  }
  // This rank's slice of each global batch: training shuffles and drops the last partial batch; evaluation keeps
  // the data set's order and pads it (the evaluation ring's order).
  auto sampler = [&](int64_t samples, bool train) {
    io::SamplerConfig c;
    c.samples = samples;
    c.batch = plan_.batch.local;
    c.rank = plan_.world.rank;
    c.world = plan_.world.size;
    c.shuffle = c.drop_last = train;
    if (train) c.seed = cfg_.seed;
    return c;
  };
  if (input_.train_cache) {
    // The training sampler's batches gathered from the cache, each into a buffer refilled only once the backend
    // released it (its copy completed), like a ring slot. The backend's queue holds two steps; one more is gathered.
    using Feed = io::DecodedBatches::Feed;
    input_.train_batches =
        std::make_unique<io::DecodedBatches>(*input_.train_cache, sampler(plan_.data.train_count, true), cfg_.seed,
                                             tpc.aug.hflip, input_.held ? Feed::ids : Feed::pixels, 3);
  } else if (trains) {
    auto ring = std::make_unique<io::InputPipeline>(plan_.data.train_src, tpc);
    input_.train_ring = ring.get();
    input_.train_batches = std::move(ring);
  }
  if (input_.val_cache) {
    input_.val_batches =
        std::make_unique<io::DecodedBatches>(*input_.val_cache, sampler(plan_.data.val_count, false), 0, false,
                                             io::DecodedBatches::Feed::pixels, 1, io::DecodedBatches::Epochs::one);
  } else if (plan_.data.has_val) {
    auto ring = std::make_unique<io::InputPipeline>(plan_.data.val_src, vpc);
    input_.val_ring = ring.get();
    input_.val_batches = std::move(ring);
  }
  input_.transforms = BatchTransforms(cfg_.augment_recipe, plan_.data.shape, cfg_.seed, decoders_augment);
  if (!cfg_.quiet) say_input(decoders_augment, trains);
}

// The start's lines on the input: where the augmentation runs, the decoder ring, the file cache.
void TrainingRun::say_input(bool decoders_augment, bool trains) {
  if (recipe_active(cfg_.augment_recipe) && trains)
    console_.say("augmentation: %s\n",
                 !decoders_augment ? "in the step, from the uint8 batch"
                 : cfg_.augment_recipe.noise_p > 0.f
                     ? "on the decoder threads (the geometry in their resize; the noise in the step)"
                     : "on the decoder threads (the geometry in their resize)");
  if (input_.train_ring) {
    console_.say("input: %d decoder thread%s (%s), %d ring slots, %s host memory\n", input_.train_ring->decoders(),
                 input_.train_ring->decoders() == 1 ? "" : "s", input_.train_ring->decoders_reason().c_str(),
                 input_.train_ring->slots(), input_.train_ring->pinned() ? "pinned" : "pageable");
    if (plan_.data.train_files)
      console_.say(
          "file cache: each file is read from disk once, then its JPEG bytes come from memory (up to %lld MiB; "
          "--cache none turns it off)\n",
          static_cast<long long>(
              (plan_.data.train_files->budget() + (plan_.data.val_files ? plan_.data.val_files->budget() : 0)) >> 20));
  }
}

// --cache gpu: the decoded training set handed to the backend once, when it fits the device memory a step leaves
// (free memory less the --batch-size auto margin and the step's planned bytes). When it does not, or the backend
// cannot hold it, the run goes on as --cache decoded with a one-line warning rather than stopping: both give the same
// batches bit for bit, so only the speed differs, and whether it fits depends on what else holds the device today.
// Validation stays a host-side decoded cache, copied per evaluation batch: evaluation is a small part of a run and
// its batches are not in the step's captured graph. On the CPU backend the "device" is host memory: the backend
// holds a copy and gathers there (the protocol's reference), and the host cache's pixels are given back.
void TrainingRun::hold_train_set() {
  const int64_t need = input_.train_cache->size() * (plan_.data.shape.size() + 4);
  if (plan_.device.use_cuda) {
    std::string what;
    const int64_t budget = memory_budget(what);
    const int64_t step = planned_training_bytes(model_.graph, plan_.batch.local, plan_.batch.target);
    if (need > budget - step) {
      warn(str("--cache gpu: the training set needs ", need >> 20, " MiB of device memory but only ",
               std::max<int64_t>(budget - step, 0) >> 20, " MiB are left (", what, ", less the step's ", step >> 20,
               " MiB): training from host memory as --cache decoded does"));
      return;
    }
  }
  std::string why;
  if (!backend_->hold_dataset(input_.train_cache->pixels(), input_.train_cache->labels(), input_.train_cache->size(),
                              plan_.data.shape.size(), &why)) {
    warn(str("--cache gpu: ", why, ": training from host memory as --cache decoded does"));
    return;
  }
  input_.held = true;
  input_.train_cache->drop_pixels();
  if (!cfg_.quiet) {
    console_.say(
        "cache: the training set's %s are held by the %s backend%s; each step hands over %s of sample ids "
        "instead of %s of pixels\n",
        format_bytes(static_cast<size_t>(need)).c_str(), backend_->name().c_str(),
        plan_.device.use_cuda ? " in device memory" : " (host memory: on the CPU backend this is --cache decoded)",
        format_bytes(static_cast<size_t>(plan_.batch.local) * 8).c_str(),
        format_bytes(static_cast<size_t>(int64_t{plan_.batch.local} * plan_.data.shape.size())).c_str());
  }
}

// The next training batch (batch `index` of `epoch`), from whichever source feeds this run; valid until its tag is
// released. A source holds only so many batches: past that, wait for the backend to give one back.
io::Batch TrainingRun::next_train(int64_t epoch, int64_t index) {
  while (input_.acquired >= input_.train_batches->capacity()) take(true, epoch);
  io::Batch b = input_.train_batches->acquire();
  if (!b) return b;
  ++input_.acquired;
  STOKE_CHECK(b.epoch == epoch && b.index == index, "batch ", b.epoch, "/", b.index, " out of order");
  return b;
}

// The backend has its own copy of the batch with this tag: its memory goes back to the source.
void TrainingRun::release(int64_t tag) {
  input_.transforms.release(tag);
  input_.train_batches->release(tag);
  --input_.acquired;
}

}  // namespace stoke
