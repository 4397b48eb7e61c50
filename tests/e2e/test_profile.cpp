// Nsight support: NVTX ranges for the trainer's phases, eval, checkpoints and every decoder's stages, and the
// --profile-steps window. A stand-in NVTX tool (nvtx_recorder.cpp, loaded through NVTX_INJECTION64_PATH exactly
// as nsys loads its own) writes down every range, so the test sees what a profiler would.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/trace.h"
#include "tests/test_util.h"

using namespace stoke::test;

namespace {

struct Event {
  long tid = 0;
  std::string what;  // push | pop | thread
  std::string name;
};

std::vector<Event> read_log(const std::string& path) {
  std::vector<Event> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    Event e;
    ls >> e.tid >> e.what;
    std::getline(ls >> std::ws, e.name);
    out.push_back(e);
  }
  return out;
}

}  // namespace

TEST(Profile, FlagErrorsAreUserErrors) {
  TempDir tmp("profile-flags");
  write_tiny_folder(tmp.path() / "d", {"a", "b"}, 8);
  const std::string base =
      "train --data " + tmp.str() + "/d --epochs 1 --batch-size 4 --device cpu --quiet --out " + tmp.str();
  for (const char* bad : {"0:3", "5:2", "abc", "3:", ":4", "2:x"}) {
    RunResult r = run_stoke(base + "/r --profile-steps " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--profile-steps"), std::string::npos) << r.output;
  }
  RunResult late = run_stoke(base + "/r2 --profile-steps 100:200");  // 4 steps in all
  EXPECT_EQ(late.exit_code, 2) << late.output;
  EXPECT_NE(late.output.find("after the run's last step (4 steps"), std::string::npos) << late.output;
}

TEST(Profile, RangesAndTheProfileWindowReachAnNvtxTool) {
#ifndef STOKE_NVTX_RECORDER
  GTEST_SKIP() << "this build has no NVTX (the CUDA Toolkit's nvtx3 headers were not found at configure time)";
#else
  static_assert(stoke::trace_enabled());
  TempDir tmp("profile-ranges");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 16);
  write_tiny_folder(tmp.path() / "val", {"a", "b"}, 4);
  const std::string log = tmp.str() + "/nvtx.log";
  RunResult r = run_stoke("train --data " + tmp.str() + "/train --val " + tmp.str() +
                          "/val --epochs 2 --batch-size 8 --device cpu --decoders 2 --profile-steps 2:3 --out " +
                          tmp.str() + "/run");
  // Without the tool: the window is announced, nothing else changes.
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("profile window: steps 2-3 in the NVTX range 'profiled steps'"), std::string::npos)
      << r.output;

  // With the tool, as under nsys.
  const std::string traced =
      "env NVTX_INJECTION64_PATH=" + std::string(STOKE_NVTX_RECORDER) + " STOKE_NVTX_LOG=" + log + " " + binary_dir() +
      "/bin/stoke train --data " + tmp.str() + "/train --val " + tmp.str() +
      "/val --epochs 2 --batch-size 8 --device cpu --decoders 2 --profile-steps 2:3 --quiet --out " + tmp.str() +
      "/run-traced > " + tmp.str() + "/traced.out 2>&1";
  ASSERT_EQ(std::system(traced.c_str()), 0) << traced;

  const std::vector<Event> events = read_log(log);
  ASSERT_FALSE(events.empty()) << "the NVTX tool was not loaded (" << log << ")";
  std::map<long, int> depth;
  std::map<std::string, int> pushes;
  std::map<long, std::string> thread_names;
  long main_tid = 0;
  int train_steps_in_window = -1, windows = 0;
  std::map<long, std::vector<std::string>> stack;
  for (const Event& e : events) {
    if (e.what == "thread") {
      thread_names[e.tid] = e.name;
    } else if (e.what == "push") {
      ++pushes[e.name];
      stack[e.tid].push_back(e.name);
      if (e.name == "profiled steps") {
        ++windows;
        main_tid = e.tid;
        train_steps_in_window = 0;
      }
      if (e.name == "train step" && e.tid == main_tid && !stack[e.tid].empty() &&
          std::find(stack[e.tid].begin(), stack[e.tid].end(), "profiled steps") != stack[e.tid].end())
        ++train_steps_in_window;
    } else if (e.what == "pop") {
      ASSERT_FALSE(stack[e.tid].empty()) << "a pop without a push on thread " << e.tid;
      stack[e.tid].pop_back();
    }
  }
  for (const auto& [tid, s] : stack)
    EXPECT_TRUE(s.empty()) << "thread " << tid << " left " << s.size() << " ranges open";

  // 16 images per class, batch 8: 4 steps an epoch, 2 epochs.
  EXPECT_EQ(pushes["train step"], 8);
  EXPECT_EQ(pushes["wait for batch"], 8);
  EXPECT_EQ(pushes["eval"], 2);
  EXPECT_GE(pushes["checkpoint"], 2);
  EXPECT_EQ(windows, 1);
  EXPECT_EQ(train_steps_in_window, 2) << "steps 2 and 3";
  EXPECT_GE(pushes["decode"], 2 * 32) << "every training image is decoded in a 'decode' range";
  EXPECT_GE(pushes["read"], 2 * 32);
  std::set<std::string> names;
  for (const auto& [tid, n] : thread_names) names.insert(n);
  EXPECT_TRUE(names.count("stoke decoder 0") && names.count("stoke decoder 1")) << "decoder threads are named";
