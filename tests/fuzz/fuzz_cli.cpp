// libFuzzer target: the command-line parser and flag validation (parse only, nothing runs). Arguments
// are the input split at newlines.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "apps/cli.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args = {"stoke"};
  std::string cur;
  for (size_t i = 0; i < size && args.size() < 64; ++i) {
    if (data[i] == '\n') {
      args.push_back(cur);
      cur.clear();
    } else if (data[i] != 0) {
      cur.push_back(static_cast<char>(data[i]));
    }
  }
  if (!cur.empty()) args.push_back(cur);
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);
  stoke::run_cli(static_cast<int>(args.size()), argv.data(), /*dry_run=*/true);
  return 0;
}
