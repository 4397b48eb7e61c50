// What the trainer itself costs per step: train() driving a backend that does no work (so every microsecond is
// the trainer's: the sampler, gathering or acquiring the batch, the asynchronous protocol, the schedule, the
// metrics), against the bare protocol (submit + collect on the same null backend, nothing else) measured in the
// same run. Target: the trainer's own overhead at most 5 us per step on the CPU. The decoded-cache run measures
// exactly that (batches gathered from memory); the streaming run waits for the decoder threads (no compute hides
// them), so its time per step is the input pipeline's rate on this machine, shown for comparison.
//
//   build*/bin/bench_trainer --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "engine/backend.h"
#include "engine/bn_recalibrate.h"
#include "engine/cuda/poll_wait.h"
#include "engine/init_weights.h"
#include "engine/trainer.h"
#include "io/codec/jpeg.h"
#include "models/models.h"

using namespace stoke;
namespace fs = std::filesystem;

namespace {

constexpr int kBatch = 8;
constexpr int kImages = 4096;  // 512 steps an epoch

// Does nothing, instantly: the loss is a constant, every update "applied".
class NullBackend final : public TrainingBackend {
 public:
  explicit NullBackend(const Graph& g) : classes_(g.node(g.output()).out.c) {}
  std::string name() const override { return "null"; }
  std::string describe() const override { return "null backend (benchmark)"; }
  void set_state(const std::vector<float>& p, const std::vector<float>& b, const std::vector<float>& o,
                 int64_t steps) override {
    params_ = p;
    buffers_ = b;
    opt_ = o;
    steps_ = steps;
  }
  void get_state(std::vector<float>& p, std::vector<float>& b, std::vector<float>& o, int64_t& steps) override {
    p = params_;
    b = buffers_;
    o = opt_;
    steps = steps_;
  }
  const float* eval_batch(int n, const uint8_t*, const int32_t*, float* loss) override {
    logits_.assign(static_cast<size_t>(n) * static_cast<size_t>(classes_), 0.f);
    *loss = 1.f;
    return logits_.data();
  }

 protected:
  StepResult run_step(const StepRequest& r) override {
    StepResult s;
    s.loss = 1.f;
    s.correct = r.batch.size / 2;
    s.applied = true;
    ++steps_;
    return s;
  }

 private:
  int classes_;
  std::vector<float> params_, buffers_, opt_, logits_;
  int64_t steps_ = 0;
};

// kImages 8x8 gray JPEGs in 4 classes, written once per process.
const std::string& data_dir() {
  static const std::string dir = [] {
    const fs::path root = fs::temp_directory_path() / ("stoke-bench-trainer-" + std::to_string(::getpid()));
    std::vector<uint8_t> px(64);
    for (int i = 0; i < kImages; ++i) {
      for (size_t k = 0; k < px.size(); ++k) px[k] = static_cast<uint8_t>((i * 37 + static_cast<int>(k) * 11) & 255);
      const fs::path cls = root / std::to_string(i % 4);
      fs::create_directories(cls);
      const std::vector<uint8_t> jpg = io::encode_jpeg(px.data(), 8, 8, 1, 90);
      write_file((cls / (std::to_string(i) + ".jpg")).string(), jpg.data(), jpg.size());
    }
    return root.string();
  }();
  return dir;
}

// One submit + collect on the null backend, with a batch already in memory: the protocol alone.
struct Protocol {
  Graph g = build_model("small-cnn", Shape3{8, 8, 1}, 4);
  NullBackend b{g};
  std::vector<uint8_t> px = std::vector<uint8_t>(kBatch * 64, 1);
  std::vector<int32_t> labels = std::vector<int32_t>(kBatch, 0);
  std::vector<int64_t> released;
  std::vector<StepResult> results;
  int64_t tag = 0;
  void step() {
    StepRequest r;
    r.batch.tag = tag++;
    r.batch.size = kBatch;
    r.batch.pixels = px.data();
    r.batch.labels = labels.data();
    r.lr = 0.1f;
    b.submit(r);
    released.clear();
    results.clear();
    b.collect(released, results, false);
    benchmark::DoNotOptimize(results.data());
  }
};

// The reference, measured again by each trainer benchmark so the ratio comes from one run.
double protocol_us() {
  Protocol p;
  constexpr int kSteps = 200000;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kSteps; ++i) p.step();
  return 1e6 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kSteps;
}

