// The asynchronous step for a backend without a device queue of its own (the CPU backend, and the test
// backends of tests/engine/test_async_backend.cpp): two threads that play the two CUDA streams.
//
//   copy thread     takes submitted steps in order, waits for a free staging slot, copies the batch (pixels,
//                   labels, flips; or sample ids and flips)
//                   into it, and only then releases the caller's memory (collect() reports the
//                   tag). A slot of the input ring is reused only after its copy *completed* — never when the
//                   copy was merely issued (the data-layer bug Caffe shipped).
//   compute thread  runs the step from the staging slot, frees the slot, and queues the result.
//
// Results and releases come back through collect(), in submission order. Everything the trainer does between two
// steps overlaps with the compute thread's work; the copy of step k+1 overlaps with the compute of step k.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/backend.h"

namespace stoke {

class StepQueue {
 public:
  // The step as submitted, its batch pointing at the queue's own copy (pixels and labels, or the held-set ids).
  using Compute = std::function<StepResult(const StepRequest&)>;
  // Called on the copy thread before each copy (tests inject delays here).
  using CopyHook = std::function<void(int64_t tag)>;

  // pixels_per_batch: bytes of one full batch of pixels (max_batch x H x W x C). slots: staging slots (>= 2: one
  // being computed on, one being filled).
  StepQueue(int max_batch, int64_t pixels_per_batch, int slots, Compute compute, CopyHook before_copy = {});
  ~StepQueue();  // abandons what is queued, joins both threads
  StepQueue(const StepQueue&) = delete;
  StepQueue& operator=(const StepQueue&) = delete;

  // Queues a step; returns at once unless `slots` steps are already waiting to be copied.
  void submit(const StepRequest& request);
  // Moves what finished (released tags, step results) into the vectors; with wait, blocks until there is at least
  // one of either or nothing is in flight. Rethrows an exception the compute or copy thread caught.
  void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait);
  // Blocks until every submitted step is computed (its release and result are then ready to collect).
  void drain();
  int in_flight() const;
  // submit() blocks while this many steps are in flight: waiting to be copied, copied, or being computed.
  int max_in_flight() const { return 2 * static_cast<int>(slots_.size()) + 1; }

 private:
  void copy_loop();
  void compute_loop();
  // A thread's exception: kept for the caller (submit, collect and drain rethrow it) and every waiter woken.
  void fail(std::exception_ptr e);

  const int max_batch_;
  const int64_t pixel_bytes_;
  Compute compute_;
  CopyHook before_copy_;

  struct Slot {
    std::vector<uint8_t> pixels, flips;
    std::vector<int32_t> labels;
    std::vector<int64_t> ids;
    std::vector<SampleTransform> transforms;
    StepRequest staged;
  };
  std::vector<Slot> slots_;

  mutable std::mutex m_;
  std::condition_variable cv_;  // one condition for every state change (few waiters, one step at a time)
  std::deque<StepRequest> to_copy_;
  std::deque<int> free_slots_, to_compute_;
  std::vector<int64_t> released_;
  std::vector<StepResult> results_;
  int64_t submitted_ = 0, computed_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread copy_thread_, compute_thread_;
};

}  // namespace stoke
