// The host waits of the CUDA backend on work that holds collectives (engine/cuda/poll_wait.h,
// engine/cuda/device_collectives.h), driven by fakes: a lost peer is a LostPeer error within the timeout, the
// communicator is aborted first (so the device work behind it ends before its memory is freed), and NCCL's
// asynchronous error leaves the wait at once.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "base/error.h"
#include "engine/cuda/device_collectives.h"
#include "engine/cuda/poll_wait.h"
#include "engine/dist/communicator.h"

namespace stoke::cuda {
namespace {

using Clock = std::chrono::steady_clock;

// Collectives whose work never completes by itself, like NCCL's with a dead peer: only abort() ends it (or, so
// that a broken wait fails instead of hanging the test binary, 3 seconds).
class StuckCollectives final : public DeviceCollectives {
 public:
  void allreduce_sum_async(float*, size_t, cudaStream_t) override {}
  void allreduce_sum_async(double*, size_t, cudaStream_t) override {}
  void check_async_error() override {
    if (++checks == fail_at_check) throw Error("NCCL: remote process exited or there was a network error");
  }
  void abort() override { ++aborts; }
  bool work_done() const { return aborts > 0 || Clock::now() - t0 > std::chrono::seconds(3); }

  int checks = 0, aborts = 0, fail_at_check = -1;
  const Clock::time_point t0 = Clock::now();
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

TEST(PollWait, ANeverCompletingCollectiveIsALostPeerWithinTheTimeout) {
  StuckCollectives c;
  PollPolicy p;
  p.timeout_s = 0.2;
  const Clock::time_point t0 = Clock::now();
  std::string what;
  try {
    await_collectives([&] { return c.work_done(); }, c, p, "a training step's NCCL all-reduce");
  } catch (const dist::LostPeer& e) {
    what = e.what();
  }
  const double s = seconds_since(t0);
  EXPECT_NE(what.find("did not complete within 0.2 s"), std::string::npos) << what;
  EXPECT_GE(s, 0.2);
  EXPECT_LT(s, 1.0);
  EXPECT_EQ(c.aborts, 1);         // aborted before the error left the wait
  EXPECT_TRUE(c.work_done());     // so the device work behind it is over: what the caller frees next is free
  EXPECT_GT(c.checks, 20);        // asked for NCCL's error all along
}

TEST(PollWait, AnAsynchronousErrorAbortsAndLeavesTheWaitAtOnce) {
  StuckCollectives c;
  c.fail_at_check = 5;
  PollPolicy p;
  p.timeout_s = 10;
  const Clock::time_point t0 = Clock::now();
  EXPECT_THROW(await_collectives([&] { return c.work_done(); }, c, p, "x"), Error);
  EXPECT_LT(seconds_since(t0), 0.5);
  EXPECT_EQ(c.checks, 5);
  EXPECT_EQ(c.aborts, 1);
}

TEST(PollWait, FinishedWorkReturnsWithoutAbortOrError) {
  StuckCollectives c;
  int polls = 0;
  await_collectives([&] { return ++polls == 50; }, c, PollPolicy{}, "x");
  EXPECT_EQ(polls, 50);
  EXPECT_EQ(c.checks, 49);
  EXPECT_EQ(c.aborts, 0);
}

// The first millisecond spins (yield): a wait that ends then is not rounded up to a nap. Checked without timing
// the spin: with naps of 5 s, work done after 100 us must be seen within the spin window (here 50 ms), not after a
// nap; a wait that slept from the start would take the 5 s.
TEST(PollWait, SpinsBeforeItSleeps) {
  EXPECT_EQ(PollPolicy{}.spin, std::chrono::microseconds(1000));
  EXPECT_EQ(PollPolicy{}.nap, std::chrono::microseconds(100));
  PollPolicy p;
  p.spin = std::chrono::milliseconds(50);
  p.nap = std::chrono::seconds(5);
  const Clock::time_point t0 = Clock::now();
  const bool ok = poll_until([&] { return Clock::now() - t0 > std::chrono::microseconds(100); }, [] {}, p);
  EXPECT_TRUE(ok);
  EXPECT_LT(seconds_since(t0), 2.5);
}

}  // namespace
}  // namespace stoke::cuda