void BM_BareProtocol(benchmark::State& state) {
  Protocol p;
  for (auto _ : state) p.step();
}
BENCHMARK(BM_BareProtocol)->Unit(benchmark::kMicrosecond);

// train() for 4 epochs of 512 steps on the null backend. Time per step = the epochs' training time (what the
// trainer records; normalisation, cache building and checkpoints are outside it) / steps.
void trainer_run(benchmark::State& state, const std::string& cache) {
  set_backend_override([](const Graph& g, const BackendOptions&) { return std::make_unique<NullBackend>(g); });
  double us = 0;
  for (auto _ : state) {
    const fs::path out = fs::path(data_dir()).parent_path() / ("stoke-bench-trainer-run-" + std::to_string(::getpid()));
    TrainConfig c;
    c.data = data_dir();
    c.epochs = 4;
    c.batch_size = kBatch;
    c.cache = parse_cache(cache);
    c.device = DeviceRequest::cpu;
    c.quiet = true;
    c.out = out.string();
    c.overwrite = true;
    const TrainResult r = train(c, build_model);
    double seconds = 0;
    for (const EpochStats& e : r.epochs) seconds += e.seconds;
    us = 1e6 * seconds / static_cast<double>(r.steps);
    state.SetIterationTime(seconds / static_cast<double>(r.steps));
    fs::remove_all(out);
  }
  set_backend_override(nullptr);
  const double reference = protocol_us();
  state.counters["us_per_step"] = us;
  state.counters["protocol_us"] = reference;
  state.counters["trainer_own_us"] = us - reference;  // the target (decoded cache): at most 5
}

void BM_TrainerOnNullBackend_DecodedCache(benchmark::State& state) { trainer_run(state, "decoded"); }
void BM_TrainerOnNullBackend_Streaming(benchmark::State& state) { trainer_run(state, "files"); }
BENCHMARK(BM_TrainerOnNullBackend_DecodedCache)->UseManualTime()->Iterations(3)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TrainerOnNullBackend_Streaming)->UseManualTime()->Iterations(3)->Unit(benchmark::kMicrosecond);

// The host side of the CUDA backend's waits (engine/cuda/poll_wait.h), without a GPU: another thread sets a flag
// arg 1 microseconds after the wait starts, and the wait polls it. `late_us` is how long after the flag the wait
// returned: mode 1 yields for the first millisecond, then naps 100 us (the backend's policy); mode 0 naps from the
// start (what it did before). bench_gpu's BM_HostWait measures the same against cudaEventSynchronize on a device.
void BM_PollWaitLateness(benchmark::State& state) {
  using Clock = std::chrono::steady_clock;
  stoke::cuda::PollPolicy p;
  if (state.range(0) == 0) p.spin = std::chrono::microseconds(0);
  const auto delay = std::chrono::microseconds(state.range(1));
  double late = 0;
  for (auto _ : state) {
    std::atomic<bool> flag{false};
    std::atomic<int64_t> set_at{0};
    const Clock::time_point t0 = Clock::now();
    std::thread setter([&] {
      while (Clock::now() - t0 < delay) {
      }
      set_at = Clock::now().time_since_epoch().count();
      flag = true;
    });
    stoke::cuda::poll_until([&] { return flag.load(); }, [] {}, p);
    const int64_t woke = Clock::now().time_since_epoch().count();
    setter.join();
    late += std::chrono::duration<double>(Clock::duration(woke - set_at.load())).count();
  }
  state.counters["late_us"] = late / static_cast<double>(state.iterations()) * 1e6;
  state.SetLabel(state.range(0) == 0 ? "naps only (before)" : "spin 1 ms, then naps");
}
BENCHMARK(BM_PollWaitLateness)
    ->ArgsProduct({{0, 1}, {50, 300, 3000}})
    ->ArgNames({"spin", "us"})
    ->Unit(benchmark::kMicrosecond);

