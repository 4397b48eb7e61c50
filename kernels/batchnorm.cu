// CUDA batch normalisation (train and eval, forward and backward, optionally fused with a residual add and
// ReLU). Three launches per pass: per-chunk partials, a per-channel finalize (statistics, running averages,
// the per-channel coefficients of the element-wise pass) and the element-wise pass.
//
// Workspace layout: [3 * chunks * C doubles: partials][4C + 1 doubles: --sync-bn sums][3 * C floats: per-channel
// coefficients].
//   forward: coefficients (m, s, b) with y = (x - m) * s + b   (train: batch mean, gamma*invstd, beta;
//                                                              eval: running mean, gamma*invstd_running, beta)
//   backward: (k1, k2, k3) with dx = k1 * dz + k2 * (x - mean) + k3, as in the CPU reference.
//
// --sync-bn (`across`, the processes' sum): the finalize splits in two around the collectives. Forward: this
// process's (mean, m2) per channel; sum (count x mean, count) over the processes: the global mean; each process's
// squared deviations from it, m2 + count (mean_local - mean)^2 (Chan's pairwise formula, so no E[x^2] - E[x]^2);
// sum them: the global variance. Backward: sum (sum dz, sum dz xhat, count). dgamma and dbeta take this process's
// own sums (the gradient all-reduce adds the processes' shares), as the CPU reference does.
#include <cmath>

#include "base/error.h"
#include "kernels/batchnorm.cuh"
#include "kernels/channel_reduce.cuh"
#include "kernels/cuda_util.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;
using reduce::kFinThreads;

int64_t sync_doubles(int C) { return 4 * static_cast<int64_t>(C) + 1; }
double* partials(void* ws) { return static_cast<double*>(ws); }
double* sync_sums(void* ws, int64_t rows, int C) { return partials(ws) + reduce::partial_doubles(rows, C); }
float* coefficients(void* ws, int64_t rows, int C) {
  return reinterpret_cast<float*>(static_cast<char*>(ws) +
                                  sizeof(double) * (reduce::partial_doubles(rows, C) + sync_doubles(C)));
}

// Channel c's statistics from its mean and biased variance over `total` rows (every process's under --sync-bn):
// the saved statistics, the running averages (unbiased variance) and the forward's coefficients.
__device__ void finish_train_stats(int c, int C, double mean, double var, double total, const float* __restrict__ gamma,
                                   const float* __restrict__ beta, float eps, float momentum, float* running_mean,
                                   float* running_var, float* save_mean, float* save_invstd, float* __restrict__ coef) {
  const float m = static_cast<float>(mean);
  const float invstd = static_cast<float>(1.0 / sqrt(var + static_cast<double>(eps)));
  if (save_mean) save_mean[c] = m;
  if (save_invstd) save_invstd[c] = invstd;
  coef[c] = m;
  coef[C + c] = gamma[c] * invstd;
  coef[2 * C + c] = beta[c];
  const double unbiased = total > 1.0 ? var * total / (total - 1.0) : var;
  const double mom = momentum;
  if (running_mean) running_mean[c] = static_cast<float>((1.0 - mom) * running_mean[c] + mom * mean);
  if (running_var) running_var[c] = static_cast<float>((1.0 - mom) * running_var[c] + mom * unbiased);
}

__global__ void __launch_bounds__(kFinThreads)
    train_finalize_kernel(int64_t rows, int C, int chunks, const double* __restrict__ part,
                          const float* __restrict__ gamma, const float* __restrict__ beta, float eps, float momentum,
                          float* running_mean, float* running_var, float* save_mean, float* save_invstd,
                          float* __restrict__ coef) {
  double N, M, Q;
  reduce::welford_combine(C, chunks, part, N, M, Q);
  if (threadIdx.x != 0) return;
  const double r = static_cast<double>(rows);
  const double var = Q > 0.0 ? Q / r : 0.0;  // biased: the batch is normalised with it
  finish_train_stats(blockIdx.x, C, M, var, r, gamma, beta, eps, momentum, running_mean, running_var, save_mean,
                     save_invstd, coef);
}

