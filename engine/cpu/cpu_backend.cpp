// The CPU backend: the reference ops, fp32, bit-reproducible for any thread count. Steps run on the StepQueue's
// compute thread (engine/step_queue.h), so the trainer drives it through the same asynchronous protocol as the
// CUDA backend: while a step computes, the trainer takes the next batch from the ring and hands it over, and a
// ring slot is released only once the queue's copy of it is complete.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include "engine/backend.h"
#include "engine/cpu/executor.h"
#include "engine/dist/communicator.h"
#include "engine/step_queue.h"
#include "base/error.h"
#include "kernels/augment.h"
#include "base/parallel.h"
#include "base/trace.h"
#include "kernels/softmax_ce.h"

namespace stoke {

namespace {

class CpuBackend final : public TrainingBackend {
 public:
  CpuBackend(const Graph& g, const BackendOptions& o)
      : graph_(g),
        opt_(o),
        optimizer_(o.optimizer, g.params(), g.num_params()),
        exec_(g, o.max_batch),
        params_(static_cast<size_t>(g.num_params())),
        grads_(params_.size() + kStepSums),
        buffers_(static_cast<size_t>(g.num_buffers())),
        input_(static_cast<size_t>(o.max_batch * g.input_shape().size())),
        dlogits_(static_cast<size_t>(o.max_batch * exec_.outputs())) {
    normalize_coefficients(o.mean, o.stdev, scale_, shift_);
    queue_ = std::make_unique<StepQueue>(o.max_batch, int64_t{o.max_batch} * g.input_shape().size(), 2,
                                         [this](const StagedStep& s) { return compute(s); });
  }

  std::string name() const override { return "cpu"; }
  std::string describe() const override {
    return str("CPU backend, fp32, ", ThreadPool::threads(), " threads, ",
               exec_.activation_bytes() / (1024 * 1024), " MiB of activations");
  }

  void set_state(const std::vector<float>& params, const std::vector<float>& buffers,
                 const std::vector<float>& optimizer_state, int64_t optimizer_steps) override {
    drain();
    STOKE_CHECK(params.size() == params_.size() && buffers.size() == buffers_.size());
    params_ = params;
    buffers_ = buffers;
    STOKE_CHECK(optimizer_state.size() == optimizer_.state().size(), "optimizer state of ", optimizer_state.size(),
                " values, expected ", optimizer_.state().size());
    optimizer_.state() = optimizer_state;
    optimizer_.set_steps(optimizer_steps);
  }

  void get_state(std::vector<float>& params, std::vector<float>& buffers, std::vector<float>& optimizer_state,
                 int64_t& optimizer_steps) override {
    drain();
    params = params_;
    buffers = buffers_;
    optimizer_state = optimizer_.state();
    optimizer_steps = optimizer_.steps();
  }

  void submit(const StepRequest& r) override { queue_->submit(r); }
  void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait) override {
    queue_->collect(released, results, wait);
  }
  void drain() override { queue_->drain(); }
  int in_flight() const override { return queue_->in_flight(); }

  const float* eval_batch(int n, const uint8_t* pixels, const int32_t* labels, float* loss) override {
    drain();
    const Shape3 s = graph_.input_shape();
    cpu::augment_normalize(n, s.h, s.w, s.c, pixels, nullptr, scale_.data(), shift_.data(), input_.data());
    const float* logits = exec_.forward(n, input_.data(), params_.data(), buffers_.data(), false);
    *loss = cpu::softmax_cross_entropy(n, exec_.outputs(), logits, labels, 0.f, 1.f, nullptr, nullptr, nullptr);
    return logits;
  }

 protected:
  StepResult run_step(const StepRequest& r) override {  // not used: submit() goes through the queue
    return compute(StagedStep{r.tag, r.n, r.pixels, r.labels, r.flips, r.lr, r.skip});
  }

 private:
  // One step on the compute thread, from the queue's own copy of the batch.
  StepResult compute(const StagedStep& st) {
    STOKE_TRACE("train step compute");
    const Shape3 s = graph_.input_shape();
    const int n = st.n;
    cpu::augment_normalize(n, s.h, s.w, s.c, st.pixels, st.flips, scale_.data(), shift_.data(), input_.data());
    const float* logits = exec_.forward(n, input_.data(), params_.data(), buffers_.data(), true);
    StepResult out;
    out.tag = st.tag;
    out.loss = cpu::softmax_cross_entropy(n, exec_.outputs(), logits, st.labels, opt_.label_smoothing, 1.f, nullptr,
                                          dlogits_.data(), &out.correct);
    if (st.skip) out.loss = std::numeric_limits<float>::infinity();
    const int world = opt_.comm ? opt_.comm->world() : 1;
    if (world == 1 && !std::isfinite(out.loss)) return out;  // the update is skipped
    const size_t np = params_.size();
    std::fill(grads_.begin(), grads_.end(), 0.f);
    if (std::isfinite(out.loss)) exec_.backward(params_.data(), grads_.data(), dlogits_.data());
    if (world > 1) {
      // One all-reduce carries the gradients and the step's sums (loss x n, correct, n): every rank gets the
      // global batch's loss, and a non-finite loss on any rank skips the update on all of them.
      grads_[np] = std::isfinite(out.loss) ? out.loss * static_cast<float>(n) : std::numeric_limits<float>::quiet_NaN();
      grads_[np + 1] = static_cast<float>(out.correct);
      grads_[np + 2] = static_cast<float>(n);
      {
        STOKE_TRACE("all-reduce gradients");
        opt_.comm->allreduce_sum(grads_.data(), grads_.size());
      }
      out.loss = grads_[np] / grads_[np + 2];
      out.correct = std::llround(grads_[np + 1]);
      if (!std::isfinite(out.loss)) return out;
      // Each rank's loss is the mean over its slice of n = global/world samples, so the sum of the ranks' gradients
      // is world times the global batch's mean gradient.
      const float inv = 1.f / static_cast<float>(world);
      for (size_t i = 0; i < np; ++i) grads_[i] *= inv;
    }
    if (opt_.clip_grad_norm > 0.f) clip_grad_norm(grads_.data(), static_cast<int64_t>(np), opt_.clip_grad_norm);
    optimizer_.step(params_.data(), grads_.data(), st.lr);
    out.applied = true;
    return out;
  }

  static constexpr size_t kStepSums = 3;  // after the gradients: loss x n, correct, n (summed over the ranks)
  const Graph& graph_;
  BackendOptions opt_;
  Optimizer optimizer_;
  CpuExecutor exec_;
  std::vector<float> params_, grads_, buffers_, input_, dlogits_, scale_, shift_;
  std::unique_ptr<StepQueue> queue_;  // last: its threads stop before the state they use is destroyed
};

BackendFactory& cuda_factory_slot() {
  static BackendFactory f;
  return f;
}

DeviceCommFactory& nccl_factory_slot() {
  static DeviceCommFactory f;
  return f;
}

}  // namespace

std::unique_ptr<TrainingBackend> make_cpu_backend(const Graph& graph, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(graph, options);
}

void set_cuda_backend_factory(BackendFactory factory) { cuda_factory_slot() = std::move(factory); }
const BackendFactory& cuda_backend_factory() { return cuda_factory_slot(); }
void set_nccl_communicator_factory(DeviceCommFactory factory) { nccl_factory_slot() = std::move(factory); }
const DeviceCommFactory& nccl_communicator_factory() { return nccl_factory_slot(); }

}  // namespace stoke
