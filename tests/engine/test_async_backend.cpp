// The asynchronous step protocol (engine/step_queue.h, which the CPU backend runs on): batches handed over are
// released only once their copy has completed, results come back in order, and drain loses nothing. These tests
// fail when the mechanism they guard is removed: releasing a batch when its copy is issued rather than completed
// lets the test overwrite the batch before the (deliberately slow) copy reads it, and the compute side then sees
// the overwritten bytes.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <chrono>
#include <cstring>
#include <map>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/error.h"
#include "engine/backend.h"
#include "engine/step_queue.h"
#include "engine/trainer.h"
#include "io/pipeline/host_memory.h"
#include "tests/test_util.h"

namespace stoke {
namespace {

constexpr int kBatch = 4;
constexpr int64_t kPixels = kBatch * 8;  // 8 bytes a sample

// The pattern batch `tag` carries: every byte a function of (tag, position).
uint8_t pattern(int64_t tag, size_t i) {
  return static_cast<uint8_t>((tag * 131 + static_cast<int64_t>(i) * 7) & 0xff);
}

struct HostBatch {
  std::vector<uint8_t> pixels = std::vector<uint8_t>(kPixels);
  std::vector<int32_t> labels = std::vector<int32_t>(kBatch);
  int64_t tag = -1;
  void fill(int64_t t) {
    tag = t;
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = pattern(t, i);
    for (int i = 0; i < kBatch; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(t * 10 + i);
  }
  void poison() {
    std::memset(pixels.data(), 0xEE, pixels.size());
    std::fill(labels.begin(), labels.end(), -1);
  }
};

// A compute step that checks it sees exactly what was submitted, and reports the check as `correct`.
StepResult checking_compute(const StepRequest& s, std::chrono::microseconds delay) {
  std::this_thread::sleep_for(delay);
  bool intact = true;
  for (size_t i = 0; i < static_cast<size_t>(kPixels); ++i)
    intact = intact && s.batch.pixels[i] == pattern(s.batch.tag, i);
  for (int i = 0; i < s.batch.size; ++i)
    intact = intact && s.batch.labels[i] == static_cast<int32_t>(s.batch.tag * 10 + i);
  StepResult r;
  r.tag = s.batch.tag;
  r.loss = static_cast<float>(s.batch.tag);
  r.correct = intact ? 1 : 0;
  r.applied = !s.skip;
  return r;
}

// Drives `steps` steps through a queue the way the trainer does: a ring of `ring` host batches, a batch refilled
// only once released, and every released batch poisoned at once (as a decoder would overwrite its slot).
void run_like_the_trainer(StepQueue& q, int steps, int ring, std::vector<StepResult>& results) {
  std::vector<HostBatch> host(static_cast<size_t>(ring));
  std::map<int64_t, size_t> in_use;  // tag -> host batch
  std::vector<size_t> free_batches;
  for (size_t i = 0; i < host.size(); ++i) free_batches.push_back(i);
  std::vector<int64_t> released;
  auto take = [&](bool wait) {
    released.clear();
    q.collect(released, results, wait);
    for (int64_t tag : released) {
      const size_t b = in_use.at(tag);
      in_use.erase(tag);
      host[b].poison();
      free_batches.push_back(b);
    }
  };
  for (int64_t t = 0; t < steps; ++t) {
    while (free_batches.empty()) take(true);
    const size_t b = free_batches.back();
    free_batches.pop_back();
    host[b].fill(t);
    in_use[t] = b;
    StepRequest r;
    r.batch.tag = t;
    r.batch.size = kBatch;
    r.batch.pixels = host[b].pixels.data();
    r.batch.labels = host[b].labels.data();
    r.lr = 0.1f;
    r.skip = t % 5 == 3;
    q.submit(r);
    take(false);
  }
  q.drain();
  take(false);
  EXPECT_TRUE(in_use.empty()) << "every batch was released after drain()";
}

TEST(AsyncStep, ABatchIsReleasedOnlyAfterItsCopyCompleted) {
  // A slow copy: if the release came before the copy, the poisoning above would reach the staged bytes.
  StepQueue q(
      kBatch, kPixels, 2, [](const StepRequest& s) { return checking_compute(s, std::chrono::microseconds(200)); },
      [](int64_t) { std::this_thread::sleep_for(std::chrono::milliseconds(2)); });
  std::vector<StepResult> results;
  run_like_the_trainer(q, 40, 3, results);
  ASSERT_EQ(results.size(), 40u);
  for (const StepResult& r : results) EXPECT_EQ(r.correct, 1) << "step " << r.tag << " computed on overwritten bytes";
}

TEST(AsyncStep, ResultsArriveInSubmissionOrderWhateverTheDelays) {
  std::atomic<int> calls{0};
  StepQueue q(
      kBatch, kPixels, 3,
      [&](const StepRequest& s) {
        return checking_compute(s, std::chrono::microseconds((calls++ % 3) * 700));  // uneven compute
      },
      [](int64_t tag) { std::this_thread::sleep_for(std::chrono::microseconds((tag % 4) * 500)); });
  std::vector<StepResult> results;
  run_like_the_trainer(q, 60, 4, results);
  ASSERT_EQ(results.size(), 60u);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].tag, static_cast<int64_t>(i));
    EXPECT_EQ(results[i].loss, static_cast<float>(i));
    EXPECT_EQ(results[i].applied, i % 5 != 3) << "the skip flag travels with its step";
    EXPECT_EQ(results[i].correct, 1);
  }
}

