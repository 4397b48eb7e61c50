#include "engine/step_queue.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/error.h"
#include "base/trace.h"

namespace stoke {

StepQueue::StepQueue(int max_batch, int64_t pixels_per_batch, int slots, Compute compute, CopyHook before_copy)
    : max_batch_(max_batch),
      pixel_bytes_(pixels_per_batch),
      compute_(std::move(compute)),
      before_copy_(std::move(before_copy)),
      slots_(static_cast<size_t>(slots)) {
  STOKE_CHECK(max_batch >= 1 && pixels_per_batch >= 0 && slots >= 2);
  // Every buffer exists before either thread starts: nothing is allocated per step.
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].pixels.resize(static_cast<size_t>(pixel_bytes_));
    slots_[i].flips.resize(static_cast<size_t>(max_batch));
    slots_[i].labels.resize(static_cast<size_t>(max_batch));
    slots_[i].ids.resize(static_cast<size_t>(max_batch));
    slots_[i].transforms.resize(static_cast<size_t>(max_batch));
    free_slots_.push_back(static_cast<int>(i));
  }
  released_.reserve(slots_.size() * 2);
  results_.reserve(slots_.size() * 2);
  trace_init();  // NVTX's lazy initialisation on this thread, not raced by the two below
  copy_thread_ = std::thread([this] { copy_loop(); });
  compute_thread_ = std::thread([this] { compute_loop(); });
}

StepQueue::~StepQueue() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  copy_thread_.join();
  compute_thread_.join();
}

void StepQueue::submit(const StepRequest& r) {
  const int n = r.batch.size;
  STOKE_CHECK(n >= 1 && n <= max_batch_, "batch of ", n, " for a queue of ", max_batch_);
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] {
    return stop_ || error_ ||
           (to_copy_.size() < slots_.size() && submitted_ - computed_ < static_cast<int64_t>(max_in_flight()));
  });
  if (error_) std::rethrow_exception(error_);
  to_copy_.push_back(r);
  ++submitted_;
  cv_.notify_all();
}

void StepQueue::collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait) {
  std::unique_lock<std::mutex> lock(m_);
  if (wait)
    cv_.wait(lock, [&] { return error_ || !released_.empty() || !results_.empty() || computed_ == submitted_; });
  if (error_) std::rethrow_exception(error_);
  released.insert(released.end(), released_.begin(), released_.end());
  results.insert(results.end(), results_.begin(), results_.end());
  released_.clear();
  results_.clear();
}

void StepQueue::drain() {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return error_ || computed_ == submitted_; });
  if (error_) std::rethrow_exception(error_);
}

int StepQueue::in_flight() const {
  std::lock_guard<std::mutex> lock(m_);
  return static_cast<int>(submitted_ - computed_);
}

void StepQueue::fail(std::exception_ptr e) {
  std::lock_guard<std::mutex> lock(m_);
  if (!error_) error_ = std::move(e);  // the first failure is the one the caller sees
  cv_.notify_all();
}

void StepQueue::copy_loop() {
  trace_name_thread("stoke copy");
  for (;;) {
    StepRequest r;
    int slot = -1;
    {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return stop_ || (!to_copy_.empty() && !free_slots_.empty()); });
      if (stop_) return;
      r = to_copy_.front();
      to_copy_.pop_front();
      slot = free_slots_.front();
      free_slots_.pop_front();
    }
    try {
      STOKE_TRACE("copy batch");
      const io::Batch& in = r.batch;
      if (before_copy_) before_copy_(in.tag);
      Slot& s = slots_[static_cast<size_t>(slot)];
      const auto n = static_cast<size_t>(in.size);
      // The step as submitted, its memory pointers moved to this slot's copy (nothing may point at the caller's).
      s.staged = r;
      io::Batch& own = s.staged.batch;
      own.base = nullptr;
      own.copy_bytes = own.labels_offset = 0;
      if (in.flips) {
        std::memcpy(s.flips.data(), in.flips, n);
        own.flips = s.flips.data();
      }
      if (r.transforms) {
        std::copy(r.transforms, r.transforms + n, s.transforms.begin());
        s.staged.transforms = s.transforms.data();
      }
      if (const int64_t* ids = r.held_ids()) {  // a held data set: the ids are the whole batch
        std::memcpy(s.ids.data(), ids, n * sizeof(int64_t));
        own.ids = s.ids.data();
      } else {
        std::memcpy(s.pixels.data(), in.pixels, static_cast<size_t>(pixel_bytes_ / max_batch_) * n);
        std::memcpy(s.labels.data(), in.labels, n * sizeof(int32_t));
        own.pixels = s.pixels.data();
        own.labels = s.labels.data();
        own.ids = nullptr;  // the source's ids are not copied: the compute side does not read them
      }
    } catch (...) {
      fail(std::current_exception());
      return;
    }
    std::lock_guard<std::mutex> lock(m_);
    released_.push_back(r.batch.tag);  // the copy has completed: the caller's memory may be reused now
    to_compute_.push_back(slot);
    cv_.notify_all();
  }
}

void StepQueue::compute_loop() {
  trace_name_thread("stoke compute");
  for (;;) {
    int slot = -1;
    {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return stop_ || !to_compute_.empty(); });
      if (stop_) return;
      slot = to_compute_.front();
      to_compute_.pop_front();
    }
    StepResult result;
    try {
      result = compute_(slots_[static_cast<size_t>(slot)].staged);
    } catch (...) {
      fail(std::current_exception());
      return;
    }
    std::lock_guard<std::mutex> lock(m_);
    free_slots_.push_back(slot);
    results_.push_back(result);
    ++computed_;
    cv_.notify_all();
  }
}

}  // namespace stoke
