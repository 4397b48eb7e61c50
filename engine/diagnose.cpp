#include "engine/diagnose.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/format.h"
#include "base/parallel.h"
#include "base/progress.h"
#include "engine/backend.h"
#include "engine/device.h"
#include "engine/dist/communicator.h"
#include "engine/run_verdict.h"
#include "io/pipeline/decoded_cache.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/file_cache.h"
#include "io/source/source.h"

namespace stoke {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// (e) One step's all-reduce for this model (its gradients and the CPU backend's 4 step sums), through the job's
// communicator: every rank makes the same calls. A step of the CPU backend waits for its all-reduce, so the share
// is of compute (c) plus the all-reduce.
void measure_allreduce(dist::Communicator& comm, int64_t params, int batch, DiagnoseResult& r) {
  r.transport = comm.transport();
  std::vector<float> grads(static_cast<size_t>(params) + 4, 0.f);
  r.allreduce_bytes = static_cast<int64_t>(grads.size() * sizeof(float));
  comm.allreduce_sum(grads.data(), grads.size());  // warm-up (buffers, connections)
  comm.barrier();  // the ranks finished (d) at different times: no rank's wait for the others is timed
  constexpr int kCalls = 5;
  const auto t0 = Clock::now();
  for (int i = 0; i < kCalls; ++i) comm.allreduce_sum(grads.data(), grads.size());
  r.allreduce_s = since(t0) / kCalls;
  const double step_s = static_cast<double>(batch) / std::max(r.compute_img_s, 1e-9);
  r.comm_share = r.allreduce_s / (step_s + r.allreduce_s);
}

}  // namespace

DiagnoseResult diagnose(const TrainConfig& cfg, const ModelFactory& build_model, double seconds) {
  if (cfg.data.empty()) throw UserError("--data is required");
  if (cfg.batch_size < 1) throw UserError("--batch-size must be at least 1");
  ThreadPool::set_threads(cfg.threads);
  DiagnoseResult r;
  // Under a launcher the all-reduce is measured too (e); joined first, as train joins before anything starts.
  // A torchrun-style launch has no host transport (NCCL is training's only one there): not measured.
  const dist::LaunchInfo launch = dist::launch_from_environment();
  std::unique_ptr<dist::Communicator> comm;
  if (launch.world > 1 && launch.launcher != "torchrun") comm = dist::make_communicator(launch);
  r.rank = launch.rank;
  r.world = launch.world;
  std::shared_ptr<const io::Source> src = io::open_source(cfg.data);
  r.folder_source = std::filesystem::is_directory(cfg.data);
  if (r.folder_source &&
      (cfg.cache == CacheMode::automatic || cfg.cache == CacheMode::files))  // as training reads a folder
    src = std::make_shared<io::FileCacheSource>(src, io::default_file_cache_budget());
  io::DataShape ds = io::probe_source_shape(*src);
  Shape3 shape{ds.h, ds.w, ds.c};
  if (cfg.image_size > 0) shape.h = shape.w = cfg.image_size;
  const int batch = static_cast<int>(std::min<int64_t>(cfg.batch_size, src->size()));
  const int classes = static_cast<int>(src->classes().size());
  Graph graph = build_model(cfg.model, shape, classes);

  const bool use_cuda = choose_device(cfg.device, static_cast<bool>(cuda_backend_factory())).use_cuda;  // as train

  io::PipelineConfig pc = training_pipeline_config(cfg, shape, batch);
  pc.on_warning = [](const std::string&) {};

  // (a) decode capacity
  std::vector<uint8_t> px(static_cast<size_t>(batch * shape.size()));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  {
    io::InputPipeline in(src, pc);
    r.decoders = in.decoders();
    r.decoders_reason = in.decoders_reason();
    in.start(0);
    io::Batch first = in.acquire();
    std::copy(first.pixels, first.pixels + px.size(), px.begin());
    std::copy(first.labels, first.labels + batch, labels.begin());
    in.release(first.tag);
    int64_t images = 0;
    const auto t0 = Clock::now();
    while (since(t0) < seconds) {
      io::Batch b = in.acquire();
      if (!b) break;
      images += b.size;
      in.release(b.tag);
    }
    r.decode_img_s = static_cast<double>(images) / since(t0);
  }

  // (c) compute on a batch already in memory
  BackendOptions bo;
  bo.max_batch = batch;
  bo.optimizer = cfg.optimizer;
  bo.mean.assign(static_cast<size_t>(shape.c), 0.5f);
  bo.stdev.assign(static_cast<size_t>(shape.c), 0.25f);
  bo.precision = cfg.precision;
  std::unique_ptr<TrainingBackend> backend = make_backend(use_cuda, graph, bo);
  {
    std::vector<float> params(static_cast<size_t>(graph.num_params())),
        buffers(static_cast<size_t>(graph.num_buffers()));
    graph.initialize(params.data(), buffers.data(), cfg.seed);
    backend->set_state(params, buffers, Optimizer(cfg.optimizer, graph.params(), graph.num_params()).state(), 0);
  }
  r.backend = backend->name();
  r.device = backend->describe();
  // (b) host->device copies of one batch of pixels (what the trainer moves per step), pinned and pageable.
  if (use_cuda) {
    const size_t batch_bytes = std::max<size_t>(px.size(), size_t{1} << 20);
    r.h2d_pinned_gb_s = measure_h2d_gb_s(batch_bytes, true);
    r.h2d_pageable_gb_s = measure_h2d_gb_s(batch_bytes, false);
    r.h2d_batch_bytes = static_cast<int64_t>(batch_bytes);
    r.image_bytes = shape.size();
  }
  const float lr = 1e-4f;
  backend->train_step(batch, px.data(), labels.data(), nullptr, lr, false);  // warm-up (algorithm choice, caches)
  {
    int64_t images = 0;
    const auto t0 = Clock::now();
    while (since(t0) < seconds) {
      backend->train_step(batch, px.data(), labels.data(), nullptr, lr, false);
      images += batch;
    }
    r.compute_img_s = static_cast<double>(images) / since(t0);
  }

  // (d) the full pipeline
  {
    io::InputPipeline in(src, pc);
    in.start(0);
    int64_t images = 0;
    const auto t0 = Clock::now();
    const double wait0 = in.stats().consumer_wait_seconds;
    while (since(t0) < seconds) {
      io::Batch b = in.acquire();
      if (!b) break;
      backend->train_step(b.size, b.pixels, b.labels, nullptr, lr, false);
      in.release(b.tag);
      images += b.size;
    }
    const double el = since(t0);
    r.full_img_s = static_cast<double>(images) / el;
    r.full_stall = (in.stats().consumer_wait_seconds - wait0) / el;
  }

  if (comm) measure_allreduce(*comm, graph.num_params(), batch, r);

  r.cache_bytes = io::DecodedCache::bytes_for(src->size(), shape);
  r.available_bytes = io::available_memory_bytes();
  const bool fits = r.available_bytes > 0 && r.cache_bytes < r.available_bytes / 2;
  if (r.decode_img_s < 1.2 * r.compute_img_s) {
    r.verdict = str("input-bound: the decoders give ", format_count(r.decode_img_s), " img/s, the ", r.backend,
                    " step takes ", format_count(r.compute_img_s), " img/s");
    std::vector<std::string> tips;
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    if (!use_cuda && cores <= r.decoders + 1)
      tips.push_back("the decoders and the CPU backend share " + std::to_string(cores) + " cores: a GPU frees them");
    else if (r.decoders < cores - 1)
      tips.push_back(
          str("use --decoders ",
              std::min(cores - 1, std::max(r.decoders + 1, static_cast<int>(r.decoders * 1.2 * r.compute_img_s /
                                                                            std::max(r.decode_img_s, 1.0)) +
                                                               1))));
    if (r.folder_source)
      tips.push_back("stoke pack the folder (the first epoch opens every file; the file cache serves the later ones)");
    if (fits && cfg.augment != Augment::crop_flip)
      tips.push_back(str("--cache decoded (", r.cache_bytes >> 20, " MiB fits in memory)"));
    for (size_t i = 0; i < tips.size(); ++i) r.recommendation += (i ? ", " : "") + tips[i];
  } else {
    r.verdict = str("compute-bound: the decoders give ", format_count(r.decode_img_s), " img/s, ",
                    std::lround(r.decode_img_s / std::max(r.compute_img_s, 1.0) * 10) / 10.0, "x what the ", r.backend,
                    " step takes (", format_count(r.compute_img_s), " img/s)");
    r.recommendation = use_cuda ? "the GPU is the limit: larger --batch-size or --precision bf16/fp16 if not already"
                                : "the CPU backend is the limit: train on a GPU (--device cuda) for real speed";
    if (r.comm_share >= kCommBoundShare) {
      r.verdict = str("communication-bound: the all-reduce of ", format_bytes(static_cast<size_t>(r.allreduce_bytes)),
                      " takes ", std::lround(100 * r.comm_share), "% of a step of ", batch, " images on ", r.world,
                      " processes");
      r.recommendation =
          "fewer, larger steps (a larger --batch-size per process) or a faster link between the processes";
    }
  }
  return r;
}

