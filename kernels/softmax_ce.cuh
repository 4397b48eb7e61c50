// CUDA twin of kernels/softmax_ce.h: softmax cross-entropy with label smoothing, loss and gradient in one pass
// over the logits (see kernels/README.md). Logits and dlogits are the storage type T; all loss math is fp32
// (one warp per row: max, sum of exponentials, loss, gradient), and the batch mean is a deterministic
// fixed-order reduction in double.
//
// Results stay on the device (no synchronisation): *mean_loss, *correct (rows whose first arg-max equals the
// label; may be null), losses[n] (per-row loss; may be null). dlogits (may be null) receives the gradient of
// the mean loss times grad_scale. A label outside [0, classes) cannot throw on the device: its row's loss is NaN
// (so the mean is NaN and the caller's finite check fires) and its gradient row is zero.
// `workspace`: softmax_ce_workspace_bytes(n) bytes. grad_scale_device (may be null): read the scale from device
// memory instead (the fp16 loss scale of a captured step, which changes between replays of the same graph).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/mix.h"

namespace stoke::cuda {

int64_t softmax_ce_workspace_bytes(int n);

template <typename T>
void softmax_cross_entropy(int n, int classes, const T* logits, const int32_t* labels, float smoothing,
                           float grad_scale, float* losses, T* dlogits, float* mean_loss, int32_t* correct,
                           void* workspace, cudaStream_t stream, const float* grad_scale_device = nullptr);

// Against the batch's mixed targets (cpu::softmax_cross_entropy_mixed): mix_device is this batch's BatchMix in device
// memory, read when the kernel runs (a captured step reads each replay's). lam 1 gives the plain loss.
template <typename T>
void softmax_cross_entropy_mixed(int n, int classes, const T* logits, const int32_t* labels, const BatchMix* mix_device,
                                 float smoothing, float grad_scale, float* losses, T* dlogits, float* mean_loss,
                                 int32_t* correct, void* workspace, cudaStream_t stream,
                                 const float* grad_scale_device = nullptr);

}  // namespace stoke::cuda
