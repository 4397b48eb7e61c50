// Deterministic per-channel reductions over an NHWC tensor seen as rows x C (device code; .cu files only).
//
// Phase 1 (partial kernels): the rows are cut into a fixed number of chunks chosen from `rows` alone
// (reduce_chunks); block (chunk, channel tile) has 32 x 8 threads: threadIdx.x walks 32 consecutive channels
// (coalesced), threadIdx.y strides the chunk's rows by 8. Each thread accumulates in fp32, the 8 row-lanes are
// combined in a fixed order in double, and the chunk's partial is written to the workspace (double).
// Phase 2 (finalize kernels, one block of kFinThreads per channel): thread t combines chunks t, t + 256, ...
// in order, then a fixed shared-memory tree. No float atomics anywhere, so results are bit-identical from run to
// run and do not depend on the GPU's size.
//
// Statistics use Welford per thread and Chan's pairwise combination, so the variance needs one read of x and
// does not cancel when the mean is large against the spread.
#pragma once

#include <cstdint>

#include "kernels/cuda_util.cuh"

namespace stoke::cuda::reduce {

constexpr int kTx = 32;              // channels per block
constexpr int kTy = 8;               // row lanes per block
constexpr int64_t kRowsPerChunk = 256;
constexpr int64_t kMaxChunks = 1024;
constexpr int kFinThreads = 256;     // finalize: threads per channel (a power of two)

inline int chunks_for(int64_t rows) {
  int64_t c = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (c < 1) c = 1;
  if (c > kMaxChunks) c = kMaxChunks;
  return static_cast<int>(c);
}

inline dim3 partial_grid(int chunks, int C) {
  return dim3(static_cast<unsigned>(chunks), static_cast<unsigned>((C + kTx - 1) / kTx));
}
inline dim3 partial_block() { return dim3(kTx, kTy); }

// Rows of chunk `k` of `chunks`: [begin, end).
__device__ __forceinline__ int64_t chunk_begin(int64_t rows, int chunks, int k) { return rows * k / chunks; }

// Chan et al.: merges (nb, mb, qb) into (na, ma, qa); q is the sum of squared deviations.
__device__ __forceinline__ void chan_merge(double& na, double& ma, double& qa, double nb, double mb, double qb) {
  if (nb == 0.0) return;
  const double n = na + nb;
  const double d = mb - ma;
  ma += d * (nb / n);
  qa += qb + d * d * (na * nb / n);
  na = n;
}

// ---- Welford statistics of x: partial[k][c] = (count, mean, m2) in doubles, laid out as three [chunks][C] planes.
template <typename T>
__global__ void __launch_bounds__(kTx* kTy)
    welford_partial_kernel(int64_t rows, int C, int chunks, const T* __restrict__ x, double* __restrict__ part) {
  __shared__ double sn[kTy][kTx], sm[kTy][kTx], sq[kTy][kTx];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.y * kTx + tx;
  const int k = blockIdx.x;
  const int64_t r0 = chunk_begin(rows, chunks, k), r1 = chunk_begin(rows, chunks, k + 1);
  float n = 0.f, mean = 0.f, m2 = 0.f;
  if (c < C) {
    for (int64_t r = r0 + ty; r < r1; r += kTy) {
      const float v = to_float(x[r * C + c]);
      n += 1.f;
      const float d = v - mean;
      mean += d / n;
      m2 += d * (v - mean);
    }
  }
  sn[ty][tx] = n;
  sm[ty][tx] = mean;
  sq[ty][tx] = m2;
  __syncthreads();
  if (ty == 0 && c < C) {
    double N = sn[0][tx], M = sm[0][tx], Q = sq[0][tx];
    for (int j = 1; j < kTy; ++j) chan_merge(N, M, Q, sn[j][tx], sm[j][tx], sq[j][tx]);
    const int64_t plane = static_cast<int64_t>(chunks) * C;
    part[static_cast<int64_t>(k) * C + c] = N;
    part[plane + static_cast<int64_t>(k) * C + c] = M;
    part[2 * plane + static_cast<int64_t>(k) * C + c] = Q;
  }
}

// Combines the chunk partials of channel blockIdx.x: on return thread 0 holds the totals. Every thread of the
// block must call it (it synchronises).
__device__ __forceinline__ void welford_combine(int C, int chunks, const double* __restrict__ part, double& N,
                                                double& M, double& Q) {
  __shared__ double sn[kFinThreads], sm[kFinThreads], sq[kFinThreads];
  const int c = blockIdx.x, t = threadIdx.x;
  const int64_t plane = static_cast<int64_t>(chunks) * C;
  N = 0.0, M = 0.0, Q = 0.0;
  for (int k = t; k < chunks; k += kFinThreads) {
    const int64_t i = static_cast<int64_t>(k) * C + c;
    chan_merge(N, M, Q, part[i], part[plane + i], part[2 * plane + i]);
  }
  sn[t] = N, sm[t] = M, sq[t] = Q;
  __syncthreads();
  for (int s = kFinThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      chan_merge(N, M, Q, sn[t + s], sm[t + s], sq[t + s]);
      sn[t] = N, sm[t] = M, sq[t] = Q;
    }
    __syncthreads();
  }
}

