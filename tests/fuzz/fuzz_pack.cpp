// libFuzzer target: the packed-file reader (header, metadata, index validation, then every sample read).
// The bytes are written to a scratch file because the reader maps a file.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "io/source/pack.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("stoke-fuzz-" + std::to_string(::getpid()) + ".pack")).string();
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  try {
    auto pack = stoke::io::PackReader::open(path, /*verify_checksums=*/(size & 1) != 0);
    std::vector<uint8_t> scratch;
    std::span<const uint8_t> bytes;
    std::string err;
    size_t sum = 0;
    for (int64_t i = 0; i < pack->size(); ++i) {
      pack->read(i, scratch, bytes, &err);
      for (size_t k = 0; k < bytes.size(); k += 61) sum += bytes[k];  // every view must lie inside the mapping
      sum += static_cast<size_t>(pack->label(i)) + pack->name(i).size();
    }
    return static_cast<int>(sum & 0);
  } catch (const stoke::Error&) {
    return 0;
  }
}
