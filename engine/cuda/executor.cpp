// The CUDA executor: Engine<T> runs the graph with storage type T (float, __nv_bfloat16, __half); CudaExecutor
// picks T from the resolved precision and forwards to it.
//
// Gradient routing follows engine/cpu/executor.cpp: a node's gradient buffer is written directly by the first
// backward op that reaches it and later contributions go to a scratch buffer that is then added, so every op
// assigns its activation gradient (=) and only parameter gradients accumulate (+=).
#include "engine/cuda/executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <type_traits>

#include "engine/cuda/arena.h"
#include "base/cuda_check.h"
#include "engine/cuda/context.h"
#include "engine/cuda/conv.h"
#include "engine/cuda/fusion.h"
#include "engine/cuda/linear.h"
#include "engine/cuda/loss_scaler.h"
#include "engine/op_traits.h"
#include "engine/cuda/param_layout.h"
#include "base/trace.h"
#include "base/error.h"
#include "base/format.h"
#include "engine/op_shapes.h"
#include "kernels/activation.cuh"
#include "kernels/augment.cuh"
#include "kernels/batchnorm.cuh"
#include "kernels/cast.cuh"
#include "kernels/optimizer.cuh"
#include "kernels/pool.cuh"
#include "kernels/softmax_ce.cuh"
#include "kernels/tensor_ops.cuh"

namespace stoke {

namespace {

using cuda::DeviceArena;
using cuda::Precision;


template <typename T>
T host_from_float(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(v);
  else
    return __float2bfloat16_rn(v);
}

template <typename T>
float host_to_float(T v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(v);
  else
    return __bfloat162float(v);
}

// Construction-time scratch (cuDNN benchmarking only): never used inside a step.
class TempDevice {
 public:
  explicit TempDevice(size_t bytes) {
    CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 1)));
    CUDA_CHECK(cudaMemset(p_, 0, std::max<size_t>(bytes, 1)));
  }
  ~TempDevice() { CUDA_CHECK_NOEXCEPT(cudaFree(p_)); }
  TempDevice(const TempDevice&) = delete;
  TempDevice& operator=(const TempDevice&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

// Batch norm followed by ReLU, or by a residual add (and maybe ReLU), executed as one fused op when the graph
// reaches `out` (forward) and when backward reaches `out` (engine/cuda/fusion.h).
using Group = cuda::FusionGroup;

}  // namespace

struct CudaExecutor::Impl {
  virtual ~Impl() = default;
  virtual Precision precision() const = 0;
  virtual const cuda::DeviceInfo& device() const = 0;
  virtual cudaStream_t stream() const = 0;
  virtual size_t arena_bytes() const = 0;
  virtual int max_batch() const = 0;
  virtual int outputs() const = 0;
  virtual std::string describe() const = 0;
  virtual std::string conv_algorithms() const = 0;
  virtual void upload_params(const float* p) = 0;
  virtual void upload_buffers(const float* b) = 0;
  virtual void download_params(float* p) = 0;
  virtual void download_buffers(float* b) = 0;
  virtual void download_grads(float* g) = 0;
  virtual void upload_optimizer_state(const std::vector<float>& s, int64_t steps) = 0;
  virtual void download_optimizer_state(std::vector<float>& s, int64_t& steps) = 0;
  virtual int64_t optimizer_steps() const = 0;
  virtual void set_normalization(const std::vector<float>& mean, const std::vector<float>& stdev) = 0;
  virtual uint8_t* device_pixels() = 0;
  virtual int32_t* device_labels() = 0;
  virtual uint8_t* device_flips() = 0;
  virtual void forward(int n, const uint8_t* pixels, const uint8_t* flips, bool train) = 0;
  virtual void forward_normalized_host(int n, const float* x, bool train) = 0;
  virtual void loss(int n, const int32_t* labels, float smoothing, bool train) = 0;
  virtual void backward() = 0;
  virtual void step(float lr) = 0;
  virtual void step(const cuda::StepControl* control) = 0;
  virtual const cuda::StepRecord* device_record() const = 0;
  virtual CudaStepStats stats() = 0;
  virtual void download_logits(float* out) = 0;
};

