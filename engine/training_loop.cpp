// The training half of a run: the epochs, and inside each epoch the
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

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/json_util.h"
#include "base/timeline.h"
#include "base/trace.h"
#include "engine/checkpoint.h"
#include "engine/interrupt.h"
#include "engine/training_run.h"
#include "engine/tta.h"

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

// Where a data-parallel job can continue from once a rank is lost: no checkpoint can be written then (one needs
// every rank's step), so the last one written. `pending`: a checkpoint whose write is under way. Rank 0 writes the
// checkpoints; another rank may not see its folder, so it names the pointer file.
std::string continue_from(const RunWorld& world, const std::string& dir, const std::string& last,
                          const std::string& pending) {
  const std::string ckdir = (fs::path(dir) / "checkpoints").string(), resume = "stoke train --resume " + dir;
  if (!world.writer) return str("rank 0's last checkpoint is the one ", ckdir, "/latest names; continue with ", resume);
  const std::string name = last.empty() ? "" : fs::path(last).filename().string();
  const std::string or_pending = pending.empty() ? "" : str(", or ", pending, " if its write, under way, completes");
  if (name.empty() && pending.empty()) return "the run has no checkpoint yet: start it again";
  return str("the last checkpoint is ", name.empty() ? "none yet" : name, or_pending, " (in ", ckdir,
             "); continue with ", resume);
}

// What the first signal prints on a rank of a data-parallel job. The launcher signals the survivors of a lost rank
// too, and then no checkpoint can follow: the line says where the run stands either way.
void set_signal_line(const RunWorld& world, const std::string& dir, const std::string& last,
                     const std::string& pending = "") {
  if (world.size == 1) return;
  set_interrupt_message(str("\nstoke: ", dist::error_prefix(),
                            "stopped by a signal: every rank finishes the same step, then rank 0 writes a checkpoint "
                            "(a second signal quits now). "
                            "If a rank was lost (the launcher then stops the others and names it), none can be "
                            "written: ",
                            continue_from(world, dir, last, pending), "\n")
                            .c_str());
}

}  // namespace

void TrainingRun::warn(const std::string& m) { console_.warn(m); }

// ---- evaluation: every validation image once, the last batch padded and masked (each rank its slice) -----------
ClassificationReport TrainingRun::evaluate() {
  STOKE_TRACE("eval");
  backend_->drain();
  // --ema: validation (and so checkpoints/best) sees the averaged weights; the trained ones are back afterwards. An
  // error in between ends the run, so nothing trains on the EMA.
  if (cfg_.ema > 0.f) backend_->use_ema(true);
  MetricsAccumulator acc(plan_.data.classes);
  std::vector<uint8_t> px_buffer;
  std::vector<int32_t> label_buffer;
  std::vector<float> tta_logits;
  auto add = [&](int valid, const uint8_t* px, const int32_t* lab) {
    // Unreadable validation images are left out, not replaced: the accuracy covers exactly the readable ones.
    const io::ReadableSamples r =
        io::readable_samples(valid, px, lab, plan_.data.shape.size(), px_buffer, label_buffer);
    acc.add_unreadable(r.unreadable);
    acc.add_vanished(r.vanished);
    if (r.n == 0) return;
    float loss = 0;
    const float* logits =
        eval_logits(*backend_, r.n, plan_.data.classes, r.pixels, r.labels, cfg_.tta_flip, &loss, tta_logits);
    acc.add(r.n, logits, r.labels, loss);
  };
  io::BatchSource& val = *input_.val_batches;  // the ring or the decoded cache: one epoch, in the data set's order
  val.start(0, 0);
  while (io::Batch b = val.acquire()) {
    add(b.valid, b.pixels, b.labels);  // the last batch is padded: only the first `valid` samples count
    val.release(b.tag);
  }
  if (cfg_.ema > 0.f) backend_->use_ema(false);
  acc.gather(*comm_);
  return acc.report();
}