TEST(AsyncStep, DrainLeavesNothingInFlight) {
  StepQueue q(kBatch, kPixels, 2,
              [](const StepRequest& s) { return checking_compute(s, std::chrono::milliseconds(3)); });
  HostBatch a, b;
  a.fill(0);
  b.fill(1);
  StepRequest r;
  r.batch.size = kBatch;
  r.batch.tag = 0;
  r.batch.pixels = a.pixels.data();
  r.batch.labels = a.labels.data();
  q.submit(r);
  r.batch.tag = 1;
  r.batch.pixels = b.pixels.data();
  r.batch.labels = b.labels.data();
  q.submit(r);
  q.drain();
  EXPECT_EQ(q.in_flight(), 0);
  std::vector<int64_t> released;
  std::vector<StepResult> results;
  q.collect(released, results, false);
  EXPECT_EQ(released, (std::vector<int64_t>{0, 1}));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].correct + results[1].correct, 2);
}

TEST(AsyncStep, AFailingStepReachesTheCallerAndNothingHangs) {
  StepQueue q(kBatch, kPixels, 2, [](const StepRequest& s) -> StepResult {
    if (s.batch.tag == 2) throw std::runtime_error("step 2 failed on the device");
    return checking_compute(s, std::chrono::microseconds(0));
  });
  HostBatch h;
  std::vector<int64_t> released;
  std::vector<StepResult> results;
  bool thrown = false;
  try {
    for (int64_t t = 0; t < 10; ++t) {
      h.fill(t);
      StepRequest r;
      r.batch.tag = t;
      r.batch.size = kBatch;
      r.batch.pixels = h.pixels.data();
      r.batch.labels = h.labels.data();
      q.submit(r);
      q.drain();
      q.collect(released, results, false);
    }
  } catch (const std::runtime_error& e) {
    thrown = std::string(e.what()).find("step 2 failed") != std::string::npos;
  }
  EXPECT_TRUE(thrown);
  EXPECT_EQ(results.size(), 2u) << "steps 0 and 1 finished before the failure";
}

