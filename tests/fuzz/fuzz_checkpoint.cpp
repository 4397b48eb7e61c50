// libFuzzer target: the checkpoint loader. The input is split at the first two 0xFF 0x00 0xFF markers into
// state.json, model.safetensors and optimizer.safetensors, written to a scratch folder, and loaded against
// a small model. Whatever the bytes, the loader must either load or throw stoke::Error / UserError.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "base/error.h"
#include "engine/graph.h"

namespace {
const stoke::Graph& graph() {
  static stoke::Graph g = [] {
    stoke::Graph m({6, 6, 1}, "fuzz");
    int x = m.conv(m.input(), 2, 3, 1, 1, false, "c");
    x = m.batchnorm(x, "bn");
    m.linear(x, 3, "fc");
    return m;
  }();
  return g;
}
std::string scratch() {
  static std::string dir = [] {
    std::string d =
        (std::filesystem::temp_directory_path() / ("stoke-fuzz-ckpt-" + std::to_string(::getpid()))).string();
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}
void put(const std::string& path, const uint8_t* p, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<size_t> cuts;
  for (size_t i = 0; i + 2 < size && cuts.size() < 2; ++i)
    if (data[i] == 0xFF && data[i + 1] == 0x00 && data[i + 2] == 0xFF) {
      cuts.push_back(i);
      i += 2;
    }
  if (cuts.size() < 2) return 0;
  const std::string d = scratch();
  put(d + "/state.json", data, cuts[0]);
  put(d + "/model.safetensors", data + cuts[0] + 3, cuts[1] - cuts[0] - 3);
  put(d + "/optimizer.safetensors", data + cuts[1] + 3, size - cuts[1] - 3);
  try {
    stoke::load_checkpoint(d, graph(), (size & 1) ? "sgd" : "adamw");
  } catch (const stoke::Error&) {
  }
  return 0;
}
