// The CUDA twin of stoke::cpu::gather_samples (kernels/gather.h): a batch gathered on the device from the data
// set the CUDA backend holds there (--cache gpu), so a training step copies only its sample ids to the device,
// never its pixels.
//
//   pixels[k] = set_pixels[ids[k]]  (sample_bytes each),  labels[k] = set_labels[ids[k]],  k < n
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

// ids: n device values in [0, samples). A kernel cannot report a bad id, so the caller checks them on the host
// before they are copied (engine/cuda/cuda_backend.cpp does); `samples` is passed for the same signature as the
// CPU twin. Every pointer is a device pointer; enqueued on `stream`, no synchronisation (capturable).
void gather_samples(int n, const int64_t* ids, int64_t samples, int64_t sample_bytes, const uint8_t* set_pixels,
                    const int32_t* set_labels, uint8_t* pixels, int32_t* labels, cudaStream_t stream);

}  // namespace stoke::cuda