std::string DiagnoseResult::table() const {
  std::string t;
  char line[256];
  std::snprintf(line, sizeof line, "backend: %s\n", device.c_str());
  t += line;
  std::snprintf(line, sizeof line, "decoders: %d (%s)\n\n", decoders, decoders_reason.c_str());
  t += line;
  t += "stage                                   img/s\n";
  std::snprintf(line, sizeof line, "(a) decode capacity (pipeline alone)  %9s\n", format_count(decode_img_s).c_str());
  t += line;
  if (h2d_pinned_gb_s > 0) {
    std::snprintf(line, sizeof line,
                  "(b) host->device, %.1f MiB batches: pinned %.1f GB/s, pageable %.1f GB/s (%s img/s pinned)\n",
                  static_cast<double>(h2d_batch_bytes) / 1048576.0, h2d_pinned_gb_s, h2d_pageable_gb_s,
                  format_count(image_bytes > 0 ? h2d_pinned_gb_s * 1e9 / static_cast<double>(image_bytes) : 0).c_str());
    t += line;
  } else {
    t += "(b) host->device copies                     n/a (no GPU copies on this backend)\n";
  }
  std::snprintf(line, sizeof line, "(c) compute (steps on data in memory) %9s\n", format_count(compute_img_s).c_str());
  t += line;
  std::snprintf(line, sizeof line, "(d) full pipeline                     %9s   input wait %.0f%%\n",
                format_count(full_img_s).c_str(), 100 * full_stall);
  t += line;
  if (allreduce_s > 0) {
    std::snprintf(line, sizeof line, "(e) all-reduce of %s over %d processes (%s): %.2f ms, %.0f%% of a step\n\n",
                  format_bytes(static_cast<size_t>(allreduce_bytes)).c_str(), world, transport.c_str(),
                  1e3 * allreduce_s, 100 * comm_share);
    t += line;
  } else {
    t += world > 1
             ? "(e) all-reduce                              n/a (a torchrun-style launch: measured under mpirun)\n\n"
             : "(e) all-reduce                              n/a (one process: nothing to all-reduce)\n\n";
  }
  t += "verdict: " + verdict + "\n";
  if (!recommendation.empty()) t += "recommendation: " + recommendation + "\n";
  return t;
}

}  // namespace stoke
