// The CPU backend: the reference ops, fp32, bit-reproducible for any thread count. Steps run on the StepQueue's
// compute thread (engine/step_queue.h), so the trainer drives it through the same asynchronous protocol as the
// CUDA backend: while a step computes, the trainer takes the next batch from the ring and hands it over, and a
// ring slot is released only once the queue's copy of it is complete.
//
// --cache gpu on this backend: hold_dataset keeps a host copy of the set and a step named by sample ids gathers its
// batch from it on the compute thread (kernels/gather.h), exactly where the CUDA backend gathers on the device. It
// is the reference of that protocol: the same run with pixels or with ids gives the same bits.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "base/error.h"
#include "base/parallel.h"
#include "base/trace.h"
#include "engine/backend.h"
#include "engine/cpu/executor.h"
#include "engine/dist/communicator.h"
#include "engine/step_queue.h"
#include "engine/train_step.h"
#include "kernels/augment.h"
#include "kernels/gather.h"
#include "kernels/mix.h"
#include "kernels/softmax_ce.h"

namespace stoke {

namespace {

class CpuBackend final : public TrainingBackend {
 public:
  CpuBackend(const Graph& g, const BackendOptions& o)
      : graph_(g),
        opt_(o),
        optimizer_(make_optimizer(g, o)),
        exec_(g, o.max_batch),
        params_(static_cast<size_t>(g.num_params())),
        grads_(o.evaluation_only ? 0 : params_.size() + kStepSums),
        buffers_(static_cast<size_t>(g.num_buffers())),
        input_(static_cast<size_t>(o.max_batch * g.input_shape().size())),
        dlogits_(o.evaluation_only ? 0 : static_cast<size_t>(o.max_batch * exec_.outputs())) {
    normalize_coefficients(o.mean, o.stdev, scale_, shift_);
    exec_.set_fine_tune(o.lr_mult, o.bn_eval);
    if (o.sync_bn && o.comm && o.comm->world() > 1) {
      // Called from forward and backward on the compute thread, between this step's other collectives: every
      // rank runs the same graph, so the calls line up across ranks.
      // Timed and counted with the step's other communication (StepResult::comm_seconds, allreduce_bytes).
      dist::Communicator* comm = o.comm;
      exec_.set_sync_batchnorm([this, comm](double* data, int n) {
        const auto t0 = std::chrono::steady_clock::now();
        comm->allreduce_sum(data, static_cast<size_t>(n));
        bn_comm_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      });
      bn_bytes_per_step_ = sync_batchnorm_bytes(g);
    }
    queue_ = std::make_unique<StepQueue>(o.max_batch, int64_t{o.max_batch} * g.input_shape().size(), 2,
                                         [this](const StepRequest& s) { return compute(s); });
  }

  std::string name() const override { return "cpu"; }
  std::string describe() const override {
    return str("CPU backend, fp32, ", ThreadPool::threads(), " threads, ", exec_.activation_bytes() / (1024 * 1024),
               " MiB of activations");
  }

  void set_state(const std::vector<float>& params, const std::vector<float>& buffers,
                 const std::vector<float>& optimizer_state, int64_t optimizer_steps) override {
    drain();
    STOKE_CHECK(!eval_ema_, "the trained state set while the EMA is in its place");
    STOKE_CHECK(params.size() == params_.size() && buffers.size() == buffers_.size());
    params_ = params;
    buffers_ = buffers;
    STOKE_CHECK(optimizer_state.size() == optimizer_.state().size(), "optimizer state of ", optimizer_state.size(),
                " values, expected ", optimizer_.state().size());
    optimizer_.state() = optimizer_state;
    optimizer_.set_steps(optimizer_steps);
    if (opt_.ema_decay > 0.f && ema_params_.empty()) {  // the EMA starts at the first weights (set_ema replaces them)
      ema_params_ = params;
      ema_buffers_ = buffers;
    }
  }

  void get_state(std::vector<float>& params, std::vector<float>& buffers, std::vector<float>& optimizer_state,
                 int64_t& optimizer_steps) override {
    drain();
    STOKE_CHECK(!eval_ema_, "the trained state asked for while the EMA is in its place");
    params = params_;
    buffers = buffers_;
    optimizer_state = optimizer_.state();
    optimizer_steps = optimizer_.steps();
  }

