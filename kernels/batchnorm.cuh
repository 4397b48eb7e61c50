// CUDA twins of kernels/batchnorm.h, plus the fused forms the executor uses (see kernels/README.md).
//
// x, y, dy, dx, residual: storage type T (float, __half, __nv_bfloat16), rows x C (NHWC flattened), dense.
// gamma, beta, running statistics, saved mean / inv-std, dgamma, dbeta: fp32. Statistics are computed in fp32
// per thread and combined in double (kernels/channel_reduce.cuh): deterministic, no float atomics.
// `workspace` is device scratch of batchnorm_workspace_bytes(rows, C) bytes, 8-byte aligned, owned by the caller.
//
// Fused forward:   y = act(bn(x) + residual)      act = ReLU when `relu`; residual may be null
// Fused backward:  dz = relu ? (y > 0 ? dy : 0) : dy;  dresidual = dz;  then the BN backward of dz.
// dgamma / dbeta accumulate (+=); dx and dresidual are assigned; any of them may be null to skip.
// dx may alias dy (each element is read before it is written by the same thread).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>

namespace stoke::cuda {

// Synchronised batch norm (--sync-bn), the device twin of cpu::ChannelAllReduce (kernels/batchnorm.h): `across(data,
// n, stream)` enqueues on `stream` the replacement of n doubles of device memory by their sum over every process.
// The training forward and the backward call it between their launches (forward: C + 1 values, then C; backward:
// 2C + 1); it must only enqueue, since it runs inside a captured step. Null: this process's rows alone.
using DeviceChannelAllReduce = std::function<void(double* device_data, int n, cudaStream_t stream)>;

int64_t batchnorm_workspace_bytes(int64_t rows, int C);

template <typename T>
void batchnorm_forward_train(int rows, int C, const T* x, const float* gamma, const float* beta, float eps,
                             float momentum, float* running_mean, float* running_var, T* y, float* save_mean,
                             float* save_invstd, void* workspace, cudaStream_t stream,
                             const DeviceChannelAllReduce* across = nullptr);

template <typename T>
void batchnorm_forward_eval(int rows, int C, const T* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, T* y, void* workspace,
                            cudaStream_t stream);

template <typename T>
void batchnorm_backward(int rows, int C, const T* x, const float* gamma, const float* save_mean,
                        const float* save_invstd, const T* dy, T* dx, float* dgamma, float* dbeta, void* workspace,
                        cudaStream_t stream, const DeviceChannelAllReduce* across = nullptr);

// Backward of the eval-mode forward (--freeze-bn with something trainable before it): the running statistics are
// constants, dx = dy * gamma / sqrt(running_var + eps), dgamma += sum(dy * xhat), dbeta += sum(dy), xhat from the
// running statistics. The CUDA twin of cpu::batchnorm_backward_eval.
template <typename T>
void batchnorm_backward_eval(int rows, int C, const T* x, const float* gamma, const float* running_mean,
                             const float* running_var, float eps, const T* dy, T* dx, float* dgamma, float* dbeta,
                             void* workspace, cudaStream_t stream);

// ---- fused with a residual add and/or ReLU ------------------------------------------------------------------

template <typename T>
void batchnorm_add_relu_forward_train(int rows, int C, const T* x, const T* residual, bool relu, const float* gamma,
                                      const float* beta, float eps, float momentum, float* running_mean,
                                      float* running_var, T* y, float* save_mean, float* save_invstd, void* workspace,
                                      cudaStream_t stream, const DeviceChannelAllReduce* across = nullptr);

template <typename T>
void batchnorm_add_relu_forward_eval(int rows, int C, const T* x, const T* residual, bool relu, const float* gamma,
                                     const float* beta, const float* running_mean, const float* running_var, float eps,
                                     T* y, void* workspace, cudaStream_t stream);

// y: the fused forward's output (read only when relu).
template <typename T>
void batchnorm_add_relu_backward(int rows, int C, const T* x, const float* gamma, const float* save_mean,
                                 const float* save_invstd, const T* y, const T* dy, bool relu, T* dx, T* dresidual,
                                 float* dgamma, float* dbeta, void* workspace, cudaStream_t stream,
                                 const DeviceChannelAllReduce* across = nullptr);

// The eval-mode backward of the fused forward (dz as above, then batchnorm_backward_eval of dz).
template <typename T>
void batchnorm_add_relu_backward_eval(int rows, int C, const T* x, const float* gamma, const float* running_mean,
                                      const float* running_var, float eps, const T* y, const T* dy, bool relu, T* dx,
                                      T* dresidual, float* dgamma, float* dbeta, void* workspace, cudaStream_t stream);

}  // namespace stoke::cuda
