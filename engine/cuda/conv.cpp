#include "engine/cuda/conv.h"

#include <algorithm>
#include <sstream>
#include <vector>

#include "base/cuda_check.h"
#include "engine/cuda/lib_check.h"
#include "base/trace.h"
#include "base/error.h"

namespace stoke::cuda {

namespace {

cudnnDataType_t cudnn_type(Precision p) {
  switch (p) {
    case Precision::fp32: return CUDNN_DATA_FLOAT;
    case Precision::bf16: return CUDNN_DATA_BFLOAT16;
    case Precision::fp16: return CUDNN_DATA_HALF;
    case Precision::automatic: break;
  }
  throw Error("ConvRunner needs a resolved precision");
}

std::string shape_text(const ConvShape& sh) {
  return str("x ", sh.n, "x", sh.h, "x", sh.w, "x", sh.c, ", w ", sh.k, "x", sh.r, "x", sh.s, "x", sh.c, ", stride ",
             sh.stride, ", pad ", sh.pad);
}

const char* math_name(cudnnMathType_t m) {
  switch (m) {
    case CUDNN_DEFAULT_MATH: return "default";
    case CUDNN_TENSOR_OP_MATH: return "tensor-op";
    case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return "tensor-op-conv";
    case CUDNN_FMA_MATH: return "fma";
  }
  return "?";
}

// Whether a candidate may be used: it ran (or would run), is deterministic when asked, and has a math type
// this storage may run with (conv_math_for).
template <typename Perf>
bool usable(const Perf& p, bool deterministic, Precision storage) {
  if (p.status != CUDNN_STATUS_SUCCESS) return false;
  if (deterministic && p.determinism != CUDNN_DETERMINISTIC) return false;
  return conv_math_for(storage, p.mathType).has_value();
}

// Walks cuDNN's ranked candidates and takes the first usable one whose workspace fits. `ws_of(algo)` returns the
// workspace (after the caller's descriptor has the math type it will run with) or SIZE_MAX when cuDNN refuses.
template <typename Perf, typename Algo, typename SetMath, typename WsOf>
bool choose(const std::vector<Perf>& perf, int got, bool deterministic, Precision storage, size_t limit,
            SetMath set_math, WsOf ws_of, Algo& algo, cudnnMathType_t& math, size_t& ws, std::string& why) {
  for (int i = 0; i < got; ++i) {
    const Perf& p = perf[static_cast<size_t>(i)];
    if (!usable(p, deterministic, storage)) continue;
    const cudnnMathType_t m = *conv_math_for(storage, p.mathType);
    set_math(m);
    const size_t need = ws_of(p.algo);
    if (need == SIZE_MAX || need > limit) continue;
    algo = p.algo;
    math = m;
    ws = need;
    return true;
  }
  std::ostringstream os;
  for (int i = 0; i < got; ++i) {
    const Perf& p = perf[static_cast<size_t>(i)];
    os << " [algo " << static_cast<int>(p.algo) << ": " << cudnnGetErrorString(p.status) << ", "
       << math_name(p.mathType) << (p.determinism == CUDNN_DETERMINISTIC ? ", deterministic" : "") << ", " << p.memory
       << " B]";
  }
  why = os.str();
  return false;
}

}  // namespace

std::optional<cudnnMathType_t> conv_math_for(Precision storage, cudnnMathType_t offered) {
  if (storage != Precision::fp32) return offered;
  // fp32: CUDNN_DEFAULT_MATH lets cuDNN pick TF32 tensor cores on sm_80+ (unless NVIDIA_TF32_OVERRIDE=0 is set),
  // so a default-math candidate runs with FMA math forced; tensor-op candidates are refused.
  if (offered == CUDNN_FMA_MATH || offered == CUDNN_DEFAULT_MATH) return CUDNN_FMA_MATH;
  return std::nullopt;
}

struct ConvRunner::Plan {
  ConvShape shape;
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t fwd = nullptr, data = nullptr, filter = nullptr;
  cudnnConvolutionFwdAlgo_t fwd_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdDataAlgo_t data_algo = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  cudnnConvolutionBwdFilterAlgo_t filter_algo = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  cudnnMathType_t fwd_math = CUDNN_DEFAULT_MATH, data_math = CUDNN_DEFAULT_MATH, filter_math = CUDNN_DEFAULT_MATH;
  size_t fwd_ws = 0, data_ws = 0, filter_ws = 0;
  bool has_data = false;  // a backward-data algorithm was chosen (only for a convolution whose dx runs)

