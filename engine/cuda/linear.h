// Fully connected layer on cuBLASLt: y[n, out] = x[n, in] W^T + b, W [out, in], all row-major — the layout of
// kernels/linear.h (an NHWC activation flattened per sample is a row of x).
//
// Row-major matrices are handed to cuBLASLt as their column-major transposes, so no data moves:
//   forward   Y^T[out, n]  = W^T(stored [in, out])^T . X^T[in, n]     (bias epilogue when the bias is 16-byte aligned)
//   dx        dX^T[in, n]  = W^T[in, out] . dY^T[out, n]
//   dW       dW^T[in, out] += X^T[in, n] . (dY^T[out, n])^T          (fp32 output, beta = 1: accumulates)
// db += column sums of dy is the deterministic reduction kernel (kernels/tensor_ops.cuh bias_backward).
// Half precision: bf16/fp16 inputs, fp32 accumulation (CUBLAS_COMPUTE_32F); fp32: plain fp32 (no TF32).
// Each (shape, pointer alignment) configuration gets its descriptors and heuristic algorithm once, cached.
#pragma once

#include <cublasLt.h>

#include <cstddef>
#include <map>
#include <memory>
#include <tuple>

#include "engine/cuda/context.h"
#include "engine/cuda/precision.h"

namespace stoke::cuda {

class LinearRunner {
 public:
  // `workspace` (device, from the arena) is cuBLASLt's scratch; 32 MiB suits Hopper.
  LinearRunner(const CudaContext& ctx, Precision storage, void* workspace, size_t workspace_bytes);
  ~LinearRunner();
  LinearRunner(const LinearRunner&) = delete;
  LinearRunner& operator=(const LinearRunner&) = delete;

  // y = x W^T + b. bias: storage type (the weights' half copy), may be null. bias_fp32 (may be null): the same
  // bias in fp32, used by a separate kernel when the epilogue cannot take `bias` (unaligned pointer).
  void forward(int n, int in, int out, const void* x, const void* w, const void* bias, const float* bias_fp32, void* y);
  // dx = dy W (assigned).
  void backward_data(int n, int in, int out, const void* w, const void* dy, void* dx);
  // dw += dy^T x into fp32. When cuBLASLt has no fp32-output algorithm for the storage type, the product goes to
  // `scratch` (out*in elements of the storage type) and is added by a kernel; scratch may be null for fp32.
  void backward_weight(int n, int in, int out, const void* x, const void* dy, float* dw, void* scratch);

  static constexpr size_t kDefaultWorkspace = size_t{32} << 20;

 private:
  struct Op;
  // kind, m, n, k, alignments of A, B, C/D and bias (bytes, up to 256), output-type flag
  using Key = std::tuple<int, int, int, int, int, int, int, int, int>;
  Op* op(int kind, int m, int nn, int k, const void* a, const void* b, const void* d, const void* bias, bool fp32_out);
  void run(Op& o, const void* a, const void* b, void* d, const void* bias, float beta);

  const CudaContext& ctx_;
  Precision storage_;
  void* workspace_;
  size_t workspace_bytes_;
  std::map<Key, std::unique_ptr<Op>> ops_;
};

}  // namespace stoke::cuda
