// Runs a Graph on the CPU backend with the reference ops in kernels/ (fp32, NHWC).
//
// Activations, their gradients and the saved tensors live in ONE arena laid out by the memory planner
// (engine/memory_plan.h, training plan, dense concats) for the largest batch at construction: a tensor's bytes
// are reused once it is dead, and forward and backward allocate nothing.
// Parameter gradients accumulate (+=) into the caller's flat gradient array, in the Graph's parameter layout; the
// caller zeroes it between steps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "engine/graph.h"
#include "kernels/batchnorm.h"

namespace stoke {

class CpuExecutor {
 public:
  // poison_dead: a checking mode for tests. Every tensor is overwritten with NaN as soon as the memory plan says
  // it is dead, so an op whose backward reads a tensor the plan (engine/op_traits.h) let die gives NaN gradients
  // instead of silently right ones that happen to survive in a reused buffer.
  CpuExecutor(const Graph& graph, int max_batch, bool poison_dead = false);
  ~CpuExecutor();

  // x: n x H x W x C normalised input (n <= max_batch). In training mode batch norm uses (and updates,
  // in `buffers`) batch statistics; in eval mode it uses the running statistics. Returns the output
  // (logits), n x classes, valid until the next forward.
  const float* forward(int n, const float* x, const float* params, float* buffers, bool train);

  // Backward of the last training forward: dout is the gradient of the loss w.r.t. the output.
  void backward(const float* params, float* grads, const float* dout);

  // --sync-bn: training-mode batch norm takes its statistics over the batch of every process, through `across`
  // (kernels/batchnorm.h). Empty (the default): over this process's rows.
  void set_sync_batchnorm(cpu::ChannelAllReduce across) { across_ = std::move(across); }

  // Fine-tuning (BackendOptions::lr_mult, bn_eval): a parameter whose multiplier is 0 gets no gradient (its dW/db
  // is not computed), an activation gets one only where a trainable parameter lies at or before it (so a frozen
  // backbone's backward stops at the classifier), and a flagged batch norm runs in eval mode in training too.
  // Empty vectors: everything trains, every batch norm follows `train`.
  void set_fine_tune(const std::vector<float>& lr_mult, const std::vector<char>& bn_eval);

  // The node whose forward or backward is running: a --sync-bn exchange can tell which batch norm it serves (the
  // tests record the order of the collectives with it).
  int running_node() const { return running_; }

  int max_batch() const { return max_batch_; }
  int outputs() const { return static_cast<int>(graph_.nodes().back().out.size()); }
  // Bytes of activation, gradient and scratch memory this executor holds.
  int64_t activation_bytes() const;

 private:
  float* act(int node) { return act_[static_cast<size_t>(node)]; }
  float* grad(int node) { return dact_[static_cast<size_t>(node)]; }
  // Where the backward of node `current` should write the gradient for its input `node`: that gradient's own
  // buffer when it holds none yet, else the step's scratch (then added). nullptr for the graph input.
  float* grad_target(int node, int64_t count, int current);
  void commit_grad(int node, float* written, int64_t count);
  // poison_dead: NaN into every not yet poisoned tensor whose last live step is <= step.
  void poison_through(int step);

  const Graph& graph_;
  int max_batch_;
  int n_ = 0;  // batch of the last forward
  int running_ = 0;
  const float* x_ = nullptr;
  const float* buffers_ = nullptr;  // of the last forward: an eval-mode batch norm's backward reads its statistics
  cpu::ChannelAllReduce across_;
  const cpu::ChannelAllReduce* across() const { return across_ ? &across_ : nullptr; }
  struct AlignedDelete {
    void operator()(std::byte* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<std::byte[], AlignedDelete> arena_;
  int64_t arena_bytes_ = 0;
  std::vector<float*> act_, dact_, saved_, scratch_;  // per node (saved: BN mean then inv-std; scratch: per backward)
  std::vector<int64_t> scratch_floats_;
  std::vector<int32_t*> argmax_;
  std::vector<char> has_grad_;
  std::vector<char> trainable_;  // per parameter
  std::vector<char> upstream_;   // per node: a trainable parameter at or before it (its gradient is wanted)
  std::vector<char> bn_eval_;    // per node
  struct Dying {
    int last;
    float* at;
    int64_t floats;
  };
  std::vector<Dying> dying_;  // poison_dead: every planned tensor, by last live step
  size_t poisoned_ = 0;       // how many of dying_ are poisoned since the last forward
};

}  // namespace stoke
