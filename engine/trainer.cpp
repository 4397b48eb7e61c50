#include "engine/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "engine/batch_loader.h"
#include "engine/cpu_executor.h"
#include "engine/device.h"
#include "engine/error.h"
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

void write_json(const std::string& path, const json& j) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << j.dump(2) << '\n';
    if (!f) throw Error(str("cannot write ", tmp));
  }
  fs::rename(tmp, path);
}

}  // namespace

TrainResult train(const TrainConfig& cfg, const ModelFactory& build_model) {
  const auto t_start = Clock::now();
  if (cfg.epochs < 1) throw UserError("--epochs must be at least 1");
  if (cfg.batch_size < 1) throw UserError("--batch-size must be at least 1");
  if (!(cfg.lr > 0.f) || !std::isfinite(cfg.lr)) throw UserError("--lr must be a positive number");
  if (cfg.label_smoothing < 0.f || cfg.label_smoothing >= 1.f) throw UserError("--label-smoothing must be in [0, 1)");
  if (cfg.data.empty()) throw UserError("--data is required (an ImageFolder: DIR/<class>/*.jpg)");

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

  // ---- model ------------------------------------------------------------------------------------------------
  Graph graph = build_model(cfg.model, shape, classes);
  std::vector<float> params(static_cast<size_t>(graph.num_params())), grads(params.size()),
      buffers(static_cast<size_t>(graph.num_buffers()));
  graph.initialize(params.data(), buffers.data(), cfg.seed);

  // ---- run directory ----------------------------------------------------------------------------------------
  const std::string run_dir = cfg.out.empty() ? default_run_dir(cfg.model) : cfg.out;
  std::error_code ec;
  if (fs::exists(fs::path(run_dir) / "metrics.jsonl") && !cfg.overwrite)
    throw UserError(str("--out ", run_dir, " already holds a run (metrics.jsonl): choose another folder or pass --overwrite"));
  fs::create_directories(run_dir, ec);
  if (ec) throw UserError(str("cannot create run folder ", run_dir, ": ", ec.message()));
  fs::remove(fs::path(run_dir) / "metrics.jsonl", ec);

  // Everything the user could get wrong has been checked: now say what runs.
  if (!cfg.quiet) {
    if (cfg.device == "cpu")
      std::printf("device: CPU backend (--device cpu), %d threads\n", ThreadPool::threads());
    else if (dev.usable)
      std::printf("device: found %s, but the CUDA backend is not in yet: CPU backend, %d threads\n",
                  dev.description.c_str(), ThreadPool::threads());
    else
      std::printf("device: no usable GPU (%s): CPU backend, %d threads\n", dev.reason.c_str(), ThreadPool::threads());
  }

  std::vector<float> mean, stdev;
  estimate_normalization(train_samples, shape, cfg.seed, cfg.workers, mean, stdev);

  if (!cfg.quiet) {
    std::printf("data: %s images in %d classes (%dx%dx%d)%s, val: %s images\n", format_count(static_cast<double>(train_samples.size())).c_str(),
                classes, shape.h, shape.w, shape.c,
                cfg.limit_train > 0 ? " (subset)" : "", has_val ? format_count(static_cast<double>(val_samples.size())).c_str() : "none");
    std::printf("model: %s, %s parameters, %.2f MMAC/image; %s, lr %g, %s schedule, batch %d, %d epochs\n",
                cfg.model.c_str(), format_count(static_cast<double>(graph.num_params())).c_str(),
                static_cast<double>(graph.forward_macs()) / 1e6, to_string(cfg.optimizer.kind), static_cast<double>(cfg.lr),
                to_string(cfg.schedule), batch, cfg.epochs);
    std::printf("run folder: %s\n", run_dir.c_str());
    std::fflush(stdout);
  }

  json config = {
      {"data", cfg.data},
      {"val", cfg.val},
      {"model", cfg.model},
      {"backend", "cpu"},
      {"epochs", cfg.epochs},
      {"batch_size", batch},
      {"lr", cfg.lr},
      {"optimizer", to_string(cfg.optimizer.kind)},
      {"momentum", cfg.optimizer.momentum},
      {"nesterov", cfg.optimizer.nesterov},
      {"weight_decay", cfg.optimizer.weight_decay},
      {"schedule", to_string(cfg.schedule)},
      {"warmup_epochs", cfg.warmup_epochs},
      {"label_smoothing", cfg.label_smoothing},
      {"seed", cfg.seed},
      {"threads", ThreadPool::threads()},
      {"input", {shape.h, shape.w, shape.c}},
      {"classes", train_set.classes},
      {"train_images", train_samples.size()},
      {"val_images", val_samples.size()},
      {"normalize_mean", mean},
      {"normalize_std", stdev},
      {"params", graph.num_params()},
  };
  write_json((fs::path(run_dir) / "config.json").string(), config);
  JsonlWriter metrics((fs::path(run_dir) / "metrics.jsonl").string());

  // ---- training state ---------------------------------------------------------------------------------------
  Optimizer opt(cfg.optimizer, graph.params(), graph.num_params());
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
  Progress progress;
  int64_t step = 0;
  const double train_start = seconds_since(t_start);
  const auto loop_start = Clock::now();

  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    train_loader.start(epoch_permutation(static_cast<int64_t>(train_samples.size()), cfg.seed, epoch), true);
    double loss_sum = 0;
    int64_t correct_sum = 0, seen = 0;
    double window_loss = 0;
    int64_t window_correct = 0, window_seen = 0;
    int64_t b_in_epoch = 0;
    while (const HostBatch* hb = train_loader.next()) {
      const float lr = sched.at(step);
      normalize(*hb, shape, mean, stdev, input.data());
      const float* logits = exec.forward(hb->count, input.data(), params.data(), buffers.data(), true);
      int64_t correct = 0;
      const float loss = cpu::softmax_cross_entropy(hb->count, classes, logits, hb->labels.data(), cfg.label_smoothing,
                                                    1.f, nullptr, dlogits.data(), &correct);
      if (!std::isfinite(loss))
        throw Error(str("the loss became ", loss, " at epoch ", epoch + 1, " step ", b_in_epoch + 1,
                        ": lower --lr (now ", cfg.lr, ")"));
      std::fill(grads.begin(), grads.end(), 0.f);
      exec.backward(params.data(), grads.data(), dlogits.data());
      opt.step(params.data(), grads.data(), lr);
      ++step;
      ++b_in_epoch;
      loss_sum += static_cast<double>(loss) * hb->count;
      correct_sum += correct;
      seen += hb->count;
      window_loss += static_cast<double>(loss) * hb->count;
      window_correct += correct;
      window_seen += hb->count;

      const double el = seconds_since(epoch_start);
      const double rate = static_cast<double>(seen) / std::max(el, 1e-9);
      const double total_el = seconds_since(loop_start);
      const double overall_rate = static_cast<double>(step) / std::max(total_el, 1e-9);
      const double eta = static_cast<double>(sched.total_steps - step) / overall_rate;
      if (step % 50 == 0 || b_in_epoch == steps_per_epoch) {
        metrics.write({{"kind", "train"}, {"epoch", epoch + 1}, {"step", step}, {"lr", lr},
                       {"loss", window_loss / static_cast<double>(window_seen)},
                       {"acc", static_cast<double>(window_correct) / static_cast<double>(window_seen)},
                       {"img_per_s", rate}, {"elapsed_s", seconds_since(t_start)}});
        window_loss = 0;
        window_correct = window_seen = 0;
      }
      if (!cfg.quiet) {
        char line[256];
        std::snprintf(line, sizeof line, "epoch %d/%d  step %lld/%lld  loss %.4f  acc %.2f%%  %s img/s  ETA %s",
                      epoch + 1, cfg.epochs, static_cast<long long>(b_in_epoch), static_cast<long long>(steps_per_epoch),
                      loss_sum / static_cast<double>(seen), 100.0 * static_cast<double>(correct_sum) / static_cast<double>(seen),
                      format_count(rate).c_str(), format_duration(eta).c_str());
        progress.update(line, b_in_epoch == steps_per_epoch);
      }
    }
    progress.finish();
    const double train_seconds = seconds_since(epoch_start);

    EpochStats es;
    es.epoch = epoch + 1;
    es.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(seen, 1));
    es.train_acc = static_cast<double>(correct_sum) / static_cast<double>(std::max<int64_t>(seen, 1));
    es.images_per_s = static_cast<double>(seen) / std::max(train_seconds, 1e-9);
    es.val_loss = es.val_acc = std::numeric_limits<double>::quiet_NaN();
    if (has_val) {
      std::vector<int64_t> order(val_samples.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
      val_loader->start(std::move(order), false);
      double vloss = 0;
      int64_t vcorrect = 0, vseen = 0;
      while (const HostBatch* hb = val_loader->next()) {
        normalize(*hb, shape, mean, stdev, input.data());
        const float* logits = exec.forward(hb->count, input.data(), params.data(), buffers.data(), false);
        int64_t correct = 0;
        float loss = cpu::softmax_cross_entropy(hb->count, classes, logits, hb->labels.data(), 0.f, 1.f, nullptr,
                                                nullptr, &correct);
        vloss += static_cast<double>(loss) * hb->count;
        vcorrect += correct;
        vseen += hb->count;
      }
      es.val_loss = vloss / static_cast<double>(std::max<int64_t>(vseen, 1));
      es.val_acc = static_cast<double>(vcorrect) / static_cast<double>(std::max<int64_t>(vseen, 1));
    }
    es.seconds = seconds_since(epoch_start);
    result.epochs.push_back(es);
    json ej = {{"kind", "epoch"}, {"epoch", es.epoch}, {"step", step}, {"train_loss", es.train_loss},
               {"train_acc", es.train_acc}, {"img_per_s", es.images_per_s}, {"seconds", es.seconds},
               {"elapsed_s", seconds_since(t_start)}};
    if (has_val) {
      ej["val_loss"] = es.val_loss;
      ej["val_acc"] = es.val_acc;
    }
    metrics.write(ej);
    if (!cfg.quiet) {
      if (has_val)
        std::printf("epoch %d/%d  train loss %.4f acc %.2f%%  |  val loss %.4f acc %.2f%%  |  %s img/s, %.1f s\n",
                    es.epoch, cfg.epochs, es.train_loss, 100 * es.train_acc, es.val_loss, 100 * es.val_acc,
                    format_count(es.images_per_s).c_str(), es.seconds);
      else
        std::printf("epoch %d/%d  train loss %.4f acc %.2f%%  |  %s img/s, %.1f s\n", es.epoch, cfg.epochs,
                    es.train_loss, 100 * es.train_acc, format_count(es.images_per_s).c_str(), es.seconds);
      std::fflush(stdout);
    }
  }

  result.seconds = seconds_since(t_start);
  result.steps = step;
  result.corrupt_images = train_loader.corrupt_count() + (val_loader ? val_loader->corrupt_count() : 0);
  const EpochStats& last = result.epochs.back();
  json summary = {{"model", cfg.model},
                  {"backend", "cpu"},
                  {"epochs", cfg.epochs},
                  {"steps", step},
                  {"train_images", train_samples.size()},
                  {"final_train_loss", last.train_loss},
                  {"final_train_acc", last.train_acc},
                  {"seconds_total", result.seconds},
                  {"seconds_setup", train_start},
                  {"corrupt_images", result.corrupt_images},
                  {"params", graph.num_params()}};
  if (has_val) {
    summary["val_images"] = val_samples.size();
    summary["final_val_loss"] = last.val_loss;
    summary["final_val_acc"] = last.val_acc;
  }
  write_json((fs::path(run_dir) / "summary.json").string(), summary);
  if (!cfg.quiet) {
    std::printf("\nsummary: %s on %s, %d epoch%s, %lld steps in %s (%s img/s in the last epoch)\n", cfg.model.c_str(),
                "the CPU backend", cfg.epochs, cfg.epochs == 1 ? "" : "s", static_cast<long long>(step), format_duration(result.seconds).c_str(),
                format_count(last.images_per_s).c_str());
    if (has_val)
      std::printf("         validation accuracy %.2f%% (%s images), loss %.4f\n", 100 * last.val_acc,
                  format_count(static_cast<double>(val_samples.size())).c_str(), last.val_loss);
    if (result.corrupt_images > 0)
      std::printf("         %lld corrupt images were skipped\n", static_cast<long long>(result.corrupt_images));
    std::printf("         metrics: %s/metrics.jsonl, summary: %s/summary.json\n", run_dir.c_str(), run_dir.c_str());
  }
  return result;
}

}  // namespace stoke
