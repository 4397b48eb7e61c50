// The long passes of Engine<T> (engine/cuda/executor_engine.h): construction (cuDNN algorithms, workspaces, the
// arena plan), the arena layout, the forward and backward passes and the fused batch-norm groups.
#include "engine/cuda/executor_engine.h"

namespace stoke {
namespace cuda_engine {

template <typename T>
Engine<T>::Engine(const Graph& graph, int max_batch, const CudaExecutorOptions& opt, Precision prec)
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
    // --sync-bn pairs the ranks' collectives by order: the fused passes must issue them as the graph lists them.
    STOKE_CHECK(cuda::fused_bn_exchanges(g_, fp) == sync_batchnorm_exchanges(g_),
                "the fusion plan reorders the batch-norm exchanges of ", g_.name());
    groups_ = std::move(fp.groups);
    group_at_out_ = std::move(fp.group_at_out);
    interior_ = std::move(fp.interior);
  }
  pl_ = cuda::DeviceParamLayout(g_.params());
  plan_fine_tune();
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
        const size_t xe = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c,
                     we = static_cast<size_t>(sh.k) * sh.r * sh.s * sh.c,
                     ye = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.k;
        TempDevice x(xe * sizeof(T)), w(we * sizeof(T)), y(ye * sizeof(T)), dx(xe * sizeof(T)), dw(we * sizeof(T)),
            ws(opt.conv_workspace_limit);
        cuda::ConvBenchBuffers b{x.get(), w.get(), y.get(), dx.get(), dw.get(), ws.get(), opt.conv_workspace_limit};
        conv_ws_bytes_ = std::max(conv_ws_bytes_, conv_->prepare(sh, opt.conv_workspace_limit, &b, nd.inputs[0] != 0));
      } else {
        // Plan only what runs: the image gets no gradient, so the first convolution's backward-data is never asked.
        conv_ws_bytes_ =
            std::max(conv_ws_bytes_, conv_->prepare(sh, opt.conv_workspace_limit, nullptr, nd.inputs[0] != 0));
      }
      if (nd.bias >= 0)
        reduce_ws_bytes_ =
            std::max<size_t>(reduce_ws_bytes_, static_cast<size_t>(cuda::bias_backward_workspace_bytes(
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
                              p.weight_decay ? oc.weight_decay : 0.f, opt_.lr_mult.empty() ? 1.f : opt_.lr_mult[i]});
  }
  if (oc.kind == OptimizerKind::sgd && oc.momentum != 0.f) state_sets_ = 1;
  if (oc.kind == OptimizerKind::adamw) state_sets_ = 2;

  // ---- the arena: plan, then allocate exactly that ---------------------------------------------------------
  {
    cuda::ArenaPlanOptions ao;
    ao.element_bytes = static_cast<int>(sizeof(T));
    ao.state_sets = state_sets_;
    ao.conv_workspace = static_cast<int64_t>(conv_ws_bytes_);
    plan_ = cuda::plan_arena(g_, max_batch_, ao);
    // The plan counts without a device what this constructor asked the kernels and cuDNN's shapes: the same.
    STOKE_CHECK(
        plan_.param_elems == pl_.total() && plan_.input_channels == in_c_dev_ &&
            plan_.reduce_workspace == static_cast<int64_t>(reduce_ws_bytes_) &&
            plan_.largest_conv_weight == max_conv_weight_ && plan_.largest_linear_weight == max_linear_weight_ &&
            plan_.chunks == static_cast<int64_t>(chunks_host_.size()) && plan_.fusion.group_at_out == group_at_out_ &&
            plan_.region_bytes(cuda::Region::softmax_ce_workspace) ==
                cuda::arena_rounded(cuda::softmax_ce_workspace_bytes(max_batch_)),
        "the arena plan disagrees with the executor for ", g_.name());
  }
  static_assert(sizeof(cuda::OptimizerChunk) == cuda::kOptimizerChunkBytes &&
                cuda::kOptimizerChunk == cuda::kOptimizerChunkElems);
  static_assert(sizeof(cuda::StepState) <= cuda::kStepStructBytes &&
                sizeof(cuda::StepControl) <= cuda::kStepStructBytes);
  static_assert(cuda::LinearRunner::kDefaultWorkspace == cuda::kCublasLtWorkspace);
  const bool per_tensor = DeviceArena::debug_from_env();
  DeviceArena plan = DeviceArena::counting();
  layout(plan, per_tensor);
  arena_ = DeviceArena(plan.used(),
                       str("the ", g_.name(), " executor (batch ", max_batch_, ", ", cuda::to_string(prec_), ")"),
                       per_tensor);
  layout(arena_, per_tensor);
  cudaStream_t s = ctx_.stream();
  arena_.zero(s);  // the parameters' alignment gaps stay zero from here on (the input's padding is rewritten)
  linear_ = std::make_unique<cuda::LinearRunner>(ctx_, prec_, lt_ws_, cuda::LinearRunner::kDefaultWorkspace);
  if (!chunks_host_.empty())
    CUDA_CHECK(cudaMemcpyAsync(chunks_, chunks_host_.data(), chunks_host_.size() * sizeof(cuda::OptimizerChunk),
                               cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_), sizeof(cuda::StepRecord), cudaHostAllocDefault));
  *host_ = cuda::StepRecord{};
  init_step_state();
  if (opt.ema_decay > 0.f) allocate_ema();

  // A usable starting point: Graph::initialize(seed 0) and pixel/255 normalisation (callers upload their own).
  std::vector<float> p(static_cast<size_t>(g_.num_params())),
      b(static_cast<size_t>(std::max<int64_t>(g_.num_buffers(), 1)));
  g_.initialize(p.data(), b.data(), 0);
  upload_params(p.data());
  upload_buffers(b.data());
  const std::vector<float> zero(static_cast<size_t>(g_.input_shape().c), 0.f), one(zero.size(), 1.f);
  set_normalization(zero, one);
  CUDA_CHECK(cudaStreamSynchronize(s));
}

