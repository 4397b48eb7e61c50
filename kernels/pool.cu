// CUDA pooling over NHWC. One thread per output element in forward, one per input element in backward; the
// channel index is the fastest, so a warp reads and writes consecutive channels (coalesced).
#include <cmath>

#include "base/error.h"
#include "kernels/cuda_util.cuh"
#include "kernels/pool.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

struct Geo {
  int H, W, C, P, Q, kernel, stride, pad;
};

Geo geometry(const PoolShape& sh) {
  STOKE_CHECK(sh.n > 0 && sh.h > 0 && sh.w > 0 && sh.c > 0, "bad pool shape");
  STOKE_CHECK(sh.kernel > 0 && sh.stride > 0 && sh.pad >= 0, "bad pool kernel/stride/pad");
  STOKE_CHECK(sh.h + 2 * sh.pad >= sh.kernel && sh.w + 2 * sh.pad >= sh.kernel, "pool window larger than input");
  return {sh.h, sh.w, sh.c, sh.p(), sh.q(), sh.kernel, sh.stride, sh.pad};
}

// The output windows covering input row h: [begin, end) along one axis.
__device__ __forceinline__ void covering(int h, int pad, int kernel, int stride, int P, int& begin, int& end) {
  begin = h + pad < kernel ? 0 : (h + pad - kernel) / stride + 1;
  end = (h + pad) / stride + 1;
  if (end > P) end = P;
}

template <typename T>
__global__ void maxpool_forward_kernel(int64_t total, Geo g, const T* __restrict__ x, T* __restrict__ y,
                                       int32_t* __restrict__ argmax) {
  for (int64_t o = global_thread(); o < total; o += grid_threads()) {
    const int c = static_cast<int>(o % g.C);
    int64_t t = o / g.C;
    const int q = static_cast<int>(t % g.Q);
    t /= g.Q;
    const int p = static_cast<int>(t % g.P);
    const int64_t n = t / g.P;
    const int h0 = max(p * g.stride - g.pad, 0), h1 = min(p * g.stride - g.pad + g.kernel, g.H);
    const int w0 = max(q * g.stride - g.pad, 0), w1 = min(q * g.stride - g.pad + g.kernel, g.W);
    float best = 0.f;
    int32_t arg = -1;  // a window entirely in the padding: nothing to take
    if (h0 < h1 && w0 < w1) {
      const T* xn = x + n * g.H * g.W * g.C + c;
      arg = h0 * g.W + w0;
      best = to_float(xn[static_cast<int64_t>(arg) * g.C]);
      for (int h = h0; h < h1; ++h)
        for (int w = (h == h0 ? w0 + 1 : w0); w < w1; ++w) {
          const int32_t idx = h * g.W + w;
          const float v = to_float(xn[static_cast<int64_t>(idx) * g.C]);
          if (v > best || (isnan(v) && !isnan(best))) {
            best = v;
            arg = idx;
          }
        }
    }
    y[o] = from_float<T>(best);
    if (argmax) argmax[o] = arg;
  }
}

template <typename T>
__global__ void maxpool_backward_kernel(int64_t total, Geo g, const int32_t* __restrict__ argmax,
                                        const T* __restrict__ dy, T* __restrict__ dx) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int c = static_cast<int>(i % g.C);
    int64_t t = i / g.C;
    const int w = static_cast<int>(t % g.W);
    t /= g.W;
    const int h = static_cast<int>(t % g.H);
    const int64_t n = t / g.H;
    int p0, p1, q0, q1;
    covering(h, g.pad, g.kernel, g.stride, g.P, p0, p1);
    covering(w, g.pad, g.kernel, g.stride, g.Q, q0, q1);
    const int32_t me = h * g.W + w;
    float acc = 0.f;
    for (int p = p0; p < p1; ++p)
      for (int q = q0; q < q1; ++q) {
        const int64_t o = ((n * g.P + p) * g.Q + q) * g.C + c;
        if (argmax[o] == me) acc += to_float(dy[o]);
      }
    dx[i] = from_float<T>(acc);
  }
}

template <typename T>
__global__ void avgpool_forward_kernel(int64_t total, Geo g, const T* __restrict__ x, T* __restrict__ y) {
  const float inv = 1.f / static_cast<float>(g.kernel * g.kernel);  // padding counts in the divisor
  for (int64_t o = global_thread(); o < total; o += grid_threads()) {
    const int c = static_cast<int>(o % g.C);
    int64_t t = o / g.C;
    const int q = static_cast<int>(t % g.Q);
    t /= g.Q;
    const int p = static_cast<int>(t % g.P);
    const int64_t n = t / g.P;
    const int h0 = max(p * g.stride - g.pad, 0), h1 = min(p * g.stride - g.pad + g.kernel, g.H);
    const int w0 = max(q * g.stride - g.pad, 0), w1 = min(q * g.stride - g.pad + g.kernel, g.W);
    const T* xn = x + n * g.H * g.W * g.C + c;
    float acc = 0.f;
    for (int h = h0; h < h1; ++h)
      for (int w = w0; w < w1; ++w) acc += to_float(xn[(static_cast<int64_t>(h) * g.W + w) * g.C]);
    y[o] = from_float<T>(acc * inv);
  }
}

