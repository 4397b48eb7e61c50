#include "engine/resume.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "base/console.h"
#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "engine/checkpoint.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kTrainFiles = "train_files.txt";

json read_json_file(const std::string& path) {
  try {
    const std::vector<uint8_t> text = read_file(path);
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw Error(str(display_name(path), " is damaged: ", json_problem(e)));
  }
}

json checkpoint_state(const std::string& run_dir, std::string* checkpoint = nullptr) {
  const std::string ck = find_checkpoint(run_dir);
  if (ck.empty())
    throw UserError(str("--resume ", display_name(run_dir), ": the folder holds no checkpoint (", display_name(run_dir),
                        "/checkpoints/latest)"));
  if (checkpoint) *checkpoint = ck;
  return read_json_file((fs::path(ck) / "state.json").string());
}

// "--batch-size" -> "batch_size", the key config_to_json uses; the negated flags name their setting.
std::string config_key(const std::string& flag) {
  if (flag == "--no-exif-orientation") return "exif_orientation";
  if (flag == "--no-nesterov") return "nesterov";
  // The augmentation flags are compared as the recipe they resolve to (with --augment's preset).
  static const std::set<std::string> kRecipe = {"--rotate",     "--zoom",       "--translate", "--shear", "--hflip",
                                                "--vflip",      "--brightness", "--contrast",  "--gamma", "--noise",
                                                "--saturation", "--hue",        "--erase",     "--fill"};
  if (kRecipe.count(flag)) return "augment_recipe";
  std::string k = flag.rfind("--", 0) == 0 ? flag.substr(2) : flag;
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

std::string shown(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {  // the flag's float as typed (0.1), not its double expansion (0.10000000149011612)
    char b[32];
    std::snprintf(b, sizeof b, "%.7g", v.get<double>());
    return b;
  }
  return v.dump();
}

bool same_folder(const std::string& a, const std::string& b) {
  std::error_code ea, eb;
  const fs::path ca = fs::weakly_canonical(a, ea), cb = fs::weakly_canonical(b, eb);
  return !ea && !eb ? ca == cb : fs::path(a).lexically_normal() == fs::path(b).lexically_normal();
}

void apply_session_flag(const std::string& name, const TrainConfig& cli, TrainConfig& run) {
  if (name == "--epochs") run.epochs = cli.epochs;
  else if (name == "--threads") run.threads = cli.threads;
  else if (name == "--decoders") run.decoders = cli.decoders;
  else if (name == "--no-graphs") run.graphs = cli.graphs;
  else if (name == "--cache") run.cache = cli.cache;
  else if (name == "--augment-on") run.augment_on = cli.augment_on;
  else if (name == "--cache-budget-mb") run.cache_budget_mb = cli.cache_budget_mb;
  else if (name == "--device") run.device = cli.device;
  else if (name == "--quiet") run.quiet = cli.quiet;
  else if (name == "--tensorboard") run.tensorboard = cli.tensorboard;
  else if (name == "--watchdog") run.watchdog_seconds = cli.watchdog_seconds;
  else if (name == "--strict") run.strict = cli.strict;
  else if (name == "--checkpoint-every") run.checkpoint_every = cli.checkpoint_every;
  else if (name == "--keep-checkpoints") run.keep_checkpoints = cli.keep_checkpoints;
  else if (name == "--force") run.force = cli.force;
  else if (name == "--interrupt-after-steps") run.interrupt_after_steps = cli.interrupt_after_steps;
  else if (name == "--trace") run.trace_file = cli.trace_file;
  else if (name == "--log-every") run.log_every = cli.log_every;
  else if (name == "--bn-recalibrate") run.bn_recalibrate = cli.bn_recalibrate;
  else if (name == "--profile-steps") {
    run.profile_first = cli.profile_first;
    run.profile_last = cli.profile_last;
  } else if (name == "--trace-steps") {
    run.trace_first = cli.trace_first;
    run.trace_last = cli.trace_last;
  }
}

}  // namespace

bool is_session_flag(const std::string& flag) {
  static const std::set<std::string> kSession = {"--epochs",
                                                 "--threads",
                                                 "--decoders",
                                                 "--no-graphs",
                                                 "--cache",
                                                 "--augment-on",
                                                 "--cache-budget-mb",
                                                 "--device",
                                                 "--quiet",
                                                 "--tensorboard",
                                                 "--watchdog",
                                                 "--strict",
                                                 "--checkpoint-every",
                                                 "--keep-checkpoints",
                                                 "--force",
                                                 "--interrupt-after-steps",
                                                 "--trace",
                                                 "--profile-steps",
                                                 "--trace-steps",
                                                 "--log-every",
                                                 "--bn-recalibrate"};
  return kSession.count(flag) > 0;
}