// --sync-bn forward, before the first sum: loc = (mean, m2) of this process's rows per channel, red = (count x mean
// per channel, count).
__global__ void __launch_bounds__(kFinThreads)
    local_stats_kernel(int64_t rows, int C, int chunks, const double* __restrict__ part, double* __restrict__ loc,
                       double* __restrict__ red) {
  double N, M, Q;
  reduce::welford_combine(C, chunks, part, N, M, Q);
  if (threadIdx.x != 0) return;
  const int c = blockIdx.x;
  loc[c] = M;
  loc[C + c] = Q;
  red[c] = N * M;
  if (c == 0) red[C] = static_cast<double>(rows);
}

// Between the sums: this process's squared deviations from the global mean.
__global__ void deviation_kernel(int64_t rows, int C, const double* __restrict__ loc, const double* __restrict__ red,
                                 double* __restrict__ dev) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double d = loc[c] - red[c] / red[C];
  dev[c] = loc[C + c] + static_cast<double>(rows) * d * d;
}

// After the second sum: the global statistics.
__global__ void sync_finalize_kernel(int C, const double* __restrict__ red, const double* __restrict__ dev,
                                     const float* __restrict__ gamma, const float* __restrict__ beta, float eps,
                                     float momentum, float* running_mean, float* running_var, float* save_mean,
                                     float* save_invstd, float* __restrict__ coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double total = red[C];
  finish_train_stats(c, C, red[c] / total, dev[c] > 0.0 ? dev[c] / total : 0.0, total, gamma, beta, eps, momentum,
                     running_mean, running_var, save_mean, save_invstd, coef);
}

__global__ void eval_coef_kernel(int C, const float* __restrict__ gamma, const float* __restrict__ beta,
                                 const float* __restrict__ running_mean, const float* __restrict__ running_var,
                                 float eps, float* __restrict__ coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  coef[c] = running_mean[c];
  coef[C + c] =
      gamma[c] * static_cast<float>(1.0 / sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps)));
  coef[2 * C + c] = beta[c];
}

// y = act((x - m[c]) * s[c] + b[c] + residual)
template <typename T, int V>
__global__ void apply_kernel(int64_t n, int C, const T* x, const T* residual, bool relu, const float* __restrict__ coef,
                             T* y) {
  const float* m = coef;
  const float* s = coef + C;
  const float* b = coef + 2 * C;
  const int64_t nv = n / V;
  for (int64_t j = global_thread(); j < nv; j += grid_threads()) {
    const int64_t i = j * V;
    float f[V], r[V] = {};
    load_f<V>(x + i, f);
    if (residual) load_f<V>(residual + i, r);
    int c = static_cast<int>(i % C);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float v = (f[k] - m[c]) * s[c] + b[c] + r[k];
      if (relu) v = v > 0.f ? v : 0.f;
      f[k] = v;
      if (++c == C) c = 0;
    }
    store_f<V>(y + i, f);
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads()) {
    const int c = static_cast<int>(i % C);
    float v = (to_float(x[i]) - m[c]) * s[c] + b[c];
    if (residual) v += to_float(residual[i]);
    if (relu) v = v > 0.f ? v : 0.f;
    y[i] = from_float<T>(v);
  }
}

// Channel c's backward coefficients from the sums over `total` rows (every process's under --sync-bn).
__device__ void finish_backward(int c, int C, double sum_dz, double sum_dz_xhat, double total,
                                const float* __restrict__ gamma, const float* __restrict__ save_invstd,
                                float* __restrict__ coef) {
  const double invstd = save_invstd[c];
  const double g = static_cast<double>(gamma[c]) * invstd;
  coef[c] = static_cast<float>(g);
  coef[C + c] = static_cast<float>(-g * sum_dz_xhat * invstd / total);
  coef[2 * C + c] = static_cast<float>(-g * sum_dz / total);
}

