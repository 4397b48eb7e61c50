// Waiting on the host for device work that may hold a collective. A blocking cudaEventSynchronize behind an NCCL
// all-reduce whose peer died never returns, so these waits poll instead: "is it done?", then the communicator's
// asynchronous error (which may throw), and past the timeout the caller is told, to abort the communicator and call
// the peer lost. Host-only and templated on the two callables, so tests drive it with fakes (test_cuda_host).
//
// A poll that sleeps 100 µs finishes 100-150 µs after the work did, which is a step's worth of time for a small
// model, so the first millisecond spins with yield (the answer usually comes then) and only a longer wait sleeps.
#pragma once

#include <chrono>
#include <thread>

namespace stoke::cuda {

struct PollPolicy {
  double timeout_s = 300;                      // STOKE_DIST_TIMEOUT: past this, the wait gives up
  std::chrono::microseconds spin{1000};        // poll with yield this long first
  std::chrono::microseconds nap{100};          // then sleep this long between polls
};

// Polls done() until it answers true (returns true), calling check() after each unfinished poll; check() may throw
// (a communicator's asynchronous error) and the exception leaves the wait. Returns false once timeout_s has passed.
template <typename Done, typename Check>
bool poll_until(Done&& done, Check&& check, const PollPolicy& p) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point spin_until = t0 + p.spin;
  const Clock::time_point give_up = t0 + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(p.timeout_s));
  for (;;) {
    if (done()) return true;
    check();
    const Clock::time_point now = Clock::now();
    if (now > give_up) return false;
    if (now < spin_until)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(p.nap);
  }
}

}  // namespace stoke::cuda