// ---- Plain sums: s1 = sum g, and when `mean` is given s2 = sum g * (x - mean) * invstd, where
// g = relu ? (y > 0 ? dy : 0) : dy. Partial layout: two [chunks][C] planes of doubles (the second unused
// without `mean`).
template <typename T>
__global__ void __launch_bounds__(kTx* kTy)
    sums_partial_kernel(int64_t rows, int C, int chunks, const T* __restrict__ dy, const T* __restrict__ y, bool relu,
                        const T* __restrict__ x, const float* __restrict__ mean, const float* __restrict__ invstd,
                        double* __restrict__ part) {
  __shared__ double s1s[kTy][kTx], s2s[kTy][kTx];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int c = blockIdx.y * kTx + tx;
  const int k = blockIdx.x;
  const int64_t r0 = chunk_begin(rows, chunks, k), r1 = chunk_begin(rows, chunks, k + 1);
  float s1 = 0.f, s2 = 0.f;
  if (c < C) {
    const float m = mean ? mean[c] : 0.f;
    const float is = mean ? invstd[c] : 0.f;
    for (int64_t r = r0 + ty; r < r1; r += kTy) {
      const int64_t i = r * C + c;
      float g = to_float(dy[i]);
      if (relu && !(to_float(y[i]) > 0.f)) g = 0.f;
      s1 += g;
      if (mean) s2 += g * ((to_float(x[i]) - m) * is);
    }
  }
  s1s[ty][tx] = s1;
  s2s[ty][tx] = s2;
  __syncthreads();
  if (ty == 0 && c < C) {
    double a = 0.0, b = 0.0;
    for (int j = 0; j < kTy; ++j) {
      a += s1s[j][tx];
      b += s2s[j][tx];
    }
    const int64_t plane = static_cast<int64_t>(chunks) * C;
    part[static_cast<int64_t>(k) * C + c] = a;
    part[plane + static_cast<int64_t>(k) * C + c] = b;
  }
}

// Totals of the two sums for channel blockIdx.x, in thread 0. Every thread of the block must call it.
__device__ __forceinline__ void sums_combine(int C, int chunks, const double* __restrict__ part, double& S1,
                                             double& S2) {
  __shared__ double a[kFinThreads], b[kFinThreads];
  const int c = blockIdx.x, t = threadIdx.x;
  const int64_t plane = static_cast<int64_t>(chunks) * C;
  double x1 = 0.0, x2 = 0.0;
  for (int k = t; k < chunks; k += kFinThreads) {
    const int64_t i = static_cast<int64_t>(k) * C + c;
    x1 += part[i];
    x2 += part[plane + i];
  }
  a[t] = x1, b[t] = x2;
  __syncthreads();
  for (int s = kFinThreads / 2; s > 0; s >>= 1) {
    if (t < s) {
      a[t] += a[t + s];
      b[t] += b[t + s];
    }
    __syncthreads();
  }
  S1 = a[0];
  S2 = b[0];
}

// Doubles of workspace the partial kernels need.
inline int64_t partial_doubles(int64_t rows, int C) { return 3 * static_cast<int64_t>(chunks_for(rows)) * C; }

}  // namespace stoke::cuda::reduce
