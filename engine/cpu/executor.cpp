#include "engine/cpu/executor.h"

#include <algorithm>
#include <limits>
#include <new>

#include "base/error.h"
#include "base/parallel.h"
#include "engine/memory_plan.h"
#include "engine/op_shapes.h"
#include "kernels/activation.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/linear.h"
#include "kernels/pool.h"
#include "kernels/tensor_ops.h"

namespace stoke {

CpuExecutor::CpuExecutor(const Graph& graph, int max_batch, bool poison_dead) : graph_(graph), max_batch_(max_batch) {
  STOKE_CHECK(max_batch >= 1);
  MemoryPlanOptions opt;
  opt.mode = PlanMode::train;  // a superset of what evaluation needs
  opt.element_bytes = 4;
  opt.alignment = 64;
  opt.share_concat = false;  // the CPU ops take dense tensors
  const MemoryPlan plan = plan_memory(graph, max_batch, opt);
  arena_bytes_ = plan.arena_bytes;
  arena_.reset(new (std::align_val_t{64}) std::byte[static_cast<size_t>(arena_bytes_)]);
  const size_t count = graph.nodes().size();
  const int steps_n = static_cast<int>(count);
  act_.assign(count, nullptr);
  dact_.assign(count, nullptr);
  saved_.assign(count, nullptr);
  scratch_.assign(count, nullptr);
  scratch_floats_.assign(count, 0);
  argmax_.assign(count, nullptr);
  has_grad_.assign(count, 0);
  set_fine_tune({}, {});
  auto at = [&](int t) -> std::byte* {
    if (t < 0) return nullptr;
    const PlannedTensor& pt = plan.tensors[static_cast<size_t>(t)];
    STOKE_CHECK(pt.is_allocation() && pt.offset >= 0 && pt.offset + pt.bytes <= arena_bytes_, "tensor ", pt.name);
    return arena_.get() + pt.offset;
  };
  for (size_t i = 1; i < count; ++i) {  // node 0 is the caller's input
    const NodeMemory& nm = plan.nodes[i];
    act_[i] = reinterpret_cast<float*>(at(nm.activation));
    dact_[i] = reinterpret_cast<float*>(at(nm.gradient));
    saved_[i] = reinterpret_cast<float*>(at(nm.bn_stats));
    argmax_[i] = reinterpret_cast<int32_t*>(at(nm.argmax));
  }
  for (size_t t = 0; t < plan.tensors.size(); ++t) {
    const PlannedTensor& pt = plan.tensors[t];
    if (pt.kind != TensorKind::grad_scratch) continue;
    const int node = 2 * steps_n - pt.first;  // the backward of node j is step 2N - j
    STOKE_CHECK(node >= 1 && node < steps_n);
    scratch_[static_cast<size_t>(node)] = reinterpret_cast<float*>(at(static_cast<int>(t)));
    scratch_floats_[static_cast<size_t>(node)] = pt.bytes / static_cast<int64_t>(sizeof(float));
  }
  if (poison_dead) {
    for (size_t t = 0; t < plan.tensors.size(); ++t)
      if (plan.tensors[t].is_allocation())
        dying_.push_back({plan.tensors[t].last, reinterpret_cast<float*>(at(static_cast<int>(t))),
                          plan.tensors[t].bytes / static_cast<int64_t>(sizeof(float))});
    std::stable_sort(dying_.begin(), dying_.end(), [](const Dying& a, const Dying& b) { return a.last < b.last; });
  }
}

void CpuExecutor::set_fine_tune(const std::vector<float>& lr_mult, const std::vector<char>& bn_eval) {
  const auto& nodes = graph_.nodes();
  STOKE_CHECK(lr_mult.empty() || lr_mult.size() == graph_.params().size(), "one lr multiplier per parameter");
  STOKE_CHECK(bn_eval.empty() || bn_eval.size() == nodes.size(), "one bn_eval flag per node");
  trainable_.assign(graph_.params().size(), 1);
  for (size_t i = 0; i < lr_mult.size(); ++i) trainable_[i] = lr_mult[i] != 0.f;
  bn_eval_ = bn_eval.empty() ? std::vector<char>(nodes.size(), 0) : bn_eval;
  upstream_.assign(nodes.size(), 0);
  auto trains = [&](int idx) { return idx >= 0 && trainable_[static_cast<size_t>(idx)]; };
  for (size_t i = 1; i < nodes.size(); ++i) {  // nodes come in execution order: inputs are decided first
    const Node& nd = nodes[i];
    char up = trains(nd.weight) || trains(nd.bias);
    for (int j : nd.inputs) up = up || upstream_[static_cast<size_t>(j)];
    upstream_[i] = up;
  }
}

void CpuExecutor::poison_through(int step) {
  for (; poisoned_ < dying_.size() && dying_[poisoned_].last <= step; ++poisoned_)
    std::fill_n(dying_[poisoned_].at, dying_[poisoned_].floats, std::numeric_limits<float>::quiet_NaN());
}

CpuExecutor::~CpuExecutor() = default;

int64_t CpuExecutor::activation_bytes() const { return arena_bytes_; }

const float* CpuExecutor::forward(int n, const float* x, const float* params, float* buffers, bool train) {
  STOKE_CHECK(n >= 1 && n <= max_batch_, "batch ", n, " > planned ", max_batch_);
  n_ = n;
  x_ = x;
  buffers_ = buffers;
  poisoned_ = 0;
  const auto& nodes = graph_.nodes();
  const auto& P = graph_.params();
  const auto& B = graph_.buffers();
  auto in_ptr = [&](int node) -> const float* { return node == 0 ? x : act(node); };
  auto param = [&](int idx) -> const float* { return idx < 0 ? nullptr : params + P[static_cast<size_t>(idx)].offset; };
  auto buffer = [&](int idx) { return buffers + B[static_cast<size_t>(idx)].offset; };

  for (size_t i = 1; i < nodes.size(); ++i) {
    const Node& nd = nodes[i];
    int node = static_cast<int>(i);
    running_ = node;
    const Shape3& in = graph_.node(nd.inputs[0]).out;
    const float* xin = in_ptr(nd.inputs[0]);
    float* y = act(node);
    switch (nd.op) {
      case Op::conv: cpu::conv2d_forward(conv_shape(nd, in, n), xin, param(nd.weight), param(nd.bias), y); break;
      case Op::batchnorm: {
        int rows = n * in.h * in.w;
        if (train && !bn_eval_[i])
          cpu::batchnorm_forward_train(rows, in.c, xin, param(nd.weight), param(nd.bias), nd.eps, nd.momentum,
                                       buffer(nd.running_mean), buffer(nd.running_var), y, saved_[i], saved_[i] + in.c,
                                       across());
        else
          cpu::batchnorm_forward_eval(rows, in.c, xin, param(nd.weight), param(nd.bias), buffer(nd.running_mean),
                                      buffer(nd.running_var), nd.eps, y);
        break;
      }
      case Op::relu: cpu::relu_forward(n * in.size(), xin, y); break;
      case Op::maxpool: cpu::maxpool_forward(pool_shape(nd, in, n), xin, y, argmax_[i]); break;
      case Op::avgpool: cpu::avgpool_forward(pool_shape(nd, in, n), xin, y); break;
      case Op::global_avgpool: cpu::global_avgpool_forward(n, in.h * in.w, in.c, xin, y); break;
      case Op::linear:
        cpu::linear_forward(n, nd.in_features, nd.out_features, xin, param(nd.weight), param(nd.bias), y);
        break;
      case Op::add: cpu::add_forward(n * in.size(), xin, in_ptr(nd.inputs[1]), y); break;
      case Op::concat: {
        std::vector<const float*> xs;
        std::vector<int> cs;
        for (int j : nd.inputs) {
          xs.push_back(in_ptr(j));
          cs.push_back(graph_.node(j).out.c);
        }
        cpu::concat_forward(int64_t{n} * in.h * in.w, static_cast<int>(xs.size()), xs.data(), cs.data(), y);
        break;
      }
      case Op::input: STOKE_CHECK(false, "input node inside the graph"); break;
    }
    if (train) poison_through(node);  // the forward of node i is step i
  }
  return act(graph_.output());
}

float* CpuExecutor::grad_target(int node, int64_t count, int current) {
  if (node == 0 || !upstream_[static_cast<size_t>(node)]) return nullptr;  // no trainable parameter behind it
  if (!has_grad_[static_cast<size_t>(node)]) return grad(node);
  STOKE_CHECK(scratch_[static_cast<size_t>(current)] && count <= scratch_floats_[static_cast<size_t>(current)],
              "no planned scratch for the backward of node ", current);
  return scratch_[static_cast<size_t>(current)];
}

void CpuExecutor::commit_grad(int node, float* written, int64_t count) {
  if (node == 0 || written == nullptr) return;
  if (has_grad_[static_cast<size_t>(node)]) {
    cpu::add_forward(count, grad(node), written, grad(node));
  } else {
    has_grad_[static_cast<size_t>(node)] = 1;
  }
}

void CpuExecutor::backward(const float* params, float* grads, const float* dout) {
  STOKE_CHECK(x_ != nullptr, "backward before forward");
  const int n = n_;
  const auto& nodes = graph_.nodes();
  const auto& P = graph_.params();
  auto in_ptr = [&](int node) -> const float* { return node == 0 ? x_ : act(node); };
  auto param = [&](int idx) -> const float* { return idx < 0 ? nullptr : params + P[static_cast<size_t>(idx)].offset; };
  auto pgrad = [&](int idx) -> float* {
    return idx < 0 || !trainable_[static_cast<size_t>(idx)] ? nullptr : grads + P[static_cast<size_t>(idx)].offset;
  };

  std::fill(has_grad_.begin(), has_grad_.end(), 0);
  const int out = graph_.output();
  std::copy(dout, dout + nodes.back().out.size() * n, grad(out));
  has_grad_[static_cast<size_t>(out)] = 1;
  const int steps_n = static_cast<int>(nodes.size());
  poison_through(steps_n);  // the loss is step N

  for (int node = out; node >= 1; --node) {
    poison_through(2 * steps_n - node - 1);  // everything that died before this node's backward (step 2N - i)
    if (!has_grad_[static_cast<size_t>(node)]) continue;  // output unused by the loss
    if (!upstream_[static_cast<size_t>(node)]) continue;  // nothing at or before it trains: backward ends here
    running_ = node;
    const Node& nd = nodes[static_cast<size_t>(node)];
    const float* dy = grad(node);
    const int x0 = nd.inputs[0];
    const Shape3& in = graph_.node(x0).out;
    const int64_t in_count = int64_t{n} * in.size();
    float* dx = grad_target(x0, in_count, node);
    switch (nd.op) {
      case Op::conv:
        cpu::conv2d_backward(conv_shape(nd, in, n), in_ptr(x0), param(nd.weight), dy, dx, pgrad(nd.weight),
                             pgrad(nd.bias));
        break;
      case Op::batchnorm:
        if (bn_eval_[static_cast<size_t>(node)]) {
          const auto& B = graph_.buffers();
          cpu::batchnorm_backward_eval(n * in.h * in.w, in.c, in_ptr(x0), param(nd.weight),
                                       buffers_ + B[static_cast<size_t>(nd.running_mean)].offset,
                                       buffers_ + B[static_cast<size_t>(nd.running_var)].offset, nd.eps, dy, dx,
                                       pgrad(nd.weight), pgrad(nd.bias));
          break;
        }
        cpu::batchnorm_backward(n * in.h * in.w, in.c, in_ptr(x0), param(nd.weight), saved_[static_cast<size_t>(node)],
                                saved_[static_cast<size_t>(node)] + in.c, dy, dx, pgrad(nd.weight), pgrad(nd.bias),
                                across());
        break;
      case Op::relu:
        if (dx) cpu::relu_backward(in_count, act(node), dy, dx);
        break;
      case Op::maxpool:
        if (dx) cpu::maxpool_backward(pool_shape(nd, in, n), argmax_[static_cast<size_t>(node)], dy, dx);
        break;
      case Op::avgpool:
        if (dx) cpu::avgpool_backward(pool_shape(nd, in, n), dy, dx);
        break;
      case Op::global_avgpool:
        if (dx) cpu::global_avgpool_backward(n, in.h * in.w, in.c, dy, dx);
        break;
      case Op::linear:
        cpu::linear_backward(n, nd.in_features, nd.out_features, in_ptr(x0), param(nd.weight), dy, dx, pgrad(nd.weight),
                             pgrad(nd.bias));
        break;
      case Op::add:
        // Both inputs receive dy; route each through the same accumulate-or-assign logic.
        if (dx) std::copy(dy, dy + in_count, dx);
        commit_grad(x0, dx, in_count);
        if (float* db = grad_target(nd.inputs[1], in_count, node)) {
          std::copy(dy, dy + in_count, db);
          commit_grad(nd.inputs[1], db, in_count);
        }
        continue;
      case Op::concat: {
        // Each part gets its channel slice of dy.
        std::vector<int> cs;
        for (int j : nd.inputs) cs.push_back(graph_.node(j).out.c);
        const int64_t rows = int64_t{n} * in.h * in.w;
        for (size_t p = 0; p < nd.inputs.size(); ++p) {
          int j = nd.inputs[p];
          int64_t cnt = rows * cs[p];
          float* dj = grad_target(j, cnt, node);
          if (!dj) continue;
          std::vector<float*> dxs(nd.inputs.size(), nullptr);
          dxs[p] = dj;
          cpu::concat_backward(rows, static_cast<int>(cs.size()), dy, cs.data(), dxs.data());
          commit_grad(j, dj, cnt);
        }
        continue;
      }
      case Op::input: break;
    }
    commit_grad(x0, dx, in_count);
  }
}

}  // namespace stoke