template <typename T>
void Engine<T>::plan_fine_tune() {
  const auto& nodes = g_.nodes();
  STOKE_CHECK(opt_.lr_mult.empty() || opt_.lr_mult.size() == g_.params().size(), "one lr multiplier per parameter");
  STOKE_CHECK(opt_.bn_eval.empty() || opt_.bn_eval.size() == nodes.size(), "one bn_eval flag per node");
  upstream_.assign(nodes.size(), 0);
  for (size_t i = 1; i < nodes.size(); ++i) {  // execution order: a node's inputs are decided before it
    char up = trains(nodes[i].weight) || trains(nodes[i].bias);
    for (int j : nodes[i].inputs) up = up || upstream_[static_cast<size_t>(j)];
    upstream_[i] = up;  // an eval-mode batch norm with something trainable at or before it runs its eval backward
  }
}

template <typename T>
void Engine<T>::backward() {
  STOKE_TRACE("backward");
  STOKE_CHECK(have_forward_ && forward_train_ && have_loss_grad_, "backward() needs a training forward and loss()");
  have_loss_grad_ = false;
  backward_ran_ = true;
  cudaStream_t s = ctx_.stream();
  const int n = n_;
  CUDA_CHECK(cudaMemsetAsync(grads_, 0, static_cast<size_t>(pl_.total()) * sizeof(float), s));
  std::fill(has_grad_.begin(), has_grad_.end(), 0);
  const int out = g_.output();
  has_grad_[static_cast<size_t>(out)] = 1;  // loss() wrote dlogits into it

  for (int node = out; node >= 1; --node) {
    backward_node_ = node;
    if (upstream_[static_cast<size_t>(node)]) backward_node(node, n);  // else nothing at or before it trains
    if (backward_hook_) backward_hook_(node);
  }
}

