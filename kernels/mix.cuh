// CUDA twin of kernels/mix.h: mixup and cutmix of a normalised NHWC batch in place, the sample i with sample n-1-i.
// The BatchMix is read from device memory when the kernel runs (one small copy per batch, at a fixed address), so a
// captured step graph mixes every replay as that replay's batch says; the identity mix returns at once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include "kernels/mix.h"

namespace stoke::cuda {

// x: n x h x w x c in the storage type T (c: the channels stored per pixel, padding included: zeros stay zeros).
// fp32 equals cpu::mix_batch bit for bit; bf16/fp16 equal it applied to the T-rounded input, rounded to T.
template <typename T>
void mix_batch(int n, int h, int w, int c, const BatchMix* mix_device, T* x, cudaStream_t stream);

}  // namespace stoke::cuda
