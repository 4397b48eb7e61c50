// `stoke plan`: the memory a training step takes on a backend, printed without running it (and without a GPU):
// the CUDA executor's own arena layout or the CPU executor's plan (engine/batch_size.h, training_memory), and with
// --memory the batch `--batch-size auto` would pick on a device of that size.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace stoke {

struct PlanArgs {
  std::string model = "resnet50";
  std::string input = "224x224x3";
  int classes = 1000;
  int batch = 256;
  std::string precision = "bf16";
  std::string device = "cuda";
  std::string optimizer = "sgd";
  std::string memory;  // e.g. 8GiB; empty: no batch search
};

void add_plan(CLI::App& app, PlanArgs& args);
int run_plan(const PlanArgs& args);

// "8GiB", "512MiB", "80GB", "1.5G", "1000000" (bytes) -> bytes; -1 when it is none of these.
int64_t parse_memory_size(const std::string& text);

}  // namespace stoke
