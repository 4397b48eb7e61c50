// CUDA softmax cross-entropy: kernel 1 gives every row a warp (lanes stride the classes; shuffles combine in a
// fixed pattern), kernel 2 is one block that averages the per-row losses and counts the hits in a fixed order.
#include <cmath>

#include "base/error.h"
#include "kernels/cuda_util.cuh"
#include "kernels/softmax_ce.cuh"

namespace stoke::cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kMeanThreads = 512;  // a power of two

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    rows_kernel(int n, int K, const T* __restrict__ logits, const int32_t* __restrict__ labels,
                const BatchMix* __restrict__ mix, float smoothing, float g, const float* __restrict__ grad_scale_device,
                float* __restrict__ row_loss, int32_t* __restrict__ row_hit, float* __restrict__ losses,
                T* __restrict__ dlogits) {
  if (grad_scale_device) g = *grad_scale_device / static_cast<float>(n);  // as the host computes it below
  const int row = blockIdx.x * kWarpsPerBlock + static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (row >= n) return;  // the whole warp leaves together
  const T* z = logits + static_cast<int64_t>(row) * K;

  // First maximum: per lane over its classes (increasing k, strict >), then across lanes preferring the larger
  // value and, on ties, the smaller index.
  float best = -INFINITY;
  int arg = K;
  for (int k = lane; k < K; k += 32) {
    const float v = to_float(z[k]);
    if (arg == K || v > best) {
      best = v;
      arg = k;
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o);
    const int oa = __shfl_xor_sync(0xffffffffu, arg, o);
    if (oa < K && (arg == K || ob > best || (ob == best && oa < arg))) {
      best = ob;
      arg = oa;
    }
  }
  const float m = best;

  float se = 0.f, sz = 0.f;
  for (int k = lane; k < K; k += 32) {
    const float v = to_float(z[k]);
    se += expf(v - m);
    sz += v;
  }
  se = warp_sum(se);
  sz = warp_sum(sz);
  const float lse = m + logf(se);
  const int y = labels[row];
  const float off = smoothing / static_cast<float>(K);
  const float on = 1.f - smoothing + off;
  if (mix) {  // the row's partner is row n-1-row (kernels/mix.h)
    const int yb = labels[n - 1 - row];
    const float wa = mix->lam, wb = 1.f - mix->lam;
    const bool valid = y >= 0 && y < K && yb >= 0 && yb < K;
    if (lane == 0) {
      const float zy = valid ? wa * to_float(z[y]) + wb * to_float(z[yb]) : 0.f;
      const float loss = valid ? lse - (1.f - smoothing) * zy - off * sz : NAN;
      row_loss[row] = loss;
      row_hit[row] = valid && arg == (wa >= 0.5f ? y : yb) ? 1 : 0;
      if (losses) losses[row] = loss;
    }
    if (dlogits) {
      T* d = dlogits + static_cast<int64_t>(row) * K;
      for (int k = lane; k < K; k += 32) {
        const float p = expf(to_float(z[k]) - lse);
        const float t = off + (1.f - smoothing) * ((k == y ? wa : 0.f) + (k == yb ? wb : 0.f));
        d[k] = from_float<T>(valid ? (p - t) * g : 0.f);
      }
    }
    return;
  }
  const bool valid = y >= 0 && y < K;
  if (lane == 0) {
    // -sum_k t_k (z_k - lse) = lse - (1 - e) z_y - (e / K) sum_k z_k
    const float loss = valid ? lse - (1.f - smoothing) * to_float(z[y]) - off * sz : NAN;
    row_loss[row] = loss;
    row_hit[row] = valid && arg == y ? 1 : 0;
    if (losses) losses[row] = loss;
  }
  if (dlogits) {
    T* d = dlogits + static_cast<int64_t>(row) * K;
    for (int k = lane; k < K; k += 32) {
      const float p = expf(to_float(z[k]) - lse);
      d[k] = from_float<T>(valid ? (p - (k == y ? on : off)) * g : 0.f);
    }
  }
}

