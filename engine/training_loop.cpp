// The training half of a run: the input (pipelines or the decoded cache), the epochs, and inside each epoch the
// asynchronous step loop — hand batch k to the backend and go on; its ring slot comes back when the backend's copy
// of it has completed, its result some steps later, in order. The trainer waits only for the ring (a batch), for
// room in the backend's queue, or at a step boundary (settle: a checkpoint, Ctrl-C, the profiler, the epoch's end).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "base/error.h"
#include "base/format.h"
#include "base/json_util.h"
#include "base/timeline.h"
#include "base/trace.h"
#include "engine/checkpoint.h"
#include "engine/interrupt.h"
#include "engine/training_run.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Resident memory of this process, MiB (from /proc/self/statm; 0 where unavailable).
double resident_mib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

}  // namespace

void TrainingRun::warn(const std::string& m) { console_.warn(m); }

// ---- the input ----------------------------------------------------------------------------------------------------
void TrainingRun::start_input() {
  sched_ = schedule_for(cfg_, steps_per_epoch_, cfg_.epochs);
  const std::string quarantine = writer_ ? (fs::path(run_dir_) / "quarantine.txt").string() : std::string();
  auto on_warning = [this](const std::string& m) { warn(m); };
  // The watchdog speaks even with --quiet: something is stuck.
  auto on_stall = [this](const std::string& report) { console_.alert(report); };
  // Data parallel: this rank's slice of every global batch (io/pipeline/sampler.h).
  io::PipelineConfig tpc = training_pipeline_config(cfg_, shape_, local_batch_);
  tpc.rank = rank_;
  tpc.world = world_;
  tpc.end_epoch = cfg_.epochs + (recalibration_batches() > 0 ? 1 : 0);  // --bn-recalibrate reads the next epoch's
  tpc.strict = cfg_.strict;
  tpc.quarantine_path = quarantine;
  tpc.watchdog_seconds = cfg_.watchdog_seconds;
  tpc.on_warning = on_warning;
  tpc.on_stall = on_stall;
  io::PipelineConfig vpc = eval_pipeline_config(shape_, local_batch_, cfg_.decoders, cfg_.strict, quarantine);
  // Validation is shared out too: rank r evaluates its slice of each global batch (the last one padded and masked),
  // and the ranks' rows are gathered before the metrics (evaluate()).
  vpc.rank = rank_;
  vpc.world = world_;
  vpc.watchdog_seconds = cfg_.watchdog_seconds;
  vpc.on_warning = on_warning;
  vpc.on_stall = on_stall;
  // --cache decoded: decode everything once, then gather batches from memory in the pipeline's order. --cache gpu
  // the same, and then the training set goes to the backend, which gathers each batch itself (hold_train_set).
  if (decodes_once(cfg_.cache)) {
    train_cache_ = std::make_unique<io::DecodedCache>(train_src_, shape_, tpc);
    if (has_val_) val_cache_ = std::make_unique<io::DecodedCache>(val_src_, shape_, vpc);
    if (!cfg_.quiet) {
      console_.say("cache: decoded %s images once into %.1f MiB of memory in %.1f s\n",
                  format_count(static_cast<double>(train_count_ + val_count_)).c_str(),
                  static_cast<double>(train_cache_->bytes() + (val_cache_ ? val_cache_->bytes() : 0)) / 1048576.0,
                  train_cache_->seconds() + (val_cache_ ? val_cache_->seconds() : 0));
    }
    val_px_.resize(static_cast<size_t>(local_batch_ * shape_.size()));
    val_labels_.resize(static_cast<size_t>(local_batch_));
    if (cfg_.cache == CacheMode::gpu) hold_train_set();
  }
  io::SamplerConfig scfg;
  scfg.samples = train_count_;
  scfg.batch = local_batch_;
  scfg.rank = rank_;
  scfg.world = world_;
  scfg.shuffle = true;
  scfg.drop_last = true;
  scfg.seed = cfg_.seed;
  sampler_.emplace(scfg);
  if (train_cache_) {
    // The training sampler's batches gathered from the cache, each into a buffer refilled only once the backend
    // released it (its copy completed), like a ring slot. The backend's queue holds two steps; one more is gathered.
    using Feed = io::DecodedBatches::Feed;
    train_batches_ = std::make_unique<io::DecodedBatches>(*train_cache_, scfg, cfg_.seed, cfg_.augment != Augment::none,
                                                          held_ ? Feed::ids : Feed::pixels, 3);
  } else {
    auto ring = std::make_unique<io::InputPipeline>(train_src_, tpc);
    train_in_ = ring.get();
    train_batches_ = std::move(ring);
  }
  if (has_val_ && !val_cache_) val_in_ = std::make_unique<io::InputPipeline>(val_src_, vpc);
  if (!cfg_.quiet && train_in_) {
    console_.say("input: %d decoder thread%s (%s), %d ring slots, %s host memory\n", train_in_->decoders(),
                train_in_->decoders() == 1 ? "" : "s", train_in_->decoders_reason().c_str(), train_in_->slots(),
                train_in_->pinned() ? "pinned" : "pageable");
    if (train_files_)
      console_.say("file cache: each file is read from disk once, then its JPEG bytes come from memory (up to %lld MiB; "
                  "--cache none turns it off)\n",
                  static_cast<long long>((train_files_->budget() + (val_files_ ? val_files_->budget() : 0)) >> 20));
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
  const int64_t need = train_cache_->size() * (shape_.size() + 4);
  if (use_cuda_) {
    std::string what;
    const int64_t budget = memory_budget(what);
    const int64_t step = planned_training_bytes(graph_, local_batch_, mem_target_);
    if (need > budget - step) {
      warn(str("--cache gpu: the training set needs ", need >> 20, " MiB of device memory but only ",
               std::max<int64_t>(budget - step, 0) >> 20, " MiB are left (", what, ", less the step's ", step >> 20,
               " MiB): training from host memory as --cache decoded does"));
      return;
    }
  }
  std::string why;
  if (!backend_->hold_dataset(train_cache_->pixels(), train_cache_->labels(), train_cache_->size(), shape_.size(),
                              &why)) {
    warn(str("--cache gpu: ", why, ": training from host memory as --cache decoded does"));
    return;
  }
  held_ = true;
  train_cache_->drop_pixels();
  if (!cfg_.quiet) {
    console_.say("cache: the training set's %s are held by the %s backend%s; each step hands over %s of sample ids "
                "instead of %s of pixels\n",
                format_bytes(static_cast<size_t>(need)).c_str(), backend_->name().c_str(),
                use_cuda_ ? " in device memory" : " (host memory: on the CPU backend this is --cache decoded)",
                format_bytes(static_cast<size_t>(local_batch_) * 8).c_str(),
                format_bytes(static_cast<size_t>(int64_t{local_batch_} * shape_.size())).c_str());
  }
}

// The next training batch (batch `index` of `epoch`), from whichever source feeds this run; valid until its tag is
// released. A source holds only so many batches: past that, wait for the backend to give one back.
io::Batch TrainingRun::next_train(int64_t epoch, int64_t index) {
  while (batches_held_ >= train_batches_->capacity()) take(true, epoch);
  io::Batch b = train_batches_->acquire();
  if (!b) return b;
  ++batches_held_;
  STOKE_CHECK(b.epoch == epoch && b.index == index, "batch ", b.epoch, "/", b.index, " out of order");
  return b;
}

// The backend has its own copy of the batch with this tag: its memory goes back to the source.
void TrainingRun::release(int64_t tag) {
  train_batches_->release(tag);
  --batches_held_;
}

// ---- evaluation: every validation image once, the last batch padded and masked (each rank its slice) -----------
ClassificationReport TrainingRun::evaluate() {
  STOKE_TRACE("eval");
  backend_->drain();
  MetricsAccumulator acc(classes_);
  std::vector<uint8_t> px_buffer;
  std::vector<int32_t> label_buffer;
  auto add = [&](int valid, const uint8_t* px, const int32_t* lab) {
    // Unreadable validation images are left out, not replaced: the accuracy covers exactly the readable ones.
    const io::ReadableSamples r = io::readable_samples(valid, px, lab, shape_.size(), px_buffer, label_buffer);
    acc.add_unreadable(r.unreadable);
    if (r.n == 0) return;
    float loss = 0;
    const float* logits = backend_->eval_batch(r.n, r.pixels, r.labels, &loss);
    acc.add(r.n, logits, r.labels, loss);
  };
  if (val_cache_) {
    io::SamplerConfig vs;
    vs.samples = val_count_;
    vs.batch = local_batch_;
    vs.rank = rank_;
    vs.world = world_;
    vs.shuffle = false;
    vs.drop_last = false;
    const io::Sampler vsampler(vs);
    const std::vector<int64_t> vperm = vsampler.permutation(0);
    for (int64_t i = 0; i < vsampler.batches_per_epoch(); ++i) {
      const int n = val_cache_->gather(vsampler, vperm, 0, i, 0, false, val_px_.data(), val_labels_.data(), nullptr);
      add(n, val_px_.data(), val_labels_.data());
    }
  } else {
    val_in_->start(0);
    while (io::Batch b = val_in_->acquire()) {
      add(b.valid, b.pixels, b.labels);  // the last batch is padded: only the first `valid` samples count
      val_in_->release(b.tag);
    }
  }
  acc.gather(*comm_);
  return acc.report();
}

// ---- checkpoints, the profiler and the timeline --------------------------------------------------------------------
void TrainingRun::write_checkpoint(int64_t epoch, int64_t cursor, bool best) {
  if (!writer_) return;  // rank 0 owns the run folder; every rank holds the same weights
  STOKE_TRACE("checkpoint");
  CheckpointData d;
  int64_t ost = 0;
  backend_->get_state(d.params, d.buffers, d.optimizer_state, ost);
  d.state = {{"epoch", epoch},
             {"cursor", cursor},
             {"step", step_},
             {"optimizer_steps", ost},
             {"config", config_},
             {"dataset", fingerprint_},
             {"normalize_mean", mean_},
             {"normalize_std", stdev_},
             {"epoch_sums", {{"loss_sum", loss_sum_}, {"correct", correct_sum_}, {"seen", seen_},
                             {"seconds", epoch_seconds_before_ + seconds_since(epoch_start_)}}},
             {"elapsed_s", run_elapsed()},
             {"history", history_},
             {"best_score", std::isfinite(best_score_) ? json(best_score_) : json()},
             {"loss_scale", 1.0}};
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step_));
  result_.last_checkpoint =
      save_checkpoint(run_dir_, name, graph_, to_string(cfg_.optimizer.kind), d, best, cfg_.keep_checkpoints);
}

