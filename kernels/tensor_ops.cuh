// CUDA twins of kernels/tensor_ops.h, the channel-slice copy behind in-place concatenation, and the per-channel
// bias of convolutions (see kernels/README.md). T: float, __half, __nv_bfloat16; fp32 math.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

// y = a + b. y may alias a or b.
template <typename T>
void add_forward(int64_t n, const T* a, const T* b, T* y, cudaStream_t stream);
// da = dy, db = dy (either may be null; a pointer equal to dy is left alone).
template <typename T>
void add_backward(int64_t n, const T* dy, T* da, T* db, cudaStream_t stream);

// Copies `channels` values of each of `rows` rows from src (rows src_stride apart) to dst (rows dst_stride
// apart): writing a part into its channel slice of a concat buffer (dst = buffer + channel offset, dst_stride =
// the buffer's channels), or reading it back out.
template <typename T>
void copy_channels(int64_t rows, int channels, const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
                   cudaStream_t stream);

// y[rows, sum(cs)] = [x0 | x1 | ...] (host arrays of device pointers).
template <typename T>
void concat_forward(int64_t rows, int nparts, const T* const* xs, const int* cs, T* y, cudaStream_t stream);
// dxs[i] = the i-th channel slice of dy (null entries skipped).
template <typename T>
void concat_backward(int64_t rows, int nparts, const T* dy, const int* cs, T* const* dxs, cudaStream_t stream);

// y[r, c] += b[c] (fp32 bias).
template <typename T>
void bias_forward(int64_t rows, int C, const float* b, T* y, cudaStream_t stream);
// db[c] += sum over rows of dy[r, c]: deterministic two-phase reduction (kernels/channel_reduce.cuh) in
// `workspace` of bias_backward_workspace_bytes(rows, C) bytes.
int64_t bias_backward_workspace_bytes(int64_t rows, int C);
template <typename T>
void bias_backward(int64_t rows, int C, const T* dy, float* db, void* workspace, cudaStream_t stream);

}  // namespace stoke::cuda