__global__ void __launch_bounds__(kMeanThreads)
    mean_kernel(int n, const float* __restrict__ row_loss, const int32_t* __restrict__ row_hit,
                float* __restrict__ mean_loss, int32_t* __restrict__ correct) {
  __shared__ double sl[kMeanThreads];
  __shared__ int sh[kMeanThreads];
  const int t = threadIdx.x;
  double l = 0.0;
  int h = 0;
  for (int i = t; i < n; i += kMeanThreads) {
    l += row_loss[i];
    h += row_hit[i];
  }
  sl[t] = l;
  sh[t] = h;
  __syncthreads();
  for (int s = kMeanThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      sl[t] += sl[t + s];
      sh[t] += sh[t + s];
    }
    __syncthreads();
  }
  if (t == 0) {
    *mean_loss = static_cast<float>(sl[0] / n);
    if (correct) *correct = sh[0];
  }
}

}  // namespace

int64_t softmax_ce_workspace_bytes(int n) { return static_cast<int64_t>(n) * (sizeof(float) + sizeof(int32_t)) + 16; }

namespace {

// mix null: the plain loss.
template <typename T>
void cross_entropy(int n, int classes, const T* logits, const int32_t* labels, const BatchMix* mix, float smoothing,
                   float grad_scale, float* losses, T* dlogits, float* mean_loss, int32_t* correct, void* workspace,
                   cudaStream_t stream, const float* grad_scale_device) {
  STOKE_CHECK(n > 0 && classes > 0, "softmax cross-entropy over an empty batch");
  STOKE_CHECK(mean_loss != nullptr && workspace != nullptr);
  auto* row_loss = static_cast<float*>(workspace);
  auto* row_hit = reinterpret_cast<int32_t*>(row_loss + n);
  const float g = grad_scale / static_cast<float>(n);
  const int blocks = (n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  rows_kernel<T><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(n, classes, logits, labels, mix, smoothing, g,
                                                             grad_scale_device, row_loss, row_hit, losses, dlogits);
  CUDA_LAUNCH_CHECK(stream);
  mean_kernel<<<1, kMeanThreads, 0, stream>>>(n, row_loss, row_hit, mean_loss, correct);
  CUDA_LAUNCH_CHECK(stream);
}

}  // namespace

template <typename T>
void softmax_cross_entropy(int n, int classes, const T* logits, const int32_t* labels, float smoothing,
                           float grad_scale, float* losses, T* dlogits, float* mean_loss, int32_t* correct,
                           void* workspace, cudaStream_t stream, const float* grad_scale_device) {
  cross_entropy<T>(n, classes, logits, labels, nullptr, smoothing, grad_scale, losses, dlogits, mean_loss, correct,
                   workspace, stream, grad_scale_device);
}

template <typename T>
void softmax_cross_entropy_mixed(int n, int classes, const T* logits, const int32_t* labels, const BatchMix* mix_device,
                                 float smoothing, float grad_scale, float* losses, T* dlogits, float* mean_loss,
                                 int32_t* correct, void* workspace, cudaStream_t stream,
                                 const float* grad_scale_device) {
  STOKE_CHECK(mix_device != nullptr, "mixed cross-entropy without its batch's mix");
  cross_entropy<T>(n, classes, logits, labels, mix_device, smoothing, grad_scale, losses, dlogits, mean_loss, correct,
                   workspace, stream, grad_scale_device);
}

#define INSTANTIATE(T)                                                                                            \
  template void softmax_cross_entropy<T>(int, int, const T*, const int32_t*, float, float, float*, T*, float*,    \
                                         int32_t*, void*, cudaStream_t, const float*);                            \
  template void softmax_cross_entropy_mixed<T>(int, int, const T*, const int32_t*, const BatchMix*, float, float, \
                                               float*, T*, float*, int32_t*, void*, cudaStream_t, const float*);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
