#include "engine/trainer.h"

#include <algorithm>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "base/format.h"
#include "engine/backend.h"
#include "engine/batch_size.h"
#include "engine/checkpoint.h"
#include "io/source/decoded_cache.h"
#include "engine/cpu/executor.h"
#include "engine/device.h"
#include "base/error.h"
#include "base/fs.h"
#include "engine/interrupt.h"
#include "base/json_util.h"
#include "engine/metrics.h"
#include "base/progress.h"
#include "engine/report.h"
#include "engine/tensorboard.h"
#include "base/permutation.h"
#include "base/rng.h"
#include "io/source/image_folder.h"
#include "io/source/file_cache.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/source.h"
#include "kernels/augment.h"
#include "base/parallel.h"
#include "kernels/softmax_ce.h"
#include "base/timeline.h"
#include "base/trace.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Resident memory of this process, MiB (from /proc/self/statm; 0 where unavailable).
double resident_mib() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  if (!(f >> pages >> resident)) return 0;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string default_run_dir(const std::string& model) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return "runs/" + model + "-" + buf;
}

// A seeded random subset of a source (in index order, so classes stay grouped as in the folder).
std::shared_ptr<const io::Source> subset(std::shared_ptr<const io::Source> all, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= all->size()) return all;
  std::vector<int64_t> p = epoch_permutation(all->size(), seed, -1);
  p.resize(static_cast<size_t>(limit));
  std::sort(p.begin(), p.end());
  return std::make_shared<io::SubsetSource>(std::move(all), std::move(p));
}

// An evaluation-style pipeline: dataset order, no augmentation, the last batch padded (use b.valid).
io::PipelineConfig eval_pipeline_config(Shape3 shape, int batch, int decoders, bool strict, const std::string& quarantine) {
  io::PipelineConfig pc;
  pc.h = shape.h;
  pc.w = shape.w;
  pc.c = shape.c;
  pc.batch = batch;
  pc.decoders = decoders;
  pc.shuffle = false;
  pc.augment = false;
  pc.drop_last = false;
  pc.end_epoch = 1;
  pc.strict = strict;
  pc.quarantine_path = quarantine;
  return pc;
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
    in.release(b.ticket);
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

// metrics.jsonl, and the same numbers as TensorBoard scalars when asked (--tensorboard).
class JsonlWriter {
 public:
  JsonlWriter(const std::string& path, const std::string& tensorboard_dir) : f_(path, std::ios::app) {
    if (!f_) throw Error(str("cannot write ", path));
    if (!tensorboard_dir.empty()) tb_.emplace(tensorboard_dir);
  }
  void write(const json& j) {
    f_ << j.dump() << '\n';
    f_.flush();
    if (tb_) tensorboard_log_metrics(*tb_, j);
  }
  void flush() {
    if (tb_) tb_->flush();
  }

 private:
  std::ofstream f_;
  std::optional<TensorBoardWriter> tb_;
};

// report.html must never stop a run: a failure is a warning.
void refresh_report(const std::string& run_dir, bool quiet) {
  try {
    write_report_html(run_dir);
  } catch (const std::exception& e) {
    if (!quiet) std::fprintf(stderr, "warning: could not write the report: %s\n", e.what());
  }
}

}  // namespace

io::PipelineConfig training_pipeline_config(const TrainConfig& cfg, Shape3 shape, int batch) {
  io::PipelineConfig pc;
  pc.h = shape.h;
  pc.w = shape.w;
  pc.c = shape.c;
  pc.batch = batch;
  pc.decoders = cfg.decoders;
  pc.seed = cfg.seed;
  pc.shuffle = true;
  pc.augment = cfg.augment != "none";
  pc.aug.random_resized_crop = cfg.augment == "crop-flip";
  pc.aug.hflip = cfg.augment != "none";
  pc.drop_last = true;
  pc.watchdog_seconds = cfg.watchdog_seconds;
  return pc;
}

json config_to_json(const TrainConfig& c) {
  return {{"data", c.data},
          {"val", c.val},
          {"model", c.model},
          {"epochs", c.epochs},
          {"batch_size", c.batch_size},
          {"lr", c.lr},
          {"optimizer", to_string(c.optimizer.kind)},
          {"momentum", c.optimizer.momentum},
          {"nesterov", c.optimizer.nesterov},
          {"weight_decay", c.optimizer.weight_decay},
          {"beta1", c.optimizer.beta1},
          {"beta2", c.optimizer.beta2},
          {"eps", c.optimizer.eps},
          {"schedule", to_string(c.schedule)},
          {"warmup_epochs", c.warmup_epochs},
          {"label_smoothing", c.label_smoothing},
          {"clip_grad_norm", c.clip_grad_norm},
          {"seed", c.seed},
          {"limit_train", c.limit_train},
          {"limit_val", c.limit_val},
          {"image_size", c.image_size},
          {"augment", c.augment},
          {"precision", c.precision},
          {"deterministic", c.deterministic},
          {"strict", c.strict},
          {"checkpoint_every", c.checkpoint_every},
          {"keep_checkpoints", c.keep_checkpoints},
          {"max_nonfinite_steps", c.max_nonfinite_steps},
          {"eval_every", c.eval_every},
          {"best_metric", c.best_metric}};
}

TrainConfig config_from_json(const json& j) {
  TrainConfig c;
  constexpr int64_t kBig = int64_t{1} << 40;
  auto text = [&](const char* key, std::optional<std::string> def = std::nullopt) {
    if (!j.contains(key) && def) return *def;
    if (!j.contains(key) || !j[key].is_string()) throw Error(str("'", key, "' must be a string"));
    return j[key].get<std::string>();
  };
  auto flag = [&](const char* key, bool def) {
    if (!j.contains(key)) return def;
    if (!j[key].is_boolean()) throw Error(str("'", key, "' must be true or false"));
    return j[key].get<bool>();
  };
  auto real = [&](const char* key, double lo, double hi, std::optional<double> def = std::nullopt) {
    return static_cast<float>(json_number(j, key, lo, hi, def));
  };
  try {
    if (!j.is_object()) throw Error("not a JSON object");
    c.data = text("data");
    c.val = text("val", std::string());
    c.model = text("model");
    c.epochs = static_cast<int>(json_int(j, "epochs", 1, 1 << 30));
    c.batch_size = static_cast<int>(json_int(j, "batch_size", 1, 1 << 30));
    c.lr = real("lr", 0, 1e6);
    c.optimizer.kind = parse_optimizer(text("optimizer"));
    c.optimizer.momentum = real("momentum", 0, 1);
    c.optimizer.nesterov = flag("nesterov", true);
    c.optimizer.weight_decay = real("weight_decay", 0, 1e6);
    c.optimizer.beta1 = real("beta1", 0, 1, c.optimizer.beta1);
    c.optimizer.beta2 = real("beta2", 0, 1, c.optimizer.beta2);
    c.optimizer.eps = real("eps", 0, 1, c.optimizer.eps);
    c.schedule = parse_schedule(text("schedule"));
    c.warmup_epochs = real("warmup_epochs", 0, 1e9, 0.0);
    c.label_smoothing = real("label_smoothing", 0, 1, 0.0);
    c.clip_grad_norm = real("clip_grad_norm", 0, 1e30, 0.0);
    c.seed = static_cast<uint64_t>(json_int(j, "seed", 0, std::numeric_limits<int64_t>::max()));
    c.limit_train = json_int(j, "limit_train", 0, kBig, 0);
    c.limit_val = json_int(j, "limit_val", 0, kBig, 0);
    c.image_size = static_cast<int>(json_int(j, "image_size", 0, 1 << 16, 0));
    c.augment = text("augment", std::string("none"));
    c.precision = text("precision", std::string("auto"));
    c.deterministic = flag("deterministic", false);
    c.strict = flag("strict", false);
    c.checkpoint_every = json_int(j, "checkpoint_every", 0, kBig, 0);
    c.keep_checkpoints = static_cast<int>(json_int(j, "keep_checkpoints", 1, 1 << 20, 3));
    c.max_nonfinite_steps = static_cast<int>(json_int(j, "max_nonfinite_steps", 1, 1 << 30, 5));
    c.eval_every = static_cast<int>(json_int(j, "eval_every", 1, 1 << 30, 1));
    c.best_metric = text("best_metric", std::string("val_acc"));
  } catch (const std::exception& e) {
    throw Error(str("the saved run configuration is incomplete or damaged: ", e.what()));
  }
  return c;
}

