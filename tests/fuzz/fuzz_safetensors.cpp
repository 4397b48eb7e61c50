// libFuzzer target: the safetensors parser (checkpoint weights and optimizer state are read with it).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto f = stoke::safetensors::File::parse(std::vector<uint8_t>(data, data + size), "fuzz");
    // Touch every tensor's bytes: a validated entry must lie inside the buffer (ASan checks).
    size_t sum = 0;
    for (const auto& [name, e] : f.entries()) {
      const uint8_t* p = f.data(e);
      for (size_t i = 0; i < e.end - e.begin; i += 97) sum += p[i];
    }
    return static_cast<int>(sum & 0);
  } catch (const stoke::Error&) {
    return 0;
  }
}