  size_t workspace() const { return std::max({fwd_ws, data_ws, filter_ws}); }
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (x) CUDNN_CHECK_NOEXCEPT(cudnnDestroyTensorDescriptor(x));
    if (y) CUDNN_CHECK_NOEXCEPT(cudnnDestroyTensorDescriptor(y));
    if (w) CUDNN_CHECK_NOEXCEPT(cudnnDestroyFilterDescriptor(w));
    for (cudnnConvolutionDescriptor_t c : {fwd, data, filter})
      if (c) CUDNN_CHECK_NOEXCEPT(cudnnDestroyConvolutionDescriptor(c));
  }
};

ConvRunner::ConvRunner(const CudaContext& ctx, Precision storage, const ConvOptions& options)
    : ctx_(ctx), storage_(storage), options_(options) {
  cudnn_type(storage);  // rejects `automatic`
}

ConvRunner::~ConvRunner() = default;

ConvRunner::Plan& ConvRunner::plan(const ConvShape& sh, size_t workspace_limit, const ConvBenchBuffers* bench,
                                   bool backward_data) {
  const Key key{sh.n, sh.h, sh.w, sh.c, sh.k, sh.r, sh.s, sh.stride, sh.pad};
  if (auto it = plans_.find(key); it != plans_.end()) {
    if (backward_data && !it->second->has_data) plan_backward_data(*it->second, workspace_limit, bench);
    return *it->second;
  }

  STOKE_TRACE("conv plan");
  STOKE_CHECK(sh.n > 0 && sh.h > 0 && sh.w > 0 && sh.c > 0 && sh.k > 0 && sh.r > 0 && sh.s > 0, "bad conv shape");
  STOKE_CHECK(sh.stride > 0 && sh.pad >= 0 && sh.h + 2 * sh.pad >= sh.r && sh.w + 2 * sh.pad >= sh.s,
              "bad conv geometry");
  auto p = std::make_unique<Plan>();
  p->shape = sh;
  const cudnnDataType_t dt = cudnn_type(storage_);
  const cudnnHandle_t h = ctx_.cudnn();
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
  CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
  CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, CUDNN_TENSOR_NHWC, dt, sh.n, sh.c, sh.h, sh.w));
  CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, dt, CUDNN_TENSOR_NHWC, sh.k, sh.c, sh.r, sh.s));  // KRSC
  const cudnnMathType_t first_math = storage_ == Precision::fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
  for (cudnnConvolutionDescriptor_t* c : {&p->fwd, &p->data, &p->filter}) {
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(c));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(*c, sh.pad, sh.pad, sh.stride, sh.stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(*c, first_math));
  }
  int on = 0, oc = 0, oh = 0, ow = 0;
  CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->fwd, p->x, p->w, &on, &oc, &oh, &ow));
  STOKE_CHECK(on == sh.n && oc == sh.k && oh == sh.p() && ow == sh.q(), "cuDNN's output shape ", on, "x", oh, "x", ow,
              "x", oc, " differs from ", sh.n, "x", sh.p(), "x", sh.q(), "x", sh.k);
  CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, CUDNN_TENSOR_NHWC, dt, sh.n, sh.k, sh.p(), sh.q()));

  const size_t limit = std::min(workspace_limit, options_.workspace_limit);
  const bool find = options_.benchmark && bench != nullptr;
  const size_t bench_ws = find ? std::min(bench->workspace_bytes, limit) : 0;
  std::string why;

  {  // forward
    int maxc = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &maxc));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<size_t>(std::max(maxc, 1)));
    if (find)
      CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, p->x, bench->x, p->w, bench->w, p->fwd, p->y, bench->y,
                                                         maxc, &got, perf.data(), bench->workspace, bench_ws));
    else
      CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p->x, p->w, p->fwd, p->y, maxc, &got, perf.data()));
    auto set_math = [&](cudnnMathType_t m) { CUDNN_CHECK(cudnnSetConvolutionMathType(p->fwd, m)); };
    auto ws_of = [&](cudnnConvolutionFwdAlgo_t a) {
      size_t ws = 0;
      return cudnnGetConvolutionForwardWorkspaceSize(h, p->x, p->w, p->fwd, p->y, a, &ws) == CUDNN_STATUS_SUCCESS
                 ? ws
                 : SIZE_MAX;
    };
    if (!choose(perf, got, options_.deterministic, storage_, limit, set_math, ws_of, p->fwd_algo, p->fwd_math,
                p->fwd_ws, why))
      throw Error(str("cuDNN offers no usable forward algorithm for conv ", shape_text(sh), " (", to_string(storage_),
                      options_.deterministic ? ", deterministic" : "", ", workspace limit ", limit, " B):", why));
    set_math(p->fwd_math);
  }
  {  // backward filter
    int maxc = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &maxc));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<size_t>(std::max(maxc, 1)));
    if (find)
      CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p->x, bench->x, p->y, bench->y, p->filter, p->w,
                                                                bench->dw, maxc, &got, perf.data(), bench->workspace,
                                                                bench_ws));
    else
      CUDNN_CHECK(
          cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p->x, p->y, p->filter, p->w, maxc, &got, perf.data()));
    auto set_math = [&](cudnnMathType_t m) { CUDNN_CHECK(cudnnSetConvolutionMathType(p->filter, m)); };
    auto ws_of = [&](cudnnConvolutionBwdFilterAlgo_t a) {
      size_t ws = 0;
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x, p->y, p->filter, p->w, a, &ws) ==
                     CUDNN_STATUS_SUCCESS
                 ? ws
                 : SIZE_MAX;
    };
    if (!choose(perf, got, options_.deterministic, storage_, limit, set_math, ws_of, p->filter_algo, p->filter_math,
                p->filter_ws, why))
      throw Error(str("cuDNN offers no usable backward-filter algorithm for conv ", shape_text(sh), " (",
                      to_string(storage_), options_.deterministic ? ", deterministic" : "", ", workspace limit ", limit,
                      " B):", why));
    set_math(p->filter_math);
  }
  Plan& ref = *p;
  plans_.emplace(key, std::move(p));
  if (backward_data) plan_backward_data(ref, workspace_limit, bench);
  return ref;
}

