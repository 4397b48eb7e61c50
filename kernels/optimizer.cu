// Fused SGD / AdamW over chunks of the flat parameter array, and the finite check of the fp16 loss scaler.
// __fmul_rn / __fadd_rn / __fsub_rn / __fdiv_rn / __fsqrt_rn keep the compiler from contracting into FMAs, so
// the arithmetic is the CPU reference's, operation for operation.
#include "base/error.h"
#include "kernels/cuda_util.cuh"
#include "kernels/optimizer.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    sgd_kernel(const OptimizerChunk* __restrict__ chunks, float* __restrict__ params, T* __restrict__ params_half,
               const float* __restrict__ grads, float* __restrict__ buf, SgdArgs a,
               const int32_t* __restrict__ found_inf, const SgdArgs* __restrict__ args_device) {
  if (found_inf && *found_inf) return;
  if (args_device) a = *args_device;
  const OptimizerChunk ch = chunks[blockIdx.x];
  if (ch.lr_mult == 0.f) return;  // frozen: parameters and momentum stay as they are, bit for bit
  const float wd = ch.weight_decay;
  const float lr = __fmul_rn(a.lr, ch.lr_mult);
  for (int32_t j = threadIdx.x; j < ch.count; j += kThreads) {
    const int64_t i = ch.begin + j;
    float p = params[i];
    const float gi = __fadd_rn(__fmul_rn(grads[i], a.inv_scale), __fmul_rn(wd, p));
    if (buf == nullptr) {  // momentum 0: p -= lr * (g + wd * p)
      p = __fsub_rn(p, __fmul_rn(lr, gi));
    } else {
      const float b = a.first ? gi : __fadd_rn(__fmul_rn(a.momentum, buf[i]), gi);
      buf[i] = b;
      const float d = a.nesterov ? __fadd_rn(gi, __fmul_rn(a.momentum, b)) : b;
      p = __fsub_rn(p, __fmul_rn(lr, d));
    }
    params[i] = p;
    if (params_half) params_half[i] = from_float<T>(p);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const OptimizerChunk* __restrict__ chunks, float* __restrict__ params, T* __restrict__ params_half,
                 const float* __restrict__ grads, float* __restrict__ m, float* __restrict__ v, AdamwArgs a,
                 const int32_t* __restrict__ found_inf, const AdamwArgs* __restrict__ args_device) {
  if (found_inf && *found_inf) return;
  if (args_device) a = *args_device;
  const OptimizerChunk ch = chunks[blockIdx.x];
  if (ch.lr_mult == 0.f) return;  // frozen: no decay, m and v untouched
  const float lr_wd = __fmul_rn(__fmul_rn(a.lr, ch.lr_mult), ch.weight_decay);
  const float step_size = __fmul_rn(a.step_size, ch.lr_mult);  // the CPU's float(lr / bc1) * mult
  for (int32_t j = threadIdx.x; j < ch.count; j += kThreads) {
    const int64_t i = ch.begin + j;
    const float g = __fmul_rn(grads[i], a.inv_scale);
    float p = params[i];
    p = __fsub_rn(p, __fmul_rn(lr_wd, p));                                                  // p -= lr * wd * p
    const float mi = __fadd_rn(__fmul_rn(a.beta1, m[i]), __fmul_rn(a.one_minus_beta1, g));  // m = b1 m + (1-b1) g
    const float vi = __fadd_rn(__fmul_rn(a.beta2, v[i]), __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
    m[i] = mi;
    v[i] = vi;
    const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), a.inv_sqrt_bc2), a.eps);
    p = __fsub_rn(p, __fdiv_rn(__fmul_rn(step_size, mi), denom));
    params[i] = p;
    if (params_half) params_half[i] = from_float<T>(p);
  }
}

__global__ void __launch_bounds__(kThreads)
    check_finite_kernel(int64_t n, const float* __restrict__ x, int32_t* found_inf) {
  bool bad = false;
  for (int64_t i = global_thread(); i < n; i += grid_threads()) bad |= !isfinite(x[i]);
  if (__any_sync(0xffffffffu, bad) && (threadIdx.x % 32) == 0) atomicOr(found_inf, 1);
}

__global__ void __launch_bounds__(kThreads)
    ema_kernel(int64_t np, float* __restrict__ ep, const float* __restrict__ p, int64_t nb, float* __restrict__ eb,
               const float* __restrict__ b, float keep, float take, const int32_t* __restrict__ skip,
               const float* __restrict__ decay_device) {
  if (skip && *skip) return;
  if (decay_device) {
    keep = *decay_device;
    take = __fsub_rn(1.f, keep);  // the host's 1.f - decay
  }
  for (int64_t i = global_thread(); i < np + nb; i += grid_threads()) {
    float* e = i < np ? ep + i : eb + (i - np);
    const float x = i < np ? p[i] : b[i - np];
    *e = __fadd_rn(__fmul_rn(keep, *e), __fmul_rn(take, x));
  }
}