TrainConfig config_for_resume(const std::string& run_dir) {
  if (!fs::is_directory(run_dir)) throw UserError(str("--resume ", run_dir, ": no such run folder"));
  const std::string ck = find_checkpoint(run_dir);
  if (ck.empty())
    throw UserError(str("--resume ", run_dir, ": the folder holds no checkpoint (", run_dir, "/checkpoints/latest)"));
  json state;
  try {
    std::vector<uint8_t> text = read_file((fs::path(ck) / "state.json").string());
    state = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw Error(str(ck, "/state.json is damaged: ", e.what()));
  }
  if (!state.contains("config")) throw Error(str(ck, "/state.json holds no configuration"));
  TrainConfig c = config_from_json(state["config"]);
  c.resume = run_dir;
  c.out = run_dir;
  return c;
}

namespace {

// A fingerprint of the data a run trains on: class names, and every sample's name (its path relative to the
// data root, or its pack entry) and label. A resumed run refuses data that differs.
std::string dataset_fingerprint(const io::Source& src, const std::string& /*description*/) {
  uint64_t h = fnv1a64(nullptr, 0);
  for (const std::string& c : src.classes()) h = fnv1a64(c.data(), c.size() + 1, h);
  std::string common;  // the longest common directory prefix of the names, so a moved data set still matches
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
  for (int64_t i = 0; i < src.size(); ++i) {
    const std::string rel = src.name(i).substr(common.size());
    h = fnv1a64(rel.data(), rel.size() + 1, h);
    const int32_t label = src.label(i);
    h = fnv1a64(&label, sizeof label, h);
  }
  return str(src.size(), "-", hex64(h));
}

// Keeps metrics.jsonl consistent with a resumed run: drops lines written after the checkpoint's step.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      json j = json::parse(line);
      if (json_int(j, "step", 0, std::numeric_limits<int64_t>::max(), 0) > step) continue;
    } catch (const std::exception&) {
      continue;  // a line torn by the crash
    }
    kept += line + "\n";
  }
  atomic_write_file(path, kept);
}

}  // namespace

