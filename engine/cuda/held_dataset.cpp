#include "engine/cuda/held_dataset.h"

#include "base/cuda_check.h"
#include "base/error.h"
#include "kernels/gather.cuh"

namespace stoke::cuda {

bool HeldDataset::hold(const uint8_t* pixels, const int32_t* labels, int64_t samples, int64_t sample_bytes,
                       cudaStream_t s, std::string* why) {
  arena_ = DeviceArena();
  samples_ = 0;
  const size_t px = static_cast<size_t>(samples) * static_cast<size_t>(sample_bytes);
  const size_t lb = static_cast<size_t>(samples) * sizeof(int32_t);
  try {
    arena_ = DeviceArena(px + lb + 2 * DeviceArena::kAlign, "the held data set (--cache gpu)");
  } catch (const OutOfMemory& e) {
    if (why) *why = e.what();
    return false;
  }
  pixels_ = arena_.alloc<uint8_t>(px, "held pixels (--cache gpu)");
  labels_ = arena_.alloc<int32_t>(static_cast<size_t>(samples), "held labels (--cache gpu)");
  CUDA_CHECK(cudaMemcpyAsync(pixels_, pixels, px, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaMemcpyAsync(labels_, labels, lb, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
  samples_ = samples;
  sample_bytes_ = sample_bytes;
  return true;
}

void HeldDataset::check_ids(int n, const int64_t* ids) const {
  STOKE_CHECK(samples_ > 0, "a step named by sample ids, but no data set is held");
  for (int k = 0; k < n; ++k)
    STOKE_CHECK(ids[k] >= 0 && ids[k] < samples_, "sample id ", ids[k], " of a held set of ", samples_);
}

void HeldDataset::gather(int n, const int64_t* ids, uint8_t* pixels, int32_t* labels, cudaStream_t s) const {
  gather_samples(n, ids, samples_, sample_bytes_, pixels_, labels_, pixels, labels, s);
}

}  // namespace stoke::cuda
