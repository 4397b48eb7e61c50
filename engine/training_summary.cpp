// The end of a run: summary.json (the numbers and a verdict naming the limiting stage), the report, and the
// closing lines on the console.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/training_run.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Both file caches together (train and val), once for summary.json and the printed summary.
io::FileCacheSource::Stats file_cache_stats(const RunData& data) {
  io::FileCacheSource::Stats fc;
  for (const auto& cache : {data.train_files, data.val_files}) {
    if (!cache) continue;
    const io::FileCacheSource::Stats s = cache->stats();
    fc.kept += s.kept;
    fc.kept_bytes += s.kept_bytes;
    fc.hits += s.hits;
    fc.misses += s.misses;
    fc.full = fc.full || s.full;
  }
  return fc;
}

}  // namespace

TrainResult TrainingRun::finish() {
  result_.seconds = seconds_since(t_start_);
  result_.steps = meter_.step;
  for (const auto& [ring, cache] :
       {std::pair{input_.train_ring, input_.train_cache.get()}, std::pair{input_.val_ring, input_.val_cache.get()}}) {
    const io::PipelineStats st = ring ? ring->stats() : io::PipelineStats{};
    result_.corrupt_images += ring ? st.corrupt : cache ? cache->corrupt() : 0;
    result_.vanished_images += ring ? st.vanished : cache ? cache->vanished() : 0;
  }
  if (result_.interrupted) {
    if (!cfg_.quiet)
      console_.say("\ninterrupted at step %lld: checkpoint written to %s\ncontinue with: stoke train --resume %s\n",
                   static_cast<long long>(meter_.step), display_name(result_.last_checkpoint).c_str(),
                   display_name(folder_.dir).c_str());
    return result_;
  }
  json summary = {{"model", cfg_.model},
                  {"backend", backend_->name()},
                  {"device", backend_->describe()},
                  {"epochs", cfg_.epochs},
                  {"steps", meter_.step},
                  {"train_images", plan_.data.train_count},
                  {"seconds_total", run_elapsed()},  // every session of the run
                  {"seconds_this_session", result_.seconds},
                  {"corrupt_images", result_.corrupt_images},
                  {"vanished_images", result_.vanished_images},
                  {"skipped_steps", result_.skipped_steps},
                  {"params", model_.graph.num_params()},
                  {"last_checkpoint", display_name(result_.last_checkpoint)},
                  {"history", folder_.history}};
  const io::FileCacheSource::Stats fc = file_cache_stats(plan_.data);
  if (plan_.data.train_files)
    summary["file_cache"] = {{"files_kept", fc.kept},
                             {"bytes_kept", fc.kept_bytes},
                             {"reads_from_memory", fc.hits},
                             {"reads_from_disk", fc.misses},
                             {"full", fc.full}};
  // --cache gpu falls back to decoded when the set does not fit: which one ran is said here (the GPU check reads it).
  if (input_.train_cache) summary["decoded_cache"] = input_.held ? "held by the backend" : "host memory";
  if (!folder_.history.empty()) {
    const json& last = folder_.history.back();
    if (last.contains("train_loss")) {  // not after --epochs 0
      summary["final_train_loss"] = last["train_loss"];
      summary["final_train_acc"] = last["train_acc"];
    }
    if (plan_.data.has_val) {
      summary["val_images"] = plan_.data.val_count;
      summary["final_val_loss"] = last["val_loss"];
      summary["final_val_acc"] = last["val_acc"];
      summary["final_val_auc"] = last["val_auc"];
      summary["best_metric"] = to_string(cfg_.best_metric);
      summary["best_checkpoint"] = display_name(find_checkpoint(folder_.dir, "best"));
      if (folder_.last_report.count > 0) summary["final_val_report"] = folder_.last_report.to_json();
    }
  }
  // The verdict: what limited this run (thresholds in engine/run_verdict.cpp).
  const double run_stall = meter_.total_wait / std::max(meter_.total_train_s, 1e-9);
  const std::string verdict_text =
      cfg_.epochs == 0 ? std::string("evaluation only (--epochs 0): no training step") : verdict(run_stall);
  summary["input_stall"] = run_stall;
  if (meter_.total_device_s > 0)
    summary["gpu_busy"] = std::min(1.0, meter_.total_device_s / std::max(meter_.total_train_s, 1e-9));
  meter_.total_comm.add_to(summary, meter_.total_train_s);  // data parallel: comm_s, comm_share, allreduce_bytes
  summary["verdict"] = verdict_text;
  if (!plan_.world.writer) return result_;  // rank 0 owns the run folder
  summary["world"] = plan_.world.size;
  atomic_write_file((fs::path(folder_.dir) / "summary.json").string(), summary.dump(2) + "\n");
  refresh_report(folder_.dir, console_);
  if (!cfg_.quiet && !folder_.history.empty() && cfg_.epochs > 0) say_summary(fc, verdict_text);
  return result_;
}

