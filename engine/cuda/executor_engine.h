// Internal to the CUDA executor: Engine<T> runs the graph with storage type T (float, __nv_bfloat16, __half).
// engine/cuda/executor.cpp picks T and forwards to it; the long passes (construction and planning, the arena
// layout, forward and backward, the fused batch-norm groups) are defined in engine/cuda/executor_passes.cpp,
// which instantiates Engine for the three storage types.
//
// Gradient routing follows engine/cpu/executor.cpp: a node's gradient buffer is written directly by the first
// backward op that reaches it and later contributions go to a scratch buffer that is then added, so every op
// assigns its activation gradient (=) and only parameter gradients accumulate (+=).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>
#include <type_traits>
#include <variant>
#include "base/cuda_check.h"
#include "base/error.h"
#include "base/format.h"
#include "base/trace.h"
#include "engine/cuda/arena.h"
#include "engine/cuda/context.h"
#include "engine/cuda/conv.h"
#include "engine/cuda/executor.h"
#include "engine/cuda/fusion.h"
#include "engine/cuda/linear.h"
#include "engine/cuda/loss_scaler.h"
#include "engine/cuda/param_layout.h"
#include "engine/op_shapes.h"
#include "engine/op_traits.h"
#include "kernels/activation.cuh"
#include "kernels/augment.cuh"
#include "kernels/batchnorm.cuh"
#include "kernels/cast.cuh"
#include "kernels/mix.cuh"
#include "kernels/optimizer.cuh"
#include "kernels/pool.cuh"
#include "kernels/softmax_ce.cuh"
#include "kernels/tensor_ops.cuh"

namespace stoke {

namespace cuda_engine {

using cuda::DeviceArena;
using cuda::Precision;

using cuda::host_from_float;
using cuda::host_to_float;

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

}  // namespace cuda_engine

namespace cuda_engine {

template <typename T>
class Engine {
 public:
  Engine(const Graph& graph, int max_batch, const CudaExecutorOptions& opt, Precision prec);

  ~Engine() {
    CUDA_CHECK_NOEXCEPT(cudaStreamSynchronize(ctx_.stream()));
    if (host_) CUDA_CHECK_NOEXCEPT(cudaFreeHost(host_));
  }

  Precision precision() const { return prec_; }
  const cuda::DeviceInfo& device() const { return ctx_.device(); }
  cudaStream_t stream() const { return ctx_.stream(); }
  size_t arena_bytes() const { return arena_.capacity(); }
  int max_batch() const { return max_batch_; }
  int outputs() const { return static_cast<int>(g_.nodes().back().out.size()); }

  std::string describe() const {
    return str(ctx_.device().name, ", ", cuda::to_string(prec_), ", arena ", format_bytes(arena_.capacity()),
               " for batch ", max_batch_, " (conv workspace ", format_bytes(conv_ws_bytes_), "), ", groups_.size(),
               " fused BN groups", opt_.deterministic ? ", deterministic" : "", ", cuDNN ", ctx_.cudnn_version(),
               ", cuBLASLt ", ctx_.cublaslt_version());
  }
  std::string conv_algorithms() const { return conv_->describe(); }