// The --profile-steps window: an NVTX range on this thread, and the device profiler's capture where there is one.
void TrainingRun::start_profile() {
  trace_push("profiled steps");
  backend_->profiler(true);
  profiling_ = true;
}

void TrainingRun::stop_profile() {
  if (!profiling_) return;
  profiling_ = false;
  backend_->profiler(false);
  trace_pop();
}

// --trace: stoke's own timeline of steps trace_first..trace_last (base/timeline.h).
void TrainingRun::finish_trace() {
  if (!timeline::recording()) return;
  timeline::stop();
  timeline::write_json(cfg_.trace_file);
  if (!cfg_.quiet) {
    console_.end_progress();
    console_.say("timeline: %s (%lld ranges; open it in ui.perfetto.dev or chrome://tracing)\n", cfg_.trace_file.c_str(),
                static_cast<long long>(timeline::events()));
  }
}

// The fraction of wall time since the last call that the trainer spent waiting for the input pipeline.
double TrainingRun::window_stall() {
  if (!train_in_) return 0.0;
  const double now_wait = train_in_->stats().consumer_wait_seconds;
  const double fraction = (now_wait - window_wait0_) / std::max(seconds_since(window_t0_), 1e-9);
  window_wait0_ = now_wait;
  window_t0_ = TrainClock::now();
  return fraction;
}