// The closing lines on the console.
void TrainingRun::say_summary(const io::FileCacheSource::Stats& fc, const std::string& verdict_text) const {
  const json& last = folder_.history.back();
  const std::string session =
      folder_.elapsed_before > 0 ? str(", this session ", format_duration(result_.seconds)) : std::string();
  console_.say("\nsummary: %s on %s, %d epoch%s, %lld steps in %s%s (%s img/s in the last epoch)\n", cfg_.model.c_str(),
               plan_.device.use_cuda ? "the CUDA backend" : "the CPU backend", cfg_.epochs, cfg_.epochs == 1 ? "" : "s",
               static_cast<long long>(meter_.step), format_duration(run_elapsed()).c_str(), session.c_str(),
               format_count(last["img_per_s"].get<double>()).c_str());
  if (plan_.data.has_val && folder_.last_report.count > 0) {
    const std::string words = folder_.last_report.left_out_words();
    const std::string left_out = words.empty() ? std::string() : str("; ", words, " left out");
    console_.say("         validation accuracy %.2f%% (%s images%s), loss %.4f, macro ROC-AUC %.4f\n",
                 100 * folder_.last_report.accuracy,
                 format_count(static_cast<double>(folder_.last_report.count)).c_str(), left_out.c_str(),
                 folder_.last_report.loss, folder_.last_report.macro_auc);
    console_.say("\nconfusion matrix (validation, last epoch):\n%s",
                 folder_.last_report.confusion_table(plan_.data.class_names).c_str());
  }
  if (plan_.data.train_files)
    console_.say("         file cache: %s files (%.1f MiB) kept; %s reads from memory, %s from disk%s\n",
                 format_count(static_cast<double>(fc.kept)).c_str(), static_cast<double>(fc.kept_bytes) / 1048576.0,
                 format_count(static_cast<double>(fc.hits)).c_str(),
                 format_count(static_cast<double>(fc.misses)).c_str(),
                 fc.full ? " (the budget filled: raise --cache-budget-mb)" : "");
  if (result_.corrupt_images > 0)
    console_.say("         %lld corrupt images were skipped\n", static_cast<long long>(result_.corrupt_images));
  if (result_.vanished_images > 0)
    console_.say("         %lld images vanished during the run (deleted or renamed after indexing) and were skipped\n",
                 static_cast<long long>(result_.vanished_images));
  if (result_.skipped_steps > 0)
    console_.say("         %lld steps were skipped (non-finite loss)\n", static_cast<long long>(result_.skipped_steps));
  console_.say("         verdict: %s\n", verdict_text.c_str());
  const std::string dir = display_name(folder_.dir);
  console_.say("         report: %s/report.html, metrics: %s/metrics.jsonl, checkpoint: %s\n", dir.c_str(), dir.c_str(),
               display_name(result_.last_checkpoint).c_str());
}

// What limited this run (engine/run_verdict.h): the input stall, the device's busy time, the all-reduce's share.
std::string TrainingRun::verdict(double run_stall) const {
  VerdictInputs in;
  in.decoded_cache = input_.train_cache != nullptr;
  in.input_stall = run_stall;
  in.decoders = input_.train_ring ? input_.train_ring->decoders() : 0;
  in.backend = backend_->name();
  in.gpu_busy =
      meter_.total_device_s > 0 ? std::min(1.0, meter_.total_device_s / std::max(meter_.total_train_s, 1e-9)) : 0.0;
  in.comm_share = meter_.total_comm.seconds > 0 ? meter_.total_comm.share(meter_.total_train_s) : 0.0;
  return run_verdict(in);
}

}  // namespace stoke