  // ---- state ------------------------------------------------------------------------------------------------------
  void upload_params(const float* p) {
    upload_layout(p, params_);
    if constexpr (!std::is_same_v<T, float>) cuda::cast<float, T>(pl_.total(), params_, params_half_, ctx_.stream());
    refresh_padded_weights();
  }
  void upload_buffers(const float* b) {
    if (g_.num_buffers() == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(buffers_, b, static_cast<size_t>(g_.num_buffers()) * sizeof(float),
                               cudaMemcpyHostToDevice, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  }
  void download_params(float* p) { download_layout(params_, p); }
  void download_buffers(float* b) { download(buffers_, b, g_.num_buffers()); }
  void download_grads(float* gr) { download_layout(grads_, gr); }
  // The CPU layout: state_sets_ arrays of num_params (momentum; or m then v), each flat.
  void upload_optimizer_state(const std::vector<float>& st, int64_t steps) {
    const int64_t P = g_.num_params();
    STOKE_CHECK(static_cast<int64_t>(st.size()) == state_sets_ * P, "optimizer state of ", st.size(),
                " values, expected ", state_sets_ * P);
    for (int k = 0; k < state_sets_; ++k) upload_layout(st.data() + k * P, state_ + k * pl_.total());
    CUDA_CHECK(cudaMemcpyAsync(&state_dev_->t, &steps, sizeof(int64_t), cudaMemcpyHostToDevice, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));  // `steps` is the caller's
  }
  void download_optimizer_state(std::vector<float>& st, int64_t& steps) {
    const int64_t P = g_.num_params();
    st.assign(static_cast<size_t>(state_sets_ * P), 0.f);
    for (int k = 0; k < state_sets_; ++k) download_layout(state_ + k * pl_.total(), st.data() + k * P);
    steps = optimizer_steps();
  }
  // --ema: its own allocation, made once at construction (before any step is captured, so its launch is in the graph).
  void allocate_ema() {
    const int64_t nb = std::max<int64_t>(g_.num_buffers(), 1);
    ema_arena_ = DeviceArena(cuda::arena_round(static_cast<size_t>(pl_.total()) * sizeof(float)) +
                                 cuda::arena_round(static_cast<size_t>(nb) * sizeof(float)),
                             "the weight EMA (--ema)");
    ema_params_ = ema_arena_.alloc<float>(static_cast<size_t>(pl_.total()), "EMA parameters");
    ema_buffers_ = ema_arena_.alloc<float>(static_cast<size_t>(nb), "EMA buffers");
    ema_arena_.zero(ctx_.stream());  // the alignment gaps stay zero, as the parameters' do
  }
  void upload_ema(const float* p, const float* b) {
    STOKE_CHECK(ema_params_, "no EMA (--ema) on this executor");
    if (g_.num_buffers() > 0)
      CUDA_CHECK(cudaMemcpyAsync(ema_buffers_, b, static_cast<size_t>(g_.num_buffers()) * sizeof(float),
                                 cudaMemcpyHostToDevice, ctx_.stream()));
    upload_layout(p, ema_params_);  // its synchronisation covers `b`, the caller's, too
  }
  // The EMA starts as the trained weights and buffers already on the device: copied there, in stream order (the
  // same bytes upload_ema of the host arrays they came from writes, alignment gaps included).
  void seed_ema() {
    STOKE_CHECK(ema_params_, "no EMA (--ema) on this executor");
    cudaStream_t s = ctx_.stream();
    CUDA_CHECK(cudaMemcpyAsync(ema_params_, params_, static_cast<size_t>(pl_.total()) * sizeof(float),
                               cudaMemcpyDeviceToDevice, s));
    if (g_.num_buffers() > 0)
      CUDA_CHECK(cudaMemcpyAsync(ema_buffers_, buffers_, static_cast<size_t>(g_.num_buffers()) * sizeof(float),
                                 cudaMemcpyDeviceToDevice, s));
  }
  void download_ema(float* p, float* b) {
    STOKE_CHECK(ema_params_, "no EMA (--ema) on this executor");
    download_layout(ema_params_, p);
    download(ema_buffers_, b, g_.num_buffers());
  }
  // Exchanges the trained weights and buffers with the EMA's (twice: back as they were, bit for bit), and rewrites
  // the copies forward reads.
  void swap_ema() {
    STOKE_CHECK(ema_params_, "no EMA (--ema) on this executor");
    cudaStream_t s = ctx_.stream();
    cuda::swap_values(pl_.total(), params_, ema_params_, s);
    cuda::swap_values(g_.num_buffers(), buffers_, ema_buffers_, s);
    if constexpr (!std::is_same_v<T, float>) cuda::cast<float, T>(pl_.total(), params_, params_half_, s);
    refresh_padded_weights();
  }

  // The count lives on the device (a step skipped there is not counted): reading it waits for the stream.
  int64_t optimizer_steps() const {
    int64_t t = 0;
    CUDA_CHECK(cudaMemcpyAsync(&t, &state_dev_->t, sizeof(int64_t), cudaMemcpyDeviceToHost, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    return t;
  }
  void set_normalization(const std::vector<float>& mean, const std::vector<float>& stdev) {
    const int c = g_.input_shape().c;
    STOKE_CHECK(static_cast<int>(mean.size()) == c && static_cast<int>(stdev.size()) == c, "normalisation of ",
                mean.size(), "/", stdev.size(), " channels for a ", c, "-channel input");
    norm_ = cuda::normalize_params(mean.data(), stdev.data(), c);
  }
  uint8_t* device_pixels() { return pixels_; }
  int32_t* device_labels() { return labels_; }
  uint8_t* device_flips() { return flips_; }

  // ---- one step -----------------------------------------------------------------------------------------------------
  void normalize(int n, const uint8_t* pixels, const uint8_t* flips) {
    STOKE_TRACE("normalize");
    check_batch(n);
    const Shape3 in = g_.input_shape();
    cuda::augment_normalize<T>(n, in.h, in.w, in.c, pixels, flips, norm_, input_, ctx_.stream(), in_c_dev_);
    normalized_ = n;
  }
  void normalize(int n, const uint8_t* pixels, const uint8_t* flips, const SampleTransform* transforms) {
    if (!transforms) return normalize(n, pixels, flips);
    STOKE_TRACE("augment and normalize");
    check_batch(n);
    const Shape3 in = g_.input_shape();
    cuda::augment_transform_normalize<T>(n, in.h, in.w, in.c, pixels, transforms, norm_, input_, ctx_.stream(),
                                         in_c_dev_);
    normalized_ = n;
  }

  void mix_input(int n, const BatchMix* mix) {
    STOKE_TRACE("mix");
    STOKE_CHECK(n == normalized_, "mix_input() of ", n, " rows after normalize() of ", normalized_);
    const Shape3 in = g_.input_shape();
    cuda::mix_batch<T>(n, in.h, in.w, in_c_dev_, mix, input_, ctx_.stream());
  }

  void forward(int n, bool train) {
    STOKE_TRACE("forward");
    STOKE_CHECK(n == normalized_, "forward() of ", n, " rows after normalize() of ", normalized_);
    run_forward(n, train);
  }

  void forward_normalized_host(int n, const float* x, bool train) {
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
    normalized_ = n;
    run_forward(n, train);
  }

  void loss(int n, const int32_t* labels, float smoothing, bool train, const BatchMix* mix) {
    STOKE_TRACE("loss");
    STOKE_CHECK(have_forward_ && n == n_, "loss() of ", n, " rows after a forward of ", n_);
    STOKE_CHECK(!train || forward_train_, "a training loss needs a training forward");
    cudaStream_t s = ctx_.stream();
    // fp16: the scale is the device's (moved by the last step's prepare_step), read by the kernel — never waited
    // for here, so the step can be captured and nothing on the host depends on the last step's overflow.
    const float* scale = train && scaler_ ? &state_dev_->scaler.scale : nullptr;
    const int out = g_.output();
    T* dlogits = train ? dact_[static_cast<size_t>(out)] : nullptr;
    if (mix)
      cuda::softmax_cross_entropy_mixed<T>(n, outputs(), act_[static_cast<size_t>(out)], labels, mix, smoothing, 1.f,
                                           nullptr, dlogits, &state_dev_->record.loss, &state_dev_->record.correct,
                                           ce_ws_, s, scale);
    else
      cuda::softmax_cross_entropy<T>(n, outputs(), act_[static_cast<size_t>(out)], labels, smoothing, 1.f, nullptr,
                                     dlogits, &state_dev_->record.loss, &state_dev_->record.correct, ce_ws_, s, scale);
    if (train && scaler_)  // the record's scale is the one this loss used (a device-to-device copy: capturable)
      CUDA_CHECK(cudaMemcpyAsync(&state_dev_->record.loss_scale, scale, sizeof(float), cudaMemcpyDeviceToDevice, s));
    if (train) have_loss_grad_ = true;
  }

  void backward();

  void step(float lr) {
    cuda::set_step_control(ctl_, lr, false, ctx_.stream());
    step(ctl_);
  }

  // Everything the update depends on that changes per step is in device memory (control: lr and the injected
  // skip; state_dev_: t, the loss scale, the loss itself, the EMA's decay), so this enqueues the same launches every
  // step and can be captured into a graph.
  void step(const cuda::StepControl* control) {
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
    if (ema_params_)  // after the update, over the masters it wrote and this step's running statistics
      cuda::ema_update(pl_.total(), ema_params_, params_, g_.num_buffers(), ema_buffers_, buffers_, opt_.ema_decay,
                       skip, s, &state_dev_->ema_decay);
    refresh_padded_weights();
  }

  const cuda::StepRecord* device_record() const { return &state_dev_->record; }

  CudaStepStats stats() {
    CUDA_CHECK(
        cudaMemcpyAsync(host_, &state_dev_->record, sizeof(cuda::StepRecord), cudaMemcpyDeviceToHost, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    CudaStepStats st;
    st.loss = host_->loss;
    st.correct = host_->correct;
    st.step_applied = host_->applied != 0;
    st.loss_scale = host_->loss_scale;
    return st;
  }

  void download_logits(float* out) {
    STOKE_CHECK(have_forward_, "no forward yet");
    // The planned arena lets backward reuse the logits' bytes once they are dead: read them before backward().
    STOKE_CHECK(!backward_ran_, "download_logits after backward(): the logits' memory may have been reused");
    const size_t count = static_cast<size_t>(n_) * static_cast<size_t>(outputs());
    std::vector<T> h(count);
    CUDA_CHECK(cudaMemcpyAsync(h.data(), act_[static_cast<size_t>(g_.output())], count * sizeof(T),
                               cudaMemcpyDeviceToHost, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
    for (size_t i = 0; i < count; ++i) out[i] = host_to_float(h[i]);
  }

  // ---- data parallel ----------------------------------------------------------------------------------------------
  std::vector<cuda::GradSource> grad_sources() const { return cuda::grad_sources(g_, groups_, pl_); }
  float* device_grads() { return grads_; }
  int64_t device_grad_count() const { return pl_.total(); }
  void set_backward_hook(std::function<void(int)> hook) { backward_hook_ = std::move(hook); }
  void set_sync_batchnorm(cuda::DeviceChannelAllReduce across) { sync_bn_ = std::move(across); }
  // Changes a constant of the update: only between steps, and before a step graph is captured (the captured
  // prepare_step launch holds the config by value).
  void set_inv_world(float inv_world) { step_config_.inv_world = inv_world; }
  void pack_step_sums(const cuda::StepControl* control, float* sums) {
    STOKE_CHECK(have_forward_ && forward_train_, "step sums need a training forward and loss()");
    cuda::pack_step_sums(state_dev_, control, n_, sums, ctx_.stream());
  }
  void unpack_step_sums(const float* sums) { cuda::unpack_step_sums(state_dev_, sums, ctx_.stream()); }

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
    if (node == 0 || !upstream_[static_cast<size_t>(node)]) return r;  // the input, or nothing behind it trains
    r.node = node;
    r.count = count;
    if (!has_grad_[static_cast<size_t>(node)]) {
      has_grad_[static_cast<size_t>(node)] = 1;
      r.ptr = dact_[static_cast<size_t>(node)];
    } else {
      const Scratch& sc = scratch_[static_cast<size_t>(backward_node_) * 2 + static_cast<size_t>(slot)];
      STOKE_CHECK(sc.ptr && count <= sc.count, "no planned gradient scratch (slot ", slot, ") of ", count,
                  " elements at the backward of node ", backward_node_);
      r.ptr = sc.ptr;
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
  // A parameter that gets a gradient: not frozen (CudaExecutorOptions::lr_mult).
  bool trains(int idx) const {
    return idx >= 0 && (opt_.lr_mult.empty() || opt_.lr_mult[static_cast<size_t>(idx)] != 0.f);
  }
  bool bn_eval(int node) const { return !opt_.bn_eval.empty() && opt_.bn_eval[static_cast<size_t>(node)]; }

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
  // The Graph's flat layout -> a device array in the padded layout (synchronises: the padded copy dies here).
  void upload_layout(const float* flat, float* dst) {
    const std::vector<float> d = pl_.to_device(flat);
    CUDA_CHECK(cudaMemcpyAsync(dst, d.data(), d.size() * sizeof(float), cudaMemcpyHostToDevice, ctx_.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));
  }
  // A device array in the padded layout -> the Graph's flat layout (synchronises).
  void download_layout(const float* src, float* flat) {
    std::vector<float> d(static_cast<size_t>(pl_.total()));
    download(src, d.data(), pl_.total());
    pl_.to_flat(d, flat);
  }
  float* buffer(int idx) const { return idx < 0 ? nullptr : buffers_ + g_.buffers()[static_cast<size_t>(idx)].offset; }

  void check_batch(int n) const {
    STOKE_CHECK(n >= 1 && n <= max_batch_, "batch ", n, " outside [1, ", max_batch_, "]");
  }

  void download(const float* src, float* dst, int64_t count) {
    if (count <= 0) return;
    CUDA_CHECK(
        cudaMemcpyAsync(dst, src, static_cast<size_t>(count) * sizeof(float), cudaMemcpyDeviceToHost, ctx_.stream()));
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
    step_config_.ema_decay = opt_.ema_decay;  // prepare_step writes each step's decay where the EMA launch reads it
    step_config_.ema_warmup = opt_.ema_warmup;
    cuda::StepState init;
    if (scaler_) {
      step_config_.rule = scaler_->rule();
      init.scaler = scaler_->state();
    }
    CUDA_CHECK(cudaMemcpyAsync(state_dev_, &init, sizeof(init), cudaMemcpyHostToDevice, ctx_.stream()));
    cuda::set_step_control(ctl_, 0.f, false, ctx_.stream());
    CUDA_CHECK(cudaStreamSynchronize(ctx_.stream()));  // `init` dies here
  }

  // Every device buffer, as plan_ lists them (run once on a counting arena, once on the real one).
  void layout(DeviceArena& a, bool per_tensor);

  void run_forward(int n, bool train);

  void forward_group(const Group& gr, int n, bool train);

  void backward_group(const Group& gr, int n);

  // One node of backward() (its gradient to its inputs and parameters), n rows.
  void backward_node(int node, int n);
  // upstream_ from the lr multipliers; refuses what the CUDA passes cannot do (an eval-mode BN's backward).
  void plan_fine_tune();

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
  cuda::ArenaPlan plan_;        // the arena, region by region; activations placed by liveness (arena_plan.h)
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
  std::vector<char> upstream_;  // per node: a trainable parameter at or before it (backward ends where none is)
  struct Scratch {
    T* ptr = nullptr;
    int64_t count = 0;
  };
  std::vector<Scratch> scratch_;  // per node x slot: the planned scratch of that node's backward step
  int backward_node_ = 0;         // the node whose backward (or fused group's) is being enqueued
  void* reduce_ws_ = nullptr;
  void* conv_ws_ = nullptr;
  void* lt_ws_ = nullptr;
  T* conv_dw_ = nullptr;
  T* conv_dw_unpad_ = nullptr;
  std::vector<T*> padded_w_;  // per node: the zero-padded filter of a conv reading the padded input
  T* linear_dw_ = nullptr;
  void* ce_ws_ = nullptr;
  cuda::StepState* state_dev_ = nullptr;
  DeviceArena ema_arena_;        // --ema only
  float* ema_params_ = nullptr;  // device layout, as params_
  float* ema_buffers_ = nullptr;
  cuda::StepControl* ctl_ = nullptr;  // step(float lr) writes it; the asynchronous backend brings its own
  cuda::StepRecord* host_ = nullptr;  // pinned, for stats()

  cuda::NormalizeParams norm_;
  std::function<void(int)> backward_hook_;  // data parallel: launches the gradient buckets a node completes
  cuda::DeviceChannelAllReduce sync_bn_;    // --sync-bn: the processes' sum of batch-norm statistics (empty: off)
  const cuda::DeviceChannelAllReduce* sync_bn() const { return sync_bn_ ? &sync_bn_ : nullptr; }
  int n_ = 0;
  int normalized_ = 0;  // rows of the input normalize() last wrote
  bool have_forward_ = false, forward_train_ = false, have_loss_grad_ = false;
  bool backward_ran_ = false;  // since the last forward
};

extern template class Engine<float>;
extern template class Engine<__nv_bfloat16>;
extern template class Engine<__half>;

}  // namespace cuda_engine

// The executor is one of three engines, chosen by the storage type at construction: a dispatch, not an interface.
struct CudaExecutor::Impl {
  std::variant<std::unique_ptr<cuda_engine::Engine<float>>, std::unique_ptr<cuda_engine::Engine<__nv_bfloat16>>,
               std::unique_ptr<cuda_engine::Engine<__half>>>
      engine;
  template <class F>
  decltype(auto) visit(F&& f) {
    return std::visit([&](auto& e) -> decltype(auto) { return f(*e); }, engine);
  }
};

}  // namespace stoke
