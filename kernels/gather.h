// A batch gathered from a data set the backend holds (--cache gpu): sample ids -> uint8 NHWC pixels and labels,
// in the order the ids give. CPU twin of stoke::cuda::gather_samples (kernels/gather.cuh); the CPU backend runs
// it on its host copy of the set, the CUDA backend on its device copy, so both read the batch the input pipeline
// would have produced from the same ids.
//
//   pixels[k] = set_pixels[ids[k]]  (sample_bytes each),  labels[k] = set_labels[ids[k]],  k < n
#pragma once

#include <cstdint>

namespace stoke::cpu {

// ids: n values in [0, samples) (checked: an id out of range is a bug in the caller, not in the data).
void gather_samples(int n, const int64_t* ids, int64_t samples, int64_t sample_bytes, const uint8_t* set_pixels,
                    const int32_t* set_labels, uint8_t* pixels, int32_t* labels);

}  // namespace stoke::cpu
