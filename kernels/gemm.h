// Single-precision GEMM for the CPU backend: C = alpha * op(A) * op(B) + beta * C, all row-major.
//
//   op(A) is M x K (A is M x K, or K x M when trans_a), op(B) is K x N (B is K x N, or N x K when trans_b).
//   beta == 0 overwrites C without reading it (NaNs in C do not propagate).
//
// A blocked, packed kernel (BLIS-style: 6x16 register tile, K blocked by 256) with runtime dispatch to
// AVX-512 / AVX2+FMA / baseline code. Plain enough to read; fast enough for the CPU backend to train real
// models in CI. sgemm() runs on the calling thread; sgemm_parallel() splits rows or columns of C over the
// pool. Neither ever splits K, so results do not depend on the thread count.
#pragma once

namespace stoke {

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

void sgemm_parallel(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                    const float* B, int ldb, float beta, float* C, int ldc);

// The obvious triple loop (double accumulation), for tests.
void sgemm_naive(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace stoke