// Combines the chunk partials; dgamma and dbeta take this process's sums. With `red` (--sync-bn) the sums go there
// for the processes' sum, [sum dz | sum dz xhat | count], and the coefficients wait for it; else they are made here.
__global__ void __launch_bounds__(kFinThreads)
    backward_finalize_kernel(int64_t rows, int C, int chunks, const double* __restrict__ part,
                             const float* __restrict__ gamma, const float* __restrict__ save_invstd, float* dgamma,
                             float* dbeta, float* __restrict__ coef, double* __restrict__ red) {
  double sum_dz, sum_dz_xhat;
  reduce::sums_combine(C, chunks, part, sum_dz, sum_dz_xhat);
  if (threadIdx.x != 0) return;
  const int c = blockIdx.x;
  if (dbeta) dbeta[c] += static_cast<float>(sum_dz);
  if (dgamma) dgamma[c] += static_cast<float>(sum_dz_xhat);
  if (red) {
    red[c] = sum_dz;
    red[C + c] = sum_dz_xhat;
    if (c == 0) red[2 * C] = static_cast<double>(rows);
    return;
  }
  finish_backward(c, C, sum_dz, sum_dz_xhat, static_cast<double>(rows), gamma, save_invstd, coef);
}

__global__ void sync_backward_coef_kernel(int C, const double* __restrict__ red, const float* __restrict__ gamma,
                                          const float* __restrict__ save_invstd, float* __restrict__ coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  finish_backward(c, C, red[c], red[C + c], red[2 * C], gamma, save_invstd, coef);
}

// Eval mode: the running statistics are constants, so dx = gamma * invstd * dz (k1; k2 = k3 = 0), and xhat for dgamma
// uses the running mean and invstd (kept in the --sync-bn region of the workspace, which eval mode does not use).
__global__ void eval_backward_coef_kernel(int C, const float* __restrict__ gamma, const float* __restrict__ running_var,
                                          float eps, float* __restrict__ invstd, float* __restrict__ coef) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double is = 1.0 / sqrt(static_cast<double>(running_var[c]) + static_cast<double>(eps));
  invstd[c] = static_cast<float>(is);
  coef[c] = static_cast<float>(static_cast<double>(gamma[c]) * is);
  coef[C + c] = 0.f;
  coef[2 * C + c] = 0.f;
}

__global__ void __launch_bounds__(kFinThreads)
    eval_backward_finalize_kernel(int C, int chunks, const double* __restrict__ part, float* dgamma, float* dbeta) {
  double sum_dz, sum_dz_xhat;
  reduce::sums_combine(C, chunks, part, sum_dz, sum_dz_xhat);
  if (threadIdx.x != 0) return;
  if (dbeta) dbeta[blockIdx.x] += static_cast<float>(sum_dz);
  if (dgamma) dgamma[blockIdx.x] += static_cast<float>(sum_dz_xhat);
}

// dz = relu ? (y > 0 ? dy : 0) : dy;  dres = dz;  dx = k1 * dz + k2 * (x - mean) + k3
template <typename T, int V>
__global__ void backward_apply_kernel(int64_t n, int C, const T* x, const T* y, const T* dy, bool relu,
                                      const float* __restrict__ mean, const float* __restrict__ coef, T* dx, T* dres) {
  const float* k1 = coef;
  const float* k2 = coef + C;
  const float* k3 = coef + 2 * C;
  const int64_t nv = n / V;
  for (int64_t j = global_thread(); j < nv; j += grid_threads()) {
    const int64_t i = j * V;
    float g[V], fy[V] = {}, fx[V] = {};
    load_f<V>(dy + i, g);
    if (relu) load_f<V>(y + i, fy);
    if (dx) load_f<V>(x + i, fx);
#pragma unroll
    for (int k = 0; k < V; ++k)
      if (relu && !(fy[k] > 0.f)) g[k] = 0.f;
    if (dres) store_f<V>(dres + i, g);
    if (dx) {
      int c = static_cast<int>(i % C);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        fx[k] = k1[c] * g[k] + k2[c] * (fx[k] - mean[c]) + k3[c];
        if (++c == C) c = 0;
      }
      store_f<V>(dx + i, fx);
    }
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads()) {
    float g = to_float(dy[i]);
    if (relu && !(to_float(y[i]) > 0.f)) g = 0.f;
    if (dres) dres[i] = from_float<T>(g);
    if (dx) {
      const int c = static_cast<int>(i % C);
      dx[i] = from_float<T>(k1[c] * g + k2[c] * (to_float(x[i]) - mean[c]) + k3[c]);
    }
  }
}