// ---- the epochs --------------------------------------------------------------------------------------------------
void TrainingRun::train_epochs() {
  result_.run_dir = run_dir_;
  result_.backend = backend_->name();
  result_.params = graph_.num_params();
  result_.first_step = step_;
  loop_start_ = TrainClock::now();
  loop_first_step_ = step_;
  if (cfg_.interrupt_after_steps > 0) stop_at_ = step_ + cfg_.interrupt_after_steps;  // the same on every rank
  install_interrupt_handlers();
  struct HandlerGuard {
    ~HandlerGuard() { remove_interrupt_handlers(); }
  } handler_guard;
  struct ProfileGuard {  // an error or Ctrl-C inside the window still ends the capture and the recording
    TrainingRun* run;
    ~ProfileGuard() {
      timeline::stop();
      try {
        run->stop_profile();
      } catch (...) {
      }
    }
  } profile_guard{this};

  // One start for the whole run: the decoders flow across epoch boundaries without draining.
  if (start_epoch_ < cfg_.epochs) train_batches_->start(start_epoch_, start_cursor_);
  for (int64_t epoch = start_epoch_; epoch < cfg_.epochs && !result_.interrupted; ++epoch) {
    if (!train_epoch(epoch)) {
      write_checkpoint(epoch, b_in_epoch_, false);
      break;
    }
    const double train_seconds = seconds_since(epoch_start_);
    const double input_wait = train_in_ ? train_in_->stats().consumer_wait_seconds - wait_at_start_ : 0.0;
    end_epoch(epoch, train_seconds, input_wait);
    if (stop_now()) result_.interrupted = epoch + 1 < cfg_.epochs;
  }
  finish_trace();  // a window reaching past the last step ends with the run
}