// ---- checkpoints, the profiler and the timeline --------------------------------------------------------------------
void TrainingRun::write_checkpoint(int64_t epoch, int64_t cursor, bool best) {
  if (!plan_.world.writer) return;  // rank 0 owns the run folder; every rank holds the same weights
  STOKE_TRACE("checkpoint");
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(meter_.step));
  const std::string last = result_.last_checkpoint.empty() ? folder_.resumed_from : result_.last_checkpoint;
  set_signal_line(plan_.world, folder_.dir, last, name);
  CheckpointData d;
  int64_t ost = 0;
  backend_->get_state(d.params, d.buffers, d.optimizer_state, ost);
  if (cfg_.ema > 0.f) backend_->get_ema(d.ema_params, d.ema_buffers);  // ema.safetensors: a resume goes on exactly
  d.state = {{"epoch", epoch},
             {"cursor", cursor},
             {"step", meter_.step},
             {"optimizer_steps", ost},
             {"config", folder_.config},
             {"dataset", plan_.data.fingerprint},
             {"normalize_mean", plan_.mean},
             {"normalize_std", plan_.stdev},
             {"epoch_sums", meter_.epoch_sums()},
             {"elapsed_s", run_elapsed()},
             {"history", folder_.history},
             {"best_score", std::isfinite(folder_.best_score) ? json(folder_.best_score) : json()},
             {"loss_scale", 1.0}};
  result_.last_checkpoint =
      save_checkpoint(folder_.dir, name, model_.graph, to_string(cfg_.optimizer.kind), d, best, cfg_.keep_checkpoints);
  set_signal_line(plan_.world, folder_.dir, result_.last_checkpoint);
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
    console_.say("timeline: %s (%lld ranges; open it in ui.perfetto.dev or chrome://tracing)\n",
                 display_name(cfg_.trace_file).c_str(), static_cast<long long>(timeline::events()));
  }
}

// The fraction of the logged window's wall time (window_s) that the trainer spent waiting for the input pipeline.
// Without the decoder ring there is nothing to wait for (a cache hands batches over at once).
double TrainingRun::window_stall(double window_s) {
  if (!input_.train_ring) return 0.0;
  const double now_wait = input_.train_ring->stats().consumer_wait_seconds;
  const double fraction = (now_wait - meter_.window_wait0) / window_s;
  meter_.window_wait0 = now_wait;
  return fraction;
}

// ---- the epochs --------------------------------------------------------------------------------------------------
void TrainingRun::train_epochs() try {
  result_.run_dir = folder_.dir;
  result_.backend = backend_->name();
  result_.params = model_.graph.num_params();
  result_.first_step = folder_.start_step;
  meter_.start_run(folder_.start_step);
  if (cfg_.interrupt_after_steps > 0) stop_at_ = meter_.step + cfg_.interrupt_after_steps;  // the same on every rank
  set_signal_line(plan_.world, folder_.dir, folder_.resumed_from);
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

  if (cfg_.epochs == 0 && !resuming_) return evaluate_imported();
  // One start for the whole run: the decoders flow across epoch boundaries without draining.
  if (folder_.start_epoch < cfg_.epochs) input_.train_batches->start(folder_.start_epoch, folder_.start_cursor);
  for (int64_t epoch = folder_.start_epoch; epoch < cfg_.epochs && !result_.interrupted; ++epoch) {
    if (!train_epoch(epoch)) {
      write_checkpoint(epoch, meter_.epoch_step, false);
      break;
    }
    const double train_seconds = seconds_since(meter_.epoch_start);
    const double input_wait = input_wait_seconds() - meter_.wait_at_start;
    end_epoch(epoch, train_seconds, input_wait);
    if (stop_now()) result_.interrupted = epoch + 1 < cfg_.epochs;
  }
  finish_trace();  // a window reaching past the last step ends with the run
} catch (const dist::LostPeer& e) {
  const std::string last = result_.last_checkpoint.empty() ? folder_.resumed_from : result_.last_checkpoint;
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(meter_.step));
  const bool saved = !last.empty() && fs::path(last).filename() == name;  // the step had checkpointed already
  throw dist::LostPeer(
      str(e.what(), ". The job stopped after step ", meter_.step,
          saved ? ", which is checkpointed: " : ": no checkpoint is written for it (one needs every rank); ",
          continue_from(plan_.world, folder_.dir, last, ""), " (on any number of processes)"),
      e.ranks());
}