template <typename T>
void launch_apply(int64_t n, int C, const T* x, const T* residual, bool relu, const float* coef, T* y,
                  cudaStream_t stream) {
  constexpr int V = vec_width<T>();
  if (aligned16(x) && aligned16(residual) && aligned16(y))
    apply_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, C, x, residual, relu, coef, y);
  else
    apply_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, C, x, residual, relu, coef, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void launch_backward_apply(int64_t n, int C, const T* x, const T* y, const T* dy, bool relu, const float* mean,
                           const float* coef, T* dx, T* dres, cudaStream_t stream) {
  constexpr int V = vec_width<T>();
  if (aligned16(x) && aligned16(y) && aligned16(dy) && aligned16(dx) && aligned16(dres))
    backward_apply_kernel<T, V>
        <<<grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, C, x, y, dy, relu, mean, coef, dx, dres);
  else
    backward_apply_kernel<T, 1>
        <<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, C, x, y, dy, relu, mean, coef, dx, dres);
  CUDA_LAUNCH_CHECK(stream);
}

void check_shape(int rows, int C) { STOKE_CHECK(rows > 0 && C > 0, "batchnorm over an empty tensor"); }

}  // namespace

int64_t batchnorm_workspace_bytes(int64_t rows, int C) {
  return static_cast<int64_t>(sizeof(double)) * (reduce::partial_doubles(rows, C) + sync_doubles(C)) +
         static_cast<int64_t>(sizeof(float)) * 3 * C;
}

template <typename T>
void batchnorm_add_relu_forward_train(int rows, int C, const T* x, const T* residual, bool relu, const float* gamma,
                                      const float* beta, float eps, float momentum, float* running_mean,
                                      float* running_var, T* y, float* save_mean, float* save_invstd, void* workspace,
                                      cudaStream_t stream, const DeviceChannelAllReduce* across) {
  check_shape(rows, C);
  const int chunks = reduce::chunks_for(rows);
  double* part = partials(workspace);
  float* coef = coefficients(workspace, rows, C);
  reduce::welford_partial_kernel<T>
      <<<reduce::partial_grid(chunks, C), reduce::partial_block(), 0, stream>>>(rows, C, chunks, x, part);
  CUDA_LAUNCH_CHECK(stream);
  if (across) {
    double* loc = sync_sums(workspace, rows, C);  // 2C
    double* red = loc + 2 * C;                    // C + 1
    double* dev = red + C + 1;                    // C
    const int blocks = (C + kThreads - 1) / kThreads;
    local_stats_kernel<<<C, kFinThreads, 0, stream>>>(rows, C, chunks, part, loc, red);
    CUDA_LAUNCH_CHECK(stream);
    (*across)(red, C + 1, stream);
    deviation_kernel<<<blocks, kThreads, 0, stream>>>(rows, C, loc, red, dev);
    CUDA_LAUNCH_CHECK(stream);
    (*across)(dev, C, stream);
    sync_finalize_kernel<<<blocks, kThreads, 0, stream>>>(C, red, dev, gamma, beta, eps, momentum, running_mean,
                                                          running_var, save_mean, save_invstd, coef);
  } else {
    train_finalize_kernel<<<C, kFinThreads, 0, stream>>>(rows, C, chunks, part, gamma, beta, eps, momentum,
                                                         running_mean, running_var, save_mean, save_invstd, coef);
  }
  CUDA_LAUNCH_CHECK(stream);
  launch_apply(static_cast<int64_t>(rows) * C, C, x, residual, relu, coef, y, stream);
}

