#include "engine/cuda/linear.h"

#include <cuda_runtime_api.h>

#include <cstdint>

#include "base/cuda_check.h"
#include "engine/cuda/lib_check.h"
#include "base/error.h"
#include "kernels/cast.cuh"
#include "kernels/tensor_ops.cuh"

namespace stoke::cuda {

namespace {

enum Kind { kForward = 0, kData = 1, kWeight = 2 };

cudaDataType_t cuda_type(Precision p) {
  switch (p) {
    case Precision::fp32: return CUDA_R_32F;
    case Precision::bf16: return CUDA_R_16BF;
    case Precision::fp16: return CUDA_R_16F;
    case Precision::automatic: break;
  }
  throw Error("LinearRunner needs a resolved precision");
}

// The largest power of two (<= 256) dividing the address: what cuBLASLt may assume about the buffer.
int alignment_of(const void* p) {
  if (p == nullptr) return 256;
  const auto a = reinterpret_cast<uintptr_t>(p);
  int al = 1;
  while (al < 256 && (a % static_cast<uintptr_t>(al * 2)) == 0) al *= 2;
  return al;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof v));
}

}  // namespace

struct LinearRunner::Op {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  bool found = false;
  bool bias_epilogue = false;
  Op() = default;
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;
  ~Op() {
    if (desc) CUBLAS_CHECK_NOEXCEPT(cublasLtMatmulDescDestroy(desc));
    for (cublasLtMatrixLayout_t l : {a, b, d})
      if (l) CUBLAS_CHECK_NOEXCEPT(cublasLtMatrixLayoutDestroy(l));
  }
};

LinearRunner::LinearRunner(const CudaContext& ctx, Precision storage, void* workspace, size_t workspace_bytes)
    : ctx_(ctx), storage_(storage), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cuda_type(storage);
}

LinearRunner::~LinearRunner() = default;

// Builds (once) the descriptors and picks the heuristic's best algorithm for
//   D[m, nn] (column-major, ld m) = op(A) . op(B),  K = k
// kForward: A = W stored [k=in, m=out] transposed, B = X stored [in, n];         D = Y   [out, n]
// kData:    A = W stored [m=in, k=out],            B = dY stored [out, n];        D = dX  [in, n]
// kWeight:  A = X stored [m=in, k=n],              B = dY stored [nn=out, k=n]^T; D = dW  [in, out] (fp32 or T)
LinearRunner::Op* LinearRunner::op(int kind, int m, int nn, int k, const void* a, const void* b, const void* d,
                                   const void* bias, bool fp32_out) {
  const bool want_bias = kind == kForward && bias != nullptr && alignment_of(bias) >= 16;
  const Key key{kind, m, nn, k, alignment_of(a), alignment_of(b), alignment_of(d), want_bias ? alignment_of(bias) : 0,
                fp32_out ? 1 : 0};
  if (auto it = ops_.find(key); it != ops_.end()) return it->second.get();

  auto o = std::make_unique<Op>();
  const cudaDataType_t t = cuda_type(storage_);
  const cudaDataType_t td = fp32_out ? CUDA_R_32F : t;
  // CUBLAS_COMPUTE_32F: fp32 accumulation; with fp32 inputs plain fp32 arithmetic (TF32 tensor cores need
  // CUBLAS_COMPUTE_32F_FAST_TF32, never asked for), with bf16/fp16 inputs tensor cores accumulating in fp32.
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&o->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  switch (kind) {
    case kForward:
      ta = CUBLAS_OP_T;
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->a, t, static_cast<uint64_t>(k), static_cast<uint64_t>(m), k));
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->b, t, static_cast<uint64_t>(k), static_cast<uint64_t>(nn), k));
      break;
    case kData:
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->a, t, static_cast<uint64_t>(m), static_cast<uint64_t>(k), m));
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->b, t, static_cast<uint64_t>(k), static_cast<uint64_t>(nn), k));
      break;
    case kWeight:
      tb = CUBLAS_OP_T;
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->a, t, static_cast<uint64_t>(m), static_cast<uint64_t>(k), m));
      CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->b, t, static_cast<uint64_t>(nn), static_cast<uint64_t>(k), nn));
      break;
    default: STOKE_CHECK(false, "bad matmul kind");
  }
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&o->d, td, static_cast<uint64_t>(m), static_cast<uint64_t>(nn), m));
  set_desc(o->desc, CUBLASLT_MATMUL_DESC_TRANSA, static_cast<int32_t>(ta));
  set_desc(o->desc, CUBLASLT_MATMUL_DESC_TRANSB, static_cast<int32_t>(tb));
  if (want_bias) {
    set_desc(o->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, static_cast<uint32_t>(CUBLASLT_EPILOGUE_BIAS));
    set_desc(o->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);  // heuristics read its alignment
    o->bias_epilogue = true;
  }

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  cublasLtMatmulHeuristicResult_t res{};
  int got = 0;
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  try {
    const uint64_t ws = workspace_bytes_;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    const uint32_t al_a = static_cast<uint32_t>(alignment_of(a)), al_b = static_cast<uint32_t>(alignment_of(b)),
                   al_d = static_cast<uint32_t>(alignment_of(d));
    CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_d, sizeof al_d));
    CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_d, sizeof al_d));
    st = cublasLtMatmulAlgoGetHeuristic(ctx_.cublaslt(), o->desc, o->a, o->b, o->d, o->d, pref, 1, &res, &got);
  } catch (...) {
    CUBLAS_CHECK_NOEXCEPT(cublasLtMatmulPreferenceDestroy(pref));
    throw;
  }
  CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
  if (st == CUBLAS_STATUS_SUCCESS && got > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
    o->algo = res.algo;
    o->workspace = res.workspaceSize;
    o->found = true;
  } else if (st != CUBLAS_STATUS_SUCCESS && st != CUBLAS_STATUS_NOT_SUPPORTED) {
    CUBLAS_CHECK(st);
  }
  Op* ref = o.get();
  ops_.emplace(key, std::move(o));
  return ref;
}