namespace {

template <typename T>
class Engine final : public CudaExecutor::Impl {
 public:
  Engine(const Graph& graph, int max_batch, const CudaExecutorOptions& opt, Precision prec)
      : g_(graph), max_batch_(max_batch), opt_(opt), prec_(prec), ctx_(opt.device) {
    STOKE_TRACE("CudaExecutor plan");
    STOKE_CHECK(max_batch >= 1, "max_batch ", max_batch);
    const auto& nodes = g_.nodes();
    const size_t N = nodes.size();
    STOKE_CHECK(N >= 2, "a graph without ops");
    STOKE_CHECK(g_.input_shape().c <= cuda::kMaxNormalizeChannels, "inputs of ", g_.input_shape().c,
                " channels (the augment kernel takes at most ", cuda::kMaxNormalizeChannels, ")");
    if (prec_ == Precision::fp16) scaler_.emplace(opt.loss_scale, opt.loss_scale_growth_interval);
    {
      cuda::FusionPlan fp = cuda::plan_fusion(g_);
      groups_ = std::move(fp.groups);
      group_at_out_ = std::move(fp.group_at_out);
      interior_ = std::move(fp.interior);
    }
    pl_ = cuda::DeviceParamLayout(g_.params());
    bool only_convs = true;
    for (size_t i = 1; i < N; ++i)
      for (int j : nodes[i].inputs)
        if (j == 0 && nodes[i].op != Op::conv) only_convs = false;
    in_c_dev_ = cuda::device_input_channels(prec_, g_.input_shape().c, only_convs);

    // ---- cuDNN algorithms and workspaces at the largest batch --------------------------------------------------
    cuda::ConvOptions co;
    co.deterministic = opt.deterministic;
    co.benchmark = opt.conv_benchmark;
    co.workspace_limit = opt.conv_workspace_limit;
    conv_ = std::make_unique<cuda::ConvRunner>(ctx_, prec_, co);
    for (size_t i = 1; i < N; ++i) {
      const Node& nd = nodes[i];
      const Shape3& in = g_.node(nd.inputs[0]).out;
      if (nd.op == Op::conv) {
        const ConvShape sh = dev_conv_shape(nd, max_batch_);
        if (opt.conv_benchmark) {
          const size_t xe = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c, we = static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c,
                       ye = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k;
          TempDevice x(xe * sizeof(T)), w(we * sizeof(T)), y(ye * sizeof(T)), dx(xe * sizeof(T)), dw(we * sizeof(T)),
              ws(opt.conv_workspace_limit);
          cuda::ConvBenchBuffers b{x.get(), w.get(), y.get(), dx.get(), dw.get(), ws.get(), opt.conv_workspace_limit};
          conv_ws_bytes_ = std::max(conv_ws_bytes_, conv_->prepare(sh, opt.conv_workspace_limit, &b));
        } else {
          conv_ws_bytes_ = std::max(conv_ws_bytes_, conv_->prepare(sh, opt.conv_workspace_limit));
        }
        if (nd.bias >= 0)
          reduce_ws_bytes_ = std::max<size_t>(reduce_ws_bytes_, static_cast<size_t>(cuda::bias_backward_workspace_bytes(
                                                                    static_cast<int64_t>(max_batch_) * nd.out.h * nd.out.w, nd.k)));
        max_conv_weight_ = std::max<int64_t>(max_conv_weight_, int64_t{sh.k} * sh.r * sh.s * sh.c);  // padded
      } else if (nd.op == Op::batchnorm) {
        reduce_ws_bytes_ = std::max<size_t>(reduce_ws_bytes_, static_cast<size_t>(cuda::batchnorm_workspace_bytes(
                                                                  static_cast<int64_t>(max_batch_) * in.h * in.w, in.c)));
      } else if (nd.op == Op::linear) {
        if (nd.bias >= 0)
          reduce_ws_bytes_ = std::max<size_t>(
              reduce_ws_bytes_, static_cast<size_t>(cuda::bias_backward_workspace_bytes(max_batch_, nd.out_features)));
        max_linear_weight_ = std::max<int64_t>(max_linear_weight_, int64_t{nd.in_features} * nd.out_features);
      }
    }

    // Batch sizes first seen later (an eval remainder) get algorithms chosen within this workspace: keep a floor
    // so that choice is not limited to the zero-workspace algorithms.
    if (conv_ws_bytes_ > 0 || max_conv_weight_ > 0)
      conv_ws_bytes_ = std::max(conv_ws_bytes_, std::min(opt.conv_workspace_limit, size_t{32} << 20));

    // ---- optimizer chunks -------------------------------------------------------------------------------------
    const OptimizerConfig& oc = opt_.optimizer;
    // Chunks cover the tensors at their device offsets; the alignment gaps between them are never touched.
    for (size_t i = 0; i < g_.params().size(); ++i) {
      const ParamInfo& p = g_.params()[i];
      for (int64_t b = 0; b < p.size; b += cuda::kOptimizerChunk)
        chunks_host_.push_back({pl_.offset(i) + b,
                                static_cast<int32_t>(std::min<int64_t>(cuda::kOptimizerChunk, p.size - b)),
                                p.weight_decay ? oc.weight_decay : 0.f});
    }
    if (oc.kind == OptimizerKind::sgd && oc.momentum != 0.f) state_sets_ = 1;
    if (oc.kind == OptimizerKind::adamw) state_sets_ = 2;

    // ---- the arena: plan, then allocate exactly that ---------------------------------------------------------
    DeviceArena plan = DeviceArena::counting();
    layout(plan);
    arena_ = DeviceArena(plan.used(), str("the ", g_.name(), " executor (batch ", max_batch_, ", ", cuda::to_string(prec_), ")"));
    layout(arena_);
    cudaStream_t s = ctx_.stream();
    arena_.zero(s);  // the alignment gaps and the input's padding channels stay zero from here on
    linear_ = std::make_unique<cuda::LinearRunner>(ctx_, prec_, lt_ws_, cuda::LinearRunner::kDefaultWorkspace);
    if (!chunks_host_.empty())
      CUDA_CHECK(cudaMemcpyAsync(chunks_, chunks_host_.data(), chunks_host_.size() * sizeof(cuda::OptimizerChunk),
                                 cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_), sizeof(cuda::StepRecord), cudaHostAllocDefault));
    *host_ = cuda::StepRecord{};
    init_step_state();

    // A usable starting point: Graph::initialize(seed 0) and pixel/255 normalisation (callers upload their own).
    std::vector<float> p(static_cast<size_t>(g_.num_params())), b(static_cast<size_t>(std::max<int64_t>(g_.num_buffers(), 1)));
    g_.initialize(p.data(), b.data(), 0);
    upload_params(p.data());
    upload_buffers(b.data());
    const std::vector<float> zero(static_cast<size_t>(g_.input_shape().c), 0.f), one(zero.size(), 1.f);
    set_normalization(zero, one);
    CUDA_CHECK(cudaStreamSynchronize(s));
  }

  ~Engine() override {
    CUDA_CHECK_NOEXCEPT(cudaStreamSynchronize(ctx_.stream()));
    if (host_) CUDA_CHECK_NOEXCEPT(cudaFreeHost(host_));
  }

  Precision precision() const override { return prec_; }
  const cuda::DeviceInfo& device() const override { return ctx_.device(); }
  cudaStream_t stream() const override { return ctx_.stream(); }
  size_t arena_bytes() const override { return arena_.capacity(); }
  int max_batch() const override { return max_batch_; }
  int outputs() const override { return static_cast<int>(g_.nodes().back().out.size()); }