template <typename T>
void batchnorm_add_relu_forward_eval(int rows, int C, const T* x, const T* residual, bool relu, const float* gamma,
                                     const float* beta, const float* running_mean, const float* running_var, float eps,
                                     T* y, void* workspace, cudaStream_t stream) {
  check_shape(rows, C);
  float* coef = coefficients(workspace, rows, C);
  eval_coef_kernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(C, gamma, beta, running_mean, running_var,
                                                                           eps, coef);
  CUDA_LAUNCH_CHECK(stream);
  launch_apply(static_cast<int64_t>(rows) * C, C, x, residual, relu, coef, y, stream);
}

template <typename T>
void batchnorm_add_relu_backward(int rows, int C, const T* x, const float* gamma, const float* save_mean,
                                 const float* save_invstd, const T* y, const T* dy, bool relu, T* dx, T* dresidual,
                                 float* dgamma, float* dbeta, void* workspace, cudaStream_t stream,
                                 const DeviceChannelAllReduce* across) {
  check_shape(rows, C);
  STOKE_CHECK(save_mean && save_invstd, "batchnorm backward needs the saved statistics");
  STOKE_CHECK(!relu || y, "fused ReLU backward needs the forward output");
  const int chunks = reduce::chunks_for(rows);
  double* part = partials(workspace);
  float* coef = coefficients(workspace, rows, C);
  reduce::sums_partial_kernel<T><<<reduce::partial_grid(chunks, C), reduce::partial_block(), 0, stream>>>(
      rows, C, chunks, dy, y, relu, x, save_mean, save_invstd, part);
  CUDA_LAUNCH_CHECK(stream);
  double* red = across ? sync_sums(workspace, rows, C) : nullptr;  // 2C + 1
  backward_finalize_kernel<<<C, kFinThreads, 0, stream>>>(rows, C, chunks, part, gamma, save_invstd, dgamma, dbeta,
                                                          coef, red);
  CUDA_LAUNCH_CHECK(stream);
  if (across) {  // every process takes part in the sum, whatever it goes on to compute
    (*across)(red, 2 * C + 1, stream);
    sync_backward_coef_kernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(C, red, gamma, save_invstd, coef);
    CUDA_LAUNCH_CHECK(stream);
  }
  if (!dx && !dresidual) return;
  launch_backward_apply<T>(static_cast<int64_t>(rows) * C, C, x, y, dy, relu, save_mean, coef, dx, dresidual, stream);
}

template <typename T>
void batchnorm_add_relu_backward_eval(int rows, int C, const T* x, const float* gamma, const float* running_mean,
                                      const float* running_var, float eps, const T* y, const T* dy, bool relu, T* dx,
                                      T* dresidual, float* dgamma, float* dbeta, void* workspace, cudaStream_t stream) {
  check_shape(rows, C);
  STOKE_CHECK(!relu || y, "fused ReLU backward needs the forward output");
  float* coef = coefficients(workspace, rows, C);
  float* invstd = reinterpret_cast<float*>(sync_sums(workspace, rows, C));  // C floats in 4C + 1 doubles
  eval_backward_coef_kernel<<<(C + kThreads - 1) / kThreads, kThreads, 0, stream>>>(C, gamma, running_var, eps, invstd,
                                                                                    coef);
  CUDA_LAUNCH_CHECK(stream);
  if (dgamma || dbeta) {
    const int chunks = reduce::chunks_for(rows);
    double* part = partials(workspace);
    reduce::sums_partial_kernel<T><<<reduce::partial_grid(chunks, C), reduce::partial_block(), 0, stream>>>(
        rows, C, chunks, dy, y, relu, x, running_mean, invstd, part);
    CUDA_LAUNCH_CHECK(stream);
    eval_backward_finalize_kernel<<<C, kFinThreads, 0, stream>>>(C, chunks, part, dgamma, dbeta);
    CUDA_LAUNCH_CHECK(stream);
  }
  if (!dx && !dresidual) return;
  launch_backward_apply<T>(static_cast<int64_t>(rows) * C, C, x, y, dy, relu, running_mean, coef, dx, dresidual,
                           stream);
}

