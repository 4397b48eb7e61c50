// What a step of the CUDA backend reads and writes besides the model: the pinned host slots its control, record,
// mix and transforms travel through, and the device input buffer the copy stream fills.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/cuda_check.h"
#include "engine/cuda/step_ring.h"
#include "kernels/augment.h"
#include "kernels/mix.h"
#include "kernels/optimizer.cuh"

namespace stoke::cuda {

// The per-slot host memory the device writes to and copies from: pinned, so the copies are truly asynchronous
// and nothing is staged through pageable memory.
class PinnedSlots {
 public:
  explicit PinnedSlots(int max_batch) : max_batch_(static_cast<size_t>(max_batch)) {
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&p_), sizeof(Block), cudaHostAllocDefault));
    *p_ = Block{};
    const size_t bytes = StepRing::kSlots * max_batch_ * sizeof(SampleTransform);
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&transforms_), bytes, cudaHostAllocDefault));
  }
  ~PinnedSlots() {
    CUDA_CHECK_NOEXCEPT(cudaFreeHost(transforms_));
    CUDA_CHECK_NOEXCEPT(cudaFreeHost(p_));
  }
  PinnedSlots(const PinnedSlots&) = delete;
  PinnedSlots& operator=(const PinnedSlots&) = delete;
  StepControl& control(int slot) { return p_->control[static_cast<size_t>(slot)]; }
  StepRecord& record(int slot) { return p_->record[static_cast<size_t>(slot)]; }
  BatchMix& mix(int slot) { return p_->mix[static_cast<size_t>(slot)]; }
  SampleTransform* transforms(int slot) { return transforms_ + static_cast<size_t>(slot) * max_batch_; }

 private:
  struct Block {
    std::array<StepControl, StepRing::kSlots> control;
    std::array<StepRecord, StepRing::kSlots> record;
    std::array<BatchMix, StepRing::kSlots> mix;
  };
  Block* p_ = nullptr;
  size_t max_batch_;
  SampleTransform* transforms_ = nullptr;  // max_batch per slot: the trainer's copy may be gone once submit returns
};

// One device input buffer: what a step reads, filled by the copy stream.
struct InputBuffer {
  uint8_t* pixels = nullptr;
  int32_t* labels = nullptr;
  uint8_t* flips = nullptr;
  int64_t* ids = nullptr;                 // --cache gpu: the step's sample ids into the held set
  SampleTransform* transforms = nullptr;  // an augmentation recipe's, one per sample
  BatchMix* mix = nullptr;                // a mixing run's (kernels/mix.h)
  StepControl* control = nullptr;
};

}  // namespace stoke::cuda