  std::string describe() const override {
    return str(ctx_.device().name, ", ", cuda::to_string(prec_), ", arena ", format_bytes(arena_.capacity()),
               " for batch ", max_batch_, " (conv workspace ", format_bytes(conv_ws_bytes_), "), ", groups_.size(),
               " fused BN groups", opt_.deterministic ? ", deterministic" : "", ", cuDNN ", ctx_.cudnn_version(),
               ", cuBLASLt ", ctx_.cublaslt_version());
  }
  std::string conv_algorithms() const override { return conv_->describe(); }

  // ---- state ------------------------------------------------------------------------------------------------------
  void upload_params(const float* p) override {
    cudaStream_t s = ctx_.stream();
    const std::vector<float> d = pl_.to_device(p);
    CUDA_CHECK(cudaMemcpyAsync(params_, d.data(), d.size() * sizeof(float), cudaMemcpyHostToDevice, s));
    if constexpr (!std::is_same_v<T, float>) cuda::cast<float, T>(pl_.total(), params_, params_half_, s);
    refresh_padded_weights();
    CUDA_CHECK(cudaStreamSynchronize(s));  // `d` dies here
  }
  void upload_buffers(const float* b) override {
    if (g_.num_buffers() == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(buffers_, b, static_cast<size_t>(g_.num_buffers()) * sizeof(float),
                               cudaMemcpyHostToDevice, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  }
  void download_params(float* p) override { download_layout(params_, p); }
  void download_buffers(float* b) override { download(buffers_, b, g_.num_buffers()); }
  void download_grads(float* gr) override { download_layout(grads_, gr); }
  // The CPU layout: state_sets_ arrays of num_params (momentum; or m then v), each flat.
  void upload_optimizer_state(const std::vector<float>& st, int64_t steps) override {
    const int64_t P = g_.num_params();
    STOKE_CHECK(static_cast<int64_t>(st.size()) == state_sets_ * P, "optimizer state of ", st.size(),
                " values, expected ", state_sets_ * P);
    for (int k = 0; k < state_sets_; ++k) {
      const std::vector<float> d = pl_.to_device(st.data() + k * P);
      CUDA_CHECK(cudaMemcpyAsync(state_ + k * pl_.total(), d.data(), d.size() * sizeof(float), cudaMemcpyHostToDevice,
                                 ctx_.stream()));
      CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));  // `d` dies here
    }
    CUDA_CHECK(cudaMemcpyAsync(&state_dev_->t, &steps, sizeof(int64_t), cudaMemcpyHostToDevice, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));  // `steps` is the caller's
  }
  void download_optimizer_state(std::vector<float>& st, int64_t& steps) override {
    const int64_t P = g_.num_params();
    st.assign(static_cast<size_t>(state_sets_ * P), 0.f);
    for (int k = 0; k < state_sets_; ++k) download_layout(state_ + k * pl_.total(), st.data() + k * P);
    steps = optimizer_steps();
  }
  // The count lives on the device (a step skipped there is not counted): reading it waits for the stream.
  int64_t optimizer_steps() const override {
    int64_t t = 0;
    CUDA_CHECK(cudaMemcpyAsync(&t, &state_dev_->t, sizeof(int64_t), cudaMemcpyDeviceToHost, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    return t;
  }
  void set_normalization(const std::vector<float>& mean, const std::vector<float>& stdev) override {
    const int c = g_.input_shape().c;
    STOKE_CHECK(static_cast<int>(mean.size()) == c && static_cast<int>(stdev.size()) == c, "normalisation of ",
                mean.size(), "/", stdev.size(), " channels for a ", c, "-channel input");
    norm_ = cuda::normalize_params(mean.data(), stdev.data(), c);
  }
  uint8_t* device_pixels() override { return pixels_; }
  int32_t* device_labels() override { return labels_; }
  uint8_t* device_flips() override { return flips_; }

  // ---- one step -----------------------------------------------------------------------------------------------------
  void forward(int n, const uint8_t* pixels, const uint8_t* flips, bool train) override {
    STOKE_TRACE("forward");
    check_batch(n);
    const Shape3 in = g_.input_shape();
    cuda::augment_normalize<T>(n, in.h, in.w, in.c, pixels, flips, norm_, input_, ctx_.stream(), in_c_dev_);
    run_forward(n, train);
  }

  void forward_normalized_host(int n, const float* x, bool train) override {
    check_batch(n);
    const int c = g_.input_shape().c;
    const size_t pixels = static_cast<size_t>(n) * static_cast<size_t>(g_.input_shape().h * g_.input_shape().w);
    const size_t count = pixels * static_cast<size_t>(in_c_dev_);
    const size_t cd = static_cast<size_t>(in_c_dev_), cs = static_cast<size_t>(c);
    std::vector<T> h(count, host_from_float<T>(0.f));  // padding channels (in_c_dev_ > c) are zeros
    for (size_t px = 0; px < pixels; ++px)
      for (size_t k = 0; k < cs; ++k) h[px * cd + k] = host_from_float<T>(x[px * cs + k]);
    CUDA_CHECK(cudaMemcpyAsync(input_, h.data(), count * sizeof(T), cudaMemcpyHostToDevice, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    run_forward(n, train);
  }

  void loss(int n, const int32_t* labels, float smoothing, bool train) override {
    STOKE_TRACE("loss");
    STOKE_CHECK(have_forward_ && n == n_, "loss() of ", n, " rows after a forward of ", n_);
    STOKE_CHECK(!train || forward_train_, "a training loss needs a training forward");
    cudaStream_t s = ctx_.stream();
    // fp16: the scale is the device's (moved by the last step's prepare_step), read by the kernel — never waited
    // for here, so the step can be captured and nothing on the host depends on the last step's overflow.
    const float* scale = train && scaler_ ? &state_dev_->scaler.scale : nullptr;
    const int out = g_.output();
    cuda::softmax_cross_entropy<T>(n, outputs(), act_[static_cast<size_t>(out)], labels, smoothing, 1.f, nullptr,
                                   train ? dact_[static_cast<size_t>(out)] : nullptr, &state_dev_->record.loss,
                                   &state_dev_->record.correct, ce_ws_, s, scale);
    if (train && scaler_)  // the record's scale is the one this loss used (a device-to-device copy: capturable)
      CUDA_CHECK(cudaMemcpyAsync(&state_dev_->record.loss_scale, scale, sizeof(float), cudaMemcpyDeviceToDevice, s));
    if (train) have_loss_grad_ = true;
  }

  void backward() override {
    STOKE_TRACE("backward");
    STOKE_CHECK(have_forward_ && forward_train_ && have_loss_grad_, "backward() needs a training forward and loss()");
    have_loss_grad_ = false;
    cudaStream_t s = ctx_.stream();
    const int n = n_;
    const auto& nodes = g_.nodes();
    CUDA_CHECK(cudaMemsetAsync(grads_, 0, static_cast<size_t>(pl_.total()) * sizeof(float), s));
    std::fill(has_grad_.begin(), has_grad_.end(), 0);
    const int out = g_.output();
    has_grad_[static_cast<size_t>(out)] = 1;  // loss() wrote dlogits into it

    for (int node = out; node >= 1; --node) {
      if (!has_grad_[static_cast<size_t>(node)]) continue;
      const Node& nd = nodes[static_cast<size_t>(node)];
      const T* dy = dact_[static_cast<size_t>(node)];
      if (const int gi = group_at_out_[static_cast<size_t>(node)]; gi >= 0) {
        backward_group(groups_[static_cast<size_t>(gi)], n);
        continue;
      }
      const int x0 = nd.inputs[0];
      const Shape3& in = g_.node(x0).out;
      const int64_t in_count = int64_t{n} * in.size();
      switch (nd.op) {
        case Op::conv: {
          const ConvShape sh = dev_conv_shape(nd, n);
          Slot dx = take(x0, 0, in_count);
          if (dx.ptr) conv_->backward_data(sh, conv_weight(nd, node), dy, dx.ptr, conv_ws_, conv_ws_bytes_);
          give(dx);
          if constexpr (std::is_same_v<T, float>) {
            conv_->backward_filter(sh, in_ptr(x0), dy, grad(nd.weight), 1.f, conv_ws_, conv_ws_bytes_);
          } else {
            conv_->backward_filter(sh, in_ptr(x0), dy, conv_dw_, 0.f, conv_ws_, conv_ws_bytes_);
            const T* dw = conv_dw_;
            if (sh.c != in.c) {  // padded input: drop the zero filter slices (their dW is exactly zero)
              cuda::copy_channels<T>(int64_t{sh.k} * sh.r * sh.s, in.c, conv_dw_, sh.c, conv_dw_unpad_, in.c, s);
              dw = conv_dw_unpad_;
            }
            cuda::accumulate<T>(g_.params()[static_cast<size_t>(nd.weight)].size, dw, grad(nd.weight), s);
          }
          if (nd.bias >= 0)
            cuda::bias_backward<T>(int64_t{n} * nd.out.h * nd.out.w, nd.k, dy, grad(nd.bias), reduce_ws_, s);
          break;
        }
        case Op::batchnorm: {
          Slot dx = take(x0, 0, in_count);
          cuda::batchnorm_backward<T>(n * in.h * in.w, in.c, in_ptr(x0), master(nd.weight),
                                      save_mean_[static_cast<size_t>(node)], save_invstd_[static_cast<size_t>(node)], dy,
                                      dx.ptr, grad(nd.weight), grad(nd.bias), reduce_ws_, s);
          give(dx);
          break;
        }
        case Op::relu: {
          Slot dx = take(x0, 0, in_count);
          if (dx.ptr) cuda::relu_backward<T>(in_count, act_[static_cast<size_t>(node)], dy, dx.ptr, s);
          give(dx);
          break;
        }
        case Op::maxpool: {
          Slot dx = take(x0, 0, in_count);
          if (dx.ptr) cuda::maxpool_backward<T>(pool_shape(nd, in, n), argmax_[static_cast<size_t>(node)], dy, dx.ptr, s);
          give(dx);
          break;
        }
        case Op::avgpool: {
          Slot dx = take(x0, 0, in_count);
          if (dx.ptr) cuda::avgpool_backward<T>(pool_shape(nd, in, n), dy, dx.ptr, s);
          give(dx);
          break;
        }
        case Op::global_avgpool: {
          Slot dx = take(x0, 0, in_count);
          if (dx.ptr) cuda::global_avgpool_backward<T>(n, in.h * in.w, in.c, dy, dx.ptr, s);
          give(dx);
          break;
        }
        case Op::linear: {
          Slot dx = take(x0, 0, in_count);
          if (dx.ptr) linear_->backward_data(n, nd.in_features, nd.out_features, weight(nd.weight), dy, dx.ptr);
          give(dx);
          linear_->backward_weight(n, nd.in_features, nd.out_features, in_ptr(x0), dy, grad(nd.weight), linear_dw_);
          if (nd.bias >= 0) cuda::bias_backward<T>(n, nd.out_features, dy, grad(nd.bias), reduce_ws_, s);
          break;
        }
        case Op::add: {
          // Both inputs receive dy (the same node twice: the second contribution goes through scratch).
          Slot a = take(nd.inputs[0], 0, in_count);
          Slot b = take(nd.inputs[1], 1, in_count);
          cuda::add_backward<T>(in_count, dy, a.ptr, b.ptr, s);
          give(a);
          give(b);
          break;
        }
        case Op::concat: {
          const int64_t rows = int64_t{n} * in.h * in.w;
          const int total = nd.out.c;
          int off = 0;
          for (int part : nd.inputs) {
            const int c = g_.node(part).out.c;
            Slot d = take(part, 0, rows * c);
            if (d.ptr) cuda::copy_channels<T>(rows, c, dy + off, total, d.ptr, c, s);
            give(d);
            off += c;
          }
          break;
        }
        case Op::input: break;
      }
    }
  }

  void step(float lr) override {
    cuda::set_step_control(ctl_, lr, false, ctx_.stream());
    step(ctl_);
  }

  // Everything the update depends on that changes per step is in device memory (control: lr and the injected
  // skip; state_dev_: t, the loss scale, the loss itself), so this enqueues the same launches every step and
  // can be captured into a graph.
  void step(const cuda::StepControl* control) override {
    STOKE_TRACE("optimizer step");
    cudaStream_t s = ctx_.stream();
    if (scaler_) {
      CUDA_CHECK(cudaMemsetAsync(&state_dev_->found_inf, 0, sizeof(int32_t), s));
      cuda::check_finite(pl_.total(), grads_, &state_dev_->found_inf, s);
    }
    cuda::prepare_step(state_dev_, control, step_config_, s);
    const OptimizerConfig& c = opt_.optimizer;
    T* half = std::is_same_v<T, float> ? nullptr : params_half_;
    const int nchunks = static_cast<int>(chunks_host_.size());
    const int32_t* skip = &state_dev_->skip_update;
    if (c.kind == OptimizerKind::sgd) {
      cuda::SgdArgs a;  // the host's copy only says whether there is a momentum buffer; the kernel reads the rest
      a.momentum = c.momentum;
      cuda::sgd_step<T>(chunks_, nchunks, params_, half, grads_, state_, a, skip, s, &state_dev_->sgd);
    } else {
      cuda::adamw_step<T>(chunks_, nchunks, params_, half, grads_, state_, state_ ? state_ + pl_.total() : nullptr,
                          cuda::AdamwArgs{}, skip, s, &state_dev_->adamw);
    }
    refresh_padded_weights();
  }

  const cuda::StepRecord* device_record() const override { return &state_dev_->record; }

  CudaStepStats stats() override {
    CUDA_CHECK(cudaMemcpyAsync(host_, &state_dev_->record, sizeof(cuda::StepRecord), cudaMemcpyDeviceToHost,
                               ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    CudaStepStats st;
    st.loss = host_->loss;
    st.correct = host_->correct;
    st.step_applied = host_->applied != 0;
    st.loss_scale = host_->loss_scale;
    return st;
  }

  void download_logits(float* out) override {
    STOKE_CHECK(have_forward_, "no forward yet");
    const size_t count = static_cast<size_t>(n_) * static_cast<size_t>(outputs());
    std::vector<T> h(count);
    CUDA_CHECK(cudaMemcpyAsync(h.data(), act_[static_cast<size_t>(g_.output())], count * sizeof(T),
                               cudaMemcpyDeviceToHost, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    for (size_t i = 0; i < count; ++i) out[i] = host_to_float(h[i]);
  }

 private:
  struct Slot {
    T* ptr = nullptr;
    int node = -1;
    bool add = false;  // ptr is scratch: add it into the node's gradient after the op
    int64_t count = 0;
  };

  // Where an op writes node's gradient: its own buffer the first time, else scratch (slot 0 or 1) to be added.
  Slot take(int node, int slot, int64_t count) {
    Slot r;
    if (node == 0) return r;  // the graph input needs no gradient
    r.node = node;
    r.count = count;
    if (!has_grad_[static_cast<size_t>(node)]) {
      has_grad_[static_cast<size_t>(node)] = 1;
      r.ptr = dact_[static_cast<size_t>(node)];
    } else {
      STOKE_CHECK(count <= scratch_count_, "gradient scratch too small");
      r.ptr = scratch_[slot];
      r.add = true;
    }
    return r;
  }
  void give(const Slot& sl) {
    if (sl.ptr && sl.add)
      cuda::add_forward<T>(sl.count, dact_[static_cast<size_t>(sl.node)], sl.ptr, dact_[static_cast<size_t>(sl.node)],
                           ctx_.stream());
  }

  const T* in_ptr(int node) const { return node == 0 ? input_ : act_[static_cast<size_t>(node)]; }
  // Parameter pointers at their device offsets (engine/cuda/param_layout.h), not the Graph's flat ones.
  float* master(int idx) const { return idx < 0 ? nullptr : params_ + pl_.offset(static_cast<size_t>(idx)); }
  const T* weight(int idx) const { return idx < 0 ? nullptr : params_half_ + pl_.offset(static_cast<size_t>(idx)); }
  float* grad(int idx) const { return idx < 0 ? nullptr : grads_ + pl_.offset(static_cast<size_t>(idx)); }

  // The convolution as cuDNN sees it: a conv reading the padded input gets the padded channel count.
  ConvShape dev_conv_shape(const Node& nd, int n) const {
    Shape3 in = g_.node(nd.inputs[0]).out;
    if (nd.inputs[0] == 0) in.c = in_c_dev_;
    return conv_shape(nd, in, n);
  }
  const T* conv_weight(const Node& nd, int node) const {
    const T* padded = padded_w_.empty() ? nullptr : padded_w_[static_cast<size_t>(node)];
    return padded ? padded : weight(nd.weight);
  }
  // The zero-padded filter copies (K R S x in_c_dev_) follow the half copies: after an upload and every step.
  void refresh_padded_weights() {
    const int c = g_.input_shape().c;
    for (size_t i = 0; i < padded_w_.size(); ++i) {
      if (!padded_w_[i]) continue;
      const Node& nd = g_.nodes()[i];
      const int64_t rows = g_.params()[static_cast<size_t>(nd.weight)].size / c;
      cuda::copy_channels<T>(rows, c, weight(nd.weight), c, padded_w_[i], in_c_dev_, ctx_.stream());
    }
  }
  // A device array in the padded layout -> the Graph's flat layout (synchronises).
  void download_layout(const float* src, float* flat) {
    std::vector<float> d(static_cast<size_t>(pl_.total()));
    download(src, d.data(), pl_.total());
    pl_.to_flat(d, flat);
  }
  float* buffer(int idx) const {
    return idx < 0 ? nullptr : buffers_ + g_.buffers()[static_cast<size_t>(idx)].offset;
  }

  void check_batch(int n) const { STOKE_CHECK(n >= 1 && n <= max_batch_, "batch ", n, " outside [1, ", max_batch_, "]"); }

  void download(const float* src, float* dst, int64_t count) {
    if (count <= 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  }

  // The device's step state at construction: t = 0, the initial loss scale (fp16), and the constants of the update.
  void init_step_state() {
    const OptimizerConfig& c = opt_.optimizer;
    step_config_.adamw = c.kind == OptimizerKind::adamw;
    step_config_.momentum = c.momentum;
    step_config_.nesterov = c.nesterov;
    step_config_.beta1 = c.beta1;
    step_config_.beta2 = c.beta2;
    step_config_.eps = c.eps;
    step_config_.loss_scaling = scaler_.has_value();
    cuda::StepState init;
    if (scaler_) {
      step_config_.rule = scaler_->rule();
      init.scaler = scaler_->state();
    }
    CUDA_CHECK(cudaMemcpyAsync(state_dev_, &init, sizeof(init), cudaMemcpyHostToDevice, ctx_.stream()));
    cuda::set_step_control(ctl_, 0.f, false, ctx_.stream());
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));  // `init` dies here
  }

  // Every device buffer, in one fixed order (run once on a counting arena, once on the real one).
  void layout(DeviceArena& a) {
    const auto& nodes = g_.nodes();
    const size_t N = nodes.size();
    const Shape3 in = g_.input_shape();
    const size_t mb = static_cast<size_t>(max_batch_);
    const size_t Pd = static_cast<size_t>(pl_.total());  // the padded device layout of the parameters
    params_ = a.alloc<float>(Pd, "fp32 master weights");
    if constexpr (std::is_same_v<T, float>)
      params_half_ = params_;
    else
      params_half_ = a.alloc<T>(Pd, "half-precision weights");
    grads_ = a.alloc<float>(Pd, "gradients");
    state_ = state_sets_ > 0 ? a.alloc<float>(static_cast<size_t>(state_sets_) * Pd, "optimizer state") : nullptr;
    buffers_ = a.alloc<float>(static_cast<size_t>(std::max<int64_t>(g_.num_buffers(), 1)), "BN running statistics");
    chunks_ = a.alloc<cuda::OptimizerChunk>(std::max<size_t>(chunks_host_.size(), 1), "optimizer chunk table");
    pixels_ = a.alloc<uint8_t>(mb * static_cast<size_t>(in.size()), "input pixels");
    labels_ = a.alloc<int32_t>(mb, "labels");
    flips_ = a.alloc<uint8_t>(mb, "flip flags");
    input_ = a.alloc<T>(mb * static_cast<size_t>(in.h * in.w * in_c_dev_), "normalised input");
    padded_w_.assign(in_c_dev_ != in.c ? N : 0, nullptr);
    int64_t largest_padded = 0;
    for (size_t i = 0; i < padded_w_.size(); ++i)
      if (nodes[i].op == Op::conv && nodes[i].inputs[0] == 0) {
        const int64_t w = g_.params()[static_cast<size_t>(nodes[i].weight)].size;
        padded_w_[i] = a.alloc<T>(static_cast<size_t>(w / in.c * in_c_dev_), "zero-padded first-conv filter");
        largest_padded = std::max(largest_padded, w);
      }
    conv_dw_unpad_ = largest_padded > 0 ? a.alloc<T>(static_cast<size_t>(largest_padded), "first-conv dW (unpadded)") : nullptr;
    act_.assign(N, nullptr);
    dact_.assign(N, nullptr);
    argmax_.assign(N, nullptr);
    save_mean_.assign(N, nullptr);
    save_invstd_.assign(N, nullptr);
    has_grad_.assign(N, 0);
    int64_t largest = 0;
    for (size_t i = 1; i < N; ++i) {
      const Node& nd = nodes[i];
      const size_t count = mb * static_cast<size_t>(nd.out.size());
      largest = std::max<int64_t>(largest, static_cast<int64_t>(count));
      if (!interior_[i]) {
        act_[i] = a.alloc<T>(count, "activation");
        dact_[i] = a.alloc<T>(count, "activation gradient");
      }
      if (op_traits(nd.op).saves_argmax) argmax_[i] = a.alloc<int32_t>(count, "max-pool argmax");
      if (op_traits(nd.op).saves_channel_stats) {
        save_mean_[i] = a.alloc<float>(static_cast<size_t>(nd.out.c), "BN saved mean");
        save_invstd_[i] = a.alloc<float>(static_cast<size_t>(nd.out.c), "BN saved inv-std");
      }
    }
    scratch_count_ = largest;
    scratch_[0] = a.alloc<T>(static_cast<size_t>(largest), "gradient scratch");
    scratch_[1] = a.alloc<T>(static_cast<size_t>(largest), "gradient scratch");
    reduce_ws_ = a.allocate(std::max<size_t>(reduce_ws_bytes_, 8), "reduction workspace");
    conv_ws_ = conv_ws_bytes_ > 0 ? a.allocate(conv_ws_bytes_, "cuDNN workspace") : nullptr;
    lt_ws_ = a.allocate(cuda::LinearRunner::kDefaultWorkspace, "cuBLASLt workspace");
    if constexpr (!std::is_same_v<T, float>) {
      conv_dw_ = max_conv_weight_ > 0 ? a.alloc<T>(static_cast<size_t>(max_conv_weight_), "conv dW (half)") : nullptr;
      linear_dw_ = max_linear_weight_ > 0 ? a.alloc<T>(static_cast<size_t>(max_linear_weight_), "linear dW (half)") : nullptr;
    }
    ce_ws_ = a.allocate(static_cast<size_t>(cuda::softmax_ce_workspace_bytes(max_batch_)), "softmax-CE workspace");
    state_dev_ = a.alloc<cuda::StepState>(1, "step state");
    ctl_ = a.alloc<cuda::StepControl>(1, "step control");
  }

  void run_forward(int n, bool train) {
    cudaStream_t s = ctx_.stream();
    const auto& nodes = g_.nodes();
    n_ = n;
    have_forward_ = true;
    forward_train_ = train;
    have_loss_grad_ = false;
    for (size_t i = 1; i < nodes.size(); ++i) {
      if (interior_[i]) continue;
      if (const int gi = group_at_out_[i]; gi >= 0) {
        forward_group(groups_[static_cast<size_t>(gi)], n, train);
        continue;
      }
      const Node& nd = nodes[i];
      const Shape3& in = g_.node(nd.inputs[0]).out;
      const T* x = in_ptr(nd.inputs[0]);
      T* y = act_[i];
      switch (nd.op) {
        case Op::conv: {
          const ConvShape sh = dev_conv_shape(nd, n);
          conv_->forward(sh, x, conv_weight(nd, i), y, conv_ws_, conv_ws_bytes_);
          if (nd.bias >= 0) cuda::bias_forward<T>(int64_t{n} * sh.p() * sh.q(), sh.k, master(nd.bias), y, s);
          break;
        }
        case Op::batchnorm: {
          const int rows = n * in.h * in.w;
          if (train)
            cuda::batchnorm_forward_train<T>(rows, in.c, x, master(nd.weight), master(nd.bias), nd.eps, nd.momentum,
                                             buffer(nd.running_mean), buffer(nd.running_var), y, save_mean_[i],
                                             save_invstd_[i], reduce_ws_, s);
          else
            cuda::batchnorm_forward_eval<T>(rows, in.c, x, master(nd.weight), master(nd.bias), buffer(nd.running_mean),
                                            buffer(nd.running_var), nd.eps, y, reduce_ws_, s);
          break;
        }
        case Op::relu: cuda::relu_forward<T>(int64_t{n} * in.size(), x, y, s); break;
        case Op::maxpool:
          cuda::maxpool_forward<T>(pool_shape(nd, in, n), x, y, train ? argmax_[i] : nullptr, s);
          break;
        case Op::avgpool: cuda::avgpool_forward<T>(pool_shape(nd, in, n), x, y, s); break;
        case Op::global_avgpool: cuda::global_avgpool_forward<T>(n, in.h * in.w, in.c, x, y, s); break;
        case Op::linear:
          linear_->forward(n, nd.in_features, nd.out_features, x, weight(nd.weight), weight(nd.bias), master(nd.bias), y);
          break;
        case Op::add: cuda::add_forward<T>(int64_t{n} * in.size(), x, in_ptr(nd.inputs[1]), y, s); break;
        case Op::concat: {
          const int64_t rows = int64_t{n} * in.h * in.w;
          int off = 0;
          for (int part : nd.inputs) {
            const int c = g_.node(part).out.c;
            cuda::copy_channels<T>(rows, c, in_ptr(part), c, y + off, nd.out.c, s);
            off += c;
          }
          break;
        }
        case Op::input: STOKE_CHECK(false, "input node inside the graph"); break;
      }
    }
  }

  void forward_group(const Group& gr, int n, bool train) {
    const Node& bn = g_.node(gr.bn);
    const Shape3& in = g_.node(bn.inputs[0]).out;
    const int rows = n * in.h * in.w;
    const T* x = in_ptr(bn.inputs[0]);
    const T* res = gr.residual >= 0 ? in_ptr(gr.residual) : nullptr;
    T* y = act_[static_cast<size_t>(gr.out)];
    const size_t b = static_cast<size_t>(gr.bn);
    if (train)
      cuda::batchnorm_add_relu_forward_train<T>(rows, in.c, x, res, gr.relu >= 0, master(bn.weight), master(bn.bias), bn.eps,
                                                bn.momentum, buffer(bn.running_mean), buffer(bn.running_var), y,
                                                save_mean_[b], save_invstd_[b], reduce_ws_, ctx_.stream());
    else
      cuda::batchnorm_add_relu_forward_eval<T>(rows, in.c, x, res, gr.relu >= 0, master(bn.weight), master(bn.bias),
                                               buffer(bn.running_mean), buffer(bn.running_var), bn.eps, y, reduce_ws_,
                                               ctx_.stream());
  }

  void backward_group(const Group& gr, int n) {
    const Node& bn = g_.node(gr.bn);
    const int x0 = bn.inputs[0];
    const Shape3& in = g_.node(x0).out;
    const int rows = n * in.h * in.w;
    const int64_t count = int64_t{rows} * in.c;
    const size_t b = static_cast<size_t>(gr.bn);
    // Claim both targets before the kernel writes them (the BN input may also be the residual).
    Slot dx = take(x0, 0, count);
    Slot dres = gr.residual >= 0 ? take(gr.residual, 1, count) : Slot{};
    cuda::batchnorm_add_relu_backward<T>(rows, in.c, in_ptr(x0), master(bn.weight), save_mean_[b], save_invstd_[b],
                                         gr.relu >= 0 ? act_[static_cast<size_t>(gr.out)] : nullptr,
                                         dact_[static_cast<size_t>(gr.out)], gr.relu >= 0, dx.ptr, dres.ptr,
                                         grad(bn.weight), grad(bn.bias), reduce_ws_, ctx_.stream());
    give(dx);
    give(dres);
  }

  // ---- members (ctx_ first: it selects the device everything else lives on) --------------------------------------
  const Graph& g_;
  int max_batch_;
  CudaExecutorOptions opt_;
  Precision prec_;
  cuda::CudaContext ctx_;
  std::unique_ptr<cuda::ConvRunner> conv_;
  std::unique_ptr<cuda::LinearRunner> linear_;
  DeviceArena arena_;
  std::optional<cuda::LossScaler> scaler_;  // fp16: the rule and initial scale; the live state is on the device
  cuda::StepConfig step_config_;

  std::vector<Group> groups_;
  std::vector<int> group_at_out_;
  std::vector<char> interior_;
  std::vector<cuda::OptimizerChunk> chunks_host_;
  cuda::DeviceParamLayout pl_;  // device offsets of the parameter tensors (16-byte aligned and more)
  int state_sets_ = 0;          // optimizer state arrays: 1 (momentum), 2 (AdamW m, v) or 0
  int in_c_dev_ = 0;            // input channels on the device (padded to 8 in half precision when < 8)
  int64_t max_conv_weight_ = 0, max_linear_weight_ = 0;
  size_t conv_ws_bytes_ = 0, reduce_ws_bytes_ = 0;

  // Device buffers (all inside arena_).
  float* params_ = nullptr;
  T* params_half_ = nullptr;  // == params_ for fp32
  float* grads_ = nullptr;
  float* state_ = nullptr;
  float* buffers_ = nullptr;
  cuda::OptimizerChunk* chunks_ = nullptr;
  uint8_t* pixels_ = nullptr;
  int32_t* labels_ = nullptr;
  uint8_t* flips_ = nullptr;
  T* input_ = nullptr;
  std::vector<T*> act_, dact_;
  std::vector<int32_t*> argmax_;
  std::vector<float*> save_mean_, save_invstd_;
  std::vector<char> has_grad_;
  T* scratch_[2] = {nullptr, nullptr};
  int64_t scratch_count_ = 0;
  void* reduce_ws_ = nullptr;
  void* conv_ws_ = nullptr;
  void* lt_ws_ = nullptr;
  T* conv_dw_ = nullptr;
  T* conv_dw_unpad_ = nullptr;
  std::vector<T*> padded_w_;  // per node: the zero-padded filter of a conv reading the padded input
  T* linear_dw_ = nullptr;
  void* ce_ws_ = nullptr;
  cuda::StepState* state_dev_ = nullptr;
  cuda::StepControl* ctl_ = nullptr;     // step(float lr) writes it; the asynchronous backend brings its own
  cuda::StepRecord* host_ = nullptr;     // pinned, for stats()

  cuda::NormalizeParams norm_;
  int n_ = 0;
  bool have_forward_ = false, forward_train_ = false, have_loss_grad_ = false;
};

}  // namespace

CudaExecutor::CudaExecutor(const Graph& graph, int max_batch, const CudaExecutorOptions& options) {
  const cuda::DeviceInfo d = cuda::use_device(options.device);
  const Precision p = cuda::resolve_precision(options.precision, d.major);
  switch (p) {
    case Precision::fp32: impl_ = std::make_unique<Engine<float>>(graph, max_batch, options, p); break;
    case Precision::bf16: impl_ = std::make_unique<Engine<__nv_bfloat16>>(graph, max_batch, options, p); break;
    case Precision::fp16: impl_ = std::make_unique<Engine<__half>>(graph, max_batch, options, p); break;
    case Precision::automatic: STOKE_CHECK(false, "unresolved precision"); break;
  }
}

CudaExecutor::~CudaExecutor() = default;

cuda::Precision CudaExecutor::precision() const { return impl_->precision(); }
const cuda::DeviceInfo& CudaExecutor::device() const { return impl_->device(); }
cudaStream_t CudaExecutor::stream() const { return impl_->stream(); }
size_t CudaExecutor::arena_bytes() const { return impl_->arena_bytes(); }
int CudaExecutor::max_batch() const { return impl_->max_batch(); }
int CudaExecutor::outputs() const { return impl_->outputs(); }
std::string CudaExecutor::describe() const { return impl_->describe(); }
std::string CudaExecutor::conv_algorithms() const { return impl_->conv_algorithms(); }
void CudaExecutor::upload_params(const float* p) { impl_->upload_params(p); }
void CudaExecutor::upload_buffers(const float* b) { impl_->upload_buffers(b); }
void CudaExecutor::download_params(float* p) const { impl_->download_params(p); }
void CudaExecutor::download_buffers(float* b) const { impl_->download_buffers(b); }
void CudaExecutor::download_grads(float* g) const { impl_->download_grads(g); }
void CudaExecutor::upload_optimizer_state(const std::vector<float>& s, int64_t steps) {
  impl_->upload_optimizer_state(s, steps);
}
void CudaExecutor::download_optimizer_state(std::vector<float>& s, int64_t& steps) const {
  impl_->download_optimizer_state(s, steps);
}
int64_t CudaExecutor::optimizer_steps() const { return impl_->optimizer_steps(); }
void CudaExecutor::set_normalization(const std::vector<float>& mean, const std::vector<float>& stdev) {
  impl_->set_normalization(mean, stdev);
}
uint8_t* CudaExecutor::device_pixels() { return impl_->device_pixels(); }
int32_t* CudaExecutor::device_labels() { return impl_->device_labels(); }
uint8_t* CudaExecutor::device_flips() { return impl_->device_flips(); }
void CudaExecutor::forward(int n, const uint8_t* pixels, const uint8_t* flips, bool train) {
  impl_->forward(n, pixels, flips, train);
}
void CudaExecutor::forward_normalized_host(int n, const float* x, bool train) { impl_->forward_normalized_host(n, x, train); }
void CudaExecutor::loss(int n, const int32_t* labels, float label_smoothing, bool train) {
  impl_->loss(n, labels, label_smoothing, train);
}
void CudaExecutor::backward() { impl_->backward(); }
void CudaExecutor::step(float lr) { impl_->step(lr); }
void CudaExecutor::step(const cuda::StepControl* control) { impl_->step(control); }
const cuda::StepRecord* CudaExecutor::device_record() const { return impl_->device_record(); }
CudaStepStats CudaExecutor::stats() { return impl_->stats(); }
void CudaExecutor::download_logits(float* logits) const { impl_->download_logits(logits); }

}  // namespace stoke