void LinearRunner::run(Op& o, const void* a, const void* b, void* d, const void* bias, float beta) {
  if (o.bias_epilogue) set_desc(o.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  const float alpha = 1.f;
  CUBLAS_CHECK(cublasLtMatmul(ctx_.cublaslt(), o.desc, &alpha, a, o.a, b, o.b, &beta, d, o.d, d, o.d, &o.algo,
                              workspace_, o.workspace, ctx_.stream()));
  CUDA_LAUNCH_CHECK(ctx_.stream());  // STOKE_CUDA_SYNC=1: a fault inside cuBLASLt surfaces here
}

void LinearRunner::forward(int n, int in, int out, const void* x, const void* w, const void* bias,
                           const float* bias_fp32, void* y) {
  STOKE_CHECK(n > 0 && in > 0 && out > 0, "empty linear layer");
  Op* o = op(kForward, out, n, in, w, x, y, bias, false);
  if (!o->found)
    throw Error(
        str("cuBLASLt has no algorithm for linear forward ", n, "x", in, " -> ", out, " (", to_string(storage_), ")"));
  run(*o, w, x, y, bias, 0.f);
  if (!o->bias_epilogue && (bias_fp32 || bias)) {
    STOKE_CHECK(bias_fp32 != nullptr, "an unaligned linear bias needs its fp32 copy for the separate bias kernel");
    switch (storage_) {
      case Precision::fp32: bias_forward<float>(n, out, bias_fp32, static_cast<float*>(y), ctx_.stream()); break;
      case Precision::bf16:
        bias_forward<__nv_bfloat16>(n, out, bias_fp32, static_cast<__nv_bfloat16*>(y), ctx_.stream());
        break;
      case Precision::fp16: bias_forward<__half>(n, out, bias_fp32, static_cast<__half*>(y), ctx_.stream()); break;
      case Precision::automatic: break;
    }
  }
}

void LinearRunner::backward_data(int n, int in, int out, const void* w, const void* dy, void* dx) {
  STOKE_CHECK(n > 0 && in > 0 && out > 0, "empty linear layer");
  Op* o = op(kData, in, n, out, w, dy, dx, nullptr, false);
  if (!o->found)
    throw Error(str("cuBLASLt has no algorithm for linear backward-data ", n, "x", out, " -> ", in, " (",
                    to_string(storage_), ")"));
  run(*o, w, dy, dx, nullptr, 0.f);
}

void LinearRunner::backward_weight(int n, int in, int out, const void* x, const void* dy, float* dw, void* scratch) {
  STOKE_CHECK(n > 0 && in > 0 && out > 0, "empty linear layer");
  Op* o = op(kWeight, in, out, n, x, dy, dw, nullptr, true);
  if (o->found) {
    run(*o, x, dy, dw, nullptr, 1.f);
    return;
  }
  // No fp32-output kernel for this storage type: product in the storage type, then added in fp32.
  STOKE_CHECK(storage_ != Precision::fp32 && scratch != nullptr, "cuBLASLt has no fp32 algorithm for linear dW ", out,
              "x", in, " over ", n, " rows");
  Op* h = op(kWeight, in, out, n, x, dy, scratch, nullptr, false);
  if (!h->found)
    throw Error(str("cuBLASLt has no algorithm for linear backward-weight ", out, "x", in, " over ", n, " rows (",
                    to_string(storage_), ")"));
  run(*h, x, dy, scratch, nullptr, 0.f);
  const int64_t count = static_cast<int64_t>(in) * out;
  if (storage_ == Precision::bf16)
    accumulate<__nv_bfloat16>(count, static_cast<const __nv_bfloat16*>(scratch), dw, ctx_.stream());
  else
    accumulate<__half>(count, static_cast<const __half*>(scratch), dw, ctx_.stream());
}

}  // namespace stoke::cuda