template <typename T>
void Engine<T>::backward_node(int node, int n) {
  cudaStream_t s = ctx_.stream();
  const auto& nodes = g_.nodes();
  if (!has_grad_[static_cast<size_t>(node)]) return;
  const Node& nd = nodes[static_cast<size_t>(node)];
  const T* dy = dact_[static_cast<size_t>(node)];
  if (const int gi = group_at_out_[static_cast<size_t>(node)]; gi >= 0) {
    backward_group(groups_[static_cast<size_t>(gi)], n);
    return;
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
      if (!trains(nd.weight)) {  // frozen: no dW
      } else if constexpr (std::is_same_v<T, float>) {
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
      if (trains(nd.bias))
        cuda::bias_backward<T>(int64_t{n} * nd.out.h * nd.out.w, nd.k, dy, grad(nd.bias), reduce_ws_, s);
      break;
    }
    case Op::batchnorm: {
      Slot dx = take(x0, 0, in_count);
      float* dgamma = trains(nd.weight) ? grad(nd.weight) : nullptr;
      float* dbeta = trains(nd.bias) ? grad(nd.bias) : nullptr;
      if (bn_eval(node))  // --freeze-bn: the forward normalised with the running statistics, constants here
        cuda::batchnorm_backward_eval<T>(n * in.h * in.w, in.c, in_ptr(x0), master(nd.weight), buffer(nd.running_mean),
                                         buffer(nd.running_var), nd.eps, dy, dx.ptr, dgamma, dbeta, reduce_ws_, s);
      else
        cuda::batchnorm_backward<T>(n * in.h * in.w, in.c, in_ptr(x0), master(nd.weight),
                                    save_mean_[static_cast<size_t>(node)], save_invstd_[static_cast<size_t>(node)], dy,
                                    dx.ptr, dgamma, dbeta, reduce_ws_, s, sync_bn());
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
      if (trains(nd.weight))
        linear_->backward_weight(n, nd.in_features, nd.out_features, in_ptr(x0), dy, grad(nd.weight), linear_dw_);
      if (trains(nd.bias)) cuda::bias_backward<T>(n, nd.out_features, dy, grad(nd.bias), reduce_ws_, s);
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

template <typename T>
void Engine<T>::layout(DeviceArena& a, bool per_tensor) {
  const size_t N = g_.nodes().size();
  const cuda::PlannedPointers at = cuda::allocate_plan(plan_, a, per_tensor);
  padded_w_.assign(in_c_dev_ != g_.input_shape().c ? N : 0, nullptr);
  for (size_t r = 0; r < plan_.regions.size(); ++r) {
    void* p = at.regions[r];
    switch (plan_.regions[r].id) {
      case cuda::Region::master_weights: params_ = static_cast<float*>(p); break;
      case cuda::Region::half_weights: params_half_ = static_cast<T*>(p); break;
      case cuda::Region::gradients: grads_ = static_cast<float*>(p); break;
      case cuda::Region::optimizer_state: state_ = static_cast<float*>(p); break;
      case cuda::Region::bn_buffers: buffers_ = static_cast<float*>(p); break;
      case cuda::Region::chunk_table: chunks_ = static_cast<cuda::OptimizerChunk*>(p); break;
      case cuda::Region::pixels: pixels_ = static_cast<uint8_t*>(p); break;
      case cuda::Region::labels: labels_ = static_cast<int32_t*>(p); break;
      case cuda::Region::flips: flips_ = static_cast<uint8_t*>(p); break;
      case cuda::Region::padded_filter:
        padded_w_[static_cast<size_t>(plan_.regions[r].node)] = static_cast<T*>(p);
        break;
      case cuda::Region::first_conv_dw: conv_dw_unpad_ = static_cast<T*>(p); break;
      case cuda::Region::activations: break;  // at.tensors below
      case cuda::Region::reduce_workspace: reduce_ws_ = p; break;
      case cuda::Region::conv_workspace: conv_ws_ = p; break;
      case cuda::Region::cublaslt_workspace: lt_ws_ = p; break;
      case cuda::Region::conv_dw_half: conv_dw_ = static_cast<T*>(p); break;
      case cuda::Region::linear_dw_half: linear_dw_ = static_cast<T*>(p); break;
      case cuda::Region::softmax_ce_workspace: ce_ws_ = p; break;
      case cuda::Region::step_state: state_dev_ = static_cast<cuda::StepState*>(p); break;
      case cuda::Region::step_control: ctl_ = static_cast<cuda::StepControl*>(p); break;
    }
  }
  if constexpr (std::is_same_v<T, float>) params_half_ = params_;
  // The planned tensors: activations, their gradients, saved statistics, argmaxes, per-step gradient scratch.
  const MemoryPlan& mp = plan_.activations;
  auto ptr = [&](int t) { return t < 0 ? nullptr : at.tensors[static_cast<size_t>(t)]; };
  act_.assign(N, nullptr);
  dact_.assign(N, nullptr);
  argmax_.assign(N, nullptr);
  save_mean_.assign(N, nullptr);
  save_invstd_.assign(N, nullptr);
  has_grad_.assign(N, 0);
  for (size_t i = 0; i < N; ++i) {
    const NodeMemory& nm = mp.nodes[i];
    act_[i] = static_cast<T*>(ptr(nm.activation));
    dact_[i] = static_cast<T*>(ptr(nm.gradient));
    argmax_[i] = static_cast<int32_t*>(ptr(nm.argmax));
    save_mean_[i] = static_cast<float*>(ptr(nm.bn_stats));  // mean then inv-std: 2 x C floats
    if (save_mean_[i]) save_invstd_[i] = save_mean_[i] + g_.nodes()[i].out.c;
  }
  input_ = act_[0];
  scratch_.assign(2 * N, Scratch{});
  for (size_t t = 0; t < mp.tensors.size(); ++t) {
    const PlannedTensor& pt = mp.tensors[t];
    if (pt.kind != TensorKind::grad_scratch) continue;
    const int node = 2 * static_cast<int>(N) - pt.first;  // the backward of node j is step 2N - j
    STOKE_CHECK(node >= 1 && node < static_cast<int>(N) && (pt.slot == 0 || pt.slot == 1), "scratch ", pt.name);
    scratch_[static_cast<size_t>(node) * 2 + static_cast<size_t>(pt.slot)] =
        Scratch{static_cast<T*>(ptr(static_cast<int>(t))), pt.bytes / static_cast<int64_t>(sizeof(T))};
  }
}

template <typename T>
void Engine<T>::run_forward(int n, bool train) {
  cudaStream_t s = ctx_.stream();
  const auto& nodes = g_.nodes();
  n_ = n;
  have_forward_ = true;
  backward_ran_ = false;
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
        if (train && !bn_eval(static_cast<int>(i)))
          cuda::batchnorm_forward_train<T>(rows, in.c, x, master(nd.weight), master(nd.bias), nd.eps, nd.momentum,
                                           buffer(nd.running_mean), buffer(nd.running_var), y, save_mean_[i],
                                           save_invstd_[i], reduce_ws_, s, sync_bn());
        else
          cuda::batchnorm_forward_eval<T>(rows, in.c, x, master(nd.weight), master(nd.bias), buffer(nd.running_mean),
                                          buffer(nd.running_var), nd.eps, y, reduce_ws_, s);
        break;
      }
      case Op::relu: cuda::relu_forward<T>(int64_t{n} * in.size(), x, y, s); break;
      case Op::maxpool: cuda::maxpool_forward<T>(pool_shape(nd, in, n), x, y, train ? argmax_[i] : nullptr, s); break;
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

template <typename T>
void Engine<T>::forward_group(const Group& gr, int n, bool train) {
  const Node& bn = g_.node(gr.bn);
  const Shape3& in = g_.node(bn.inputs[0]).out;
  const int rows = n * in.h * in.w;
  const T* x = in_ptr(bn.inputs[0]);
  const T* res = gr.residual >= 0 ? in_ptr(gr.residual) : nullptr;
  T* y = act_[static_cast<size_t>(gr.out)];
  const size_t b = static_cast<size_t>(gr.bn);
  if (train && !bn_eval(gr.bn))
    cuda::batchnorm_add_relu_forward_train<T>(rows, in.c, x, res, gr.relu >= 0, master(bn.weight), master(bn.bias),
                                              bn.eps, bn.momentum, buffer(bn.running_mean), buffer(bn.running_var), y,
                                              save_mean_[b], save_invstd_[b], reduce_ws_, ctx_.stream(), sync_bn());
  else
    cuda::batchnorm_add_relu_forward_eval<T>(rows, in.c, x, res, gr.relu >= 0, master(bn.weight), master(bn.bias),
                                             buffer(bn.running_mean), buffer(bn.running_var), bn.eps, y, reduce_ws_,
                                             ctx_.stream());
}

template <typename T>
void Engine<T>::backward_group(const Group& gr, int n) {
  const Node& bn = g_.node(gr.bn);
  const int x0 = bn.inputs[0];
  const Shape3& in = g_.node(x0).out;
  const int rows = n * in.h * in.w;
  const int64_t count = int64_t{rows} * in.c;
  const size_t b = static_cast<size_t>(gr.bn);
  // Claim both targets before the kernel writes them (the BN input may also be the residual).
  Slot dx = take(x0, 0, count);
  Slot dres = gr.residual >= 0 ? take(gr.residual, 1, count) : Slot{};
  const T* y = gr.relu >= 0 ? act_[static_cast<size_t>(gr.out)] : nullptr;
  const T* dy = dact_[static_cast<size_t>(gr.out)];
  float* dgamma = trains(bn.weight) ? grad(bn.weight) : nullptr;
  float* dbeta = trains(bn.bias) ? grad(bn.bias) : nullptr;
  if (bn_eval(gr.bn))
    cuda::batchnorm_add_relu_backward_eval<T>(rows, in.c, in_ptr(x0), master(bn.weight), buffer(bn.running_mean),
                                              buffer(bn.running_var), bn.eps, y, dy, gr.relu >= 0, dx.ptr, dres.ptr,
                                              dgamma, dbeta, reduce_ws_, ctx_.stream());
  else
    cuda::batchnorm_add_relu_backward<T>(rows, in.c, in_ptr(x0), master(bn.weight), save_mean_[b], save_invstd_[b], y,
                                         dy, gr.relu >= 0, dx.ptr, dres.ptr, dgamma, dbeta, reduce_ws_, ctx_.stream(),
                                         sync_bn());
  give(dx);
  give(dres);
}

template class Engine<float>;
template class Engine<__nv_bfloat16>;
template class Engine<__half>;

}  // namespace cuda_engine
}  // namespace stoke