template <typename T>
__global__ void avgpool_backward_kernel(int64_t total, Geo g, const T* __restrict__ dy, T* __restrict__ dx) {
  const float inv = 1.f / static_cast<float>(g.kernel * g.kernel);
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int c = static_cast<int>(i % g.C);
    int64_t t = i / g.C;
    const int w = static_cast<int>(t % g.W);
    t /= g.W;
    const int h = static_cast<int>(t % g.H);
    const int64_t n = t / g.H;
    int p0, p1, q0, q1;
    covering(h, g.pad, g.kernel, g.stride, g.P, p0, p1);
    covering(w, g.pad, g.kernel, g.stride, g.Q, q0, q1);
    float acc = 0.f;
    for (int p = p0; p < p1; ++p)
      for (int q = q0; q < q1; ++q)
        // Unfused multiply-add, as the CPU reference rounds it.
        acc = __fadd_rn(acc, __fmul_rn(to_float(dy[((n * g.P + p) * g.Q + q) * g.C + c]), inv));
    dx[i] = from_float<T>(acc);
  }
}

template <typename T>
__global__ void global_avgpool_forward_kernel(int64_t total, int hw, int C, const T* __restrict__ x,
                                              T* __restrict__ y) {
  const float inv = 1.f / static_cast<float>(hw);
  for (int64_t o = global_thread(); o < total; o += grid_threads()) {
    const int c = static_cast<int>(o % C);
    const int64_t n = o / C;
    const T* xn = x + n * hw * C + c;
    float acc = 0.f;
    for (int j = 0; j < hw; ++j) acc += to_float(xn[static_cast<int64_t>(j) * C]);
    y[o] = from_float<T>(acc * inv);
  }
}

template <typename T>
__global__ void global_avgpool_backward_kernel(int64_t total, int hw, int C, const T* __restrict__ dy,
                                               T* __restrict__ dx) {
  const float inv = 1.f / static_cast<float>(hw);
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int c = static_cast<int>(i % C);
    const int64_t n = i / (static_cast<int64_t>(hw) * C);
    dx[i] = from_float<T>(to_float(dy[n * C + c]) * inv);
  }
}

}  // namespace

template <typename T>
void maxpool_forward(const PoolShape& sh, const T* x, T* y, int32_t* argmax, cudaStream_t stream) {
  const Geo g = geometry(sh);
  const int64_t total = static_cast<int64_t>(sh.n) * g.P * g.Q * g.C;
  maxpool_forward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, g, x, y, argmax);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void maxpool_backward(const PoolShape& sh, const int32_t* argmax, const T* dy, T* dx, cudaStream_t stream) {
  const Geo g = geometry(sh);
  const int64_t total = static_cast<int64_t>(sh.n) * g.H * g.W * g.C;
  maxpool_backward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, g, argmax, dy, dx);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void avgpool_forward(const PoolShape& sh, const T* x, T* y, cudaStream_t stream) {
  const Geo g = geometry(sh);
  const int64_t total = static_cast<int64_t>(sh.n) * g.P * g.Q * g.C;
  avgpool_forward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, g, x, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void avgpool_backward(const PoolShape& sh, const T* dy, T* dx, cudaStream_t stream) {
  const Geo g = geometry(sh);
  const int64_t total = static_cast<int64_t>(sh.n) * g.H * g.W * g.C;
  avgpool_backward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, g, dy, dx);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void global_avgpool_forward(int n, int hw, int c, const T* x, T* y, cudaStream_t stream) {
  STOKE_CHECK(n > 0 && hw > 0 && c > 0, "bad global pool shape");
  const int64_t total = static_cast<int64_t>(n) * c;
  global_avgpool_forward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, hw, c, x, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void global_avgpool_backward(int n, int hw, int c, const T* dy, T* dx, cudaStream_t stream) {
  STOKE_CHECK(n > 0 && hw > 0 && c > 0, "bad global pool shape");
  const int64_t total = static_cast<int64_t>(n) * hw * c;
  global_avgpool_backward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, hw, c, dy, dx);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T)                                                                              \
  template void maxpool_forward<T>(const PoolShape&, const T*, T*, int32_t*, cudaStream_t);         \
  template void maxpool_backward<T>(const PoolShape&, const int32_t*, const T*, T*, cudaStream_t);  \
  template void avgpool_forward<T>(const PoolShape&, const T*, T*, cudaStream_t);                   \
  template void avgpool_backward<T>(const PoolShape&, const T*, T*, cudaStream_t);                  \
  template void global_avgpool_forward<T>(int, int, int, const T*, T*, cudaStream_t);               \
  template void global_avgpool_backward<T>(int, int, int, const T*, T*, cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
