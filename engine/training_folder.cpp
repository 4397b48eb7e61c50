// The run folder of a training run: a new one (its training file list and the data's normalisation), or the
// checkpoint a resumed run continues from, with the checks that make resuming safe and the notes that say what
// a resume changes. Part of TrainingRun (engine/training_run.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>

#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "base/permutation.h"
#include "engine/checkpoint.h"
#include "engine/resume.h"
#include "engine/run_folder.h"
#include "engine/training_run.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string format_lr(float lr) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", static_cast<double>(lr));
  return b;
}

// Per-channel mean and std of pixel/255 over up to 2,000 training images (a seeded choice).
void estimate_normalization(const std::shared_ptr<const io::Source>& source, Shape3 shape, uint64_t seed, int decoders,
                            std::vector<float>& mean, std::vector<float>& stdev) {
  const int64_t n = std::min<int64_t>(2000, source->size());
  std::vector<int64_t> order = epoch_permutation(source->size(), seed, -2);
  order.resize(static_cast<size_t>(n));
  auto sample = std::make_shared<io::SubsetSource>(source, std::move(order));
  io::PipelineConfig pc = eval_pipeline_config(shape, static_cast<int>(std::min<int64_t>(250, n)), decoders, false, "");
  pc.on_warning = [](const std::string&) {};  // bad files are reported by the training pipeline
  pc.replace_bad = true;                      // a stand-in's pixels, not a masked zero image, in the statistics
  io::InputPipeline in(sample, pc);
  in.start(0);
  std::vector<double> s(static_cast<size_t>(shape.c), 0.0), s2(static_cast<size_t>(shape.c), 0.0);
  int64_t count = 0;
  while (io::Batch b = in.acquire()) {
    const int64_t px = int64_t{b.valid} * shape.h * shape.w;
    for (int64_t i = 0; i < px; ++i)
      for (int c = 0; c < shape.c; ++c) {
        double v = b.pixels[i * shape.c + c] / 255.0;
        s[static_cast<size_t>(c)] += v;
        s2[static_cast<size_t>(c)] += v * v;
      }
    count += px;
    in.release(b.tag);
  }
  mean.resize(static_cast<size_t>(shape.c));
  stdev.resize(static_cast<size_t>(shape.c));
  for (size_t c = 0; c < s.size(); ++c) {
    double m = s[c] / static_cast<double>(std::max<int64_t>(count, 1));
    double var = s2[c] / static_cast<double>(std::max<int64_t>(count, 1)) - m * m;
    mean[c] = static_cast<float>(m);
    stdev[c] = static_cast<float>(std::sqrt(std::max(var, 1e-6)));
  }
}

}  // namespace

// ---- the run folder, or the checkpoint to continue from ----------------------------------------------------------
void TrainingRun::open_run_folder() {
  folder_.dir = cfg_.out.empty() ? default_run_dir(cfg_.model) : cfg_.out;
  if (cfg_.out.empty() && !resuming_) {
    // The default name holds the time to the second, so two runs started together would share it: rank 0 claims
    // a folder by mkdir (runs/NAME, else runs/NAME-2, ...), which no other process can claim too, and tells the
    // other ranks which one it got.
    if (plan_.world.writer) folder_.dir = create_unique_directory(folder_.dir);
    if (plan_.world.size > 1) folder_.dir = comm_->broadcast_string(folder_.dir, 0);
  }
  folder_.metrics_path = (fs::path(folder_.dir) / "metrics.jsonl").string();
  // Before anything in the folder is read or changed: a second run there (or a report) would interleave its files
  // with this one's, and both would report success.
  if (plan_.world.writer && (!resuming_ || fs::is_directory(folder_.dir))) {
    std::error_code ec;
    fs::create_directories(folder_.dir, ec);
    if (ec) throw UserError(str("cannot create run folder ", display_name(folder_.dir), ": ", ec.message()));
    folder_.lock = lock_run_folder(folder_.dir, resuming_ ? "stoke train --resume" : "stoke train");
  }
  if (resuming_) {
    resume_from_checkpoint();
    return;
  }
  if (!plan_.world.writer) {  // rank 0 owns the run folder
    if (plan_.mean.empty())   // --normalize data (the default); the other choices were set with the model
      estimate_normalization(plan_.data.train_src, plan_.data.shape, cfg_.seed, cfg_.decoders, plan_.mean, plan_.stdev);
    return;
  }
  std::error_code ec;
  if (fs::exists(folder_.metrics_path) && !cfg_.overwrite) {
    if (!find_checkpoint(folder_.dir).empty())
      throw UserError(str("--out ", display_name(folder_.dir),
                          " already holds a run (metrics.jsonl): choose another folder, pass --overwrite, or --resume ",
                          folder_.dir));
    // Killed before its first checkpoint: nothing to continue and nothing to lose; advice to --resume would loop.
    folder_.note =
        str(display_name(folder_.dir), " holds a run that stopped before its first checkpoint: starting it again");
  }
  fs::create_directories(folder_.dir, ec);
  if (ec) throw UserError(str("cannot create run folder ", display_name(folder_.dir), ": ", ec.message()));
  check_free_space();  // before the old run's files go: a refused run loses nothing
  fs::remove(folder_.metrics_path, ec);
  fs::remove_all(fs::path(folder_.dir) / "checkpoints", ec);
  write_train_files(folder_.dir, *plan_.data.train_src);  // a resume can then name what changed in the data
  if (plan_.mean.empty())
    estimate_normalization(plan_.data.train_src, plan_.data.shape, cfg_.seed, cfg_.decoders, plan_.mean, plan_.stdev);
}