// One epoch's steps (from the resume cursor in the first epoch). Returns false when Ctrl-C (or the test hook)
// stopped it at a step boundary; everything submitted has finished either way.
bool TrainingRun::train_epoch(int64_t epoch) {
  epoch_start_ = TrainClock::now();
  wait_at_start_ = train_in_ ? train_in_->stats().consumer_wait_seconds : 0.0;
  const int64_t cursor0 = epoch == start_epoch_ ? start_cursor_ : 0;
  loss_sum_ = 0;
  correct_sum_ = seen_ = 0;
  if (epoch == start_epoch_ && resuming_ && cursor0 > 0) {
    loss_sum_ = json_number(resume_sums_, "loss_sum", -1e300, 1e300, 0.0);
    correct_sum_ = json_int(resume_sums_, "correct", 0, int64_t{1} << 50, 0);
    seen_ = json_int(resume_sums_, "seen", 0, int64_t{1} << 50, 0);
    epoch_seconds_before_ = json_number(resume_sums_, "seconds", 0, 1e12, 0.0);
  } else {
    epoch_seconds_before_ = 0;
  }
  seen_at_start_ = seen_;
  window_loss_ = window_device_s_ = epoch_device_s_ = 0;
  window_comm_ = epoch_comm_ = CommTally{};
  window_correct_ = window_seen_ = 0;
  window_wait0_ = wait_at_start_;
  window_t0_ = TrainClock::now();
  b_in_epoch_ = sub_b_ = cursor0;
  sub_step_ = step_;
  bool interrupted = false;
  while (sub_b_ < steps_per_epoch_) {
    if (cfg_.profile_first > 0 && sub_step_ + 1 == cfg_.profile_first) {
      settle(epoch);
      start_profile();
    }
    if (profiling_ && sub_step_ + 1 > cfg_.profile_last) settle(epoch);
    if (!cfg_.trace_file.empty() && sub_step_ + 1 == cfg_.trace_first) timeline::start();
    if (timeline::recording() && sub_step_ + 1 > cfg_.trace_last) {
      settle(epoch);  // the window's last step has computed: it is in the timeline whole
      finish_trace();
    }
    const io::Batch rb = [&] {
      STOKE_TRACE("wait for batch");
      return next_train(epoch, sub_b_);
    }();
    if (!rb) break;
    StepRequest req;
    req.batch = rb;  // as the source gave it
    req.lr = sched_.at(sub_step_);
    req.skip = std::find(cfg_.inject_nonfinite_steps.begin(), cfg_.inject_nonfinite_steps.end(), sub_step_) !=
               cfg_.inject_nonfinite_steps.end();
    req.stop = interrupt_requested() != 0;
    {
      STOKE_TRACE("train step");
      backend_->submit(req);
    }
    pending_.push_back({req.lr, req.batch.size * world_});  // the result counts the global batch
    ++sub_step_;
    ++sub_b_;
    take(false, epoch);
    if (stop_now() && sub_b_ < steps_per_epoch_) {
      interrupted = true;
      break;
    }
    if (cfg_.checkpoint_every > 0 && sub_step_ % cfg_.checkpoint_every == 0 && sub_b_ < steps_per_epoch_) {
      settle(epoch);
      write_checkpoint(epoch, b_in_epoch_, false);
    }
  }
  settle(epoch);
  console_.end_progress();
  if (interrupted) result_.interrupted = true;
  return !interrupted;
}