  // The running statistics in place: the trained ones, or the EMA's after use_ema(true).
  void get_buffers(std::vector<float>& buffers) override {
    drain();
    buffers = buffers_;
  }
  void set_buffers(const std::vector<float>& buffers) override {
    drain();
    STOKE_CHECK(buffers.size() == buffers_.size(), buffers.size(), " buffer values, expected ", buffers_.size());
    buffers_ = buffers;
  }

  void submit(const StepRequest& r) override {
    STOKE_CHECK(!opt_.evaluation_only, "a training step on an evaluation-only backend (no optimizer, no gradients)");
    STOKE_CHECK(!eval_ema_ || r.skip, "a training step while the EMA is in the trained weights' place");
    queue_->submit(r);
  }
  void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait) override {
    queue_->collect(released, results, wait);
  }
  void drain() override { queue_->drain(); }
  int in_flight() const override { return queue_->in_flight(); }
  int max_in_flight() const override { return queue_->max_in_flight(); }

  bool hold_dataset(const uint8_t* pixels, const int32_t* labels, int64_t samples, int64_t sample_bytes,
                    std::string* why) override {
    drain();
    STOKE_CHECK(samples >= 1 && sample_bytes == graph_.input_shape().size(), "a held set of ", samples, " samples of ",
                sample_bytes, " bytes for an input of ", graph_.input_shape().size());
    try {
      held_pixels_.assign(pixels, pixels + samples * sample_bytes);
      held_labels_.assign(labels, labels + samples);
    } catch (const std::bad_alloc&) {
      held_pixels_ = {};
      held_labels_ = {};
      if (why)
        *why = str("cannot allocate ", (samples * (sample_bytes + 4)) >> 20, " MiB of host memory for ", samples,
                   " images");
      return false;
    }
    return true;
  }

  const float* eval_batch(int n, const uint8_t* pixels, const int32_t* labels, float* loss) override {
    return evaluate(n, pixels, nullptr, labels, loss);
  }
  const float* eval_batch_mirrored(int n, const uint8_t* pixels, const int32_t* labels, float* loss) override {
    mirror_.assign(static_cast<size_t>(n), 1);
    return evaluate(n, pixels, mirror_.data(), labels, loss);
  }

  void set_ema(const std::vector<float>& params, const std::vector<float>& buffers) override {
    drain();
    STOKE_CHECK(opt_.ema_decay > 0.f && !eval_ema_, "set_ema without --ema, or while it is in place");
    STOKE_CHECK(params.size() == params_.size() && buffers.size() == buffers_.size(), "EMA state of another model");
    ema_params_ = params;
    ema_buffers_ = buffers;
  }
  void get_ema(std::vector<float>& params, std::vector<float>& buffers) override {
    drain();
    STOKE_CHECK(opt_.ema_decay > 0.f && ema_params_.size() == params_.size() && !eval_ema_,
                "no EMA state (--ema), or it is in place");
    params = ema_params_;
    buffers = ema_buffers_;
  }
  // As the CUDA backend's: the EMA and the trained weights change places (vectors swapped, nothing copied).
  void use_ema(bool on) override {
    drain();
    if (on == eval_ema_) return;
    STOKE_CHECK(ema_params_.size() == params_.size(), "no EMA state (--ema)");
    std::swap(params_, ema_params_);
    std::swap(buffers_, ema_buffers_);
    eval_ema_ = on;
  }

 protected:
  StepResult run_step(const StepRequest& r) override {  // not used: submit() goes through the queue
    return compute(r);
  }