// Before an epoch of compute: room for this session's checkpoints and files (engine/run_folder.h check_space).
void TrainingRun::check_free_space() {
  int64_t block = 4096;
  const int64_t free = plan_.world.writer ? free_bytes(folder_.dir, &block) : -1;
  if (free < 0) return;  // rank 0 owns the folder; a file system that cannot say is not refused
  const int64_t epochs = std::max<int64_t>(0, cfg_.epochs - folder_.start_epoch);
  const int64_t steps = epochs * plan_.batch.steps_per_epoch - folder_.start_cursor;
  const int64_t writes = cfg_.epochs == 0 && !resuming_  // --epochs 0 --init: the imported weights' checkpoint
                             ? 1
                             : epochs + (cfg_.checkpoint_every > 0 ? steps / cfg_.checkpoint_every : 0);
  if (writes <= 0) return;
  // A resumed run's step folders stay; a new run's predecessor (--overwrite) goes, and its bytes count as free.
  int64_t there = 0, reclaimed = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(folder_.dir) / "checkpoints", ec)) {
    if (resuming_ && e.is_directory() && e.path().parent_path().filename() == "checkpoints")
      there += e.path().filename().string().rfind("step-", 0) == 0;
    if (!resuming_ && e.is_regular_file()) reclaimed += static_cast<int64_t>(e.file_size(ec));
  }
  if (!resuming_ && fs::is_regular_file(folder_.metrics_path))
    reclaimed += static_cast<int64_t>(fs::file_size(folder_.metrics_path, ec));
  SpaceNeed need;
  need.keep = std::max(cfg_.keep_checkpoints, 1);
  need.at_once = std::max<int64_t>(1, std::min<int64_t>(there + writes, need.keep + 1) - there);
  // Four files and two one-line pointers, each rounded up to a block.
  need.checkpoint = checkpoint_bytes(model_.graph, to_string(cfg_.optimizer.kind), model_.opt_state.size(),
                                     config_to_json(cfg_), plan_.data.shape.c, cfg_.epochs) +
                    6 * block;
  // metrics.jsonl: a line per --log-every steps (~300 bytes) and per epoch one with the validation report (a
  // confusion matrix); report.html, summary.json and config.json about 128 KiB together.
  const auto classes = static_cast<int64_t>(plan_.data.class_names.size());
  need.others = (128 << 10) + (steps / std::max(cfg_.log_every, 1) + epochs) * 512 +
                (plan_.data.has_val ? epochs * (classes * classes * 8 + classes * 64) : 0);
  const std::string warning = check_space(folder_.dir, free + reclaimed, need);
  if (!warning.empty()) warn(warning);
}

