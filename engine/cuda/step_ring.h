// The in-flight bookkeeping of the asynchronous CUDA step, apart from the device so that it is tested on the host
// (tests/gpu/test_cuda_host.cpp, with fake events).
//
// kSlots steps at most are in flight; step k uses slot k % kSlots, which names everything per step in the
// backend: the device input buffer, the pinned StepControl it copies from, the pinned StepRecord the results land
// in, and the slot's events. A step occupies its slot from push() until its result is moved out by poll(); the
// slot (and so that input buffer) is reused only after that.
//
// poll() asks two questions per slot, through callables, so the state machine never sees a CUDA type:
//   copy_done(slot)  has the host-to-device copy of the batch *completed* (cudaEventQuery on an event recorded
//                    after it)? Only then is the tag released to the trainer — never when the copy was issued:
//                    the trainer hands the ring slot back to the decoders on release, and a copy still reading
//                    it would then read the next batch's pixels.
//   step_done(slot)  has the step's compute (and the copy of its record to pinned memory) completed?
// Releases and results come out in submission order, each: a later step is never reported before an earlier.
#pragma once

#include <array>
#include <cstdint>

#include "base/error.h"

namespace stoke::cuda {

class StepRing {
 public:
  static constexpr int kSlots = 2;  // one step being computed, the next one's copy under way

  bool full() const { return count_ == kSlots; }
  bool empty() const { return count_ == 0; }
  int in_flight() const { return count_; }  // pushed, result not yet moved out
  int64_t pushed() const { return pushed_; }
  // The oldest step in flight (requires !empty()): its slot and whether its release was reported.
  int oldest() const { return head_; }
  bool oldest_released() const { return e_[static_cast<size_t>(head_)].released; }

  // Claims the slot of the next step (requires !full()).
  int push(int64_t tag) {
    STOKE_CHECK(!full(), "a step submitted with ", count_, " of ", kSlots, " slots in flight");
    const int slot = static_cast<int>((head_ + count_) % kSlots);
    e_[static_cast<size_t>(slot)] = Entry{tag, false};
    ++count_;
    ++pushed_;
    return slot;
  }

  // release(tag) for every newly completed copy, then finish(slot, tag) for every finished step, in order; a
  // finished step's slot is free again once finish returned.
  template <typename CopyDone, typename StepDone, typename Release, typename Finish>
  void poll(CopyDone&& copy_done, StepDone&& step_done, Release&& release, Finish&& finish) {
    for (int i = 0; i < count_; ++i) {
      Entry& e = e_[static_cast<size_t>((head_ + i) % kSlots)];
      if (e.released) continue;
      if (!copy_done((head_ + i) % kSlots)) break;  // copies complete in order: nothing later has either
      e.released = true;
      release(e.tag);
    }
    while (count_ > 0) {
      const Entry& e = e_[static_cast<size_t>(head_)];
      if (!e.released || !step_done(head_)) break;  // a step's result never overtakes its release
      finish(head_, e.tag);
      head_ = (head_ + 1) % kSlots;
      --count_;
    }
  }

 private:
  struct Entry {
    int64_t tag = 0;
    bool released = false;
  };
  std::array<Entry, kSlots> e_{};
  int head_ = 0, count_ = 0;
  int64_t pushed_ = 0;
};

}  // namespace stoke::cuda
