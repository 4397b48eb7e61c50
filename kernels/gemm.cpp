#include "kernels/gemm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/parallel.h"

namespace stoke {
namespace {

constexpr int MR = 6, NR = 16;
constexpr int KC = 256, MC = 96, NC = 2048;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__)  // ifunc resolvers run before the TSan runtime is ready
// ISA levels, not CPU names: "arch=haswell" dispatches on __builtin_cpu_is("haswell"), i.e. only on
// Intel Haswell parts, so every AMD CPU (and newer Intel ones) silently ran the baseline clone.
// x86-64-v3 = AVX2+FMA, x86-64-v4 = AVX-512 F/BW/CD/DQ/VL; both are feature checks.
#define STOKE_GEMM_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define STOKE_GEMM_CLONES
#endif

// c[MR][NR] = sum_k a[k][0..MR) (x) b[k][0..NR): a and b are packed panels.
// Each row of the tile is one NR-wide GCC vector (one zmm with AVX-512, two ymm with AVX2, four xmm
// otherwise), so the accumulators stay in registers; written as plain loops, GCC vectorises the tile
// across rows with shuffles and runs about 4x slower.
using TileRow = float __attribute__((vector_size(NR * sizeof(float))));
STOKE_GEMM_CLONES
void micro_kernel(int kc, const float* __restrict a, const float* __restrict b, float* __restrict c) {
  TileRow acc[MR] = {};
  for (int k = 0; k < kc; ++k) {
    TileRow bk;
    std::memcpy(&bk, b + k * NR, sizeof(bk));
    const float* ak = a + k * MR;
    for (int i = 0; i < MR; ++i) acc[i] += ak[i] * bk;
  }
  std::memcpy(c, acc, sizeof(acc));
}

// The same tile as two 8-wide halves per row: on AVX2 (no AVX-512) GCC splits a 64-byte vector into ymm halves
// but keeps the accumulators in memory (stack spills on every k, measured ~6 GFLOP/s); spelt as 12 ymm
// accumulators they stay in registers. Same products, same order per element: bit-identical results.
using HalfRow = float __attribute__((vector_size(NR / 2 * sizeof(float))));
STOKE_GEMM_CLONES
void micro_kernel_halves(int kc, const float* __restrict a, const float* __restrict b, float* __restrict c) {
  HalfRow lo[MR] = {}, hi[MR] = {};
  for (int k = 0; k < kc; ++k) {
    HalfRow b0, b1;
    std::memcpy(&b0, b + k * NR, sizeof(b0));
    std::memcpy(&b1, b + k * NR + NR / 2, sizeof(b1));
    const float* ak = a + k * MR;
    for (int i = 0; i < MR; ++i) {
      lo[i] += ak[i] * b0;
      hi[i] += ak[i] * b1;
    }
  }
  for (int i = 0; i < MR; ++i) {
    std::memcpy(c + i * NR, &lo[i], sizeof(HalfRow));
    std::memcpy(c + i * NR + NR / 2, &hi[i], sizeof(HalfRow));
  }
}

// AVX-512: one zmm per row (micro_kernel); anything less: the halves. Both give the same bits (same products,
// same order, no contraction under -std=c++20), so the choice is speed only. Decided once per process.
using MicroKernel = void (*)(int, const float*, const float*, float*);
MicroKernel pick_micro_kernel() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return micro_kernel;
#endif
  return micro_kernel_halves;
}

// Element (i, k) of op(A) and (k, j) of op(B).
inline float at_a(const float* A, long lda, bool t, long i, long k) { return t ? A[k * lda + i] : A[i * lda + k]; }
inline float at_b(const float* B, long ldb, bool t, long k, long j) { return t ? B[j * ldb + k] : B[k * ldb + j]; }

// Packs the panel P[i][k] = src[i*rs + k*ks] (i < rows, k < kc) into slabs of W rows, k-major inside a
// slab (out[slab][k][0..W)), zero padding the last slab. The loops walk the source along whichever index
// is contiguous in memory (a strided gather across rows per k was the hot spot when N is small).
template <int W>
void pack_panel(const float* src, long rs, long ks, int rows, int kc, float* out) {
  for (int s = 0; s < rows; s += W) {
    const int n = std::min(W, rows - s);
    const float* p = src + s * rs;
    float* o = out + static_cast<long>(s / W) * W * kc;
    if (ks == 1) {
      for (int i = 0; i < n; ++i)
        for (int k = 0; k < kc; ++k) o[k * W + i] = p[i * rs + k];
    } else {
      for (int k = 0; k < kc; ++k)
        for (int i = 0; i < n; ++i) o[k * W + i] = p[k * ks + i * rs];
    }
    if (n < W)
      for (int k = 0; k < kc; ++k)
        for (int i = n; i < W; ++i) o[k * W + i] = 0.f;
  }
}

