// The end of a run: summary.json (the numbers and a verdict naming the limiting stage), the report, and the
// closing lines on the console.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/training_run.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

TrainResult TrainingRun::finish() {
  result_.seconds = seconds_since(t_start_);
  result_.steps = step_;
  result_.corrupt_images = (train_in_ ? train_in_->stats().corrupt : train_cache_->corrupt()) +
                          (val_in_ ? val_in_->stats().corrupt : val_cache_ ? val_cache_->corrupt() : 0);
  if (result_.interrupted) {
    if (!cfg_.quiet)
      console_.say("\ninterrupted at step %lld: checkpoint written to %s\ncontinue with: stoke train --resume %s\n",
                  static_cast<long long>(step_), result_.last_checkpoint.c_str(), run_dir_.c_str());
    return result_;
  }
  json summary = {{"model", cfg_.model},
                  {"backend", backend_->name()},
                  {"device", backend_->describe()},
                  {"epochs", cfg_.epochs},
                  {"steps", step_},
                  {"train_images", train_count_},
                  {"seconds_total", run_elapsed()},  // every session of the run
                  {"seconds_this_session", result_.seconds},
                  {"corrupt_images", result_.corrupt_images},
                  {"skipped_steps", result_.skipped_steps},
                  {"params", graph_.num_params()},
                  {"last_checkpoint", result_.last_checkpoint},
                  {"history", history_}};
  // Both file caches together (train and val), once for summary.json and the printed summary.
  io::FileCacheSource::Stats fc;
  for (const auto& cache : {train_files_, val_files_}) {
    if (!cache) continue;
    const io::FileCacheSource::Stats s = cache->stats();
    fc.kept += s.kept;
    fc.kept_bytes += s.kept_bytes;
    fc.hits += s.hits;
    fc.misses += s.misses;
    fc.full = fc.full || s.full;
  }
  if (train_files_)
    summary["file_cache"] = {{"files_kept", fc.kept}, {"bytes_kept", fc.kept_bytes}, {"reads_from_memory", fc.hits},
                             {"reads_from_disk", fc.misses}, {"full", fc.full}};
  // --cache gpu falls back to decoded when the set does not fit: which one ran is said here (the GPU check reads it).
  if (train_cache_) summary["decoded_cache"] = held_ ? "held by the backend" : "host memory";
  if (!history_.empty()) {
    const json& last = history_.back();
    summary["final_train_loss"] = last["train_loss"];
    summary["final_train_acc"] = last["train_acc"];
    if (has_val_) {
      summary["val_images"] = val_count_;
      summary["final_val_loss"] = last["val_loss"];
      summary["final_val_acc"] = last["val_acc"];
      summary["final_val_auc"] = last["val_auc"];
      summary["best_metric"] = to_string(cfg_.best_metric);
      summary["best_checkpoint"] = find_checkpoint(run_dir_, "best");
      if (last_report_.count > 0) summary["final_val_report"] = last_report_.to_json();
    }
  }
  // The verdict: what limited this run (thresholds in engine/run_verdict.cpp).
  const double run_stall = total_wait_ / std::max(total_train_seconds_, 1e-9);
  const std::string verdict_text = verdict(run_stall);
  summary["input_stall"] = run_stall;
  if (total_device_s_ > 0) summary["gpu_busy"] = std::min(1.0, total_device_s_ / std::max(total_train_seconds_, 1e-9));
  total_comm_.add_to(summary, total_train_seconds_);  // data parallel: comm_s, comm_share, allreduce_bytes
  summary["verdict"] = verdict_text;
  if (!writer_) return result_;  // rank 0 owns the run folder
  summary["world"] = world_;
  atomic_write_file((fs::path(run_dir_) / "summary.json").string(), summary.dump(2) + "\n");
  refresh_report(run_dir_, console_);
  if (!cfg_.quiet && !history_.empty()) {
    const json& last = history_.back();
    const std::string session =
        elapsed_before_ > 0 ? str(", this session ", format_duration(result_.seconds)) : std::string();
    console_.say("\nsummary: %s on %s, %d epoch%s, %lld steps in %s%s (%s img/s in the last epoch)\n", cfg_.model.c_str(),
                use_cuda_ ? "the CUDA backend" : "the CPU backend", cfg_.epochs, cfg_.epochs == 1 ? "" : "s", static_cast<long long>(step_),
                format_duration(run_elapsed()).c_str(), session.c_str(), format_count(last["img_per_s"].get<double>()).c_str());
    if (has_val_ && last_report_.count > 0) {
      const std::string left_out =
          last_report_.unreadable > 0 ? str("; ", last_report_.unreadable, " unreadable left out") : std::string();
      console_.say("         validation accuracy %.2f%% (%s images%s), loss %.4f, macro ROC-AUC %.4f\n",
                  100 * last_report_.accuracy, format_count(static_cast<double>(last_report_.count)).c_str(),
                  left_out.c_str(), last_report_.loss, last_report_.macro_auc);
      console_.say("\nconfusion matrix (validation, last epoch):\n%s", last_report_.confusion_table(class_names_).c_str());
    }
    if (train_files_)
      console_.say("         file cache: %s files (%.1f MiB) kept; %s reads from memory, %s from disk%s\n",
                  format_count(static_cast<double>(fc.kept)).c_str(), static_cast<double>(fc.kept_bytes) / 1048576.0,
                  format_count(static_cast<double>(fc.hits)).c_str(), format_count(static_cast<double>(fc.misses)).c_str(),
                  fc.full ? " (the budget filled: raise --cache-budget-mb)" : "");
    if (result_.corrupt_images > 0)
      console_.say("         %lld corrupt images were skipped\n", static_cast<long long>(result_.corrupt_images));
    if (result_.skipped_steps > 0)
      console_.say("         %lld steps were skipped (non-finite loss)\n", static_cast<long long>(result_.skipped_steps));
    console_.say("         verdict: %s\n", verdict_text.c_str());
    console_.say("         report: %s/report.html, metrics: %s/metrics.jsonl, checkpoint: %s\n", run_dir_.c_str(),
                run_dir_.c_str(), result_.last_checkpoint.c_str());
  }
  return result_;
}

// What limited this run (engine/run_verdict.h): the input stall, the device's busy time, the all-reduce's share.
std::string TrainingRun::verdict(double run_stall) const {
  VerdictInputs in;
  in.decoded_cache = train_cache_ != nullptr;
  in.input_stall = run_stall;
  in.decoders = train_in_ ? train_in_->decoders() : 0;
  in.backend = backend_->name();
  in.gpu_busy = total_device_s_ > 0 ? std::min(1.0, total_device_s_ / std::max(total_train_seconds_, 1e-9)) : 0.0;
  in.comm_share = total_comm_.seconds > 0 ? total_comm_.share(total_train_seconds_) : 0.0;
  return run_verdict(in);
}

}  // namespace stoke