TrainConfig config_for_resume(const std::string& run_dir) {
  if (!fs::is_directory(run_dir)) throw UserError(str("--resume ", display_name(run_dir), ": no such run folder"));
  const json state = checkpoint_state(run_dir);
  if (!state.contains("config"))
    throw Error(str(display_name(find_checkpoint(run_dir)), "/state.json holds no configuration"));
  TrainConfig c = config_from_json(state["config"]);
  c.resume = run_dir;
  c.out = run_dir;
  return c;
}

TrainConfig resume_config(const std::string& run_dir, const TrainConfig& cli, const std::vector<std::string>& given,
                          std::string* note) {
  if (!fs::is_directory(run_dir)) throw UserError(str("--resume ", display_name(run_dir), ": no such run folder"));
  TrainConfig run;
  std::string saved_in = str(run_dir, "/config.json");
  std::string damaged;
  if (find_checkpoint(run_dir, "latest", &damaged).empty()) {
    // Checkpoints there, none intact: starting again would throw away what they hold; say what is wrong instead.
    if (!damaged.empty())
      throw UserError(str("--resume ", display_name(run_dir), ": ", damaged, "; nothing intact to continue from"));
    // Killed before its first checkpoint: nothing to continue, and nothing to lose by starting again.
    if (!fs::exists(fs::path(run_dir) / "config.json"))
      throw UserError(str("--resume ", display_name(run_dir), ": not a run folder (no checkpoint and no config.json)"));
    run = config_from_json(read_json_file(saved_in));
    run.out = run_dir;
    run.overwrite = true;
    if (note)
      *note = str(display_name(run_dir),
                  " stopped before its first checkpoint: there is nothing to continue, so it starts again "
                  "from the beginning with its saved settings");
  } else {
    run = config_for_resume(run_dir);
  }
  const json mine = config_to_json(cli), theirs = config_to_json(run);
  for (const std::string& name : given) {
    if (name == "--resume" || name == "--help") continue;
    if (is_session_flag(name)) {
      apply_session_flag(name, cli, run);
      continue;
    }
    if (name == "--out") {
      if (!same_folder(cli.out, run_dir))
        throw UserError(str("--out ", display_name(cli.out), " and --resume ", display_name(run_dir),
                            " name different folders: a resumed run stays in its own"));
      continue;
    }
    if (name == "--overwrite")
      throw UserError(str("--overwrite starts a run again from nothing and --resume continues it: choose one"));
    const std::string key = config_key(name);
    if (!mine.contains(key) || !theirs.contains(key))
      throw UserError(str(name, " cannot change when resuming (the run's settings are in ", display_name(saved_in),
                          "): start a new run with --out instead"));
    bool same = mine[key] == theirs[key];
    if (key == "data" || key == "val" || key == "init")  // a path, however it is spelt
      same = same_folder(name_from_display(mine[key].get<std::string>()),
                         name_from_display(theirs[key].get<std::string>()));
    if (key == "batch_size" && cli.batch_size == 0) same = true;  // auto: the run keeps the batch auto chose
    if (!same)
      throw UserError(str(name, " ", shown(mine[key]), " differs from the run's ", shown(theirs[key]), " (saved in ",
                          display_name(saved_in),
                          "): a resumed run keeps the settings it started with; start a new run with --out to "
                          "change it"));
  }
  return run;
}

namespace {
RunPosition position_of(const json& st) {
  RunPosition p;
  p.epoch = json_int(st, "epoch", 0, 1 << 30);
  p.cursor = json_int(st, "cursor", 0, int64_t{1} << 50);
  p.step = json_int(st, "step", 0, int64_t{1} << 50);
  p.planned_epochs = st.contains("config") ? static_cast<int>(json_int(st["config"], "epochs", 0, 1 << 30, 0)) : 0;
  return p;
}
}  // namespace

RunPosition run_position(const std::string& run_dir) { return position_of(checkpoint_state(run_dir)); }