TrainResult train(const TrainConfig& cfg, const ModelFactory& build_model) {
  const auto t_start = Clock::now();
  if (cfg.epochs < 1) throw UserError("--epochs must be at least 1");
  if (cfg.batch_size < 0) throw UserError("--batch-size must be auto or at least 1");
  if (!(cfg.lr > 0.f) || !std::isfinite(cfg.lr)) throw UserError("--lr must be a positive number");
  if (cfg.label_smoothing < 0.f || cfg.label_smoothing >= 1.f) throw UserError("--label-smoothing must be in [0, 1)");
  if (cfg.data.empty()) throw UserError("--data is required (an ImageFolder: DIR/<class>/*.jpg)");
  if (cfg.eval_every < 1) throw UserError("--eval-every must be at least 1");
  if (cfg.augment != "none" && cfg.augment != "flip" && cfg.augment != "crop-flip")
    throw UserError(str("--augment must be none, flip or crop-flip (got '", cfg.augment, "')"));
  if (cfg.decoders < 0) throw UserError("--decoders must be auto or a positive number");
  if (cfg.cache != "auto" && cfg.cache != "files" && cfg.cache != "none" && cfg.cache != "decoded")
    throw UserError(str("--cache must be auto, files, decoded or none (got '", cfg.cache, "')"));
  if (cfg.cache == "decoded" && cfg.augment == "crop-flip")
    throw UserError("--cache decoded keeps images at the model's input size, so random crops are not available: use --augment flip or --cache none");
  if (cfg.best_metric != "val_acc" && cfg.best_metric != "val_auc" && cfg.best_metric != "val_loss")
    throw UserError(str("--best-metric must be val_acc, val_auc or val_loss (got '", cfg.best_metric, "')"));
  const bool resuming = !cfg.resume.empty();

  // ---- backend --------------------------------------------------------------------------------------------
  DeviceProbe dev = probe_cuda();
  if (cfg.device != "auto" && cfg.device != "cpu" && cfg.device != "cuda")
    throw UserError(str("--device must be auto, cpu or cuda (got '", cfg.device, "')"));
  const bool cuda_available = dev.usable && static_cast<bool>(cuda_backend_factory());
  if (cfg.device == "cuda" && !cuda_available) {
    if (!dev.usable) throw UserError(str("--device cuda: no usable GPU: ", dev.reason));
    throw UserError(str("--device cuda: found ", dev.description, ", but this program was built without the CUDA backend"));
  }
  const bool use_cuda = cfg.device == "cuda" || (cfg.device == "auto" && cuda_available);
  ThreadPool::set_threads(cfg.threads);

  // ---- data -------------------------------------------------------------------------------------------------
  // A folder (ImageFolder) or a pack file (stoke pack) for either.
  std::shared_ptr<const io::Source> train_all = io::open_source(cfg.data);
  std::shared_ptr<const io::Source> val_all;
  const bool has_val = !cfg.val.empty();
  if (has_val) {
    val_all = io::open_source(cfg.val);
    if (val_all->classes() != train_all->classes())
      throw UserError(str("the classes of --val ", cfg.val, " (", val_all->classes().size(), ") differ from those of --data ",
                          cfg.data, " (", train_all->classes().size(), ")"));
  }
  std::shared_ptr<const io::Source> train_src = subset(train_all, cfg.limit_train, cfg.seed);
  std::shared_ptr<const io::Source> val_src = has_val ? subset(val_all, cfg.limit_val, cfg.seed + 1) : nullptr;
  const std::vector<std::string>& class_names = train_all->classes();
  io::DataShape ds = io::probe_source_shape(*train_all);
  Shape3 shape{ds.h, ds.w, ds.c};
  if (cfg.image_size > 0) shape.h = shape.w = cfg.image_size;
  const int classes = static_cast<int>(class_names.size());
  const int64_t train_count = train_src->size(), val_count = has_val ? val_src->size() : 0;
  const std::string fingerprint = dataset_fingerprint(*train_src, train_all->description());
  // --cache auto|files: a folder's files are read from disk once, then their (encoded) bytes come from memory, so
  // small JPEGs cost no open/read/close per epoch (io/source/file_cache.h). One budget for both sets, shared by size.
  std::shared_ptr<const io::FileCacheSource> train_files, val_files;
  if ((cfg.cache == "auto" || cfg.cache == "files") && dynamic_cast<const io::FolderSource*>(train_all.get())) {
    const int64_t budget = cfg.cache_budget_mb > 0 ? int64_t{cfg.cache_budget_mb} << 20 : io::default_file_cache_budget();
    const int64_t n_train = train_src->size(), n_val = has_val ? val_src->size() : 0;
    const int64_t train_budget = n_val == 0 ? budget : budget / (n_train + n_val) * n_train;
    train_files = std::make_shared<io::FileCacheSource>(train_src, train_budget);
    train_src = train_files;
    if (has_val && dynamic_cast<const io::FolderSource*>(val_all.get())) {
      val_files = std::make_shared<io::FileCacheSource>(val_src, budget - train_budget);
      val_src = val_files;
    }
  }

  // ---- model ------------------------------------------------------------------------------------------------
  Graph graph = build_model(cfg.model, shape, classes);
  std::vector<float> params(static_cast<size_t>(graph.num_params())), grads(params.size()),
      buffers(static_cast<size_t>(graph.num_buffers()));
  graph.initialize(params.data(), buffers.data(), cfg.seed);

  // ---- batch size: given, or (--batch-size auto) the largest multiple of 8 whose planned memory fits ------------
  MemoryTarget mem_target;
  mem_target.cuda = use_cuda;
  mem_target.element_bytes = use_cuda && cfg.precision != "fp32" ? 2 : 4;
  mem_target.optimizer = cfg.optimizer;
  // What the batch may use: free device memory less a margin (the CUDA context, cuDNN/cuBLAS handles and
  // fragmentation), or on the CPU backend half the available memory (the decoders, caches and the OS need the rest).
  auto memory_budget = [&](std::string& what) -> int64_t {
    if (use_cuda) {
      const int64_t b = dev.free_bytes / 10 * 9 - (int64_t{768} << 20);
      what = str("free device memory ", dev.free_bytes >> 20, " MiB less 10% and 768 MiB");
      return std::max<int64_t>(b, 0);
    }
    const int64_t avail = io::available_memory_bytes();
    what = str("half the available memory, ", avail >> 20, " MiB");
    return avail / 2;
  };
  std::string batch_note;
  int requested_batch = cfg.batch_size;
  if (requested_batch == 0) {
    std::string what;
    const int64_t budget = memory_budget(what);
    // Caps: the CPU backend gains nothing per image beyond a few hundred samples per GEMM; on any backend a
    // batch that leaves fewer than 16 steps per epoch would make --epochs mean almost no updates.
    const int64_t hard = use_cuda ? 4096 : 256;
    const int64_t per_epoch = std::max<int64_t>(1, train_count / 16);
    const int64_t cap = std::min(hard, per_epoch);
    const std::string cap_why = cap == hard ? str(use_cuda ? "4096 at most" : "256 at most on the CPU backend")
                                            : str("at least 16 steps per epoch over ", train_count, " images");
    const BatchChoice bc = choose_batch_size(graph, mem_target, budget, what, cap, cap_why);
    if (bc.batch == 0) throw UserError(str("--batch-size auto: ", bc.why));
    requested_batch = bc.batch;
    batch_note = str("batch size auto: ", bc.why);
  }
  const int batch = static_cast<int>(std::min<int64_t>(requested_batch, train_count));
  const int64_t steps_per_epoch = train_count / batch;
  // "--batch-size N fits" advice for an out-of-memory error.
  auto fitting_batch_advice = [&]() -> std::string {
    std::string what;
    const int64_t budget = memory_budget(what);
    const BatchChoice bc = choose_batch_size(graph, mem_target, budget, what, batch, "below the batch that failed");
    if (bc.batch == 0) return str("; ", bc.why);
    return str("; by plan --batch-size ", bc.batch, " fits (", format_count(static_cast<double>(bc.bytes) / 1048576.0),
               " MiB of ", budget >> 20, " MiB), or use --batch-size auto");
  };
  // Memory is planned, not grabbed: refuse a job this machine cannot hold, before allocating it.
  {
    const int64_t avail = io::available_memory_bytes();
    const int64_t step_bytes = planned_training_bytes(graph, batch, mem_target);
    if (!use_cuda && avail > 0 && step_bytes > avail * 8 / 10)  // the CUDA backend's arena checks device memory itself
      throw UserError(str("the model needs about ", step_bytes >> 20, " MiB at ", shape.h, "x", shape.w, "x", shape.c, " with batch ",
                          batch, " but ", avail >> 20, " MiB are available", fitting_batch_advice(),
                          " (or lower --image-size)"));
    if (cfg.cache == "decoded") {
      const int64_t need = io::DecodedCache::bytes_for(train_count + val_count, shape);
      const int64_t budget = cfg.cache_budget_mb > 0 ? int64_t{cfg.cache_budget_mb} << 20 : avail / 2;
      if (budget > 0 && need > budget)
        throw UserError(str("--cache decoded needs ", need >> 20, " MiB for ", train_count + val_count, " images at ", shape.h,
                            "x", shape.w, "x", shape.c, " but the budget is ", budget >> 20,
                            " MiB (--cache-budget-mb; default half the available memory): use --cache none"));
    }
  }
  std::vector<float> opt_state = Optimizer(cfg.optimizer, graph.params(), graph.num_params()).state();
  int64_t opt_steps = 0;

  // ---- run folder, or the checkpoint to continue from -------------------------------------------------------
  const std::string run_dir = cfg.out.empty() ? default_run_dir(cfg.model) : cfg.out;
  const std::string metrics_path = (fs::path(run_dir) / "metrics.jsonl").string();
  std::error_code ec;
  int64_t start_epoch = 0, start_cursor = 0, step = 0;
  json resume_sums, history = json::array();
  double best_val_acc = -std::numeric_limits<double>::infinity();  // best score of cfg.best_metric
  ClassificationReport last_report;
  std::vector<float> mean, stdev;
  std::string resumed_from;
  if (resuming) {
    resumed_from = find_checkpoint(run_dir);
    if (resumed_from.empty()) throw UserError(str("--resume ", run_dir, ": no checkpoint to continue from"));
    CheckpointData ck = load_checkpoint(resumed_from, graph, to_string(cfg.optimizer.kind));
    const json& st = ck.state;
    if (st.value("dataset", std::string()) != fingerprint)
      throw UserError(str("--resume ", run_dir, ": the training data differ from the checkpoint's (",
                          st.value("dataset", std::string("?")), " vs ", fingerprint,
                          "): resume with the same --data, --limit-train and --seed"));
    params = std::move(ck.params);
    buffers = std::move(ck.buffers);
    if (opt_state.size() != ck.optimizer_state.size())
      throw UserError(str(resumed_from, ": the optimizer state does not fit this run's optimizer settings"));
    opt_state = std::move(ck.optimizer_state);
    try {
      opt_steps = json_int(st, "optimizer_steps", 0, int64_t{1} << 50);
      start_epoch = json_int(st, "epoch", 0, 1 << 30);
      start_cursor = json_int(st, "cursor", 0, steps_per_epoch);
      step = json_int(st, "step", 0, int64_t{1} << 50);
    } catch (const Error& e) {
      throw Error(str(resumed_from, "/state.json is damaged: ", e.what()));
    }
    resume_sums = st.value("epoch_sums", json::object());
    history = st.value("history", json::array());
    if (st.contains("best_score") && st["best_score"].is_number()) best_val_acc = st["best_score"].get<double>();
    auto channels = [&](const char* key, double lo) {
      std::vector<float> v;
      if (!st.contains(key) || !st[key].is_array() || st[key].size() != static_cast<size_t>(shape.c))
        throw Error(str(resumed_from, "/state.json is damaged: '", key, "' must hold ", shape.c, " numbers"));
      for (size_t k = 0; k < st[key].size(); ++k) {
        const nlohmann::json one = {{"v", st[key][k]}};
        v.push_back(static_cast<float>(json_number(one, "v", lo, 1e6)));
      }
      return v;
    };
    mean = channels("normalize_mean", -1e6);
    stdev = channels("normalize_std", 1e-12);
    truncate_metrics(metrics_path, step);
  } else {
    if (fs::exists(metrics_path) && !cfg.overwrite)
      throw UserError(str("--out ", run_dir, " already holds a run (metrics.jsonl): choose another folder, pass --overwrite, or --resume ", run_dir));
    fs::create_directories(run_dir, ec);
    if (ec) throw UserError(str("cannot create run folder ", run_dir, ": ", ec.message()));
    fs::remove(metrics_path, ec);
    fs::remove_all(fs::path(run_dir) / "checkpoints", ec);
    estimate_normalization(train_src, shape, cfg.seed, cfg.decoders, mean, stdev);
  }

  // The backend, holding the model state from here on.
  BackendOptions bopt;
  bopt.max_batch = batch;
  bopt.optimizer = cfg.optimizer;
  bopt.mean = mean;
  bopt.stdev = stdev;
  bopt.label_smoothing = cfg.label_smoothing;
  bopt.clip_grad_norm = cfg.clip_grad_norm;
  bopt.precision = cfg.precision;
  bopt.deterministic = cfg.deterministic;
  std::unique_ptr<TrainingBackend> backend;
  try {
    backend = use_cuda ? cuda_backend_factory()(graph, bopt) : make_cpu_backend(graph, bopt);
  } catch (const OutOfMemory& e) {
    throw UserError(str("out of memory at batch ", batch, ": ", e.what(), fitting_batch_advice()));
  } catch (const std::bad_alloc&) {
    throw UserError(str("out of memory at batch ", batch, " (the CPU backend could not allocate ",
                        planned_training_bytes(graph, batch, mem_target) >> 20, " MiB)", fitting_batch_advice()));
  }
  backend->set_state(params, buffers, opt_state, opt_steps);

  // Everything the user could get wrong has been checked: now say what runs.
  if (!cfg.quiet) {
    if (use_cuda)
      std::printf("device: %s\n", backend->describe().c_str());
    else if (cfg.device == "cpu")
      std::printf("device: --device cpu: %s\n", backend->describe().c_str());
    else
      std::printf("device: no usable GPU (%s): %s\n", dev.reason.c_str(), backend->describe().c_str());
    std::printf("data: %s images in %d classes (%dx%dx%d)%s, val: %s\n", format_count(static_cast<double>(train_count)).c_str(),
                classes, shape.h, shape.w, shape.c, cfg.limit_train > 0 ? " (subset)" : "",
                has_val ? (format_count(static_cast<double>(val_count)) + " images").c_str() : "none");
    std::printf("model: %s, %s parameters, %.2f MMAC/image; %s, lr %g, %s schedule, batch %d, %d epochs\n",
                graph.description().empty() ? cfg.model.c_str() : graph.description().c_str(), format_count(static_cast<double>(graph.num_params())).c_str(),
                static_cast<double>(graph.forward_macs()) / 1e6, to_string(cfg.optimizer.kind), static_cast<double>(cfg.lr),
                to_string(cfg.schedule), batch, cfg.epochs);
    if (!batch_note.empty()) std::printf("%s\n", batch_note.c_str());
    if (resuming)
      std::printf("resuming: %s (epoch %lld, step %lld)\n", resumed_from.c_str(), static_cast<long long>(start_epoch + 1),
                  static_cast<long long>(step));
    std::printf("run folder: %s\n", run_dir.c_str());
    std::fflush(stdout);
  }
  const bool profile_window = cfg.profile_first > 0;
  if (profile_window) {
    const int64_t total = steps_per_epoch * cfg.epochs;
    if (cfg.profile_last < cfg.profile_first)
      throw UserError(str("--profile-steps ", cfg.profile_first, ":", cfg.profile_last, ": the last step comes before the first"));
    if (cfg.profile_first > total)
      throw UserError(str("--profile-steps ", cfg.profile_first, ":", cfg.profile_last, " starts after the run's last step (",
                          total, " steps: ", steps_per_epoch, " per epoch x ", cfg.epochs, " epochs)"));
    if (cfg.profile_first <= step)
      throw UserError(str("--profile-steps ", cfg.profile_first, ":", cfg.profile_last, " starts at or before step ", step,
                          ", where this resumed run begins"));
    if (!cfg.quiet) {
      std::printf("profile window: steps %lld-%lld in the NVTX range 'profiled steps'%s%s\n",
                  static_cast<long long>(cfg.profile_first), static_cast<long long>(std::min(cfg.profile_last, total)),
                  backend->name() == "cuda" ? " and between cudaProfilerStart/Stop (nsys --capture-range=cudaProfilerApi)"
                                            : " (nsys --capture-range=nvtx --nvtx-capture='profiled steps'); the CPU backend has no device profiler",
                  trace_enabled() ? "" : "; warning: this build has no NVTX (the nvtx3 headers were not found)");
      std::fflush(stdout);
    }
  }

  json config = config_to_json(cfg);
  if (cfg.batch_size == 0) config["batch_size"] = batch;  // auto: a resumed run keeps the batch it started with
  json run_info = config;
  run_info["backend"] = backend->name();
  run_info["device"] = backend->describe();
  if (!batch_note.empty()) run_info["batch_size_auto"] = batch_note;
  run_info["threads"] = ThreadPool::threads();
  run_info["input"] = {shape.h, shape.w, shape.c};
  run_info["classes"] = class_names;
  run_info["train_images"] = train_count;
  run_info["val_images"] = val_count;
  run_info["normalize_mean"] = mean;
  run_info["normalize_std"] = stdev;
  run_info["params"] = graph.num_params();
  run_info["dataset"] = fingerprint;
  atomic_write_file((fs::path(run_dir) / "config.json").string(), run_info.dump(2) + "\n");
  JsonlWriter metrics(metrics_path, cfg.tensorboard ? (fs::path(run_dir) / "tensorboard").string() : std::string());

  // ---- training state ---------------------------------------------------------------------------------------
  Schedule sched;
  sched.kind = cfg.schedule;
  sched.lr = cfg.lr;
  sched.total_steps = steps_per_epoch * cfg.epochs;
  sched.warmup_steps = static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(steps_per_epoch)));
  Progress progress;
  const std::string quarantine = (fs::path(run_dir) / "quarantine.txt").string();
  auto warn = [&](const std::string& m) {
    if (cfg.quiet) return;
    progress.finish();
    std::fprintf(stderr, "warning: %s\n", m.c_str());
  };
  auto stall = [&](const std::string& report) {
    progress.finish();
    std::fprintf(stderr, "%s\n", report.c_str());  // the watchdog speaks even with --quiet: something is stuck
  };
  io::PipelineConfig tpc = training_pipeline_config(cfg, shape, batch);
  tpc.end_epoch = cfg.epochs;
  tpc.strict = cfg.strict;
  tpc.quarantine_path = quarantine;
  tpc.watchdog_seconds = cfg.watchdog_seconds;
  tpc.on_warning = warn;
  tpc.on_stall = stall;
  io::PipelineConfig vpc = eval_pipeline_config(shape, batch, cfg.decoders, cfg.strict, quarantine);
  vpc.watchdog_seconds = cfg.watchdog_seconds;
  vpc.on_warning = warn;
  vpc.on_stall = stall;
  // --cache decoded: decode everything once, then gather batches from memory in the pipeline's order.
  std::unique_ptr<io::DecodedCache> train_cache, val_cache;
  if (cfg.cache == "decoded") {
    io::PipelineConfig cpc = tpc;
    train_cache = std::make_unique<io::DecodedCache>(train_src, shape, cpc);
    if (has_val) val_cache = std::make_unique<io::DecodedCache>(val_src, shape, vpc);
    if (!cfg.quiet) {
      std::printf("cache: decoded %s images once into %.1f MiB of memory in %.1f s\n",
                  format_count(static_cast<double>(train_count + val_count)).c_str(),
                  static_cast<double>(train_cache->bytes() + (val_cache ? val_cache->bytes() : 0)) / 1048576.0,
                  train_cache->seconds() + (val_cache ? val_cache->seconds() : 0));
      std::fflush(stdout);
    }
  }
  std::unique_ptr<io::InputPipeline> train_in, val_in;
  if (!train_cache) train_in = std::make_unique<io::InputPipeline>(train_src, tpc);
  if (has_val && !val_cache) val_in = std::make_unique<io::InputPipeline>(val_src, vpc);
  io::SamplerConfig scfg;
  scfg.samples = train_count;
  scfg.batch = batch;
  scfg.shuffle = true;
  scfg.drop_last = true;
  scfg.seed = cfg.seed;
  const io::Sampler sampler(scfg);
  if (!cfg.quiet && train_in) {
    std::printf("input: %d decoder thread%s (%s), %d ring slots, %s host memory\n", train_in->decoders(),
                train_in->decoders() == 1 ? "" : "s", train_in->decoders_reason().c_str(), train_in->slots(),
                train_in->pinned() ? "pinned" : "pageable");
    if (train_files)
      std::printf("file cache: each file is read from disk once, then its JPEG bytes come from memory (up to %lld MiB; "
                  "--cache none turns it off)\n",
                  static_cast<long long>((train_files->budget() + (val_files ? val_files->budget() : 0)) >> 20));
    std::fflush(stdout);
  }
  // --cache decoded gathers each batch into one of these host buffers; a buffer is refilled only after the backend
  // released it (its copy completed), like a ring slot.
  constexpr int kGatherBuffers = 3;  // the backend's queue holds two steps; one more is being gathered
  std::vector<std::vector<uint8_t>> gathered_px, gathered_flips;
  std::vector<std::vector<int32_t>> gathered_labels;
  std::vector<char> gathered_free;
  if (train_cache)
    for (int k = 0; k < kGatherBuffers; ++k) {
      gathered_px.emplace_back(static_cast<size_t>(batch * shape.size()));
      gathered_flips.emplace_back(static_cast<size_t>(batch));
      gathered_labels.emplace_back(static_cast<size_t>(batch));
      gathered_free.push_back(1);
    }
  std::vector<uint8_t> val_px(val_cache ? static_cast<size_t>(batch * shape.size()) : 0);
  std::vector<int32_t> val_labels(static_cast<size_t>(batch));
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  const bool flip_aug = cfg.augment != "none";
  // The next training batch (batch `index` of `epoch`): host pixels, labels and flips, valid until its tag is
  // released. Tags: a ring ticket (>= 0), or -1 - k for gather buffer k.
  struct RawBatch {
    int n = 0;
    const uint8_t* pixels = nullptr;
    const int32_t* labels = nullptr;
    const uint8_t* flips = nullptr;
    int64_t tag = 0;
  };
  // (wait_for_buffer: collects from the backend until a gather buffer is free; defined with the loop below.)
  std::function<int()> wait_for_buffer;
  auto next_train = [&](int64_t epoch, int64_t index) -> RawBatch {
    RawBatch r;
    if (train_cache) {
      if (perm_epoch != epoch) {
        perm = sampler.permutation(epoch);
        perm_epoch = epoch;
      }
      const int k = wait_for_buffer();
      const size_t ku = static_cast<size_t>(k);
      gathered_free[ku] = 0;
      train_cache->gather(sampler, perm, epoch, index, cfg.seed, flip_aug, gathered_px[ku].data(),
                          gathered_labels[ku].data(), gathered_flips[ku].data());
      r.n = batch;
      r.pixels = gathered_px[ku].data();
      r.labels = gathered_labels[ku].data();
      r.flips = flip_aug ? gathered_flips[ku].data() : nullptr;
      r.tag = -1 - k;
      return r;
    }
    io::Batch b = train_in->acquire();
    if (!b) return r;
    STOKE_CHECK(b.epoch == epoch && b.index == index, "batch ", b.epoch, "/", b.index, " out of order");
    r.n = b.size;
    r.pixels = b.pixels;  // flips, if any, were applied by the decoders
    r.labels = b.labels;
    r.tag = b.ticket;
    return r;
  };
  // The backend has its own copy of the batch with this tag: its memory goes back to the decoders (or the gatherer).
  auto release = [&](int64_t tag) {
    if (tag >= 0)
      train_in->release(tag);
    else
      gathered_free[static_cast<size_t>(-1 - tag)] = 1;
  };
  // Runs fn(n, pixels, labels) for every validation batch (n = real samples).
  auto for_each_val_batch = [&](const std::function<void(int, const uint8_t*, const int32_t*)>& fn) {
    if (val_cache) {
      io::SamplerConfig vs;
      vs.samples = val_count;
      vs.batch = batch;
      vs.shuffle = false;
      vs.drop_last = false;
      const io::Sampler vsampler(vs);
      const std::vector<int64_t> vperm = vsampler.permutation(0);
      for (int64_t i = 0; i < vsampler.batches_per_epoch(); ++i) {
        const int n = val_cache->gather(vsampler, vperm, 0, i, 0, false, val_px.data(), val_labels.data(), nullptr);
        fn(n, val_px.data(), val_labels.data());
      }
      return;
    }
    val_in->start(0);
    while (io::Batch b = val_in->acquire()) {
      fn(b.valid, b.pixels, b.labels);  // the last batch is padded: only the first `valid` samples count
      val_in->release(b.ticket);
    }
  };

  TrainResult result;
  result.run_dir = run_dir;
  result.backend = backend->name();
  result.params = graph.num_params();
  result.first_step = step;
  const auto loop_start = Clock::now();
  double total_wait = 0, total_train_seconds = 0;  // this process's input wait and training time
  const int64_t loop_first_step = step;
  int nonfinite_run = 0;
  install_interrupt_handlers();
  struct HandlerGuard {
    ~HandlerGuard() { remove_interrupt_handlers(); }
  } handler_guard;

  // The --profile-steps window: an NVTX range on this thread, and the device profiler's capture where there is one.
  bool profiling = false;
  auto start_profile = [&] {
    trace_push("profiled steps");
    backend->profiler(true);
    profiling = true;
  };
  auto stop_profile = [&] {
    if (!profiling) return;
    profiling = false;
    backend->profiler(false);
    trace_pop();
  };
  struct ProfileGuard {  // an error or Ctrl-C inside the window still ends the capture
    std::function<void()> stop;
    ~ProfileGuard() {
      try {
        stop();
      } catch (...) {
      }
    }
  } profile_guard{stop_profile};

  // --trace: stoke's own timeline of steps trace_first..trace_last (base/timeline.h).
  const bool trace_window = !cfg.trace_file.empty();
  auto finish_trace = [&] {
    if (!timeline::recording()) return;
    timeline::stop();
    timeline::write_json(cfg.trace_file);
    if (!cfg.quiet) {
      progress.finish();
      std::printf("timeline: %s (%lld ranges; open it in ui.perfetto.dev or chrome://tracing)\n", cfg.trace_file.c_str(),
                  static_cast<long long>(timeline::events()));
      std::fflush(stdout);
    }
  };
  struct TraceGuard {  // an error or Ctrl-C inside the window still stops the recording
    ~TraceGuard() { timeline::stop(); }
  } trace_guard;

  // Per-epoch running sums live here so a checkpoint mid-epoch can carry them.
  double loss_sum = 0;
  int64_t correct_sum = 0, seen = 0;

  auto write_checkpoint = [&](int64_t epoch, int64_t cursor, bool best) {
    STOKE_TRACE("checkpoint");
    CheckpointData d;
    int64_t ost = 0;
    backend->get_state(d.params, d.buffers, d.optimizer_state, ost);
    d.state = {{"epoch", epoch},
               {"cursor", cursor},
               {"step", step},
               {"optimizer_steps", ost},
               {"config", config},
               {"dataset", fingerprint},
               {"normalize_mean", mean},
               {"normalize_std", stdev},
               {"epoch_sums", {{"loss_sum", loss_sum}, {"correct", correct_sum}, {"seen", seen}}},
               {"history", history},
               {"best_score", std::isfinite(best_val_acc) ? json(best_val_acc) : json()},
               {"loss_scale", 1.0}};
    char name[32];
    std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
    result.last_checkpoint = save_checkpoint(run_dir, name, graph, to_string(cfg.optimizer.kind), d, best, cfg.keep_checkpoints);
  };

  // The fraction of wall time since (wait0, t0) that the trainer spent waiting for the input pipeline; resets them.
  auto window_stall = [&](double& wait0, Clock::time_point& t0) {
    if (!train_in) return 0.0;
    const double now_wait = train_in->stats().consumer_wait_seconds;
    const double fraction = (now_wait - wait0) / std::max(seconds_since(t0), 1e-9);
    wait0 = now_wait;
    t0 = Clock::now();
    return fraction;
  };
  // One start for the whole run: the decoders flow across epoch boundaries without draining.
  if (start_epoch < cfg.epochs && train_in) train_in->start(start_epoch, start_cursor);
  for (int64_t epoch = start_epoch; epoch < cfg.epochs && !result.interrupted; ++epoch) {
    const auto epoch_start = Clock::now();
    const double wait_at_start = train_in ? train_in->stats().consumer_wait_seconds : 0.0;
    const int64_t cursor0 = epoch == start_epoch ? start_cursor : 0;
    loss_sum = 0;
    correct_sum = seen = 0;
    if (epoch == start_epoch && resuming && cursor0 > 0) {
      loss_sum = json_number(resume_sums, "loss_sum", -1e300, 1e300, 0.0);
      correct_sum = json_int(resume_sums, "correct", 0, int64_t{1} << 50, 0);
      seen = json_int(resume_sums, "seen", 0, int64_t{1} << 50, 0);
    }
    const int64_t seen_at_start = seen;
    double window_loss = 0;
    int64_t window_correct = 0, window_seen = 0;
    double window_wait0 = train_in ? train_in->stats().consumer_wait_seconds : 0.0;
    auto window_t0 = Clock::now();
    // The asynchronous loop: hand batch k to the backend and go on; its result arrives some steps later (in order)
    // and is accounted for then. `step`/`b_in_epoch` count finished steps, `sub_step`/`sub_b` submitted ones.
    int64_t b_in_epoch = cursor0, sub_b = cursor0, sub_step = step;
    struct Pending {
      float lr;
      int n;
    };
    std::deque<Pending> pending;  // per submitted step not yet finished, in order
    // One finished step: running sums, metrics, the progress line, the non-finite guard.
    auto on_result = [&](const StepResult& so) {
      const float lr = pending.front().lr;
      const int n = pending.front().n;
      pending.pop_front();
      const float loss = so.loss;
      const int64_t correct = so.correct;
      ++step;
      ++b_in_epoch;
      result.step_losses.push_back(loss);
      if (!std::isfinite(loss)) {
        // The backend skipped the update; stop if it keeps happening.
        ++result.skipped_steps;
        if (++nonfinite_run >= cfg.max_nonfinite_steps) {
          progress.finish();
          throw Error(str("the loss was ", loss, " for ", nonfinite_run, " consecutive steps (the last at epoch ", epoch + 1,
                          ", step ", step, "); stopping. Last good checkpoint: ",
                          result.last_checkpoint.empty() ? (resumed_from.empty() ? std::string("none") : resumed_from)
                                                         : result.last_checkpoint,
                          ". Try a lower --lr (now ", cfg.lr, ") or --clip-grad-norm"));
        }
        if (!cfg.quiet) {
          progress.finish();
          std::fprintf(stderr, "warning: non-finite loss at step %lld: update skipped (%d in a row)\n",
                       static_cast<long long>(step), nonfinite_run);
        }
      } else {
        nonfinite_run = 0;
        if (!so.applied) ++result.skipped_steps;  // fp16: the loss scaler found an overflow and lowered the scale
        loss_sum += static_cast<double>(loss) * n;
        correct_sum += correct;
        seen += n;
        window_loss += static_cast<double>(loss) * n;
        window_correct += correct;
        window_seen += n;
      }

      const double el = seconds_since(epoch_start);
      const double rate = static_cast<double>(seen - seen_at_start) / std::max(el, 1e-9);
      const double overall_rate = static_cast<double>(step - loop_first_step) / std::max(seconds_since(loop_start), 1e-9);
      const double eta = static_cast<double>(sched.total_steps - step) / overall_rate;
      if ((step % 50 == 0 || b_in_epoch == steps_per_epoch) && window_seen > 0) {
        metrics.write({{"kind", "train"}, {"epoch", epoch + 1}, {"step", step}, {"lr", lr},
                       {"loss", window_loss / static_cast<double>(window_seen)},
                       {"acc", static_cast<double>(window_correct) / static_cast<double>(window_seen)},
                       {"img_per_s", rate}, {"elapsed_s", seconds_since(t_start)},
                       {"input_stall", window_stall(window_wait0, window_t0)}});
        window_loss = 0;
        window_correct = window_seen = 0;
      }
      if (!cfg.quiet) {
        char line[256];
        std::snprintf(line, sizeof line, "epoch %lld/%d  step %lld/%lld  loss %.4f  acc %.2f%%  %s img/s  input wait %.0f%%  ETA %s",
                      static_cast<long long>(epoch + 1), cfg.epochs, static_cast<long long>(b_in_epoch),
                      static_cast<long long>(steps_per_epoch), loss_sum / static_cast<double>(std::max<int64_t>(seen, 1)),
                      100.0 * static_cast<double>(correct_sum) / static_cast<double>(std::max<int64_t>(seen, 1)),
                      format_count(rate).c_str(),
                      100.0 * (train_in ? (train_in->stats().consumer_wait_seconds - wait_at_start) / std::max(el, 1e-9) : 0.0),
                      format_duration(eta).c_str());
        progress.update(line, b_in_epoch == steps_per_epoch);
      }
    };
    std::vector<int64_t> released;
    std::vector<StepResult> results;
    // Takes what the backend has finished: releases go back to the ring, results are accounted in order.
    auto take = [&](bool wait) {
      released.clear();
      results.clear();
      backend->collect(released, results, wait);
      for (int64_t tag : released) release(tag);
      for (const StepResult& r : results) on_result(r);
      if (step >= cfg.trace_last) finish_trace();
    };
    // A step boundary: nothing in flight, every result accounted (before a checkpoint, eval, the profiler).
    auto settle = [&] {
      backend->drain();
      take(false);
      STOKE_CHECK(pending.empty() && step == sub_step, "results missing after a drain");
      if (profiling && step >= cfg.profile_last) stop_profile();
    };
    wait_for_buffer = [&] {
      for (;;) {
        for (int k = 0; k < kGatherBuffers; ++k)
          if (gathered_free[static_cast<size_t>(k)]) return k;
        take(true);
      }
    };
    while (sub_b < steps_per_epoch) {
      if (profile_window && sub_step + 1 == cfg.profile_first) {
        settle();
        start_profile();
      }
      if (profiling && sub_step + 1 > cfg.profile_last) settle();
      if (trace_window && sub_step + 1 == cfg.trace_first) timeline::start();
      const RawBatch rb = [&] {
        STOKE_TRACE("wait for batch");
        return next_train(epoch, sub_b);
      }();
      if (rb.n == 0) break;
      StepRequest req;
      req.tag = rb.tag;
      req.n = rb.n;
      req.pixels = rb.pixels;
      req.labels = rb.labels;
      req.flips = rb.flips;
      req.lr = sched.at(sub_step);
      req.skip = std::find(cfg.inject_nonfinite_steps.begin(), cfg.inject_nonfinite_steps.end(), sub_step) !=
                 cfg.inject_nonfinite_steps.end();
      {
        STOKE_TRACE("train step");
        backend->submit(req);
      }
      pending.push_back({req.lr, req.n});
      ++sub_step;
      ++sub_b;
      take(false);
      if (cfg.interrupt_after_steps > 0 && sub_step - loop_first_step == cfg.interrupt_after_steps) request_interrupt(SIGINT);
      if (interrupt_requested() && sub_b < steps_per_epoch) {
        settle();
        result.interrupted = true;
        break;
      }
      if (cfg.checkpoint_every > 0 && sub_step % cfg.checkpoint_every == 0 && sub_b < steps_per_epoch) {
        settle();
        write_checkpoint(epoch, b_in_epoch, false);
      }
    }
    settle();
    progress.finish();
    if (result.interrupted) {
      write_checkpoint(epoch, b_in_epoch, false);
      break;
    }
    const double train_seconds = seconds_since(epoch_start);
    const double input_wait = train_in ? train_in->stats().consumer_wait_seconds - wait_at_start : 0.0;

    EpochStats es;
    es.epoch = static_cast<int>(epoch + 1);
    es.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
    es.train_acc = static_cast<double>(correct_sum) / static_cast<double>(std::max<int64_t>(seen, 1));
    es.images_per_s = static_cast<double>(seen - seen_at_start) / std::max(train_seconds, 1e-9);
    es.val_loss = es.val_acc = es.val_auc = std::numeric_limits<double>::quiet_NaN();
    const bool evaluate_now = has_val && ((epoch + 1) % cfg.eval_every == 0 || epoch + 1 == cfg.epochs);
    ClassificationReport report;
    if (evaluate_now) {
      STOKE_TRACE("eval");
      MetricsAccumulator acc(classes);
      for_each_val_batch([&](int n, const uint8_t* px, const int32_t* lab) {
        float loss = 0;
        const float* logits = backend->eval_batch(n, px, lab, &loss);
        acc.add(n, logits, lab, loss);
      });
      report = acc.report();
      es.val_loss = report.loss;
      es.val_acc = report.accuracy;
      es.val_auc = report.macro_auc;
    }
    es.seconds = seconds_since(epoch_start);
    result.epochs.push_back(es);
    json ej = {{"kind", "epoch"}, {"epoch", es.epoch}, {"step", step}, {"train_loss", es.train_loss},
               {"train_acc", es.train_acc}, {"img_per_s", es.images_per_s}, {"seconds", es.seconds},
               {"elapsed_s", seconds_since(t_start)}, {"rss_mib", resident_mib()},
               {"input_wait_s", input_wait}, {"input_stall", input_wait / std::max(train_seconds, 1e-9)}};
    if (evaluate_now) {
      ej["val_loss"] = es.val_loss;
      ej["val_acc"] = es.val_acc;
      ej["val_auc"] = std::isnan(es.val_auc) ? json() : json(es.val_auc);
      ej["val_report"] = report.to_json();
    }
    metrics.write(ej);
    metrics.flush();
    ej.erase("val_report");
    history.push_back(ej);
    // "Best" maximises the chosen metric (the loss is negated).
    const double score = cfg.best_metric == "val_auc" ? es.val_auc : cfg.best_metric == "val_loss" ? -es.val_loss : es.val_acc;
    const bool best = evaluate_now && std::isfinite(score) && score > best_val_acc;
    if (best) best_val_acc = score;
    if (evaluate_now) last_report = report;
    loss_sum = 0;
    correct_sum = seen = 0;
    write_checkpoint(epoch + 1, 0, best);
    total_wait += input_wait;
    total_train_seconds += train_seconds;
    refresh_report(run_dir, cfg.quiet);
    if (!cfg.quiet) {
      if (evaluate_now)
        std::printf("epoch %d/%d  train loss %.4f acc %.2f%%  |  val loss %.4f acc %.2f%% auc %.4f  |  %s img/s, %.1f s%s\n",
                    es.epoch, cfg.epochs, es.train_loss, 100 * es.train_acc, es.val_loss, 100 * es.val_acc, es.val_auc,
                    format_count(es.images_per_s).c_str(), es.seconds, best ? "  (best)" : "");
      else
        std::printf("epoch %d/%d  train loss %.4f acc %.2f%%  |  %s img/s, %.1f s\n", es.epoch, cfg.epochs,
                    es.train_loss, 100 * es.train_acc, format_count(es.images_per_s).c_str(), es.seconds);
      std::fflush(stdout);
    }
    if (interrupt_requested()) result.interrupted = epoch + 1 < cfg.epochs;
  }

  finish_trace();  // a window reaching past the last step ends with the run
  result.seconds = seconds_since(t_start);
  result.steps = step;
  result.corrupt_images = (train_in ? train_in->stats().corrupt : train_cache->corrupt()) +
                          (val_in ? val_in->stats().corrupt : val_cache ? val_cache->corrupt() : 0);
  if (result.interrupted) {
    if (!cfg.quiet)
      std::printf("\ninterrupted at step %lld: checkpoint written to %s\ncontinue with: stoke train --resume %s\n",
                  static_cast<long long>(step), result.last_checkpoint.c_str(), run_dir.c_str());
    return result;
  }
  json summary = {{"model", cfg.model},
                  {"backend", backend->name()},
                  {"device", backend->describe()},
                  {"epochs", cfg.epochs},
                  {"steps", step},
                  {"train_images", train_count},
                  {"seconds_total", result.seconds},
                  {"corrupt_images", result.corrupt_images},
                  {"skipped_steps", result.skipped_steps},
                  {"params", graph.num_params()},
                  {"last_checkpoint", result.last_checkpoint},
                  {"history", history}};
  // Both file caches together (train and val), once for summary.json and the printed summary.
  io::FileCacheSource::Stats fc;
  for (const auto& cache : {train_files, val_files}) {
    if (!cache) continue;
    const io::FileCacheSource::Stats s = cache->stats();
    fc.kept += s.kept;
    fc.kept_bytes += s.kept_bytes;
    fc.hits += s.hits;
    fc.misses += s.misses;
    fc.full = fc.full || s.full;
  }
  if (train_files)
    summary["file_cache"] = {{"files_kept", fc.kept}, {"bytes_kept", fc.kept_bytes}, {"reads_from_memory", fc.hits},
                             {"reads_from_disk", fc.misses}, {"full", fc.full}};
  if (!history.empty()) {
    const json& last = history.back();
    summary["final_train_loss"] = last["train_loss"];
    summary["final_train_acc"] = last["train_acc"];
    if (has_val) {
      summary["val_images"] = val_count;
      summary["final_val_loss"] = last["val_loss"];
      summary["final_val_acc"] = last["val_acc"];
      summary["final_val_auc"] = last["val_auc"];
      summary["best_metric"] = cfg.best_metric;
      summary["best_checkpoint"] = find_checkpoint(run_dir, "best");
      if (last_report.count > 0) summary["final_val_report"] = last_report.to_json();
    }
  }
  // The verdict: what limited this run (thresholds: 5% and 20% input stall).
  const double run_stall = total_wait / std::max(total_train_seconds, 1e-9);
  std::string verdict;
  if (train_cache)
    verdict = "compute-bound: the data came from the decoded cache (no input stage)";
  else if (run_stall >= 0.20)
    verdict = str("strongly input-bound: the trainer waited for data ", static_cast<int>(std::lround(100 * run_stall)), "% of the time; ",
                  train_in->decoders(), " decoder thread(s) are the limiting stage: try --decoders N, stoke pack, or --cache decoded");
  else if (run_stall >= 0.05)
    verdict = str("input-bound: the trainer waited for data ", static_cast<int>(std::lround(100 * run_stall)), "% of the time (",
                  train_in->decoders(), " decoder thread(s)): try more --decoders, stoke pack, or --cache decoded");
  else
    verdict = str("compute-bound: the input pipeline kept up (the trainer waited for data ",
                  static_cast<int>(std::lround(100 * run_stall)), "% of the time); the ", backend->name(), " step is the limiting stage");
  summary["input_stall"] = run_stall;
  summary["verdict"] = verdict;
  atomic_write_file((fs::path(run_dir) / "summary.json").string(), summary.dump(2) + "\n");
  refresh_report(run_dir, cfg.quiet);
  if (!cfg.quiet && !history.empty()) {
    const json& last = history.back();
    std::printf("\nsummary: %s on %s, %d epoch%s, %lld steps in %s (%s img/s in the last epoch)\n", cfg.model.c_str(),
                use_cuda ? "the CUDA backend" : "the CPU backend", cfg.epochs, cfg.epochs == 1 ? "" : "s", static_cast<long long>(step),
                format_duration(result.seconds).c_str(), format_count(last["img_per_s"].get<double>()).c_str());
    if (has_val && last_report.count > 0) {
      std::printf("         validation accuracy %.2f%% (%s images), loss %.4f, macro ROC-AUC %.4f\n",
                  100 * last_report.accuracy, format_count(static_cast<double>(last_report.count)).c_str(),
                  last_report.loss, last_report.macro_auc);
      std::printf("\nconfusion matrix (validation, last epoch):\n%s", last_report.confusion_table(class_names).c_str());
    }
    if (train_files)
      std::printf("         file cache: %s files (%.1f MiB) kept; %s reads from memory, %s from disk%s\n",
                  format_count(static_cast<double>(fc.kept)).c_str(), static_cast<double>(fc.kept_bytes) / 1048576.0,
                  format_count(static_cast<double>(fc.hits)).c_str(), format_count(static_cast<double>(fc.misses)).c_str(),
                  fc.full ? " (the budget filled: raise --cache-budget-mb)" : "");
    if (result.corrupt_images > 0)
      std::printf("         %lld corrupt images were skipped\n", static_cast<long long>(result.corrupt_images));
    if (result.skipped_steps > 0)
      std::printf("         %lld steps were skipped (non-finite loss)\n", static_cast<long long>(result.skipped_steps));
    std::printf("         verdict: %s\n", verdict.c_str());
    std::printf("         report: %s/report.html, metrics: %s/metrics.jsonl, checkpoint: %s\n", run_dir.c_str(),
                run_dir.c_str(), result.last_checkpoint.c_str());
  }
  return result;
}

}  // namespace stoke