// Only for a convolution whose input gradient is computed: the first convolution's never runs, and with fp32 and
// --deterministic cuDNN may offer no algorithm for its few input channels.
void ConvRunner::plan_backward_data(Plan& pl, size_t workspace_limit, const ConvBenchBuffers* bench) {
  Plan* p = &pl;
  const ConvShape& sh = pl.shape;
  const cudnnHandle_t h = ctx_.cudnn();
  const size_t limit = std::min(workspace_limit, options_.workspace_limit);
  const bool find = options_.benchmark && bench != nullptr;
  const size_t bench_ws = find ? std::min(bench->workspace_bytes, limit) : 0;
  std::string why;
  {  // backward data
    int maxc = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &maxc));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<size_t>(std::max(maxc, 1)));
    if (find)
      CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p->w, bench->w, p->y, bench->y, p->data, p->x,
                                                              bench->dx, maxc, &got, perf.data(), bench->workspace,
                                                              bench_ws));
    else
      CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p->w, p->y, p->data, p->x, maxc, &got, perf.data()));
    auto set_math = [&](cudnnMathType_t m) { CUDNN_CHECK(cudnnSetConvolutionMathType(p->data, m)); };
    auto ws_of = [&](cudnnConvolutionBwdDataAlgo_t a) {
      size_t ws = 0;
      return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w, p->y, p->data, p->x, a, &ws) == CUDNN_STATUS_SUCCESS
                 ? ws
                 : SIZE_MAX;
    };
    if (!choose(perf, got, options_.deterministic, storage_, limit, set_math, ws_of, p->data_algo, p->data_math,
                p->data_ws, why))
      throw Error(str("cuDNN offers no usable backward-data algorithm for conv ", shape_text(sh), " (",
                      to_string(storage_), options_.deterministic ? ", deterministic" : "", ", workspace limit ", limit,
                      " B):", why));
    set_math(p->data_math);
  }
  p->has_data = true;
}