// One epoch's steps (from the resume cursor in the first epoch). Returns false when Ctrl-C (or the test hook)
// stopped it at a step boundary; everything submitted has finished either way.
bool TrainingRun::train_epoch(int64_t epoch) {
  const bool first = epoch == folder_.start_epoch;
  const int64_t cursor0 = first ? folder_.start_cursor : 0;
  const bool resumed = first && resuming_ && cursor0 > 0;  // a mid-epoch checkpoint's sums go on
  meter_.start_epoch(cursor0, resumed ? &folder_.resume_sums : nullptr, input_wait_seconds());
  flight_.batch = cursor0;
  flight_.step = meter_.step;
  bool interrupted = false;
  while (flight_.batch < plan_.batch.steps_per_epoch) {
    at_step_boundary(epoch);
    const io::Batch rb = [&] {
      STOKE_TRACE("wait for batch");
      return next_train(epoch, flight_.batch);
    }();
    if (!rb) break;
    submit(rb);
    take(false, epoch);
    if (stop_now() && flight_.batch < plan_.batch.steps_per_epoch) {
      interrupted = true;
      break;
    }
    if (cfg_.checkpoint_every > 0 && flight_.step % cfg_.checkpoint_every == 0 &&
        flight_.batch < plan_.batch.steps_per_epoch) {
      settle(epoch);
      write_checkpoint(epoch, meter_.epoch_step, false);
    }
  }
  settle(epoch);
  console_.end_progress();
  if (interrupted) result_.interrupted = true;
  return !interrupted;
}

// Before the next step: the --profile-steps and --trace windows open and close at step boundaries.
void TrainingRun::at_step_boundary(int64_t epoch) {
  const int64_t next = flight_.step + 1;
  if (cfg_.profile_first > 0 && next == cfg_.profile_first) {
    settle(epoch);
    start_profile();
  }
  if (profiling_ && next > cfg_.profile_last) settle(epoch);
  if (!cfg_.trace_file.empty() && next == cfg_.trace_first) timeline::start();
  if (timeline::recording() && next > cfg_.trace_last) {
    settle(epoch);  // the window's last step has computed: it is in the timeline whole
    finish_trace();
  }
}

// Hands one batch to the backend as the source gave it, with its step's learning rate.
void TrainingRun::submit(const io::Batch& rb) {
  StepRequest req;
  req.batch = rb;
  req.transforms = input_.transforms.draw(rb);
  req.mix = batch_mix(cfg_.mix, cfg_.mix_off_epochs, cfg_.epochs, plan_.data.shape, cfg_.seed, rb.epoch, rb.index);
  req.lr = plan_.batch.schedule.at(flight_.step);
  req.skip = std::find(cfg_.inject_nonfinite_steps.begin(), cfg_.inject_nonfinite_steps.end(), flight_.step) !=
             cfg_.inject_nonfinite_steps.end();
  req.stop = interrupt_requested() != 0;
  {
    STOKE_TRACE("train step");
    backend_->submit(req);
  }
  flight_.steps.push_back({req.lr, req.batch.size * plan_.world.size});  // the result counts the global batch
  ++flight_.step;
  ++flight_.batch;
}

// Takes what the backend has finished: releases go back to the ring, results are accounted in order.
void TrainingRun::take(bool wait, int64_t epoch) {
  flight_.released.clear();
  flight_.results.clear();
  backend_->collect(flight_.released, flight_.results, wait);
  for (int64_t tag : flight_.released) release(tag);
  for (const StepResult& r : flight_.results) on_result(r, epoch);
}

// A step boundary: nothing in flight, every result accounted (before a checkpoint, eval, the profiler).
void TrainingRun::settle(int64_t epoch) {
  backend_->drain();
  take(false, epoch);
  STOKE_CHECK(flight_.steps.empty() && meter_.step == flight_.step, "results missing after a drain");
  if (profiling_ && meter_.step >= cfg_.profile_last) stop_profile();
}