// Takes what the backend has finished: releases go back to the ring, results are accounted in order.
void TrainingRun::take(bool wait, int64_t epoch) {
  released_.clear();
  results_.clear();
  backend_->collect(released_, results_, wait);
  for (int64_t tag : released_) release(tag);
  for (const StepResult& r : results_) on_result(r, epoch);
}

// A step boundary: nothing in flight, every result accounted (before a checkpoint, eval, the profiler).
void TrainingRun::settle(int64_t epoch) {
  backend_->drain();
  take(false, epoch);
  STOKE_CHECK(pending_.empty() && step_ == sub_step_, "results missing after a drain");
  if (profiling_ && step_ >= cfg_.profile_last) stop_profile();
}

// One finished step: running sums, metrics, the progress line, the non-finite guard.
void TrainingRun::on_result(const StepResult& so, int64_t epoch) {
  STOKE_CHECK(!pending_.empty(), "a result for a step that was not submitted");
  const float lr = pending_.front().lr;
  const int n = pending_.front().n;
  pending_.pop_front();
  const float loss = so.loss;
  window_device_s_ += so.device_seconds;
  epoch_device_s_ += so.device_seconds;
  window_comm_.add(so);
  epoch_comm_.add(so);
  ++step_;
  ++b_in_epoch_;
  result_.step_losses.push_back(loss);
  // A data-parallel job stops where every rank can: each learns of the request with this step's result, when it
  // has submitted at most max_in_flight() steps beyond it, so all of them submit exactly up to the same step.
  if (so.stop && world_ > 1 && stop_at_ < 0) stop_at_ = step_ + backend_->max_in_flight();
  if (!std::isfinite(loss)) {
    // The backend skipped the update; stop if it keeps happening.
    ++result_.skipped_steps;
    if (++nonfinite_run_ >= cfg_.max_nonfinite_steps) {
      console_.end_progress();
      throw Error(str("the loss was ", loss, " for ", nonfinite_run_, " consecutive steps (the last at epoch ", epoch + 1,
                      ", step ", step_, "); stopping. Last good checkpoint: ",
                      result_.last_checkpoint.empty() ? (resumed_from_.empty() ? std::string("none") : resumed_from_)
                                                      : result_.last_checkpoint,
                      ". Try a lower --lr (now ", cfg_.lr, ") or --clip-grad-norm"));
    }
    console_.warn(str("non-finite loss at step ", step_, ": update skipped (", nonfinite_run_, " in a row)"));
  } else {
    nonfinite_run_ = 0;
    if (!so.applied) ++result_.skipped_steps;  // fp16: the loss scaler found an overflow and lowered the scale
    loss_sum_ += static_cast<double>(loss) * n;
    correct_sum_ += so.correct;
    seen_ += n;
    window_loss_ += static_cast<double>(loss) * n;
    window_correct_ += so.correct;
    window_seen_ += n;
  }
  const double el = seconds_since(epoch_start_);
  const double rate = static_cast<double>(seen_ - seen_at_start_) / std::max(el, 1e-9);
  const double overall_rate = static_cast<double>(step_ - loop_first_step_) / std::max(seconds_since(loop_start_), 1e-9);
  const double eta = static_cast<double>(sched_.total_steps - step_) / overall_rate;
  if ((step_ % cfg_.log_every == 0 || b_in_epoch_ == steps_per_epoch_) && window_seen_ > 0) {
    const double window_s = std::max(seconds_since(window_t0_), 1e-9);  // before window_stall() restarts it
    json line = {{"kind", "train"}, {"epoch", epoch + 1}, {"step", step_}, {"lr", lr},
                 {"loss", window_loss_ / static_cast<double>(window_seen_)},
                 {"acc", static_cast<double>(window_correct_) / static_cast<double>(window_seen_)},
                 {"img_per_s", rate}, {"elapsed_s", run_elapsed()}, {"input_stall", window_stall()}};
    // GPU busy: the device's time on this window's steps (CUDA events) over its wall time. Backends without
    // device timing report none, and the line says nothing rather than 0%.
    if (window_device_s_ > 0) line["gpu_busy"] = std::min(1.0, window_device_s_ / window_s);
    window_comm_.add_to(line, window_s);  // data parallel only
    if (metrics_) metrics_->write(line);
    window_device_s_ = 0;
    window_comm_ = CommTally{};
    window_loss_ = 0;
    window_correct_ = window_seen_ = 0;
  }
  if (!cfg_.quiet) {
    char line[256];
    std::snprintf(line, sizeof line, "epoch %lld/%d  step %lld/%lld  loss %.4f  acc %.2f%%  %s img/s  input wait %.0f%%  ETA %s",
                  static_cast<long long>(epoch + 1), cfg_.epochs, static_cast<long long>(b_in_epoch_),
                  static_cast<long long>(steps_per_epoch_), loss_sum_ / static_cast<double>(std::max<int64_t>(seen_, 1)),
                  100.0 * static_cast<double>(correct_sum_) / static_cast<double>(std::max<int64_t>(seen_, 1)),
                  format_count(rate).c_str(),
                  100.0 * (train_in_ ? (train_in_->stats().consumer_wait_seconds - wait_at_start_) / std::max(el, 1e-9) : 0.0),
                  format_duration(eta).c_str());
    console_.progress(line, b_in_epoch_ == steps_per_epoch_);
  }
}

