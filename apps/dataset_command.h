// `stoke dataset mnist | synthetic`: writes a data set as a JPEG ImageFolder tree.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace stoke {

struct DatasetArgs {
  std::string out = "data/mnist";
  std::string cache;
  int quality = 95;
  std::string kind = "mednist-like";
  int64_t count = 0;  // 0: the kind's default
  int classes = 0;    // 0: the kind's default
  uint64_t seed = 0;
  bool split = true;
  std::string pose = "varied";  // mednist-like: varied | upright
};

void add_dataset(CLI::App& app, DatasetArgs& d);
int run_dataset_synthetic(const DatasetArgs& d);
int run_dataset_mnist(const DatasetArgs& d);

}  // namespace stoke