void TrainingRun::resume_from_checkpoint() {
  std::string note;
  folder_.resumed_from = find_checkpoint(folder_.dir, "latest", &note);
  if (folder_.resumed_from.empty() && !note.empty())
    throw UserError(str("--resume ", display_name(folder_.dir), ": ", note, "; nothing intact to continue from"));
  if (folder_.resumed_from.empty())
    throw UserError(str("--resume ", display_name(folder_.dir),
                        ": the run stopped before its first checkpoint, so there is nothing to "
                        "continue; run it again without --resume (its folder is reused)"));
  if (!note.empty()) console_.warn(note);  // the resume continues from an older checkpoint than `latest` named
  CheckpointData ck = load_checkpoint(folder_.resumed_from, model_.graph, to_string(cfg_.optimizer.kind));
  const json& st = ck.state;
  check_resumed_data(st);
  model_.params = std::move(ck.params);
  model_.buffers = std::move(ck.buffers);
  if (model_.opt_state.size() != ck.optimizer_state.size())
    throw UserError(
        str(display_name(folder_.resumed_from), ": the optimizer state does not fit this run's optimizer settings"));
  model_.opt_state = std::move(ck.optimizer_state);
  if (cfg_.ema > 0.f && ck.ema_params.empty())
    throw Error(str(folder_.resumed_from, " holds no ema.safetensors, yet the run trains with --ema"));
  model_.ema_params = std::move(ck.ema_params);
  model_.ema_buffers = std::move(ck.ema_buffers);
  try {
    model_.opt_steps = json_int(st, "optimizer_steps", 0, int64_t{1} << 50);
    folder_.start_epoch = json_int(st, "epoch", 0, 1 << 30);
    // A forced resume on data that changed may have fewer steps per epoch than the checkpoint's cursor.
    folder_.start_cursor = json_int(st, "cursor", 0, cfg_.force ? int64_t{1} << 50 : plan_.batch.steps_per_epoch);
    folder_.start_cursor = std::min(folder_.start_cursor, plan_.batch.steps_per_epoch);
    folder_.start_step = json_int(st, "step", 0, int64_t{1} << 50);
    folder_.elapsed_before = json_number(st, "elapsed_s", 0, 1e12, 0.0);
  } catch (const Error& e) {
    throw Error(str(display_name(folder_.resumed_from), "/state.json is damaged: ", e.what()));
  }
  folder_.resume_sums = st.value("epoch_sums", json::object());
  folder_.history = st.value("history", json::array());
  if (st.contains("best_score") && st["best_score"].is_number()) folder_.best_score = st["best_score"].get<double>();
  auto channels = [&](const char* key, double lo) {
    std::vector<float> v;
    if (!st.contains(key) || !st[key].is_array() || st[key].size() != static_cast<size_t>(plan_.data.shape.c))
      throw Error(str(display_name(folder_.resumed_from), "/state.json is damaged: '", key, "' must hold ",
                      plan_.data.shape.c, " numbers"));
    for (size_t k = 0; k < st[key].size(); ++k) {
      const nlohmann::json one = {{"v", st[key][k]}};
      v.push_back(static_cast<float>(json_number(one, "v", lo, 1e6)));
    }
    return v;
  };
  plan_.mean = channels("normalize_mean", -1e6);
  plan_.stdev = channels("normalize_std", 1e-12);
  check_free_space();  // before the first write (metrics.jsonl truncated to the checkpoint's step)
  if (plan_.world.writer) truncate_metrics(folder_.metrics_path, folder_.start_step);
  if (st.contains("config") && st["config"].is_object()) {
    const std::string change =
        schedule_change(static_cast<int>(json_int(st["config"], "epochs", 0, 1 << 30, cfg_.epochs)));
    if (!change.empty()) folder_.resume_note += (folder_.resume_note.empty() ? "" : "\n") + change;
  }
}

// The data a resumed run finds: the same classes always (they are the model's outputs); the same files, or with
// --force a few added or removed, named either way.
void TrainingRun::check_resumed_data(const json& state) {
  const fs::path config = fs::path(folder_.dir) / "config.json";
  if (fs::exists(config)) {
    const std::vector<uint8_t> text = read_file(config.string());
    const json saved = json::parse(text.begin(), text.end(), nullptr, false);
    const json classes = display_names(plan_.data.class_names);  // as config.json holds them
    if (saved.is_object() && saved.contains("classes") && saved["classes"] != classes)
      throw UserError(str("--resume ", display_name(folder_.dir), ": the classes of --data ", display_name(cfg_.data),
                          " (", classes.dump(), ") are not the run's (", saved["classes"].dump(),
                          "): the model was built for those"));
  }
  if (state.value("dataset", std::string()) == plan_.data.fingerprint) return;
  const DataChange d = compare_train_files(folder_.dir, *plan_.data.train_src);
  const std::string what = d.no_list
                               ? str("the training data differ from the checkpoint's (",
                                     state.value("dataset", std::string("?")), " vs ", plan_.data.fingerprint, ")")
                               : str("the training data changed since the checkpoint: ", d.describe());
  if (!cfg_.force)
    throw UserError(str("--resume ", display_name(folder_.dir), ": ", what,
                        ". Resume with the same --data, --limit-train and --seed, or "
                        "pass --force to continue on the data as it is now (the rest of this epoch then comes in "
                        "another order than an uninterrupted run's)"));
  folder_.resume_note = str("warning: ", what, "; continuing on the data as it is now (--force)");
  if (plan_.world.writer) write_train_files(folder_.dir, *plan_.data.train_src);  // the next resume compares with these
}

// --epochs on a resumed run changes the schedule's length: one line saying what that does to the learning rate.
std::string TrainingRun::schedule_change(int planned_epochs) const {
  if (planned_epochs == cfg_.epochs || planned_epochs <= 0) return "";
  const Schedule before = schedule_for(cfg_, plan_.batch.steps_per_epoch, planned_epochs);
  const Schedule after = schedule_for(cfg_, plan_.batch.steps_per_epoch, cfg_.epochs);
  const float was = before.at(std::min(folder_.start_step, before.total_steps - 1)), now = after.at(folder_.start_step);
  std::string s = str("--epochs ", cfg_.epochs, ": the run was planned for ", planned_epochs,
                      planned_epochs == 1 ? " epoch; " : " epochs; ");
  if (cfg_.schedule == ScheduleKind::constant) return s + "the learning rate stays constant (" + format_lr(now) + ")";
  return s + str("the ", to_string(cfg_.schedule), " schedule is laid out again over ", cfg_.epochs,
                 " epochs from the start, so at step ", folder_.start_step, " the learning rate goes from ",
                 format_lr(was), " to ", format_lr(now));
}

}  // namespace stoke
