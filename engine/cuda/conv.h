// Convolution on cuDNN (legacy API, still in cuDNN 9), NHWC activations and KRSC filters — the layouts of
// kernels/conv2d.h, so no transposes anywhere.
//
// Half precision (bf16/fp16) runs on tensor cores with fp32 accumulation (CUDNN_TENSOR_OP_MATH, compute type
// float); fp32 runs every algorithm with CUDNN_FMA_MATH (no TF32, whatever NVIDIA_TF32_OVERRIDE says). Algorithms are
// chosen once per shape — by the _v7 heuristics, or by timing them (cudnnFind*AlgorithmEx) when `benchmark` is on and
// prepare() is given buffers — and cached with their descriptors, so a training step only looks up a map. With
// `deterministic` only algorithms cuDNN reports as deterministic are taken. The workspace comes from the caller (the
// arena): prepare() returns what the chosen algorithms need, and an algorithm is taken only if it fits the limit.
//
// Conventions: forward and backward-data assign (y =, dx =); backward-filter computes dw = beta * dw + dW,
// so beta = 1 accumulates (the fp32 path writes straight into the fp32 gradients).
#pragma once

#include <cudnn.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "engine/cuda/context.h"
#include "engine/cuda/precision.h"
#include "kernels/conv2d.h"

namespace stoke::cuda {

struct ConvOptions {
  bool deterministic = false;
  bool benchmark = false;                     // time the candidates (cudnnFind*AlgorithmEx) in prepare()
  size_t workspace_limit = size_t{256} << 20;  // per algorithm
};

// Device buffers for benchmarking a shape (all of the shape's sizes; contents are overwritten).
struct ConvBenchBuffers {
  void* x = nullptr;
  void* w = nullptr;
  void* y = nullptr;
  void* dx = nullptr;
  void* dw = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// The math type a candidate cuDNN offered with `offered` runs with for this storage, or nullopt when it must not
// be used. fp32 means fp32 arithmetic: always CUDNN_FMA_MATH (never TF32), whatever the candidate listed;
// bf16/fp16 take the candidate's own (tensor cores, fp32 accumulation). Host-only (tested without a device).
std::optional<cudnnMathType_t> conv_math_for(Precision storage, cudnnMathType_t offered);

class ConvRunner {
 public:
  ConvRunner(const CudaContext& ctx, Precision storage, const ConvOptions& options);
  ~ConvRunner();
  ConvRunner(const ConvRunner&) = delete;
  ConvRunner& operator=(const ConvRunner&) = delete;

  // Chooses the algorithms of this shape (once) and returns the workspace bytes its passes need, at most
  // `workspace_limit`. With bench buffers and options.benchmark, the candidates are timed on them. backward_data
  // false: a convolution whose input needs no gradient (the first one, on the image) gets no backward-data
  // algorithm, so a shape cuDNN offers none for (fp32, deterministic, few channels) does not stop the executor.
  size_t prepare(const ConvShape& sh, size_t workspace_limit, const ConvBenchBuffers* bench = nullptr,
                 bool backward_data = true);

  // Each call prepares the shape on first use (heuristics, within `workspace_bytes`).
  void forward(const ConvShape& sh, const void* x, const void* w, void* y, void* workspace, size_t workspace_bytes);
  void backward_data(const ConvShape& sh, const void* w, const void* dy, void* dx, void* workspace,
                     size_t workspace_bytes);
  void backward_filter(const ConvShape& sh, const void* x, const void* dy, void* dw, float beta, void* workspace,
                       size_t workspace_bytes);

  // One line per prepared shape: the algorithms, math types and workspaces chosen.
  std::string describe() const;

 private:
  struct Plan;
  using Key = std::tuple<int, int, int, int, int, int, int, int, int>;
  Plan& plan(const ConvShape& sh, size_t workspace_limit, const ConvBenchBuffers* bench, bool backward_data);
  void plan_backward_data(Plan& p, size_t workspace_limit, const ConvBenchBuffers* bench);

  const CudaContext& ctx_;
  Precision storage_;
  ConvOptions options_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace stoke::cuda