// The end of an epoch: evaluation (every --eval-every epochs and after the last), the epoch line in metrics.jsonl,
// the checkpoint (the best one marked), the report.
void TrainingRun::end_epoch(int64_t epoch, double train_seconds, double input_wait) {
  EpochStats es;
  es.epoch = static_cast<int>(epoch + 1);
  es.train_loss = loss_sum_ / static_cast<double>(std::max<int64_t>(seen_, 1));
  es.train_acc = static_cast<double>(correct_sum_) / static_cast<double>(std::max<int64_t>(seen_, 1));
  es.images_per_s = static_cast<double>(seen_ - seen_at_start_) / std::max(train_seconds, 1e-9);
  es.val_loss = es.val_acc = es.val_auc = std::numeric_limits<double>::quiet_NaN();
  // Before the last evaluation, the best-checkpoint choice and the checkpoint: they all see the recomputed statistics.
  const int recalibrated = epoch + 1 == cfg_.epochs ? recalibrate_batch_norm() : 0;
  const bool evaluate_now = has_val_ && ((epoch + 1) % cfg_.eval_every == 0 || epoch + 1 == cfg_.epochs);
  ClassificationReport report;
  if (evaluate_now) {
    report = evaluate();
    es.val_loss = report.loss;
    es.val_acc = report.accuracy;
    es.val_auc = report.macro_auc;
  }
  es.seconds = epoch_seconds_before_ + seconds_since(epoch_start_);
  result_.epochs.push_back(es);
  json ej = {{"kind", "epoch"}, {"epoch", es.epoch}, {"step", step_}, {"train_loss", es.train_loss},
             {"train_acc", es.train_acc}, {"img_per_s", es.images_per_s}, {"seconds", es.seconds},
             {"elapsed_s", run_elapsed()}, {"rss_mib", resident_mib()},
             {"input_wait_s", input_wait}, {"input_stall", input_wait / std::max(train_seconds, 1e-9)}};
  if (recalibrated > 0) ej["bn_recalibrated_batches"] = recalibrated;
  if (epoch_device_s_ > 0) ej["gpu_busy"] = std::min(1.0, epoch_device_s_ / std::max(train_seconds, 1e-9));
  epoch_comm_.add_to(ej, train_seconds);
  if (evaluate_now) {
    ej["val_loss"] = es.val_loss;
    ej["val_acc"] = es.val_acc;
    ej["val_auc"] = std::isnan(es.val_auc) ? json() : json(es.val_auc);
    ej["val_report"] = report.to_json();
    if (report.unreadable > 0) ej["val_unreadable"] = report.unreadable;
  }
  if (metrics_) {
    metrics_->write(ej);
    metrics_->flush();
  }
  ej.erase("val_report");
  history_.push_back(ej);
  // "Best" maximises the chosen metric (the loss is negated).
  const double score =
      cfg_.best_metric == BestMetric::val_auc ? es.val_auc : cfg_.best_metric == BestMetric::val_loss ? -es.val_loss : es.val_acc;
  const bool best = evaluate_now && std::isfinite(score) && score > best_score_;
  if (best) best_score_ = score;
  if (evaluate_now) last_report_ = report;
  loss_sum_ = 0;
  correct_sum_ = seen_ = 0;
  write_checkpoint(epoch + 1, 0, best);
  total_wait_ += input_wait;
  total_train_seconds_ += train_seconds;
  total_device_s_ += epoch_device_s_;
  total_comm_.seconds += epoch_comm_.seconds;
  if (epoch_comm_.bytes_per_step > 0) total_comm_.bytes_per_step = epoch_comm_.bytes_per_step;
  if (writer_) refresh_report(run_dir_, console_);
  if (!cfg_.quiet) {
    const std::string left_out =
        report.unreadable > 0 ? str("  (", report.unreadable, " unreadable val image", report.unreadable == 1 ? "" : "s",
                                    " left out)")
                              : std::string();
    if (evaluate_now)
      console_.say("epoch %d/%d  train loss %.4f acc %.2f%%  |  val loss %.4f acc %.2f%% auc %.4f  |  %s img/s, %.1f s%s%s\n",
                  es.epoch, cfg_.epochs, es.train_loss, 100 * es.train_acc, es.val_loss, 100 * es.val_acc, es.val_auc,
                  format_count(es.images_per_s).c_str(), es.seconds, best ? "  (best)" : "", left_out.c_str());
    else
      console_.say("epoch %d/%d  train loss %.4f acc %.2f%%  |  %s img/s, %.1f s\n", es.epoch, cfg_.epochs, es.train_loss,
                  100 * es.train_acc, format_count(es.images_per_s).c_str(), es.seconds);
  }
}

}  // namespace stoke
