// Batch normalisation over the channels of an NHWC tensor, seen as rows = N*H*W by C channels.
// Statistics are fp32 (accumulated in double on the CPU). See kernels/README.md for conventions.
#pragma once

namespace stoke::cpu {

// Training mode: normalise with the batch statistics (biased variance), save mean and 1/sqrt(var+eps) for
// backward, and update the running statistics as PyTorch does:
//   running_mean = (1-momentum)*running_mean + momentum*mean
//   running_var  = (1-momentum)*running_var  + momentum*var*rows/(rows-1)   (unbiased)
void batchnorm_forward_train(int rows, int C, const float* x, const float* gamma, const float* beta, float eps,
                             float momentum, float* running_mean, float* running_var, float* y, float* save_mean,
                             float* save_invstd);

// Evaluation mode: normalise with the running statistics.
void batchnorm_forward_eval(int rows, int C, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y);

// Backward of the training-mode forward. dx assigned; dgamma, dbeta accumulated.
void batchnorm_backward(int rows, int C, const float* x, const float* gamma, const float* save_mean,
                        const float* save_invstd, const float* dy, float* dx, float* dgamma, float* dbeta);

}  // namespace stoke::cpu