__global__ void __launch_bounds__(kThreads) swap_kernel(int64_t n, float* __restrict__ a, float* __restrict__ b) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) {
    const float t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

__global__ void set_step_control_kernel(StepControl* ctl, float lr, int32_t skip) {
  ctl->lr = lr;
  ctl->skip = skip;
  ctl->stop = 0;  // the synchronous path (diagnose, tests) is never a stop request
}

__global__ void prepare_step_kernel(StepState* st, const StepControl* __restrict__ ctl, StepConfig c) {
  prepare_step_state(*st, *ctl, c);
}

__global__ void pack_step_sums_kernel(const StepState* st, const StepControl* __restrict__ ctl, int n, float* sums) {
  pack_step_sums_state(st->record, *ctl, n, sums);
}

__global__ void unpack_step_sums_kernel(StepState* st, const float* __restrict__ sums) {
  unpack_step_sums_state(st->record, sums);
}

}  // namespace

void pack_step_sums(const StepState* state, const StepControl* ctl, int n, float* sums, cudaStream_t stream) {
  pack_step_sums_kernel<<<1, 1, 0, stream>>>(state, ctl, n, sums);
  CUDA_LAUNCH_CHECK(stream);
}

void unpack_step_sums(StepState* state, const float* sums, cudaStream_t stream) {
  unpack_step_sums_kernel<<<1, 1, 0, stream>>>(state, sums);
  CUDA_LAUNCH_CHECK(stream);
}

void set_step_control(StepControl* ctl, float lr, bool skip, cudaStream_t stream) {
  set_step_control_kernel<<<1, 1, 0, stream>>>(ctl, lr, skip ? 1 : 0);
  CUDA_LAUNCH_CHECK(stream);
}

void prepare_step(StepState* state, const StepControl* ctl, const StepConfig& config, cudaStream_t stream) {
  prepare_step_kernel<<<1, 1, 0, stream>>>(state, ctl, config);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void sgd_step(const OptimizerChunk* chunks, int nchunks, float* params, T* params_half, const float* grads,
              float* momentum_buf, const SgdArgs& a, const int32_t* found_inf, cudaStream_t stream,
              const SgdArgs* args_device) {
  if (nchunks <= 0) return;
  STOKE_CHECK(a.momentum == 0.f || momentum_buf != nullptr, "SGD with momentum needs its buffer");
  float* buf = a.momentum == 0.f ? nullptr : momentum_buf;
  sgd_kernel<T><<<nchunks, kThreads, 0, stream>>>(chunks, params, params_half, grads, buf, a, found_inf, args_device);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void adamw_step(const OptimizerChunk* chunks, int nchunks, float* params, T* params_half, const float* grads, float* m,
                float* v, const AdamwArgs& a, const int32_t* found_inf, cudaStream_t stream,
                const AdamwArgs* args_device) {
  if (nchunks <= 0) return;
  adamw_kernel<T>
      <<<nchunks, kThreads, 0, stream>>>(chunks, params, params_half, grads, m, v, a, found_inf, args_device);
  CUDA_LAUNCH_CHECK(stream);
}

void ema_update(int64_t n_params, float* ema_params, const float* params, int64_t n_buffers, float* ema_buffers,
                const float* buffers, float decay, const int32_t* skip, cudaStream_t stream,
                const float* decay_device) {
  const int64_t n = n_params + n_buffers;
  if (n <= 0) return;
  ema_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(n_params, ema_params, params, n_buffers, ema_buffers,
                                                             buffers, decay, 1.f - decay, skip, decay_device);
  CUDA_LAUNCH_CHECK(stream);
}

void swap_values(int64_t n, float* a, float* b, cudaStream_t stream) {
  if (n <= 0) return;
  swap_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, a, b);
  CUDA_LAUNCH_CHECK(stream);
}

void check_finite(int64_t n, const float* x, int32_t* found_inf, cudaStream_t stream) {
  if (n <= 0) return;
  check_finite_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, x, found_inf);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T)                                                                                                \
  template void sgd_step<T>(const OptimizerChunk*, int, float*, T*, const float*, float*, const SgdArgs&,             \
                            const int32_t*, cudaStream_t, const SgdArgs*);                                            \
  template void adamw_step<T>(const OptimizerChunk*, int, float*, T*, const float*, float*, float*, const AdamwArgs&, \
                              const int32_t*, cudaStream_t, const AdamwArgs*);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
