// Batch normalisation over the channels of an NHWC tensor, seen as rows = N*H*W by C channels.
// Statistics are fp32 (accumulated in double on the CPU). See kernels/README.md for conventions.
#pragma once

#include <functional>

namespace stoke::cpu {

// Synchronised batch norm (--sync-bn): the batch is spread over several processes and the statistics are those
// of the whole of it. `across(data, n)` replaces each of the n values by its sum over every process (an
// all-reduce); every process makes the same calls with the same n. Null: this process's rows alone.
//   forward:  one call of C + 1 (per-channel sums, the row count), one of C (squared deviations from the mean)
//   backward: one call of 2C + 1 (sum dy, sum dy * xhat, the row count); dgamma and dbeta stay this process's
//             own share (the gradient all-reduce adds the shares).
// With each process's dy taken from the mean loss over its own rows, dx comes out scaled as the gradients of
// every other layer are (by the process count), so the usual gradient average leaves the whole batch's gradient.
using ChannelAllReduce = std::function<void(double* data, int n)>;

// The values one training step (forward and backward) passes through `across` for a batch norm of C channels.
constexpr int batchnorm_sync_values(int C) { return (C + 1) + C + (2 * C + 1); }

// Training mode: normalise with the batch statistics (biased variance), save mean and 1/sqrt(var+eps) for
// backward, and update the running statistics as PyTorch does:
//   running_mean = (1-momentum)*running_mean + momentum*mean
//   running_var  = (1-momentum)*running_var  + momentum*var*rows/(rows-1)   (unbiased)
// (rows: over every process under `across`)
void batchnorm_forward_train(int rows, int C, const float* x, const float* gamma, const float* beta, float eps,
                             float momentum, float* running_mean, float* running_var, float* y, float* save_mean,
                             float* save_invstd, const ChannelAllReduce* across = nullptr);

// Evaluation mode: normalise with the running statistics.
void batchnorm_forward_eval(int rows, int C, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y);

// Backward of the training-mode forward. dx assigned; dgamma, dbeta accumulated.
void batchnorm_backward(int rows, int C, const float* x, const float* gamma, const float* save_mean,
                        const float* save_invstd, const float* dy, float* dx, float* dgamma, float* dbeta,
                        const ChannelAllReduce* across = nullptr);

// Backward of the eval-mode forward (a frozen batch norm that still passes gradients on): the running statistics
// are constants. dx assigned; dgamma, dbeta accumulated; any of them null to skip.
void batchnorm_backward_eval(int rows, int C, const float* x, const float* gamma, const float* running_mean,
                             const float* running_var, float eps, const float* dy, float* dx, float* dgamma,
                             float* dbeta);

}  // namespace stoke::cpu
