#include "engine/trainer.h"

#include <algorithm>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "engine/batch_loader.h"
#include "engine/checkpoint.h"
#include "engine/cpu_executor.h"
#include "engine/device.h"
#include "engine/error.h"
#include "engine/fsutil.h"
#include "engine/interrupt.h"
#include "engine/metrics.h"
#include "engine/progress.h"
#include "engine/rng.h"
#include "io/dataset.h"
#include "kernels/parallel.h"
#include "kernels/softmax_ce.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  const uint64_t key = hash_key(seed, 0x5a3b1e, static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates, one keyed draw per position
    auto j = static_cast<int64_t>(uniform_below(key, static_cast<uint64_t>(i), static_cast<uint64_t>(i + 1)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

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

// A seeded random subset (in index order, so classes stay grouped as in the folder).
std::vector<io::Sample> subset(const std::vector<io::Sample>& all, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= static_cast<int64_t>(all.size())) return all;
  std::vector<int64_t> p = epoch_permutation(static_cast<int64_t>(all.size()), seed, -1);
  p.resize(static_cast<size_t>(limit));
  std::sort(p.begin(), p.end());
  std::vector<io::Sample> out;
  out.reserve(p.size());
  for (int64_t i : p) out.push_back(all[static_cast<size_t>(i)]);
  return out;
}

// Per-channel mean and std of pixel/255 over up to 2,000 training images.
void estimate_normalization(const std::vector<io::Sample>& samples, Shape3 shape, uint64_t seed, int workers,
                            std::vector<float>& mean, std::vector<float>& stdev) {
  const int64_t n = std::min<int64_t>(2000, static_cast<int64_t>(samples.size()));
  std::vector<int64_t> order = epoch_permutation(static_cast<int64_t>(samples.size()), seed, -2);
  order.resize(static_cast<size_t>(n));
  BatchLoader loader(samples, shape, 250, workers, false);
  loader.start(order, false);
  std::vector<double> s(static_cast<size_t>(shape.c), 0.0), s2(static_cast<size_t>(shape.c), 0.0);
  int64_t count = 0;
  while (const HostBatch* b = loader.next()) {
    const int64_t px = int64_t{b->count} * shape.h * shape.w;
    for (int64_t i = 0; i < px; ++i)
      for (int c = 0; c < shape.c; ++c) {
        double v = b->pixels[static_cast<size_t>(i * shape.c + c)] / 255.0;
        s[static_cast<size_t>(c)] += v;
        s2[static_cast<size_t>(c)] += v * v;
      }
    count += px;
  }
  mean.resize(static_cast<size_t>(shape.c));
  stdev.resize(static_cast<size_t>(shape.c));
  for (size_t c = 0; c < s.size(); ++c) {
    double m = s[c] / static_cast<double>(count);
    double var = s2[c] / static_cast<double>(count) - m * m;
    mean[c] = static_cast<float>(m);
    stdev[c] = static_cast<float>(std::sqrt(std::max(var, 1e-6)));
  }
}

// uint8 NHWC -> (x/255 - mean) / std, fp32.
void normalize(const HostBatch& b, Shape3 shape, const std::vector<float>& mean, const std::vector<float>& stdev,
               float* out) {
  const int c = shape.c;
  std::vector<float> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int i = 0; i < c; ++i) {
    scale[static_cast<size_t>(i)] = 1.f / (255.f * stdev[static_cast<size_t>(i)]);
    shift[static_cast<size_t>(i)] = -mean[static_cast<size_t>(i)] / stdev[static_cast<size_t>(i)];
  }
  const int64_t px = int64_t{b.count} * shape.h * shape.w;
  parallel_for(px, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      for (int k = 0; k < c; ++k)
        out[i * c + k] = static_cast<float>(b.pixels[static_cast<size_t>(i * c + k)]) * scale[static_cast<size_t>(k)] +
                         shift[static_cast<size_t>(k)];
  });
}

class JsonlWriter {
 public:
  explicit JsonlWriter(const std::string& path) : f_(path, std::ios::app) {
    if (!f_) throw Error(str("cannot write ", path));
  }
  void write(const json& j) {
    f_ << j.dump() << '\n';
    f_.flush();
  }

 private:
  std::ofstream f_;
};

}  // namespace

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
          {"strict", c.strict},
          {"checkpoint_every", c.checkpoint_every},
          {"keep_checkpoints", c.keep_checkpoints},
          {"max_nonfinite_steps", c.max_nonfinite_steps},
          {"eval_every", c.eval_every},
          {"best_metric", c.best_metric}};
}

