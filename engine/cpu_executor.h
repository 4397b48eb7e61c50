// Runs a Graph on the CPU backend with the reference ops in kernels/ (fp32, NHWC).
//
// Activations and their gradients are allocated once for the largest batch at construction; forward and
// backward then allocate nothing. Parameter gradients accumulate (+=) into the caller's flat gradient
// array, in the Graph's parameter layout; the caller zeroes it between steps.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/graph.h"

namespace stoke {

class CpuExecutor {
 public:
  CpuExecutor(const Graph& graph, int max_batch);

  // x: n x H x W x C normalised input (n <= max_batch). In training mode batch norm uses (and updates,
  // in `buffers`) batch statistics; in eval mode it uses the running statistics. Returns the output
  // (logits), n x classes, valid until the next forward.
  const float* forward(int n, const float* x, const float* params, float* buffers, bool train);

  // Backward of the last training forward: dout is the gradient of the loss w.r.t. the output.
  void backward(const float* params, float* grads, const float* dout);

  int max_batch() const { return max_batch_; }
  int outputs() const { return static_cast<int>(graph_.nodes().back().out.size()); }
  // Bytes of activation, gradient and scratch memory this executor holds.
  int64_t activation_bytes() const;

 private:
  float* act(int node) { return act_[static_cast<size_t>(node)].data(); }
  float* grad(int node) { return dact_[static_cast<size_t>(node)].data(); }
  // Where the gradient for input `node` should be written: its own buffer when it has none yet, else
  // scratch (then added). Returns nullptr when the node needs no gradient (the graph input).
  float* grad_target(int node, int64_t count);
  void commit_grad(int node, float* written, int64_t count);

  const Graph& graph_;
  int max_batch_;
  int n_ = 0;  // batch of the last forward
  const float* x_ = nullptr;
  std::vector<std::vector<float>> act_, dact_;
  std::vector<std::vector<int32_t>> argmax_;
  std::vector<std::vector<float>> save_mean_, save_invstd_;
  std::vector<char> has_grad_;
  std::vector<float> scratch_;
};

}  // namespace stoke