// One finished step: running sums, the non-finite guard, then its lines.
void TrainingRun::on_result(const StepResult& so, int64_t epoch) {
  STOKE_CHECK(!flight_.steps.empty(), "a result for a step that was not submitted");
  const InFlight::Step done = flight_.steps.front();
  flight_.steps.pop_front();
  const float loss = so.loss;
  meter_.add(so, done.n);
  result_.step_losses.push_back(loss);
  // A data-parallel job stops where every rank can: each learns of the request with this step's result, when it
  // has submitted at most max_in_flight() steps beyond it, so all of them submit exactly up to the same step.
  if (so.stop && plan_.world.size > 1 && stop_at_ < 0) stop_at_ = meter_.step + backend_->max_in_flight();
  if (!std::isfinite(loss)) {
    // The backend skipped the update; stop if it keeps happening.
    ++result_.skipped_steps;
    if (++nonfinite_run_ >= cfg_.max_nonfinite_steps) {
      console_.end_progress();
      const std::string& last = result_.last_checkpoint.empty() ? folder_.resumed_from : result_.last_checkpoint;
      throw Error(str("the loss was ", loss, " for ", nonfinite_run_, " consecutive steps (the last at epoch ",
                      epoch + 1, ", step ", meter_.step,
                      "); stopping. Last good checkpoint: ", last.empty() ? std::string("none") : last,
                      ". Try a lower --lr (now ", cfg_.lr, ") or --clip-grad-norm"));
    }
    console_.warn(str("non-finite loss at step ", meter_.step, ": update skipped (", nonfinite_run_, " in a row)"));
  } else {
    nonfinite_run_ = 0;
    if (!so.applied) ++result_.skipped_steps;  // fp16: the loss scaler found an overflow and lowered the scale
  }
  log_step(epoch, done.lr);
}

// A finished step's lines: metrics.jsonl every --log-every steps and at the epoch's end, and the progress line.
void TrainingRun::log_step(int64_t epoch, float lr) {
  const StepMeter& m = meter_;
  const int64_t steps = plan_.batch.steps_per_epoch;
  const double el = seconds_since(m.epoch_start);
  const double rate = static_cast<double>(m.epoch.seen - m.seen_at_start) / std::max(el, 1e-9);
  if ((m.step % cfg_.log_every == 0 || m.epoch_step == steps) && m.window.seen > 0) {
    const double window_s = std::max(seconds_since(m.window_t0), 1e-9);
    json line = {{"kind", "train"},   {"epoch", epoch + 1},           {"step", m.step},
                 {"lr", lr},          {"loss", m.window.mean_loss()}, {"acc", m.window.accuracy()},
                 {"img_per_s", rate}, {"elapsed_s", run_elapsed()},   {"input_stall", window_stall(window_s)}};
    // GPU busy: the device's time on this window's steps (CUDA events) over its wall time. Backends without
    // device timing report none, and the line says nothing rather than 0%.
    if (m.window.device_s > 0) line["gpu_busy"] = std::min(1.0, m.window.device_s / window_s);
    m.window.comm.add_to(line, window_s);  // data parallel only
    if (folder_.metrics) folder_.metrics->write(line);
    meter_.window = StepSums{};
    meter_.window_t0 = TrainClock::now();  // every source: gpu_busy and comm_share are per window, ring or cache
  }
  if (cfg_.quiet) return;
  const double overall_rate =
      static_cast<double>(m.step - m.loop_first_step) / std::max(seconds_since(m.loop_start), 1e-9);
  const double eta = static_cast<double>(plan_.batch.schedule.total_steps - m.step) / overall_rate;
  const double wait = (input_wait_seconds() - m.wait_at_start) / std::max(el, 1e-9);
  char line[256];
  std::snprintf(line, sizeof line,
                "epoch %lld/%d  step %lld/%lld  loss %.4f  acc %.2f%%  %s img/s  input wait %.0f%%  ETA %s",
                static_cast<long long>(epoch + 1), cfg_.epochs, static_cast<long long>(m.epoch_step),
                static_cast<long long>(steps), m.epoch.mean_loss(),
                100.0 * static_cast<double>(m.epoch.correct) / static_cast<double>(std::max<int64_t>(m.epoch.seen, 1)),
                format_count(rate).c_str(), 100.0 * wait, format_duration(eta).c_str());
  console_.progress(line, m.epoch_step == steps);
}