template <typename T>
void batchnorm_forward_train(int rows, int C, const T* x, const float* gamma, const float* beta, float eps,
                             float momentum, float* running_mean, float* running_var, T* y, float* save_mean,
                             float* save_invstd, void* workspace, cudaStream_t stream,
                             const DeviceChannelAllReduce* across) {
  batchnorm_add_relu_forward_train<T>(rows, C, x, nullptr, false, gamma, beta, eps, momentum, running_mean, running_var,
                                      y, save_mean, save_invstd, workspace, stream, across);
}

template <typename T>
void batchnorm_forward_eval(int rows, int C, const T* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, T* y, void* workspace,
                            cudaStream_t stream) {
  batchnorm_add_relu_forward_eval<T>(rows, C, x, nullptr, false, gamma, beta, running_mean, running_var, eps, y,
                                     workspace, stream);
}

template <typename T>
void batchnorm_backward(int rows, int C, const T* x, const float* gamma, const float* save_mean,
                        const float* save_invstd, const T* dy, T* dx, float* dgamma, float* dbeta, void* workspace,
                        cudaStream_t stream, const DeviceChannelAllReduce* across) {
  batchnorm_add_relu_backward<T>(rows, C, x, gamma, save_mean, save_invstd, nullptr, dy, false, dx, nullptr, dgamma,
                                 dbeta, workspace, stream, across);
}

template <typename T>
void batchnorm_backward_eval(int rows, int C, const T* x, const float* gamma, const float* running_mean,
                             const float* running_var, float eps, const T* dy, T* dx, float* dgamma, float* dbeta,
                             void* workspace, cudaStream_t stream) {
  batchnorm_add_relu_backward_eval<T>(rows, C, x, gamma, running_mean, running_var, eps, nullptr, dy, false, dx,
                                      nullptr, dgamma, dbeta, workspace, stream);
}

#define INSTANTIATE(T)                                                                                                 \
  template void batchnorm_forward_train<T>(int, int, const T*, const float*, const float*, float, float, float*,       \
                                           float*, T*, float*, float*, void*, cudaStream_t,                            \
                                           const DeviceChannelAllReduce*);                                             \
  template void batchnorm_forward_eval<T>(int, int, const T*, const float*, const float*, const float*, const float*,  \
                                          float, T*, void*, cudaStream_t);                                             \
  template void batchnorm_backward<T>(int, int, const T*, const float*, const float*, const float*, const T*, T*,      \
                                      float*, float*, void*, cudaStream_t, const DeviceChannelAllReduce*);             \
  template void batchnorm_add_relu_forward_train<T>(int, int, const T*, const T*, bool, const float*, const float*,    \
                                                    float, float, float*, float*, T*, float*, float*, void*,           \
                                                    cudaStream_t, const DeviceChannelAllReduce*);                      \
  template void batchnorm_add_relu_forward_eval<T>(int, int, const T*, const T*, bool, const float*, const float*,     \
                                                   const float*, const float*, float, T*, void*, cudaStream_t);        \
  template void batchnorm_add_relu_backward<T>(int, int, const T*, const float*, const float*, const float*, const T*, \
                                               const T*, bool, T*, T*, float*, float*, void*, cudaStream_t,            \
                                               const DeviceChannelAllReduce*);                                         \
  template void batchnorm_backward_eval<T>(int, int, const T*, const float*, const float*, const float*, float,        \
                                           const T*, T*, float*, float*, void*, cudaStream_t);                         \
  template void batchnorm_add_relu_backward_eval<T>(int, int, const T*, const float*, const float*, const float*,      \
                                                    float, const T*, const T*, bool, T*, T*, float*, float*, void*,    \
                                                    cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