// Packs op(A)[i0:i0+mc, k0:k0+kc] into MR-row slabs, k-major inside a slab, zero padded.
void pack_a(const float* A, long lda, bool t, int i0, int mc, int k0, int kc, float* out) {
  if (!t)
    pack_panel<MR>(A + i0 * lda + k0, lda, 1, mc, kc, out);
  else
    pack_panel<MR>(A + k0 * lda + i0, 1, lda, mc, kc, out);
}

// Packs op(B)[k0:k0+kc, j0:j0+nc] into NR-column slabs, k-major inside a slab, zero padded.
void pack_b(const float* B, long ldb, bool t, int k0, int kc, int j0, int nc, float* out) {
  if (!t)
    pack_panel<NR>(B + k0 * ldb + j0, 1, ldb, nc, kc, out);
  else
    pack_panel<NR>(B + j0 * ldb + k0, ldb, 1, nc, kc, out);
}

struct Scratch {
  std::vector<float> a, b;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) {  // C = beta * C only
    for (int i = 0; i < M; ++i) {
      float* c = C + static_cast<long>(i) * ldc;
      if (beta == 0.f)
        std::fill(c, c + N, 0.f);
      else if (beta != 1.f)
        for (int j = 0; j < N; ++j) c[j] *= beta;
    }
    return;
  }

  static const MicroKernel micro = pick_micro_kernel();
  Scratch& sc = scratch();
  sc.a.resize(static_cast<size_t>(MC) * KC);
  sc.b.resize(static_cast<size_t>(KC) * ((std::min(N, NC) + NR - 1) / NR * NR));
  alignas(64) float tile[MR * NR];

  for (int j0 = 0; j0 < N; j0 += NC) {
    int nc = std::min(NC, N - j0);
    for (int k0 = 0; k0 < K; k0 += KC) {
      int kc = std::min(KC, K - k0);
      pack_b(B, ldb, trans_b, k0, kc, j0, nc, sc.b.data());
      for (int i0 = 0; i0 < M; i0 += MC) {
        int mc = std::min(MC, M - i0);
        pack_a(A, lda, trans_a, i0, mc, k0, kc, sc.a.data());
        for (int jr = 0; jr < nc; jr += NR) {
          int nr = std::min(NR, nc - jr);
          const float* bp = sc.b.data() + (jr / NR) * (NR * kc);
          for (int ir = 0; ir < mc; ir += MR) {
            int mr = std::min(MR, mc - ir);
            micro(kc, sc.a.data() + (ir / MR) * (MR * kc), bp, tile);
            // The first K block applies beta (beta == 0 never reads C, so NaNs there do not propagate);
            // later blocks accumulate. No separate pass over C.
            for (int i = 0; i < mr; ++i) {
              float* c = C + static_cast<long>(i0 + ir + i) * ldc + j0 + jr;
              const float* t = tile + i * NR;
              if (k0 > 0 || beta == 1.f)
                for (int j = 0; j < nr; ++j) c[j] += alpha * t[j];
              else if (beta == 0.f)
                for (int j = 0; j < nr; ++j) c[j] = alpha * t[j];
              else
                for (int j = 0; j < nr; ++j) c[j] = alpha * t[j] + beta * c[j];
            }
          }
        }
      }
    }
  }
}

void sgemm_parallel(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc) {
  const long flops = 2L * M * N * K;
  const int threads = ThreadPool::threads();
  if (threads <= 1 || flops < 2'000'000) {
    sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the larger of M and N into blocks aligned to the register tile.
  if (M >= N) {
    int tasks = std::min<long>(threads * 2, (M + MR - 1) / MR);
    int step = ((M + tasks - 1) / tasks + MR - 1) / MR * MR;
    tasks = (M + step - 1) / step;
    parallel_tasks(tasks, [&](int64_t t) {
      int i0 = static_cast<int>(t) * step, m = std::min(step, M - i0);
      const float* a = trans_a ? A + i0 : A + static_cast<long>(i0) * lda;
      sgemm(trans_a, trans_b, m, N, K, alpha, a, lda, B, ldb, beta, C + static_cast<long>(i0) * ldc, ldc);
    });
  } else {
    int tasks = std::min<long>(threads * 2, (N + NR - 1) / NR);
    int step = ((N + tasks - 1) / tasks + NR - 1) / NR * NR;
    tasks = (N + step - 1) / step;
    parallel_tasks(tasks, [&](int64_t t) {
      int j0 = static_cast<int>(t) * step, n = std::min(step, N - j0);
      const float* b = trans_b ? B + static_cast<long>(j0) * ldb : B + j0;
      sgemm(trans_a, trans_b, M, n, K, alpha, A, lda, b, ldb, beta, C + j0, ldc);
    });
  }
}

void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k) s += static_cast<double>(at_a(A, lda, trans_a, i, k)) * at_b(B, ldb, trans_b, k, j);
      float& c = C[static_cast<long>(i) * ldc + j];
      c = static_cast<float>(alpha * s + (beta == 0.f ? 0.0 : static_cast<double>(beta) * c));
    }
}

}  // namespace stoke