 private:
  const float* evaluate(int n, const uint8_t* pixels, const uint8_t* flips, const int32_t* labels, float* loss) {
    drain();
    STOKE_CHECK(n >= 1 && n <= opt_.max_batch, "evaluation batch of ", n, " for a backend of ", opt_.max_batch);
    const Shape3 s = graph_.input_shape();
    cpu::augment_normalize(n, s.h, s.w, s.c, pixels, flips, scale_.data(), shift_.data(), input_.data());
    // eval mode: the buffers are read, never written
    const float* logits = exec_.forward(n, input_.data(), params_.data(), buffers_.data(), false);
    *loss = cpu::softmax_cross_entropy(n, exec_.outputs(), logits, labels, 0.f, 1.f, nullptr, nullptr, nullptr);
    return logits;
  }

  // evaluation_only: an optimizer over no parameters, so no state is allocated.
  static Optimizer make_optimizer(const Graph& g, const BackendOptions& o) {
    if (o.evaluation_only) return Optimizer(o.optimizer, {}, 0);
    return Optimizer(o.optimizer, g.params(), g.num_params(), o.lr_mult);
  }

  // One step on the compute thread, from the queue's own copy of the batch (engine/train_step.h's phases).
  StepResult compute(const StepRequest& st) {
    STOKE_CHECK(!opt_.evaluation_only, "a training step on an evaluation-only backend (no optimizer, no gradients)");
    STOKE_TRACE("train step compute");
    StepResult out;
    out.tag = st.batch.tag;
    out.stop = st.stop;
    Step step{*this, st, out};
    run_train_step(step);
    return out;
  }

  // The phases of one step on this backend. Every decision is the host's: a non-finite loss skips the update here.
  struct Step {
    CpuBackend& b;
    const StepRequest& st;
    StepResult& out;
    int n() const { return st.batch.size; }
    int world() const { return b.opt_.comm ? b.opt_.comm->world() : 1; }

    void normalize() {
      const Shape3 s = b.graph_.input_shape();
      const uint8_t* pixels = st.batch.pixels;
      if (const int64_t* ids = st.held_ids()) {
        STOKE_CHECK(!b.held_labels_.empty(), "a step named by sample ids, but no data set is held");
        b.gathered_px_.resize(static_cast<size_t>(b.opt_.max_batch * s.size()));
        b.gathered_labels_.resize(static_cast<size_t>(b.opt_.max_batch));
        cpu::gather_samples(n(), ids, static_cast<int64_t>(b.held_labels_.size()), s.size(), b.held_pixels_.data(),
                            b.held_labels_.data(), b.gathered_px_.data(), b.gathered_labels_.data());
        pixels = b.gathered_px_.data();
      }
      if (st.transforms)  // a recipe's transforms, flips folded in
        cpu::augment_transform_normalize(n(), s.h, s.w, s.c, pixels, st.transforms, b.scale_.data(), b.shift_.data(),
                                         b.input_.data());
      else
        cpu::augment_normalize(n(), s.h, s.w, s.c, pixels, st.batch.flips, b.scale_.data(), b.shift_.data(),
                               b.input_.data());
      if (st.mix) cpu::mix_batch(n(), s.h, s.w, s.c, &*st.mix, b.input_.data());  // mixup, cutmix: this rank's slice
    }
    const int32_t* labels() const { return st.held_ids() ? b.gathered_labels_.data() : st.batch.labels; }

    void forward() {
      b.bn_comm_seconds_ = 0;
      b.logits_ = b.exec_.forward(n(), b.input_.data(), b.params_.data(), b.buffers_.data(), true);
    }

    // In a world every rank goes on whatever its loss: backward may hold collectives (--sync-bn's sums), and a rank
    // that skipped it would meet the others' with its gradient all-reduce. A non-finite loss anywhere makes the
    // summed loss non-finite on every rank, and end_exchange skips the update.
    bool loss() {
      if (st.mix)
        out.loss =
            cpu::softmax_cross_entropy_mixed(n(), b.exec_.outputs(), b.logits_, labels(), &*st.mix,
                                             b.opt_.label_smoothing, 1.f, nullptr, b.dlogits_.data(), &out.correct);
      else
        out.loss = cpu::softmax_cross_entropy(n(), b.exec_.outputs(), b.logits_, labels(), b.opt_.label_smoothing, 1.f,
                                              nullptr, b.dlogits_.data(), &out.correct);
      if (st.skip) out.loss = std::numeric_limits<float>::infinity();
      return world() > 1 || std::isfinite(out.loss);
    }

