// stoke-zoo: the model zoo at a glance — parameters, MACs and stems at the usual input sizes, the activation
// memory plans (train / eval / naive) per batch, and with --time a rough CPU training step time per model.
//
//   stoke-zoo [--batches 128,300] [--time] [--time-size 64] [--time-batch 8] [--threads N]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "engine/cpu/executor.h"
#include "base/error.h"
#include "engine/memory_plan.h"
#include "engine/optimizer.h"
#include "base/rng.h"
#include "base/parallel.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"

using namespace stoke;

namespace {

struct Usual {
  const char* model;
  Shape3 in;
  int classes;
  const char* what;
};

const Usual kUsual[] = {
    {"small-cnn", {28, 28, 1}, 10, "MNIST"},          {"small-cnn-wide", {28, 28, 1}, 10, "MNIST"},
    {"resnet18", {64, 64, 1}, 6, "MedNIST"},          {"resnet18", {224, 224, 3}, 1000, "ImageNet"},
    {"resnet34", {64, 64, 1}, 6, "MedNIST"},          {"resnet34", {224, 224, 3}, 1000, "ImageNet"},
    {"resnet50", {64, 64, 1}, 6, "MedNIST"},          {"resnet50", {224, 224, 3}, 1000, "ImageNet"},
    {"densenet121", {64, 64, 1}, 6, "MedNIST"},       {"densenet121", {224, 224, 3}, 1000, "ImageNet"},
};

double mb(int64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

void time_steps(int size, int batch) {
  std::printf("\nCPU training step (forward + backward + AdamW), %dx%dx1, batch %d, 6 classes, %d threads:\n", size,
              size, batch, ThreadPool::threads());
  for (const std::string& name : model_names()) {
    Graph g = build_model(name, {size, size, 1}, 6);
    std::vector<float> params(static_cast<size_t>(g.num_params())), grads(params.size()),
        buffers(static_cast<size_t>(g.num_buffers()));
    g.initialize(params.data(), buffers.data(), 1);
    std::vector<float> x(static_cast<size_t>(batch * g.input_shape().size()));
    for (size_t i = 0; i < x.size(); ++i) x[i] = normal01(3, i);
    std::vector<int32_t> labels(static_cast<size_t>(batch));
    for (int i = 0; i < batch; ++i) labels[static_cast<size_t>(i)] = i % 6;
    OptimizerConfig oc;
    oc.kind = OptimizerKind::adamw;
    Optimizer opt(oc, g.params(), g.num_params());
    CpuExecutor ex(g, batch);
    std::vector<float> dl(static_cast<size_t>(batch * 6));
    auto step = [&] {
      const float* logits = ex.forward(batch, x.data(), params.data(), buffers.data(), true);
      cpu::softmax_cross_entropy(batch, 6, logits, labels.data(), 0.f, 1.f, nullptr, dl.data(), nullptr);
      std::fill(grads.begin(), grads.end(), 0.f);
      ex.backward(params.data(), grads.data(), dl.data());
      opt.step(params.data(), grads.data(), 1e-3f);
    };
    step();  // warm-up: per-thread scratch grows once
    const int reps = 3;
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) step();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    std::printf("  %-15s %8.3f s/step  %7.1f img/s  (%.0f MMAC/img forward)\n", name.c_str(), s, batch / s,
                static_cast<double>(g.forward_macs()) / 1e6);
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {128, 300};
  bool timing = false;
  int time_size = 64, time_batch = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "stoke-zoo: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--time") {
      timing = true;
    } else if (a == "--time-size") {
      time_size = std::atoi(next());
    } else if (a == "--time-batch") {
      time_batch = std::atoi(next());
    } else if (a == "--threads") {
      ThreadPool::set_threads(std::atoi(next()));
    } else if (a == "--batches") {
      batches.clear();
      for (const char* p = next(); *p;) {
        batches.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    } else {
      std::fprintf(stderr,
                   "usage: stoke-zoo [--batches 128,300] [--time] [--time-size 64] [--time-batch 8] [--threads N]\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  try {
    std::printf("%-15s %-13s %12s %10s  %s\n", "model", "input", "params", "MMAC/img", "built as");
    for (const Usual& u : kUsual) {
      Graph g = build_model(u.model, u.in, u.classes);
      const std::string in = str(u.in.h, "x", u.in.w, "x", u.in.c, "/", u.classes);
      std::printf("%-15s %-13s %12lld %10.1f  %s\n", u.model, in.c_str(), static_cast<long long>(g.num_params()),
                  static_cast<double>(g.forward_macs()) / 1e6, g.description().empty() ? "-" : g.description().c_str());
    }
    std::printf("\nactivation memory per batch, MB (fp32; train = activations + their gradients + saved state):\n");
    std::printf("%-15s %-9s %6s %10s %10s %10s %10s %10s %10s\n", "model", "input", "batch", "train", "train-bf16",
                "naive-trn", "eval", "naive-eval", "densecat");
    for (const Usual& u : kUsual) {
      Graph g = build_model(u.model, u.in, u.classes);
      for (int b : batches) {
        MemoryPlanOptions tr, tr16, ev, dense;
        tr16.element_bytes = 2;
        ev.mode = PlanMode::eval;
        dense.share_concat = false;
        MemoryPlan pt = plan_memory(g, b, tr), p16 = plan_memory(g, b, tr16), pe = plan_memory(g, b, ev);
        char densecat[32] = "-";
        if (std::string(u.model) == "densenet121")
          std::snprintf(densecat, sizeof densecat, "%.1f", mb(plan_memory(g, b, dense).arena_bytes));
        const std::string in = str(u.in.h, "x", u.in.w, "x", u.in.c);
        std::printf("%-15s %-9s %6d %10.1f %10.1f %10.1f %10.1f %10.1f %10s\n", u.model, in.c_str(), b,
                    mb(pt.arena_bytes), mb(p16.arena_bytes), mb(pt.naive_bytes), mb(pe.arena_bytes), mb(pe.naive_bytes),
                    densecat);
      }
    }
    std::printf("(densecat: the train plan without zero-copy concat. naive: every tensor its own buffer.)\n");
    if (timing) time_steps(time_size, time_batch);
  } catch (const Error& e) {
    std::fprintf(stderr, "stoke-zoo: %s\n", e.what());
    return 1;
  }
  return 0;
}
