// `stoke plan` as users meet it: the numbers it prints are the library's (engine/batch_size.h), byte for byte,
// for the CUDA executor's arena (no GPU needed) and the CPU executor's plan, and --memory names the batch
// `--batch-size auto` picks.
#include <gtest/gtest.h>

#include <string>

#include "base/error.h"
#include "engine/batch_size.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using namespace stoke::test;

namespace {

// The bytes column of a line "  <what>   x MiB   N B".
int64_t bytes_of(const std::string& out, const std::string& what) {
  const size_t at = out.find("  " + what + " ");
  if (at == std::string::npos) return -1;
  const size_t b = out.find(" B", out.find("MiB", at) + 3);
  const size_t start = out.find_last_of(' ', out.find_last_not_of(' ', b - 1)) + 1;
  return std::stoll(out.substr(start, b - start));
}

}  // namespace

TEST(Plan, PrintsTheLibrarysNumbersForBothBackends) {
  const Graph g = build_model("resnet18", {64, 64, 3}, 10);
  for (const char* device : {"cuda", "cpu"}) {
    RunResult r =
        run_stoke(str("plan --model resnet18 --input 64x64x3 --classes 10 --batch-size 40 --precision bf16 "
                      "--device ",
                      device, " --memory 2GiB"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    MemoryTarget t;
    t.cuda = std::string(device) == "cuda";
    t.element_bytes = t.cuda ? 2 : 4;
    const TrainingMemory m = training_memory(g, 40, t);
    for (const MemoryLine& l : m.lines) EXPECT_EQ(bytes_of(r.output, l.what), l.bytes) << device << " " << l.what;
    EXPECT_EQ(bytes_of(r.output, "total"), m.total) << device << "\n" << r.output;
    EXPECT_EQ(bytes_of(r.output, "activations"), m.activations) << device;
    std::string what;
    const int64_t budget = t.cuda ? device_memory_budget(int64_t{2} << 30, what) : (int64_t{2} << 30) / 2;
    const BatchChoice c = choose_batch_size(g, t, budget, "", t.cuda ? 4096 : 256, "");
    EXPECT_NE(r.output.find(str("--batch-size auto picks ", c.batch, ":")), std::string::npos) << r.output;
    EXPECT_GT(c.batch, 8) << device;
    EXPECT_EQ(r.output.find("cuDNN's workspace") != std::string::npos, t.cuda) << r.output;
  }
}

TEST(Plan, RefusesABadInput) {
  RunResult r = run_stoke("plan --input 64x64");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--input must be HxWxC"), std::string::npos) << r.output;
}
