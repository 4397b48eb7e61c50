// What a training run keeps in its folder and carries from one session to the next: where it is, metrics.jsonl, the
// settings of config.json, and what a resumed run starts from (epoch, cursor, step, time, history, best score).
// open_run_folder (engine/training_folder.cpp) makes it; the loop appends to its history and metrics.
#pragma once

#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/fs.h"
#include "engine/metrics.h"
#include "io/source/source.h"
#include "report/tensorboard.h"

namespace stoke {

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

struct RunFolder {
  std::string dir, metrics_path;
  std::string note;          // a run folder started again
  std::string resumed_from;  // the checkpoint a resumed run continues from ("" for a new run)
  std::string resume_note;   // a resume that is not a plain continuation
  int64_t start_epoch = 0, start_cursor = 0, start_step = 0;
  double elapsed_before = 0;                         // run time of the sessions before this one (from the checkpoint)
  nlohmann::json resume_sums;                        // the sums of the epoch a mid-epoch checkpoint interrupted
  nlohmann::json config;                             // the settings of config.json, also saved in every checkpoint
  nlohmann::json history = nlohmann::json::array();  // every epoch's line, across sessions
  double best_score = -std::numeric_limits<double>::infinity();  // of cfg.best_metric (val_loss negated)
  ClassificationReport last_report;
  std::unique_ptr<JsonlWriter> metrics;  // rank 0 only
  std::unique_ptr<FileLock> lock;        // rank 0's hold on the folder, for the run's whole life
};

// A run writes its folder alone: the exclusive lock on DIR/.lock (flock, dropped by the kernel when the holder dies,
// kill -9 included). `who` names this process's use of it ("stoke train"). Throws UserError naming the folder and
// the holder's pid when another process holds it.
std::unique_ptr<FileLock> lock_run_folder(const std::string& dir, const std::string& who);

// Bytes free to this process on the file system holding `dir` (statvfs), -1 when it cannot be asked; *block gets its
// block size.
int64_t free_bytes(const std::string& dir, int64_t* block = nullptr);

// What a training session needs on its run folder's file system: one checkpoint (block rounding included), the
// run's other files (metrics.jsonl, report.html, summary.json, config.json), and how many checkpoints it holds at
// once (those kept plus the one being written, less those already there; --keep-checkpoints is `keep`).
struct SpaceNeed {
  int64_t checkpoint = 0, others = 0;
  int64_t at_once = 1;
  int keep = 0;
};
// A full disk found at the first checkpoint costs an epoch of compute, so the run asks at its start. Throws UserError
// naming `dir` and the numbers when `free` bytes do not hold one checkpoint and the other files; returns a one-line
// warning when they do not hold `at_once` checkpoints; else "".
std::string check_space(const std::string& dir, int64_t free, const SpaceNeed& need);

// runs/<model>-<date>-<time>, before rank 0 claims a free name.
std::string default_run_dir(const std::string& model);
// Keeps metrics.jsonl consistent with a resumed run: drops lines written after the checkpoint's step.
void truncate_metrics(const std::string& path, int64_t step);
// left_out.txt: every file of the data folders that indexing did not take, with its reason.
void write_left_out(const std::string& dir, const io::Source* train, const io::Source* val);

}  // namespace stoke