#endif
}

// --trace: stoke's own timeline as Chrome-trace JSON. The CPU backend's steps run on their compute thread while
// the decoders decode the next batches: the timeline must show that overlap, and every range it names.
// Large photos resized to 32 px keep the decoders busy for the whole window: with fast decodes and idle
// decoders, whether a decoder got a core during a short step was the scheduler's choice on a loaded machine.
TEST(Profile, TraceShowsDecodingOverlappingCompute) {
  TempDir tmp("profile-trace");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 48, 480, 480);
  const std::string trace = tmp.str() + "/trace.json";
  RunResult r = run_stoke("train --data " + tmp.str() + "/train --epochs 1 --batch-size 8 --device cpu --decoders 2 "
                          "--threads 1 --image-size 32 --trace " + trace + " --trace-steps 2:7 --out " + tmp.str() +
                          "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("timeline: " + trace), std::string::npos) << r.output;
  const std::vector<uint8_t> bytes = stoke::read_file(trace);
  const nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end());
  std::map<long, std::string> thread_name;
  struct Span {
    double t0, t1;
  };
  std::map<std::string, std::vector<Span>> by_name;
  std::map<std::string, std::set<std::string>> threads_of;
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") == "M") thread_name[e.at("tid").get<long>()] = e.at("args").at("name").get<std::string>();
  }
  for (const auto& e : j.at("traceEvents")) {
    if (e.at("ph") != "X") continue;
    const std::string name = e.at("name");
    const double ts = e.at("ts"), dur = e.at("dur");
    EXPECT_GE(dur, 0.0) << name;
    by_name[name].push_back({ts, ts + dur});
    threads_of[name].insert(thread_name[e.at("tid").get<long>()]);
  }
  // Steps 2..7 were submitted inside the window (step 1 before it, step 8 after).
  EXPECT_EQ(by_name["train step"].size(), 6u);
  EXPECT_GE(by_name["train step compute"].size(), 5u);
  EXPECT_TRUE(threads_of["train step compute"].count("stoke compute"));
  EXPECT_TRUE(threads_of["copy batch"].count("stoke copy"));
  EXPECT_FALSE(by_name["decode"].empty());
  for (const std::string& t : threads_of["decode"]) EXPECT_EQ(t.rfind("stoke decoder", 0), 0u) << t;
  // Overlap: some decode range runs while a step computes.
  int overlapping = 0;
  for (const Span& d : by_name["decode"])
    for (const Span& c : by_name["train step compute"])
      if (d.t0 < c.t1 && c.t0 < d.t1) ++overlapping;
  EXPECT_GT(overlapping, 0) << "no decode range overlaps a compute range";
}