// The end of an epoch: evaluation (every --eval-every epochs and after the last), the epoch line in metrics.jsonl,
// the checkpoint (the best one marked), the report.
void TrainingRun::end_epoch(int64_t epoch, double train_seconds, double input_wait) {
  EpochStats es;
  es.epoch = static_cast<int>(epoch + 1);
  es.train_loss = meter_.epoch.mean_loss();
  es.train_acc = meter_.epoch.accuracy();
  es.images_per_s = static_cast<double>(meter_.epoch.seen - meter_.seen_at_start) / std::max(train_seconds, 1e-9);
  es.val_loss = es.val_acc = es.val_auc = std::numeric_limits<double>::quiet_NaN();
  // Before the last evaluation, the best-checkpoint choice and the checkpoint: they all see the recomputed statistics.
  const int recalibrated = epoch + 1 == cfg_.epochs ? recalibrate_batch_norm() : 0;
  const bool evaluate_now = plan_.data.has_val && ((epoch + 1) % cfg_.eval_every == 0 || epoch + 1 == cfg_.epochs);
  ClassificationReport report;
  if (evaluate_now) {
    report = evaluate();
    es.val_loss = report.loss;
    es.val_acc = report.accuracy;
    es.val_auc = report.macro_auc;
  }
  es.seconds = meter_.epoch_seconds_before + seconds_since(meter_.epoch_start);
  result_.epochs.push_back(es);
  json ej = {{"kind", "epoch"},
             {"epoch", es.epoch},
             {"step", meter_.step},
             {"train_loss", es.train_loss},
             {"train_acc", es.train_acc},
             {"img_per_s", es.images_per_s},
             {"seconds", es.seconds},
             {"elapsed_s", run_elapsed()},
             {"rss_mib", resident_mib()},
             {"input_wait_s", input_wait},
             {"input_stall", input_wait / std::max(train_seconds, 1e-9)}};
  if (recalibrated > 0) ej["bn_recalibrated_batches"] = recalibrated;
  if (meter_.epoch.device_s > 0) ej["gpu_busy"] = std::min(1.0, meter_.epoch.device_s / std::max(train_seconds, 1e-9));
  meter_.epoch.comm.add_to(ej, train_seconds);
  if (evaluate_now) {
    ej["val_loss"] = es.val_loss;
    ej["val_acc"] = es.val_acc;
    ej["val_auc"] = std::isnan(es.val_auc) ? json() : json(es.val_auc);
    ej["val_report"] = report.to_json();
    if (report.unreadable > 0) ej["val_unreadable"] = report.unreadable;
    if (report.vanished > 0) ej["val_vanished"] = report.vanished;
    if (cfg_.ema > 0.f) ej["val_weights"] = "ema";
    if (cfg_.tta_flip) ej["val_tta"] = "flip";
  }
  if (folder_.metrics) {
    folder_.metrics->write(ej);
    folder_.metrics->flush();
  }
  ej.erase("val_report");
  folder_.history.push_back(ej);
  // "Best" maximises the chosen metric (the loss is negated).
  const double score = cfg_.best_metric == BestMetric::val_auc    ? es.val_auc
                       : cfg_.best_metric == BestMetric::val_loss ? -es.val_loss
                                                                  : es.val_acc;
  const bool best = evaluate_now && std::isfinite(score) && score > folder_.best_score;
  if (best) folder_.best_score = score;
  if (evaluate_now) folder_.last_report = report;
  meter_.close_epoch(train_seconds, input_wait);  // the checkpoint then carries no sums into the next epoch
  write_checkpoint(epoch + 1, 0, best);
  if (plan_.world.writer) refresh_report(folder_.dir, console_);
  if (!cfg_.quiet) {
    const std::string left_out = report.left_out_words().empty()
                                     ? std::string()
                                     : str("  (", report.left_out_words(), " val image",
                                           report.unreadable + report.vanished == 1 ? "" : "s", " left out)");
    const char* val = cfg_.ema > 0.f ? (cfg_.tta_flip ? "val (ema, tta flip)" : "val (ema)")
                                     : (cfg_.tta_flip ? "val (tta flip)" : "val");
    if (evaluate_now)
      console_.say(
          "epoch %d/%d  train loss %.4f acc %.2f%%  |  %s loss %.4f acc %.2f%% auc %.4f  |  %s img/s, %.1f s%s%s\n",
          es.epoch, cfg_.epochs, es.train_loss, 100 * es.train_acc, val, es.val_loss, 100 * es.val_acc, es.val_auc,
          format_count(es.images_per_s).c_str(), es.seconds, best ? "  (best)" : "", left_out.c_str());
    else
      console_.say("epoch %d/%d  train loss %.4f acc %.2f%%  |  %s img/s, %.1f s\n", es.epoch, cfg_.epochs,
                   es.train_loss, 100 * es.train_acc, format_count(es.images_per_s).c_str(), es.seconds);
  }
}