    void begin_exchange() {}  // nothing leaves before backward here: one all-reduce carries everything after it

    void backward() {
      std::fill(b.grads_.begin(), b.grads_.end(), 0.f);
      b.exec_.backward(b.params_.data(), b.grads_.data(), b.dlogits_.data());
    }

    // One all-reduce carries the gradients and the step's sums (loss x n, correct, n, stop requests): every rank gets
    // the global batch's loss, a non-finite loss on any rank skips the update on all of them, and a stop asked of any
    // rank is known to all of them at the same step.
    bool end_exchange() {
      if (world() == 1) return true;
      const size_t np = b.params_.size();
      std::vector<float>& g = b.grads_;
      g[np] = std::isfinite(out.loss) ? out.loss * static_cast<float>(n()) : std::numeric_limits<float>::quiet_NaN();
      g[np + 1] = static_cast<float>(out.correct);
      g[np + 2] = static_cast<float>(n());
      g[np + 3] = st.stop ? 1.f : 0.f;
      {
        STOKE_TRACE("all-reduce gradients");
        // Timed for the communication share (metrics comm_share): the call blocks, so all of it is step time.
        const auto t0 = std::chrono::steady_clock::now();
        b.opt_.comm->allreduce_sum(g.data(), g.size());
        out.comm_seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() + b.bn_comm_seconds_;
        out.allreduce_bytes = static_cast<int64_t>(g.size() * sizeof(float)) + b.bn_bytes_per_step_;
      }
      out.loss = g[np] / g[np + 2];
      out.correct = std::llround(g[np + 1]);
      out.stop = g[np + 3] > 0.f;
      if (!std::isfinite(out.loss)) return false;
      // Each rank's loss is the mean over its slice of n = global/world samples, so the sum of the ranks' gradients
      // is world times the global batch's mean gradient.
      const float inv = 1.f / static_cast<float>(world());
      for (size_t i = 0; i < np; ++i) g[i] *= inv;
      return true;
    }

    void update() {
      const int64_t np = static_cast<int64_t>(b.params_.size());
      if (b.opt_.clip_grad_norm > 0.f) clip_grad_norm(b.grads_.data(), np, b.opt_.clip_grad_norm);
      b.optimizer_.step(b.params_.data(), b.grads_.data(), st.lr);
      out.applied = true;
      if (b.opt_.ema_decay > 0.f) {  // after the update, over the weights it wrote and this step's running statistics
        const float decay = ema_decay_at(b.optimizer_.steps(), b.opt_.ema_decay, b.opt_.ema_warmup);
        ema_update(b.ema_params_.data(), b.params_.data(), np, decay);
        ema_update(b.ema_buffers_.data(), b.buffers_.data(), static_cast<int64_t>(b.buffers_.size()), decay);
      }
    }
  };

  static constexpr size_t kStepSums = 4;  // after the gradients: loss x n, correct, n, stop (summed over the ranks)
  double bn_comm_seconds_ = 0;            // --sync-bn: this step's batch-norm sums so far (compute thread only)
  int64_t bn_bytes_per_step_ = 0;         // --sync-bn: what those sums carry in one step
  const Graph& graph_;
  BackendOptions opt_;
  Optimizer optimizer_;
  CpuExecutor exec_;
  std::vector<float> params_, grads_, buffers_, input_, dlogits_, scale_, shift_;
  const float* logits_ = nullptr;  // the last training forward's output (executor memory)
  // --ema: the averaged parameters and buffers (set_ema before the first step), and whether they are in the trained
  // ones' place (use_ema: then params_/buffers_ hold the EMA and these the trained state)
  std::vector<float> ema_params_, ema_buffers_;
  bool eval_ema_ = false;
  std::vector<uint8_t> mirror_;  // eval_batch_mirrored's flips: all set
  // --cache gpu: the held set, and the batch gathered from it (sized on first use: no cost without a held set)
  std::vector<uint8_t> held_pixels_, gathered_px_;
  std::vector<int32_t> held_labels_, gathered_labels_;
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
