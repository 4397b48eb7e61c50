#include "apps/plan.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "base/error.h"
#include "base/format.h"
#include "engine/batch_size.h"
#include "models/models.h"

namespace stoke {

int64_t parse_memory_size(const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end == text.c_str() || !(v > 0) || !std::isfinite(v)) return -1;
  const std::string unit(end);
  static const struct {
    const char* name;
    double scale;
  } kUnits[] = {{"", 1},
                {"B", 1},
                {"K", 1024.0},
                {"KiB", 1024.0},
                {"KB", 1e3},
                {"M", 1048576.0},
                {"MiB", 1048576.0},
                {"MB", 1e6},
                {"G", 1073741824.0},
                {"GiB", 1073741824.0},
                {"GB", 1e9},
                {"T", 1099511627776.0},
                {"TiB", 1099511627776.0},
                {"TB", 1e12}};
  for (const auto& u : kUnits)
    if (unit == u.name) {
      const double b = v * u.scale;
      return b < 1 || b > 9.0e18 ? -1 : static_cast<int64_t>(b);
    }
  return -1;
}

void add_plan(CLI::App& app, PlanArgs& a) {
  auto* p = app.add_subcommand("plan",
                               "Print the memory a training step takes (parameters, gradients, optimizer state, "
                               "activations, workspaces) on a backend, without one; --memory: the batch "
                               "--batch-size auto picks on a device of that size");
  p->add_option("--model", a.model, "Model (as for train)")->capture_default_str();
  p->add_option("--input", a.input, "Input HxWxC, e.g. 64x64x1")->capture_default_str();
  p->add_option("--classes", a.classes, "Classes")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  p->add_option("--batch-size", a.batch, "Batch size")->capture_default_str()->check(CLI::Range(1, 1 << 24));
  p->add_option("--precision", a.precision, "CUDA storage: bf16 | fp16 | fp32")
      ->capture_default_str()
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  p->add_option("--device", a.device, "cpu | cuda")->capture_default_str()->check(CLI::IsMember({"cpu", "cuda"}));
  p->add_option("--optimizer", a.optimizer, "sgd (momentum) | adamw")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adamw"}));
  p->add_option("--memory", a.memory, "Device memory (free), e.g. 8GiB: also print the batch --batch-size auto picks")
      ->check(CLI::Validator(
          [](std::string& v) { return parse_memory_size(v) > 0 ? std::string() : "not a size like 8GiB: '" + v + "'"; },
          "SIZE"));
}

namespace {

Shape3 parse_input(const std::string& s) {
  int h = 0, w = 0, c = 0;
  char tail = 0;
  if (std::sscanf(s.c_str(), "%dx%dx%d%c", &h, &w, &c, &tail) != 3 || h < 1 || w < 1 || c < 1 || h > 16384 ||
      w > 16384 || c > 64)
    throw UserError(str("--input must be HxWxC (e.g. 64x64x1), got '", s, "'"));
  return {h, w, c};
}

void print_line(const char* what, int64_t bytes, const std::string& extra = "") {
  std::printf("  %-16s %12.1f MiB %16lld B%s\n", what, static_cast<double>(bytes) / 1048576.0,
              static_cast<long long>(bytes), extra.c_str());
}

}  // namespace

int run_plan(const PlanArgs& a) {
  const Shape3 in = parse_input(a.input);
  const Graph g = build_model(a.model, in, a.classes);
  MemoryTarget t;
  t.cuda = a.device == "cuda";
  t.element_bytes = t.cuda && a.precision != "fp32" ? 2 : 4;
  t.optimizer.kind = a.optimizer == "adamw" ? OptimizerKind::adamw : OptimizerKind::sgd;
  const TrainingMemory m = training_memory(g, a.batch, t);
  std::printf("stoke plan: %s, input %dx%dx%d, %d classes, batch %d, %s, the %s executor's %s\n", a.model.c_str(), in.h,
              in.w, in.c, a.classes, a.batch, t.cuda ? a.precision.c_str() : "fp32", t.cuda ? "CUDA" : "CPU",
              t.cuda ? "arena" : "memory");
  for (const MemoryLine& l : m.lines) {
    std::string extra;
    if (l.what == "activations")
      extra = str("  (peak live ", format_bytes(static_cast<size_t>(m.activations_peak_live)),
                  "; a buffer per tensor: ", format_bytes(static_cast<size_t>(m.per_node_activations)), ")");
    print_line(l.what.c_str(), l.bytes, extra);
  }
  print_line("total", m.total);
  if (!m.note.empty()) std::printf("note: %s\n", m.note.c_str());
  if (!a.memory.empty()) {
    const int64_t mem = parse_memory_size(a.memory);
    std::string what;
    int64_t budget = 0;
    if (t.cuda) {
      budget = device_memory_budget(mem, what);
    } else {
      budget = mem / 2;
      what = str("half the available memory, ", mem >> 20, " MiB");
    }
    const int64_t cap = t.cuda ? 4096 : 256;
    const BatchChoice c =
        choose_batch_size(g, t, budget, what, cap, t.cuda ? "4096 at most" : "256 at most on the CPU backend");
    std::printf("--memory %s: --batch-size auto picks %d: %s\n", a.memory.c_str(), c.batch, c.why.c_str());
  }
  return 0;
}

}  // namespace stoke