// --epochs 0 with --init: the imported weights evaluated as they are, without a step, and written as a run like any
// other (an epoch-0 line in metrics.jsonl and the history, a checkpoint, the report), so eval, predict, export and
// report work on weights trained elsewhere.
void TrainingRun::evaluate_imported() {
  const TrainClock::time_point t0 = TrainClock::now();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EpochStats es;
  es.epoch = 0;
  es.train_loss = es.train_acc = es.images_per_s = es.val_loss = es.val_acc = es.val_auc = nan;
  json ej = {{"kind", "epoch"}, {"epoch", 0}, {"step", 0}, {"evaluation_only", true}};
  ClassificationReport report;
  if (plan_.data.has_val) {
    report = evaluate();
    es.val_loss = report.loss;
    es.val_acc = report.accuracy;
    es.val_auc = report.macro_auc;
    ej["val_loss"] = es.val_loss;
    ej["val_acc"] = es.val_acc;
    ej["val_auc"] = std::isnan(es.val_auc) ? json() : json(es.val_auc);
    ej["val_report"] = report.to_json();
    if (report.unreadable > 0) ej["val_unreadable"] = report.unreadable;
    if (report.vanished > 0) ej["val_vanished"] = report.vanished;
    folder_.last_report = report;
    folder_.best_score = cfg_.best_metric == BestMetric::val_auc    ? es.val_auc
                         : cfg_.best_metric == BestMetric::val_loss ? -es.val_loss
                                                                    : es.val_acc;
  }
  es.seconds = seconds_since(t0);
  ej["seconds"] = es.seconds;
  ej["elapsed_s"] = run_elapsed();
  result_.epochs.push_back(es);
  if (folder_.metrics) {
    folder_.metrics->write(ej);
    folder_.metrics->flush();
  }
  ej.erase("val_report");
  folder_.history.push_back(ej);
  write_checkpoint(0, 0, plan_.data.has_val && std::isfinite(folder_.best_score));
  if (plan_.world.writer) refresh_report(folder_.dir, console_);
  if (cfg_.quiet) return;
  if (plan_.data.has_val)
    console_.say(
        "evaluation only (--epochs 0): %s images evaluated%s: accuracy %.2f%%, loss %.4f, macro ROC-AUC %.4f\n",
        format_count(static_cast<double>(report.count)).c_str(),
        report.left_out_words().empty() ? "" : str(" (", report.left_out_words(), " left out)").c_str(),
        100 * report.accuracy, report.loss, report.macro_auc);
  else
    console_.say("evaluation only (--epochs 0): no --val, so nothing evaluated; the imported weights are saved\n");
}

}  // namespace stoke