TrainConfig config_from_json(const json& j) {
  TrainConfig c;
  try {
    c.data = j.at("data").get<std::string>();
    c.val = j.value("val", std::string());
    c.model = j.at("model").get<std::string>();
    c.epochs = j.at("epochs").get<int>();
    c.batch_size = j.at("batch_size").get<int>();
    c.lr = j.at("lr").get<float>();
    c.optimizer.kind = parse_optimizer(j.at("optimizer").get<std::string>());
    c.optimizer.momentum = j.at("momentum").get<float>();
    c.optimizer.nesterov = j.at("nesterov").get<bool>();
    c.optimizer.weight_decay = j.at("weight_decay").get<float>();
    c.optimizer.beta1 = j.value("beta1", c.optimizer.beta1);
    c.optimizer.beta2 = j.value("beta2", c.optimizer.beta2);
    c.optimizer.eps = j.value("eps", c.optimizer.eps);
    c.schedule = parse_schedule(j.at("schedule").get<std::string>());
    c.warmup_epochs = j.value("warmup_epochs", 0.f);
    c.label_smoothing = j.value("label_smoothing", 0.f);
    c.clip_grad_norm = j.value("clip_grad_norm", 0.f);
    c.seed = j.at("seed").get<uint64_t>();
    c.limit_train = j.value("limit_train", int64_t{0});
    c.limit_val = j.value("limit_val", int64_t{0});
    c.image_size = j.value("image_size", 0);
    c.strict = j.value("strict", false);
    c.checkpoint_every = j.value("checkpoint_every", int64_t{0});
    c.keep_checkpoints = j.value("keep_checkpoints", 3);
    c.max_nonfinite_steps = j.value("max_nonfinite_steps", 5);
    c.eval_every = j.value("eval_every", 1);
    c.best_metric = j.value("best_metric", std::string("val_acc"));
  } catch (const json::exception& e) {
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
    std::vector<uint8_t> text = read_whole_file((fs::path(ck) / "state.json").string());
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

// A fingerprint of the data a run trains on: class names, and every sample's path (relative to the root)
// and label. A resumed run refuses data that differs.
std::string dataset_fingerprint(const io::ImageFolder& f, const std::vector<io::Sample>& used) {
  uint64_t h = fnv1a64(nullptr, 0);
  for (const std::string& c : f.classes) h = fnv1a64(c.data(), c.size() + 1, h);
  const size_t root = f.root.size();
  for (const io::Sample& s : used) {
    std::string rel = s.path.size() > root ? s.path.substr(root) : s.path;
    h = fnv1a64(rel.data(), rel.size() + 1, h);
    h = fnv1a64(&s.label, sizeof s.label, h);
  }
  return str(used.size(), "-", hex64(h));
}

// Keeps metrics.jsonl consistent with a resumed run: drops lines written after the checkpoint's step.
void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      json j = json::parse(line);
      if (j.value("step", int64_t{0}) > step) continue;
    } catch (const json::exception&) {
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
  if (cfg.batch_size < 1) throw UserError("--batch-size must be at least 1");
  if (!(cfg.lr > 0.f) || !std::isfinite(cfg.lr)) throw UserError("--lr must be a positive number");
  if (cfg.label_smoothing < 0.f || cfg.label_smoothing >= 1.f) throw UserError("--label-smoothing must be in [0, 1)");
  if (cfg.data.empty()) throw UserError("--data is required (an ImageFolder: DIR/<class>/*.jpg)");
  if (cfg.eval_every < 1) throw UserError("--eval-every must be at least 1");
  if (cfg.best_metric != "val_acc" && cfg.best_metric != "val_auc" && cfg.best_metric != "val_loss")
    throw UserError(str("--best-metric must be val_acc, val_auc or val_loss (got '", cfg.best_metric, "')"));
  const bool resuming = !cfg.resume.empty();

  // ---- backend --------------------------------------------------------------------------------------------
  DeviceProbe dev = probe_cuda();
  if (cfg.device != "auto" && cfg.device != "cpu" && cfg.device != "cuda")
    throw UserError(str("--device must be auto, cpu or cuda (got '", cfg.device, "')"));
  if (cfg.device == "cuda") {
    if (!dev.usable) throw UserError(str("--device cuda: no usable GPU: ", dev.reason));
    throw UserError(str("--device cuda: found ", dev.description,
                        ", but this build's trainer runs on the CPU backend only (the CUDA backend is not in yet)"));
  }
  ThreadPool::set_threads(cfg.threads);

  // ---- data -------------------------------------------------------------------------------------------------
  io::ImageFolder train_set = io::index_image_folder(cfg.data);
  io::ImageFolder val_set;
  const bool has_val = !cfg.val.empty();
  if (has_val) {
    val_set = io::index_image_folder(cfg.val);
    if (val_set.classes != train_set.classes)
      throw UserError(str("the classes of --val ", cfg.val, " (", val_set.classes.size(), ") differ from those of --data ",
                          cfg.data, " (", train_set.classes.size(), ")"));
  }
  std::vector<io::Sample> train_samples = subset(train_set.samples, cfg.limit_train, cfg.seed);
  std::vector<io::Sample> val_samples = has_val ? subset(val_set.samples, cfg.limit_val, cfg.seed + 1) : std::vector<io::Sample>{};
  io::DataShape ds = io::probe_shape(train_set);
  Shape3 shape{ds.h, ds.w, ds.c};
  if (cfg.image_size > 0) shape.h = shape.w = cfg.image_size;
  const int classes = static_cast<int>(train_set.classes.size());
  const int batch = static_cast<int>(std::min<int64_t>(cfg.batch_size, static_cast<int64_t>(train_samples.size())));
  const int64_t steps_per_epoch = static_cast<int64_t>(train_samples.size()) / batch;
  const std::string fingerprint = dataset_fingerprint(train_set, train_samples);

  // ---- model ------------------------------------------------------------------------------------------------
  Graph graph = build_model(cfg.model, shape, classes);
  std::vector<float> params(static_cast<size_t>(graph.num_params())), grads(params.size()),
      buffers(static_cast<size_t>(graph.num_buffers()));
  graph.initialize(params.data(), buffers.data(), cfg.seed);
  Optimizer opt(cfg.optimizer, graph.params(), graph.num_params());

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
    if (opt.state().size() != ck.optimizer_state.size())
      throw UserError(str(resumed_from, ": the optimizer state does not fit this run's optimizer settings"));
    opt.state() = std::move(ck.optimizer_state);
    opt.set_steps(st.at("optimizer_steps").get<int64_t>());
    start_epoch = st.at("epoch").get<int64_t>();
    start_cursor = st.at("cursor").get<int64_t>();
    step = st.at("step").get<int64_t>();
    resume_sums = st.value("epoch_sums", json::object());
    history = st.value("history", json::array());
    if (st.contains("best_score") && st["best_score"].is_number()) best_val_acc = st["best_score"].get<double>();
    mean = st.at("normalize_mean").get<std::vector<float>>();
    stdev = st.at("normalize_std").get<std::vector<float>>();
    truncate_metrics(metrics_path, step);
  } else {
    if (fs::exists(metrics_path) && !cfg.overwrite)
      throw UserError(str("--out ", run_dir, " already holds a run (metrics.jsonl): choose another folder, pass --overwrite, or --resume ", run_dir));
    fs::create_directories(run_dir, ec);
    if (ec) throw UserError(str("cannot create run folder ", run_dir, ": ", ec.message()));
    fs::remove(metrics_path, ec);
    fs::remove_all(fs::path(run_dir) / "checkpoints", ec);
    estimate_normalization(train_samples, shape, cfg.seed, cfg.workers, mean, stdev);
  }

  // Everything the user could get wrong has been checked: now say what runs.
  if (!cfg.quiet) {
    if (cfg.device == "cpu")
      std::printf("device: CPU backend (--device cpu), %d threads\n", ThreadPool::threads());
    else if (dev.usable)
      std::printf("device: found %s, but the CUDA backend is not in yet: CPU backend, %d threads\n",
                  dev.description.c_str(), ThreadPool::threads());
    else
      std::printf("device: no usable GPU (%s): CPU backend, %d threads\n", dev.reason.c_str(), ThreadPool::threads());
    std::printf("data: %s images in %d classes (%dx%dx%d)%s, val: %s images\n", format_count(static_cast<double>(train_samples.size())).c_str(),
                classes, shape.h, shape.w, shape.c, cfg.limit_train > 0 ? " (subset)" : "",
                has_val ? format_count(static_cast<double>(val_samples.size())).c_str() : "none");
    std::printf("model: %s, %s parameters, %.2f MMAC/image; %s, lr %g, %s schedule, batch %d, %d epochs\n",
                graph.description().empty() ? cfg.model.c_str() : graph.description().c_str(), format_count(static_cast<double>(graph.num_params())).c_str(),
                static_cast<double>(graph.forward_macs()) / 1e6, to_string(cfg.optimizer.kind), static_cast<double>(cfg.lr),
                to_string(cfg.schedule), batch, cfg.epochs);
    if (resuming)
      std::printf("resuming: %s (epoch %lld, step %lld)\n", resumed_from.c_str(), static_cast<long long>(start_epoch + 1),
                  static_cast<long long>(step));
    std::printf("run folder: %s\n", run_dir.c_str());
    std::fflush(stdout);
  }

  json config = config_to_json(cfg);
  json run_info = config;
  run_info["backend"] = "cpu";
  run_info["threads"] = ThreadPool::threads();
  run_info["input"] = {shape.h, shape.w, shape.c};
  run_info["classes"] = train_set.classes;
  run_info["train_images"] = train_samples.size();
  run_info["val_images"] = val_samples.size();
  run_info["normalize_mean"] = mean;
  run_info["normalize_std"] = stdev;
  run_info["params"] = graph.num_params();
  run_info["dataset"] = fingerprint;
  atomic_write_file((fs::path(run_dir) / "config.json").string(), run_info.dump(2) + "\n");
  JsonlWriter metrics(metrics_path);

  // ---- training state ---------------------------------------------------------------------------------------
  Schedule sched;
  sched.kind = cfg.schedule;
  sched.lr = cfg.lr;
  sched.total_steps = steps_per_epoch * cfg.epochs;
  sched.warmup_steps = static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(steps_per_epoch)));
  CpuExecutor exec(graph, batch);
  std::vector<float> input(static_cast<size_t>(batch * shape.size()));
  std::vector<float> dlogits(static_cast<size_t>(batch * classes));
  BatchLoader train_loader(train_samples, shape, batch, cfg.workers, cfg.strict);
  std::unique_ptr<BatchLoader> val_loader;
  if (has_val) val_loader = std::make_unique<BatchLoader>(val_samples, shape, batch, cfg.workers, cfg.strict);

  TrainResult result;
  result.run_dir = run_dir;
  result.backend = "cpu";
  result.params = graph.num_params();
  result.first_step = step;
  Progress progress;
  const auto loop_start = Clock::now();
  const int64_t loop_first_step = step;
  int nonfinite_run = 0;
  install_interrupt_handlers();
  struct HandlerGuard {
    ~HandlerGuard() { remove_interrupt_handlers(); }
  } handler_guard;

  // Per-epoch running sums live here so a checkpoint mid-epoch can carry them.
  double loss_sum = 0;
  int64_t correct_sum = 0, seen = 0;

  auto write_checkpoint = [&](int64_t epoch, int64_t cursor, bool best) {
    CheckpointData d;
    d.params = params;
    d.buffers = buffers;
    d.optimizer_state = opt.state();
    d.state = {{"epoch", epoch},
               {"cursor", cursor},
               {"step", step},
               {"optimizer_steps", opt.steps()},
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

  for (int64_t epoch = start_epoch; epoch < cfg.epochs && !result.interrupted; ++epoch) {
    const auto epoch_start = Clock::now();
    const int64_t cursor0 = epoch == start_epoch ? start_cursor : 0;
    std::vector<int64_t> order = epoch_permutation(static_cast<int64_t>(train_samples.size()), cfg.seed, epoch);
    order.erase(order.begin(), order.begin() + std::min<int64_t>(cursor0 * batch, static_cast<int64_t>(order.size())));
    train_loader.start(std::move(order), true);
    loss_sum = 0;
    correct_sum = seen = 0;
    if (epoch == start_epoch && resuming && cursor0 > 0) {
      loss_sum = resume_sums.value("loss_sum", 0.0);
      correct_sum = resume_sums.value("correct", int64_t{0});
      seen = resume_sums.value("seen", int64_t{0});
    }
    const int64_t seen_at_start = seen;
    double window_loss = 0;
    int64_t window_correct = 0, window_seen = 0;
    int64_t b_in_epoch = cursor0;
    while (const HostBatch* hb = train_loader.next()) {
      const float lr = sched.at(step);
      normalize(*hb, shape, mean, stdev, input.data());
      const float* logits = exec.forward(hb->count, input.data(), params.data(), buffers.data(), true);
      int64_t correct = 0;
      float loss = cpu::softmax_cross_entropy(hb->count, classes, logits, hb->labels.data(), cfg.label_smoothing, 1.f,
                                              nullptr, dlogits.data(), &correct);
      if (std::find(cfg.inject_nonfinite_steps.begin(), cfg.inject_nonfinite_steps.end(), step) !=
          cfg.inject_nonfinite_steps.end())
        loss = std::numeric_limits<float>::infinity();
      ++step;
      ++b_in_epoch;
      result.step_losses.push_back(loss);
      if (!std::isfinite(loss)) {
        // Skip the update; stop if it keeps happening.
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
        std::fill(grads.begin(), grads.end(), 0.f);
        exec.backward(params.data(), grads.data(), dlogits.data());
        if (cfg.clip_grad_norm > 0.f) clip_grad_norm(grads.data(), static_cast<int64_t>(grads.size()), cfg.clip_grad_norm);
        opt.step(params.data(), grads.data(), lr);
        loss_sum += static_cast<double>(loss) * hb->count;
        correct_sum += correct;
        seen += hb->count;
        window_loss += static_cast<double>(loss) * hb->count;
        window_correct += correct;
        window_seen += hb->count;
      }

      const double el = seconds_since(epoch_start);
      const double rate = static_cast<double>(seen - seen_at_start) / std::max(el, 1e-9);
      const double overall_rate = static_cast<double>(step - loop_first_step) / std::max(seconds_since(loop_start), 1e-9);
      const double eta = static_cast<double>(sched.total_steps - step) / overall_rate;
      if ((step % 50 == 0 || b_in_epoch == steps_per_epoch) && window_seen > 0) {
        metrics.write({{"kind", "train"}, {"epoch", epoch + 1}, {"step", step}, {"lr", lr},
                       {"loss", window_loss / static_cast<double>(window_seen)},
                       {"acc", static_cast<double>(window_correct) / static_cast<double>(window_seen)},
                       {"img_per_s", rate}, {"elapsed_s", seconds_since(t_start)}});
        window_loss = 0;
        window_correct = window_seen = 0;
      }
      if (!cfg.quiet) {
        char line[256];
        std::snprintf(line, sizeof line, "epoch %lld/%d  step %lld/%lld  loss %.4f  acc %.2f%%  %s img/s  ETA %s",
                      static_cast<long long>(epoch + 1), cfg.epochs, static_cast<long long>(b_in_epoch),
                      static_cast<long long>(steps_per_epoch), loss_sum / static_cast<double>(std::max<int64_t>(seen, 1)),
                      100.0 * static_cast<double>(correct_sum) / static_cast<double>(std::max<int64_t>(seen, 1)),
                      format_count(rate).c_str(), format_duration(eta).c_str());
        progress.update(line, b_in_epoch == steps_per_epoch);
      }
      if (cfg.interrupt_after_steps > 0 && step - loop_first_step == cfg.interrupt_after_steps) request_interrupt(SIGINT);
      if (interrupt_requested() && b_in_epoch < steps_per_epoch) {
        result.interrupted = true;
        break;
      }
      if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && b_in_epoch < steps_per_epoch)
        write_checkpoint(epoch, b_in_epoch, false);
    }
    progress.finish();
    if (result.interrupted) {
      write_checkpoint(epoch, b_in_epoch, false);
      break;
    }
    const double train_seconds = seconds_since(epoch_start);

    EpochStats es;
    es.epoch = static_cast<int>(epoch + 1);
    es.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
    es.train_acc = static_cast<double>(correct_sum) / static_cast<double>(std::max<int64_t>(seen, 1));
    es.images_per_s = static_cast<double>(seen - seen_at_start) / std::max(train_seconds, 1e-9);
    es.val_loss = es.val_acc = es.val_auc = std::numeric_limits<double>::quiet_NaN();
    const bool evaluate_now = has_val && ((epoch + 1) % cfg.eval_every == 0 || epoch + 1 == cfg.epochs);
    ClassificationReport report;
    if (evaluate_now) {
      std::vector<int64_t> vorder(val_samples.size());
      for (size_t i = 0; i < vorder.size(); ++i) vorder[i] = static_cast<int64_t>(i);
      val_loader->start(std::move(vorder), false);
      MetricsAccumulator acc(classes);
      while (const HostBatch* hb = val_loader->next()) {
        normalize(*hb, shape, mean, stdev, input.data());
        const float* logits = exec.forward(hb->count, input.data(), params.data(), buffers.data(), false);
        float loss = cpu::softmax_cross_entropy(hb->count, classes, logits, hb->labels.data(), 0.f, 1.f, nullptr,
                                                nullptr, nullptr);
        acc.add(hb->count, logits, hb->labels.data(), loss);
      }
      report = acc.report();
      es.val_loss = report.loss;
      es.val_acc = report.accuracy;
      es.val_auc = report.macro_auc;
    }
    es.seconds = seconds_since(epoch_start);
    result.epochs.push_back(es);
    json ej = {{"kind", "epoch"}, {"epoch", es.epoch}, {"step", step}, {"train_loss", es.train_loss},
               {"train_acc", es.train_acc}, {"img_per_s", es.images_per_s}, {"seconds", es.seconds},
               {"elapsed_s", seconds_since(t_start)}, {"rss_mib", resident_mib()}};
    if (evaluate_now) {
      ej["val_loss"] = es.val_loss;
      ej["val_acc"] = es.val_acc;
      ej["val_auc"] = std::isnan(es.val_auc) ? json() : json(es.val_auc);
      ej["val_report"] = report.to_json();
    }
    metrics.write(ej);
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

  result.seconds = seconds_since(t_start);
  result.steps = step;
  result.corrupt_images = train_loader.corrupt_count() + (val_loader ? val_loader->corrupt_count() : 0);
  if (result.interrupted) {
    if (!cfg.quiet)
      std::printf("\ninterrupted at step %lld: checkpoint written to %s\ncontinue with: stoke train --resume %s\n",
                  static_cast<long long>(step), result.last_checkpoint.c_str(), run_dir.c_str());
    return result;
  }
  json summary = {{"model", cfg.model},
                  {"backend", "cpu"},
                  {"epochs", cfg.epochs},
                  {"steps", step},
                  {"train_images", train_samples.size()},
                  {"seconds_total", result.seconds},
                  {"corrupt_images", result.corrupt_images},
                  {"skipped_steps", result.skipped_steps},
                  {"params", graph.num_params()},
                  {"last_checkpoint", result.last_checkpoint},
                  {"history", history}};
  if (!history.empty()) {
    const json& last = history.back();
    summary["final_train_loss"] = last["train_loss"];
    summary["final_train_acc"] = last["train_acc"];
    if (has_val) {
      summary["val_images"] = val_samples.size();
      summary["final_val_loss"] = last["val_loss"];
      summary["final_val_acc"] = last["val_acc"];
      summary["final_val_auc"] = last["val_auc"];
      summary["best_metric"] = cfg.best_metric;
      summary["best_checkpoint"] = find_checkpoint(run_dir, "best");
      if (last_report.count > 0) summary["final_val_report"] = last_report.to_json();
    }
  }
  atomic_write_file((fs::path(run_dir) / "summary.json").string(), summary.dump(2) + "\n");
  if (!cfg.quiet && !history.empty()) {
    const json& last = history.back();
    std::printf("\nsummary: %s on %s, %d epoch%s, %lld steps in %s (%s img/s in the last epoch)\n", cfg.model.c_str(),
                "the CPU backend", cfg.epochs, cfg.epochs == 1 ? "" : "s", static_cast<long long>(step),
                format_duration(result.seconds).c_str(), format_count(last["img_per_s"].get<double>()).c_str());
    if (has_val && last_report.count > 0) {
      std::printf("         validation accuracy %.2f%% (%s images), loss %.4f, macro ROC-AUC %.4f\n",
                  100 * last_report.accuracy, format_count(static_cast<double>(last_report.count)).c_str(),
                  last_report.loss, last_report.macro_auc);
      std::printf("\nconfusion matrix (validation, last epoch):\n%s", last_report.confusion_table(train_set.classes).c_str());
    }
    if (result.corrupt_images > 0)
      std::printf("         %lld corrupt images were skipped\n", static_cast<long long>(result.corrupt_images));
    if (result.skipped_steps > 0)
      std::printf("         %lld steps were skipped (non-finite loss)\n", static_cast<long long>(result.skipped_steps));
    std::printf("         metrics: %s/metrics.jsonl, summary: %s/summary.json, checkpoint: %s\n", run_dir.c_str(),
                run_dir.c_str(), result.last_checkpoint.c_str());
  }
  return result;
}

}  // namespace stoke
