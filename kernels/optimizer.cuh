// Fused multi-tensor optimizer steps on fp32 master weights, the CUDA side of engine/optimizer.h (same
// semantics, same float operation order: every multiply and add is rounded separately, as the CPU reference
// rounds them, so an fp32 step is bit-identical to Optimizer::step on the same inputs).
//
// One launch updates every parameter: the flat arrays (Graph layout) are cut into chunks of one parameter each
// (OptimizerChunk, uploaded once), one block per chunk, so per-parameter weight decay costs nothing. In the same
// pass the gradient is unscaled (g * inv_scale, the fp16 loss scale's inverse; 1 otherwise) and the half-precision
// copy of the weights that forward/backward read is rewritten (params_half may be null when there is none).
// found_inf (may be null): when *found_inf != 0 the kernel changes nothing: the step is skipped.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

struct OptimizerChunk {
  int64_t begin = 0;         // first element, in the flat arrays
  int32_t count = 0;         // elements (<= kOptimizerChunk)
  float weight_decay = 0.f;  // this parameter's decay (0 for BN affine parameters and biases)
};
inline constexpr int32_t kOptimizerChunk = 8192;

struct SgdArgs {
  float lr = 0.f, momentum = 0.f;
  bool nesterov = false;
  bool first = false;      // the first step: buf = g
  float inv_scale = 1.f;
};

// momentum_buf may be null when momentum == 0.
template <typename T>
void sgd_step(const OptimizerChunk* chunks, int nchunks, float* params, T* params_half, const float* grads,
              float* momentum_buf, const SgdArgs& a, const int32_t* found_inf, cudaStream_t stream);

struct AdamwArgs {
  float lr = 0.f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;  // (1.f - beta), computed in float as the CPU does
  float step_size = 0.f;     // float(lr / (1 - beta1^t)), computed in double on the host
  float inv_sqrt_bc2 = 1.f;  // float(1 / sqrt(1 - beta2^t))
  float inv_scale = 1.f;
};

template <typename T>
void adamw_step(const OptimizerChunk* chunks, int nchunks, float* params, T* params_half, const float* grads, float* m,
                float* v, const AdamwArgs& a, const int32_t* found_inf, cudaStream_t stream);

// Sets *found_inf = 1 when any of x[0, n) is infinite or NaN (never clears it: zero it before the first check of
// a step). Integer atomics only, so the flag is deterministic.
void check_finite(int64_t n, const float* x, int32_t* found_inf, cudaStream_t stream);

}  // namespace stoke::cuda