std::optional<TrainResult> finished_run(const TrainConfig& cfg) {
  if (cfg.resume.empty() || find_checkpoint(cfg.resume).empty()) return std::nullopt;
  std::string ck;
  const json st = checkpoint_state(cfg.resume, &ck);
  const RunPosition p = position_of(st);  // the state just read, not a second read of the checkpoint
  const int64_t reached = p.epoch + (p.cursor > 0 ? 1 : 0);  // epochs started
  if (cfg.epochs < reached || (cfg.epochs == p.epoch && p.cursor > 0))
    throw UserError(str("--epochs ", cfg.epochs, ": the run in ", display_name(cfg.resume), " has already trained ",
                        p.epoch, " epoch", p.epoch == 1 ? "" : "s", p.cursor > 0 ? " and part of the next" : "",
                        "; give more epochs to continue it"));
  if (p.epoch < cfg.epochs) return std::nullopt;

  TrainResult r;
  r.run_dir = cfg.resume;
  r.steps = p.step;
  r.last_checkpoint = ck;
  std::string val;
  for (const json& h : st.value("history", json::array())) {
    EpochStats e;
    e.epoch = static_cast<int>(json_int(h, "epoch", 0, 1 << 30, 0));
    auto num = [&](const char* key) {
      return h.contains(key) && h[key].is_number() ? h[key].get<double>() : std::nan("");
    };
    e.train_loss = num("train_loss");
    e.train_acc = num("train_acc");
    e.val_loss = num("val_loss");
    e.val_acc = num("val_acc");
    e.val_auc = num("val_auc");
    e.seconds = num("seconds");
    e.images_per_s = num("img_per_s");
    r.epochs.push_back(e);
  }
  if (!r.epochs.empty() && std::isfinite(r.epochs.back().val_acc))
    val = str(", validation accuracy ", std::round(1e4 * r.epochs.back().val_acc) / 100, "% after the last");
  {
    Console console(cfg.quiet);  // before any TrainingRun (and its console) exists
    console.say(
        "%s is finished: %lld epoch%s, %lld steps%s. Nothing was changed.\n"
        "To train longer: stoke train --resume %s --epochs N (N > %lld)\n",
        display_name(cfg.resume).c_str(), static_cast<long long>(p.epoch), p.epoch == 1 ? "" : "s",
        static_cast<long long>(p.step), val.c_str(), display_name(cfg.resume).c_str(), static_cast<long long>(p.epoch));
  }
  return r;
}

// ---- the training files, to name what changed --------------------------------------------------------------------

std::vector<std::string> relative_sample_names(const io::Source& src) {
  std::string common;  // the longest common folder prefix of the names, so a moved data set still matches
  if (src.size() > 0) {
    common = src.name(0);
    for (int64_t i = 1; i < src.size() && !common.empty(); ++i) {
      const std::string n = src.name(i);
      size_t k = 0;
      while (k < common.size() && k < n.size() && common[k] == n[k]) ++k;
      common.resize(k);
    }
    common.resize(common.rfind('/') == std::string::npos ? 0 : common.rfind('/') + 1);
  }
  std::vector<std::string> names;
  names.reserve(static_cast<size_t>(src.size()));
  for (int64_t i = 0; i < src.size(); ++i) names.push_back(src.name(i).substr(common.size()));
  return names;
}

void write_train_files(const std::string& run_dir, const io::Source& src) {
  std::string text;
  for (const std::string& n : relative_sample_names(src)) text += display_name(n) + '\n';  // one name a line
  atomic_write_file((fs::path(run_dir) / kTrainFiles).string(), text);
}

DataChange compare_train_files(const std::string& run_dir, const io::Source& src, size_t max_names) {
  DataChange d;
  const fs::path path = fs::path(run_dir) / kTrainFiles;
  if (!fs::exists(path)) {
    d.no_list = true;
    return d;
  }
  const std::vector<uint8_t> bytes = read_file(path.string());
  std::istringstream in(std::string(bytes.begin(), bytes.end()));
  std::vector<std::string> before;
  for (std::string line; std::getline(in, line);) before.push_back(name_from_display(line));
  std::vector<std::string> now = relative_sample_names(src);
  std::sort(before.begin(), before.end());
  std::sort(now.begin(), now.end());
  std::vector<std::string> gone, added;
  std::set_difference(before.begin(), before.end(), now.begin(), now.end(), std::back_inserter(gone));
  std::set_difference(now.begin(), now.end(), before.begin(), before.end(), std::back_inserter(added));
  d.gone = static_cast<int64_t>(gone.size());
  d.added = static_cast<int64_t>(added.size());
  gone.resize(std::min(gone.size(), max_names));
  added.resize(std::min(added.size(), max_names));
  d.gone_names = std::move(gone);
  d.added_names = std::move(added);
  return d;
}

std::string DataChange::describe() const {
  auto list = [](int64_t n, const std::vector<std::string>& names, const char* what) {
    std::string s = str(n, " ", what, n == 1 ? " file (" : " files (");
    for (size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + display_name(names[i]);
    return s + (static_cast<size_t>(n) > names.size() ? ", ...)" : ")");
  };
  std::string s;
  if (gone > 0) s = list(gone, gone_names, "missing");
  if (added > 0) s += (s.empty() ? "" : ", ") + list(added, added_names, "new");
  if (s.empty()) s = "the same files, in other classes or with other labels";
  return s;
}

}  // namespace stoke
