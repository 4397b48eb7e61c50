// --cache gpu: the decoded data set held in device memory (one allocation), from which a step gathers its batch by
// sample ids as its first launch instead of copying pixels.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "engine/cuda/arena.h"

namespace stoke::cuda {

class HeldDataset {
 public:
  // Replaces the held set with a copy of `samples` samples of `sample_bytes` pixels each, synchronously on `s` (the
  // caller may free its copy when this returns). False, with the reason in `why`, when the device lacks the memory;
  // the set is empty then.
  bool hold(const uint8_t* pixels, const int32_t* labels, int64_t samples, int64_t sample_bytes, cudaStream_t s,
            std::string* why);
  // Every id names a held sample: checked on the host before a step is queued (a kernel cannot report a bad id).
  void check_ids(int n, const int64_t* ids) const;
  // The n samples `ids` (device memory) into `pixels` and `labels` (device memory), on `s`.
  void gather(int n, const int64_t* ids, uint8_t* pixels, int32_t* labels, cudaStream_t s) const;

 private:
  DeviceArena arena_;
  uint8_t* pixels_ = nullptr;
  int32_t* labels_ = nullptr;
  int64_t samples_ = 0, sample_bytes_ = 0;
};

}  // namespace stoke::cuda
