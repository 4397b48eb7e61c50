// One block row per sample (blockIdx.y), its bytes copied by the block's threads as 16-byte words when the sample
// size and both bases allow it (every MNIST/CIFAR/ImageNet-sized RGB or gray sample at 16-pixel multiples does),
// else 4-byte words, else bytes: a straight device-to-device copy with an indirection per sample.
#include <algorithm>

#include "base/error.h"
#include "kernels/cuda_util.cuh"
#include "kernels/gather.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename W>
__global__ void gather_samples_kernel(int n, const int64_t* __restrict__ ids, int64_t words,
                                      const W* __restrict__ set_pixels, const int32_t* __restrict__ set_labels,
                                      W* __restrict__ pixels, int32_t* __restrict__ labels) {
  for (int k = static_cast<int>(blockIdx.y); k < n; k += static_cast<int>(gridDim.y)) {
    const int64_t id = ids[k];
    const W* src = set_pixels + id * words;
    W* dst = pixels + static_cast<int64_t>(k) * words;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < words;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
      dst[i] = src[i];
    if (blockIdx.x == 0 && threadIdx.x == 0) labels[k] = set_labels[id];
  }
}

template <typename W>
void launch(int n, const int64_t* ids, int64_t sample_bytes, const uint8_t* set_pixels, const int32_t* set_labels,
            uint8_t* pixels, int32_t* labels, cudaStream_t stream) {
  const int64_t words = sample_bytes / static_cast<int64_t>(sizeof(W));
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((words + kThreads - 1) / kThreads, 1024)),
                  static_cast<unsigned>(std::min(n, 65535)));
  gather_samples_kernel<W><<<grid, kThreads, 0, stream>>>(n, ids, words, reinterpret_cast<const W*>(set_pixels),
                                                          set_labels, reinterpret_cast<W*>(pixels), labels);
  CUDA_LAUNCH_CHECK(stream);
}

bool aligned_to(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void gather_samples(int n, const int64_t* ids, int64_t samples, int64_t sample_bytes, const uint8_t* set_pixels,
                    const int32_t* set_labels, uint8_t* pixels, int32_t* labels, cudaStream_t stream) {
  STOKE_CHECK(n >= 0 && sample_bytes > 0 && samples > 0, "gather of ", n, " samples of ", sample_bytes,
              " bytes from a set of ", samples);
  if (n == 0) return;
  const auto fits = [&](size_t a) {
    return sample_bytes % static_cast<int64_t>(a) == 0 && aligned_to(set_pixels, a) && aligned_to(pixels, a);
  };
  if (fits(16))
    launch<uint4>(n, ids, sample_bytes, set_pixels, set_labels, pixels, labels, stream);
  else if (fits(4))
    launch<uint32_t>(n, ids, sample_bytes, set_pixels, set_labels, pixels, labels, stream);
  else
    launch<uint8_t>(n, ids, sample_bytes, set_pixels, set_labels, pixels, labels, stream);
}

}  // namespace stoke::cuda