// A training run that stops with an error while copies are in flight (a non-finite loss, the CPU
// backend's copy thread still reading the next batches from the input ring) releases the ring only once the
// backend has finished with it: each delayed copy checks, as it reads, that the process still holds the host
// memory it held when the batch was submitted. Freeing the ring before the backend fails it (the copy skips its read
// then, rather than reading freed memory).
class SlowCopyBackend final : public TrainingBackend {
 public:
  SlowCopyBackend(const Graph& g, const BackendOptions& o, std::atomic<int>& stale)
      : stale_(stale),
        queue_(
            o.max_batch, int64_t{o.max_batch} * g.input_shape().size(), 2,
            [this](const StepRequest& s) { return nan_step(s); }, [this](int64_t) { slow_copy(); }) {}
  std::string name() const override { return "slow-copy (test)"; }
  std::string describe() const override { return name(); }
  void set_state(const std::vector<float>&, const std::vector<float>&, const std::vector<float>&, int64_t) override {}
  void get_state(std::vector<float>&, std::vector<float>&, std::vector<float>&, int64_t&) override {}
  const float* eval_batch(int, const uint8_t*, const int32_t*, float*) override { return nullptr; }
  void submit(const StepRequest& r) override {
    held_at_submit_ = io::HostMemory::live_bytes();
    queue_.submit(r);
  }
  void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait) override {
    queue_.collect(released, results, wait);
  }
  void drain() override { queue_.drain(); }
  int in_flight() const override { return queue_.in_flight(); }
  int max_in_flight() const override { return queue_.max_in_flight(); }

 protected:
  StepResult run_step(const StepRequest&) override { return {}; }

 private:
  // The compute thread: a non-finite loss, reported only once the next batch's copy is under way (or after 2 s, if
  // the trainer never submits one), so the trainer's error meets a copy in flight.
  StepResult nan_step(const StepRequest& s) {
    const auto t0 = std::chrono::steady_clock::now();
    while (!copying_.load() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    StepResult r;
    r.tag = s.batch.tag;
    r.loss = std::numeric_limits<float>::quiet_NaN();
    return r;
  }
  // The copy thread, before it reads a batch: the first at once, every later one after a second (longer than the
  // trainer takes to meet its error and clean up), watching the input memory all the while.
  void slow_copy() {
    if (copies_++ < 1) return;
    copying_ = true;
    for (int ms = 0; ms < 1000; ++ms) {
      if (io::HostMemory::live_bytes() < held_at_submit_.load()) {
        ++stale_;
        throw std::runtime_error("the input memory was released before its copy");  // and the read is skipped
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  std::atomic<int>& stale_;
  std::atomic<int64_t> held_at_submit_{0};
  int copies_ = 0;  // copy thread only
  std::atomic<bool> copying_{false};
  StepQueue queue_;  // last: its threads stop before the members above go
};

TEST(AsyncStep, AnErrorWithCopiesInFlightReleasesTheInputOnlyAfterTheBackend) {
  test::TempDir tmp("teardown");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b"}, 40);
  std::atomic<int> stale{0};
  set_backend_override(
      [&](const Graph& g, const BackendOptions& o) { return std::make_unique<SlowCopyBackend>(g, o, stale); });
  TrainConfig c;
  c.data = tmp.str() + "/train";
  c.out = tmp.str() + "/run";
  c.epochs = 1;
  c.batch_size = 8;
  c.quiet = true;
  c.max_nonfinite_steps = 1;
  c.cache = CacheMode::none;  // batches straight from the decoders' ring
  auto model = [](const std::string&, Shape3 in, int classes) {
    Graph g(in, "tiny");
    g.linear(g.global_avgpool(g.conv(g.input(), 8, 3, 1, 1, true, "c")), classes, "head");
    return g;
  };
  const int64_t before = io::HostMemory::live_bytes();
  std::string error;
  try {
    train(c, model);
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("the loss was nan"), std::string::npos) << error;
  set_backend_override(nullptr);
  EXPECT_EQ(stale.load(), 0) << "a copy was still reading the input ring when its memory was released";
  EXPECT_EQ(io::HostMemory::live_bytes(), before);  // and all of it is released in the end
}

}  // namespace
}  // namespace stoke