// What a frozen backbone saves (--freeze backbone): one ResNet-18 CPU training step at 32x32x3, batch 16, with the
// backbone frozen (no weight gradients, backward ends at the classifier) against the full step measured in the same
// run; `of_full` is the ratio (docs/FINE-TUNING.md: 0.32 on the 2-core development VM).
void BM_FrozenBackboneStep(benchmark::State& state) {
  const Graph g = build_model("resnet18", {32, 32, 3}, 10);
  const int n = 16;
  std::vector<uint8_t> px(static_cast<size_t>(n) * 32 * 32 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 131 + 7) % 251);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % 10;
  auto backend = [&](Freeze freeze) {
    BackendOptions o;
    o.max_batch = n;
    o.mean = {0.5f, 0.5f, 0.5f};
    o.stdev = {0.25f, 0.25f, 0.25f};
    const FineTunePlan plan = fine_tune_plan(g, freeze, false, 1.f);
    o.lr_mult = plan.lr_mult;
    o.bn_eval = plan.bn_eval;
    std::unique_ptr<TrainingBackend> b = make_cpu_backend(g, o);
    std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
    g.initialize(params.data(), buffers.data(), 1);
    b->set_state(params, buffers, std::vector<float>(params.size(), 0.f), 0);
    return b;
  };
  auto step_seconds = [&](TrainingBackend& b) {
    const auto t0 = std::chrono::steady_clock::now();
    b.train_step(n, px.data(), labels.data(), nullptr, 0.01f);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  std::unique_ptr<TrainingBackend> full = backend(Freeze::none), frozen = backend(Freeze::backbone);
  step_seconds(*full);  // warm-up: first-touch of the arenas
  step_seconds(*frozen);
  double full_s = 0, frozen_s = 0;
  for (auto _ : state) {
    full_s += step_seconds(*full);
    const double f = step_seconds(*frozen);
    frozen_s += f;
    state.SetIterationTime(f);
  }
  state.counters["full_ms"] = 1e3 * full_s / static_cast<double>(state.iterations());
  state.counters["frozen_ms"] = 1e3 * frozen_s / static_cast<double>(state.iterations());
  state.counters["of_full"] = frozen_s / full_s;
}
BENCHMARK(BM_FrozenBackboneStep)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

// --bn-recalibrate's cost (engine/bn_recalibrate.h) with --ema: ResNet-18 at 32x32x3, batch 16, 4 batches, against the
// skipped steps it is made of (8: one under the weights and one under the EMA per batch) timed in the same run;
// `of_steps` is the ratio, what moving the state around adds to the forward passes.
void BM_BnRecalibrate(benchmark::State& state) {
  const Graph g = build_model("resnet18", {32, 32, 3}, 10);
  const int n = 16, batches = 4;
  std::vector<uint8_t> px(static_cast<size_t>(n) * 32 * 32 * 3);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 131 + 7) % 251);
  std::vector<int32_t> labels(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) labels[static_cast<size_t>(i)] = i % 10;
  BackendOptions o;
  o.max_batch = n;
  o.mean = {0.5f, 0.5f, 0.5f};
  o.stdev = {0.25f, 0.25f, 0.25f};
  o.ema_decay = 0.999f;
  std::unique_ptr<TrainingBackend> b = make_cpu_backend(g, o);
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 1);
  b->set_state(params, buffers, std::vector<float>(params.size(), 0.f), 0);
  auto next = [&](int k) {
    StepRequest r;
    r.batch.tag = k;
    r.batch.size = n;
    r.batch.pixels = px.data();
    r.batch.labels = labels.data();
    r.skip = true;
    return r;
  };
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  auto skipped_steps = [&] {
    const auto t0 = Clock::now();
    for (int k = 0; k < 2 * batches; ++k) b->train_step(next(k));
    return since(t0);
  };
  skipped_steps();  // warm-up: first-touch of the arena
  double steps_s = 0, recal_s = 0;
  for (auto _ : state) {
    steps_s += skipped_steps();
    const auto t0 = Clock::now();
    recalibrate_batchnorm(
        *b, g, batches, next, [](int64_t) {}, true);
    const double r = since(t0);
    recal_s += r;
    state.SetIterationTime(r);
  }
  state.counters["recal_ms"] = 1e3 * recal_s / static_cast<double>(state.iterations());
  state.counters["steps_ms"] = 1e3 * steps_s / static_cast<double>(state.iterations());
  state.counters["of_steps"] = recal_s / steps_s;
}
BENCHMARK(BM_BnRecalibrate)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