size_t ConvRunner::prepare(const ConvShape& sh, size_t workspace_limit, const ConvBenchBuffers* bench,
                           bool backward_data) {
  return plan(sh, workspace_limit, bench, backward_data).workspace();
}

void ConvRunner::forward(const ConvShape& sh, const void* x, const void* w, void* y, void* workspace,
                         size_t workspace_bytes) {
  Plan& p = plan(sh, workspace_bytes, nullptr, false);
  STOKE_CHECK(p.fwd_ws <= workspace_bytes, "conv workspace ", workspace_bytes, " B < ", p.fwd_ws, " B planned");
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionForward(ctx_.cudnn(), &one, p.x, x, p.w, w, p.fwd, p.fwd_algo, workspace, p.fwd_ws, &zero,
                                      p.y, y));
  CUDA_LAUNCH_CHECK(ctx_.stream());  // STOKE_CUDA_SYNC=1: a fault inside cuDNN surfaces here
}

void ConvRunner::backward_data(const ConvShape& sh, const void* w, const void* dy, void* dx, void* workspace,
                               size_t workspace_bytes) {
  Plan& p = plan(sh, workspace_bytes, nullptr, true);
  STOKE_CHECK(p.data_ws <= workspace_bytes, "conv workspace ", workspace_bytes, " B < ", p.data_ws, " B planned");
  const float one = 1.f, zero = 0.f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(ctx_.cudnn(), &one, p.w, w, p.y, dy, p.data, p.data_algo, workspace,
                                           p.data_ws, &zero, p.x, dx));
  CUDA_LAUNCH_CHECK(ctx_.stream());
}

void ConvRunner::backward_filter(const ConvShape& sh, const void* x, const void* dy, void* dw, float beta,
                                 void* workspace, size_t workspace_bytes) {
  Plan& p = plan(sh, workspace_bytes, nullptr, false);
  STOKE_CHECK(p.filter_ws <= workspace_bytes, "conv workspace ", workspace_bytes, " B < ", p.filter_ws, " B planned");
  const float one = 1.f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(ctx_.cudnn(), &one, p.x, x, p.y, dy, p.filter, p.filter_algo, workspace,
                                             p.filter_ws, &beta, p.w, dw));
  CUDA_LAUNCH_CHECK(ctx_.stream());
}

std::string ConvRunner::describe() const {
  std::ostringstream os;
  for (const auto& [key, p] : plans_) {
    const ConvShape& sh = p->shape;
    os << "conv " << shape_text(sh) << ": fwd algo " << static_cast<int>(p->fwd_algo) << " (" << math_name(p->fwd_math)
       << ", " << p->fwd_ws << " B), ";
    if (p->has_data)
      os << "data algo " << static_cast<int>(p->data_algo) << " (" << math_name(p->data_math) << ", " << p->data_ws
         << " B), ";
    else
      os << "no data algo (its dx never runs), ";
    os << "filter algo " << static_cast<int>(p->filter_algo) << " ("
       << math_name(p->filter_math) << ", " << p->filter_ws << " B)\n";
  }
  return os.str();
}

}  // namespace stoke::cuda
