// The CUDA backend behind engine/backend.h: CudaExecutor driven by the asynchronous step protocol. docs/GPU.md ("The
// asynchronous step") has the whole protocol; what the code below keeps to:
//   - two input buffers and two streams: step k copies into slot k % 2 on the copy stream (after the compute that last
//     read it), the compute stream waits for that copy, runs the step (a replayed CUDA graph or the launches), copies
//     its StepRecord to pinned memory; at most 2 steps in flight;
//   - a tag is released only once its copy has *completed* (the trainer then gives the host memory to the decoders);
//   - nothing inside a step waits for the host: skip, t, lr and the loss scale are on the device;
//   - --cache gpu: a step copies only sample ids and gathers its batch from the held set as its first launch;
//   - data parallel (NCCL): sums and gradient buckets all-reduced on a communication stream during backward, inside
//     the captured graph; host waits poll NCCL's asynchronous error, so a failed peer is an error here.
#include <cuda_profiler_api.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "base/cuda_check.h"
#include "base/error.h"
#include "base/trace.h"
#include "engine/backend.h"
#include "engine/cuda/arena.h"
#include "engine/cuda/device_collectives.h"
#include "engine/cuda/executor.h"
#include "engine/cuda/grad_sync.h"
#include "engine/cuda/held_dataset.h"
#include "engine/cuda/runtime.h"
#include "engine/cuda/step_graph.h"
#include "engine/cuda/step_inputs.h"
#include "engine/cuda/step_ring.h"
#include "engine/dist/communicator.h"
#include "engine/train_step.h"

namespace stoke {
namespace {

using cuda::InputBuffer;
using cuda::PinnedSlots;
using cuda::StepRing;
constexpr int kSlots = StepRing::kSlots;
// Full-size steps run uncaptured before the first capture: cuDNN/cuBLASLt set-up on first use and lazy kernel
// loading must not happen inside a capture.
constexpr int kWarmupSteps = 3;

bool graphs_disabled_by_env() {
  const char* e = std::getenv("STOKE_NO_GRAPHS");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}

class CudaBackend final : public TrainingBackend {
 public:
  CudaBackend(const Graph& g, const BackendOptions& o)
      : graph_(g),
        opt_(o),
        ex_(g, o.max_batch, options(o)),
        graphs_(o.graphs && !graphs_disabled_by_env()),
        pinned_(o.max_batch),
        start_{cuda::Event(true), cuda::Event(true)},
        done_{cuda::Event(true), cuda::Event(true)} {
    ex_.set_normalization(o.mean, o.stdev);
    logits_.resize(static_cast<size_t>(o.max_batch) * static_cast<size_t>(ex_.outputs()));
    // Both input buffers in one allocation, made once: no step allocates.
    cuda::DeviceArena plan = cuda::DeviceArena::counting();
    layout_inputs(plan);
    inputs_arena_ = cuda::DeviceArena(plan.used(), "the input buffers of the asynchronous step");
    layout_inputs(inputs_arena_);
    inputs_arena_.zero(copy_);
    copy_.synchronize();
    join_world(o);
    released_.reserve(4 * kSlots);
    results_.reserve(4 * kSlots);
  }

  ~CudaBackend() override {
    // The streams may still read the input buffers and write the pinned records that die with this object. With a
    // world their work may wait on a lost peer: the bounded wait aborts the communicator then, and it ends.
    if (sync_) {
      try {
        wait_for(copy_.get());
        wait_for(ex_.stream());
      } catch (const std::exception& e) {
        std::fprintf(stderr, "stoke: while releasing the CUDA backend: %s\n", e.what());
      }
    }
    CUDA_CHECK_NOEXCEPT(cudaStreamSynchronize(copy_.get()));
    CUDA_CHECK_NOEXCEPT(cudaStreamSynchronize(ex_.stream()));
  }

  static CudaExecutorOptions options(const BackendOptions& o) {
    if (o.clip_grad_norm > 0.f)
      throw UserError("--clip-grad-norm is not implemented on the CUDA backend yet: use --device cpu or drop the flag");
    CudaExecutorOptions x;
    x.precision = cuda::parse_precision(to_string(o.precision));
    x.optimizer = o.optimizer;
    x.deterministic = o.deterministic;
    x.device = o.device;
    x.lr_mult = o.lr_mult;
    x.bn_eval = o.bn_eval;
    x.ema_decay = o.ema_decay;
    x.ema_warmup = o.ema_warmup;
    return x;
  }

  std::string name() const override { return "cuda"; }
  std::string describe() const override {
    std::string d = ex_.describe() + (graphs_ ? ", CUDA graphs" : ", no CUDA graphs");
    if (sync_)
      d += str(", data parallel over ", opt_.comm->world(), " rank", opt_.comm->world() == 1 ? "" : "s", " (",
               sync_->buckets(), " gradient bucket", sync_->buckets() == 1 ? "" : "s",
               opt_.sync_bn ? ", batch norm synchronised" : "", ")");
    return d;
  }
  bool profiler(bool on) override {
    drain();
    CUDA_CHECK(cudaDeviceSynchronize());  // the window starts (and ends) with nothing of other steps in flight
    if (on)
      CUDA_CHECK(cudaProfilerStart());
    else
      CUDA_CHECK(cudaProfilerStop());
    return true;
  }

  void set_state(const std::vector<float>& params, const std::vector<float>& buffers,
                 const std::vector<float>& optimizer_state, int64_t optimizer_steps) override {
    drain();
    STOKE_CHECK(!ema_in_place_, "the trained state set while evaluating on the EMA");
    STOKE_CHECK(static_cast<int64_t>(params.size()) == graph_.num_params() &&
                    static_cast<int64_t>(buffers.size()) == graph_.num_buffers(),
                "state of another model");
    // Same device addresses: captured graphs stay valid (they read the state, they do not hold it).
    ex_.upload_params(params.data());
    ex_.upload_buffers(buffers.data());
    if (!opt_.evaluation_only) ex_.upload_optimizer_state(optimizer_state, optimizer_steps);
    if (opt_.ema_decay > 0.f && !ema_set_) {  // the EMA starts at the first weights: copied on the device
      ex_.seed_ema();
      ema_set_ = true;
    }
  }

  void set_ema(const std::vector<float>& params, const std::vector<float>& buffers) override {
    drain();
    STOKE_CHECK(opt_.ema_decay > 0.f && !ema_in_place_, "set_ema without --ema, or while evaluating on it");
    STOKE_CHECK(static_cast<int64_t>(params.size()) == graph_.num_params() &&
                    static_cast<int64_t>(buffers.size()) == graph_.num_buffers(),
                "EMA state of another model");
    ex_.upload_ema(params.data(), buffers.data());
    ema_set_ = true;
  }
  void get_ema(std::vector<float>& params, std::vector<float>& buffers) override {
    drain();
    STOKE_CHECK(ema_set_ && !ema_in_place_, "no EMA state (--ema), or evaluating on it");
    params.resize(static_cast<size_t>(graph_.num_params()));
    buffers.resize(static_cast<size_t>(graph_.num_buffers()));
    ex_.download_ema(params.data(), buffers.data());
  }
  // The EMA changes places with the trained weights on the device, and back: no copy through the host. Not waited
  // for: whatever reads or writes the swapped memory next is stream-ordered behind it (eval, skipped steps and every
  // transfer run on the compute stream; the copy stream writes only the input buffers).
  void use_ema(bool on) override {
    drain();
    STOKE_CHECK(ema_set_, "no EMA state (--ema)");
    if (on == ema_in_place_) return;
    ex_.swap_ema();
    ema_in_place_ = on;
  }

  void get_state(std::vector<float>& params, std::vector<float>& buffers, std::vector<float>& optimizer_state,
                 int64_t& optimizer_steps) override {
    drain();
    STOKE_CHECK(!ema_in_place_, "the trained state asked for while evaluating on the EMA");
    params.resize(static_cast<size_t>(graph_.num_params()));
    buffers.resize(static_cast<size_t>(graph_.num_buffers()));
    ex_.download_params(params.data());
    ex_.download_buffers(buffers.data());
    ex_.download_optimizer_state(optimizer_state, optimizer_steps);
  }

  // The running statistics in place (the EMA's after use_ema(true)), without the parameters or optimizer state.
  void get_buffers(std::vector<float>& buffers) override {
    drain();
    buffers.resize(static_cast<size_t>(graph_.num_buffers()));
    ex_.download_buffers(buffers.data());
  }
  void set_buffers(const std::vector<float>& buffers) override {
    drain();
    STOKE_CHECK(static_cast<int64_t>(buffers.size()) == graph_.num_buffers(), buffers.size(),
                " buffer values, expected ", graph_.num_buffers());
    ex_.upload_buffers(buffers.data());
  }

  bool hold_dataset(const uint8_t* pixels, const int32_t* labels, int64_t samples, int64_t sample_bytes,
                    std::string* why) override {
    drain();
    STOKE_CHECK(samples >= 1 && sample_bytes == graph_.input_shape().size(), "a held set of ", samples, " samples of ",
                sample_bytes, " bytes for an input of ", graph_.input_shape().size());
    // The graphs captured so far gather from the old set's address (or not at all): they are recorded afresh.
    for (cuda::CapturedStep& c : captured_) c.reset();
    return held_.hold(pixels, labels, samples, sample_bytes, copy_.get(), why);
  }

  const float* eval_batch(int n, const uint8_t* pixels, const int32_t* labels, float* loss) override {
    return evaluate(n, pixels, labels, loss, false);
  }
  // The flip is the normalising kernel's own (every sample's flag set), on the device.
  const float* eval_batch_mirrored(int n, const uint8_t* pixels, const int32_t* labels, float* loss) override {
    return evaluate(n, pixels, labels, loss, true);
  }
  // --tta flip: the batch goes to the device once and is evaluated as it is, then mirrored there.
  void eval_batch_and_mirror(int n, int classes, const uint8_t* pixels, const int32_t* labels,
                             std::vector<float>& plain, std::vector<float>& mirrored, float* loss) override {
    STOKE_CHECK(classes == ex_.outputs(), classes, " classes for a model of ", ex_.outputs());
    const size_t m = static_cast<size_t>(n) * static_cast<size_t>(classes);
    const float* z = evaluate(n, pixels, labels, loss, false);
    plain.assign(z, z + m);
    float unused = 0;
    z = evaluate_staged(n, true, &unused);
    mirrored.assign(z, z + m);
  }
  const float* evaluate(int n, const uint8_t* pixels, const int32_t* labels, float* loss, bool mirror) {
    drain();
    STOKE_CHECK(n >= 1 && n <= opt_.max_batch, "evaluation batch of ", n, " for a backend of ", opt_.max_batch);
    stage_sync(n, pixels, labels, nullptr);
    return evaluate_staged(n, mirror, loss);
  }
  // The batch stage_sync left on the device; mirror: every sample's flip flag set there, no upload.
  const float* evaluate_staged(int n, bool mirror, float* loss) {
    if (mirror) CUDA_CHECK(cudaMemsetAsync(ex_.device_flips(), 1, static_cast<size_t>(n), ex_.stream()));
    ex_.normalize(n, ex_.device_pixels(), mirror ? ex_.device_flips() : nullptr);
    ex_.forward(n, false);
    ex_.loss(n, ex_.device_labels(), 0.f, false);
    *loss = ex_.stats().loss;
    ex_.download_logits(logits_.data());
    return logits_.data();
  }

  // ---- the asynchronous step -------------------------------------------------------------------------------------
  void submit(const StepRequest& r) override {
    STOKE_CHECK(!opt_.evaluation_only, "a training step on an evaluation-only backend (no optimizer state uploaded)");
    STOKE_CHECK(r.batch.size >= 1 && r.batch.size <= opt_.max_batch, "batch of ", r.batch.size, " for a backend of ",
                opt_.max_batch);
    STOKE_TRACE("submit");
    // With the EMA in place only a skipped step (--bn-recalibrate): its update and EMA launches do nothing.
    STOKE_CHECK(!ema_in_place_ || r.skip, "a training step while evaluating on the EMA");
    if (ring_.full()) {
      // The host-side bound: the oldest step's slot (input buffer, pinned control and record) is needed again.
      wait_for(done_[static_cast<size_t>(ring_.oldest())]);
      poll();
    }
    if (r.held_ids()) held_.check_ids(r.batch.size, r.held_ids());  // before anything is queued
    const int slot = ring_.push(r.batch.tag);
    skip_[static_cast<size_t>(slot)] = r.skip;
    stop_[static_cast<size_t>(slot)] = r.stop;
    copy_in(slot, r);
    compute(slot, r.batch.size, r.held_ids() != nullptr, r.transforms != nullptr, r.mix.has_value());
    poll();
  }

  void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait) override {
    poll();
    if (wait && released_.empty() && results_.empty() && !ring_.empty()) {
      // Block on whatever the oldest step reports next: its release, else its result.
      const size_t s = static_cast<size_t>(ring_.oldest());
      if (ring_.oldest_released())
        wait_for(done_[s]);
      else
        wait_for(copied_[s]);  // behind the previous step's done event, collectives included
      poll();
    }
    released.insert(released.end(), released_.begin(), released_.end());
    results.insert(results.end(), results_.begin(), results_.end());
    released_.clear();
    results_.clear();
  }

  void drain() override {
    wait_for(copy_.get());    // the copy stream waits on the last step's done event: collectives included
    while (!ring_.empty()) {  // oldest first: each wait may find a failed peer (wait_for)
      wait_for(done_[static_cast<size_t>(ring_.oldest())]);
      poll();
    }
    wait_for(ex_.stream());
    poll();
    STOKE_CHECK(ring_.empty(), ring_.in_flight(), " steps still in flight after both streams finished");
  }

  int in_flight() const override { return ring_.in_flight(); }
  int max_in_flight() const override { return kSlots; }

 protected:
  // The synchronous reference path (the default protocol's hook; this backend's submit() does not use it): the
  // batch copied on the compute stream into the executor's own staging, the step, then a wait for its results.
  StepResult run_step(const StepRequest& r) override {
    drain();
    stage_sync(r.batch.size, r.batch.pixels, r.batch.labels, r.batch.flips);
    SampleTransform* transforms = nullptr;
    if (r.transforms) {  // nothing is in flight: input buffer 0's transforms are free
      transforms = inputs_[0].transforms;
      CUDA_CHECK(cudaMemcpyAsync(transforms, r.transforms, static_cast<size_t>(r.batch.size) * sizeof(SampleTransform),
                                 cudaMemcpyHostToDevice, ex_.stream()));
    }
    if (r.mix)  // likewise input buffer 0's
      CUDA_CHECK(cudaMemcpyAsync(inputs_[0].mix, &*r.mix, sizeof(BatchMix), cudaMemcpyHostToDevice, ex_.stream()));
    cuda::set_step_control(ctl_sync(), r.lr, r.skip, ex_.stream());
    Step step{*this,
              r.batch.size,
              ex_.device_pixels(),
              ex_.device_labels(),
              r.batch.flips ? ex_.device_flips() : nullptr,
              nullptr,
              transforms,
              r.mix ? inputs_[0].mix : nullptr,
              ctl_sync(),
              -1};
    run_train_step(step);
    const CudaStepStats st = ex_.stats();
    StepResult out;
    out.tag = r.batch.tag;
    out.loss = r.skip ? std::numeric_limits<float>::infinity() : st.loss;
    out.stop = r.stop;
    out.correct = st.correct;
    out.applied = st.step_applied;
    out.loss_scale = st.loss_scale;
    return out;
  }

 private:
  void layout_inputs(cuda::DeviceArena& a) {
    const size_t mb = static_cast<size_t>(opt_.max_batch);
    const size_t px = mb * static_cast<size_t>(graph_.input_shape().size());
    for (InputBuffer& b : inputs_) {
      b.pixels = a.alloc<uint8_t>(px, "input pixels (asynchronous step)");
      b.labels = a.alloc<int32_t>(mb, "labels (asynchronous step)");
      b.flips = a.alloc<uint8_t>(mb, "flip flags (asynchronous step)");
      b.ids = a.alloc<int64_t>(mb, "sample ids (asynchronous step, --cache gpu)");
      b.transforms = a.alloc<SampleTransform>(mb, "augmentation transforms (asynchronous step)");
      b.mix = a.alloc<BatchMix>(1, "batch mix (asynchronous step)");
      b.control = a.alloc<cuda::StepControl>(1, "step control (asynchronous step)");
    }
    sync_control_ = a.alloc<cuda::StepControl>(1, "step control (synchronous step)");
    sums_ = a.alloc<float>(cuda::kStepSums, "step sums (data parallel)");
  }

  // Data parallel when the communicator has a device side (NCCL); any other communicator of several processes
  // cannot carry device memory.
  void join_world(const BackendOptions& o) {
    if (!o.comm) return;
    auto* dc = dynamic_cast<cuda::DeviceCollectives*>(o.comm);
    if (!dc) {
      if (o.comm->world() > 1)
        throw UserError(str("the CUDA backend all-reduces its gradients over NCCL; this job's transport is ",
                            o.comm->transport(), " (a build without NCCL cannot train on several GPUs)"));
      return;
    }
    const int out = graph_.output();
    sync_ = std::make_unique<cuda::GradSync>(
        *dc, cuda::plan_device_buckets(ex_.grad_sources(), ex_.device_grad_count(), out), out, ex_.device_grads(),
        sums_);
    ex_.set_backward_hook([this](int node) { sync_->after_node(node, ex_.stream()); });
    // Also in a world of 1 (the NCCL path alone sums nothing): so one GPU runs the path of every rank of a job.
    if (o.sync_bn) {
      ex_.set_sync_batchnorm([this](double* data, int n, cudaStream_t s) { sync_->channel_sum(data, n, s); });
      bn_bytes_per_step_ = sync_batchnorm_bytes(graph_);
    }
    ex_.set_inv_world(1.f / static_cast<float>(o.comm->world()));
    poll_.timeout_s = o.comm->timeout_seconds();
  }

  // The phases of one step on the device (engine/train_step.h): launches on the compute stream, the same calls eager
  // or captured; every decision (an injected skip, fp16 overflow, a non-finite summed loss) is the device's.
  // With a world the step's sums leave first (ready before backward), the gradient buckets during backward (the
  // executor's backward hook), and the update waits for the last of them. slot >= 0 (an asynchronous step of a world
  // of several): the compute stream's wait for the last bucket is timed, from backward's last kernel to the join,
  // with events the step graph keeps — the communication backward did not hide (StepResult::comm_seconds).
  struct Step {
    CudaBackend& b;
    int n;
    uint8_t* pixels;  // device memory: the gather below writes it
    int32_t* labels;
    const uint8_t* flips;
    const int64_t* gather_ids;  // --cache gpu: gather pixels and labels from the held set into `pixels`/`labels` first
    const SampleTransform* transforms;  // device memory: a recipe's, replacing the flips (null: none)
    const BatchMix* mix;                // device memory: a mixing run's (null: none)
    const cuda::StepControl* control;
    int slot;

    void normalize() {
      if (gather_ids) b.held_.gather(n, gather_ids, pixels, labels, b.ex_.stream());
      b.ex_.normalize(n, pixels, flips, transforms);
      if (mix) b.ex_.mix_input(n, mix);
    }
    void forward() { b.ex_.forward(n, true); }
    bool loss() {
      b.ex_.loss(n, labels, b.opt_.label_smoothing, true, mix);
      return true;
    }
    void begin_exchange() {
      if (!b.sync_) return;
      b.ex_.pack_step_sums(control, b.sync_->sums());
      b.sync_->begin(b.ex_.stream());
    }
    void backward() { b.ex_.backward(); }
    bool end_exchange() {
      if (!b.sync_) return true;
      cudaStream_t s = b.ex_.stream();
      const bool timed = slot >= 0 && b.opt_.comm->world() > 1;
      if (timed) b.backward_done_[static_cast<size_t>(slot)].record_in_graph(s);
      b.sync_->end(s);
      if (timed) b.comm_joined_[static_cast<size_t>(slot)].record_in_graph(s);
      b.ex_.unpack_step_sums(b.sync_->sums());
      return true;
    }
    void update() { b.ex_.step(control); }
  };

  // Waits for an event or a stream. With NCCL in the step a peer that fails would leave it pending for ever: every
  // such wait polls and asks NCCL for an asynchronous error; past the communicator's timeout the communicator is
  // aborted (the device work behind it ends) and the peer called lost (cuda::await_collectives).
  void wait_for(const cuda::Event& e) {
    if (!sync_) return e.synchronize();
    cuda::await_collectives([&] { return e.done(); }, sync_->collectives(), poll_, "a training step's NCCL all-reduce");
  }
  void wait_for(cudaStream_t s) {
    if (!sync_) {
      CUDA_CHECK(cudaStreamSynchronize(s));
      return;
    }
    cuda::await_collectives([&] { return cuda::Stream::done(s); }, sync_->collectives(), poll_,
                            "a training step's NCCL all-reduce");
  }
  cuda::StepControl* ctl_sync() { return sync_control_; }

  // Eval and the synchronous path: the executor's staging, on the compute stream, waited for (the caller's memory
  // is free when this returns).
  void stage_sync(int n, const uint8_t* pixels, const int32_t* labels, const uint8_t* flips) {
    const size_t px = static_cast<size_t>(n) * static_cast<size_t>(graph_.input_shape().size());
    cudaStream_t s = ex_.stream();
    CUDA_CHECK(cudaMemcpyAsync(ex_.device_pixels(), pixels, px, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(ex_.device_labels(), labels, static_cast<size_t>(n) * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
    if (flips)
      CUDA_CHECK(cudaMemcpyAsync(ex_.device_flips(), flips, static_cast<size_t>(n), cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  }

  // The copy stream's part of step `slot`. The slot's previous step has finished (StepRing frees a slot only then),
  // so its pinned control may be rewritten; the device-side wait on done_[slot] says the same to the copy engine
  // (a never-recorded event counts as complete).
  void copy_in(int slot, const StepRequest& r) {
    STOKE_TRACE("copy batch");
    const size_t b = static_cast<size_t>(slot);
    const InputBuffer& in = inputs_[b];
    const size_t n = static_cast<size_t>(r.batch.size);
    cuda::StepControl& ctl = pinned_.control(slot);
    ctl.lr = r.lr;
    ctl.skip = r.skip ? 1 : 0;
    ctl.stop = r.stop ? 1 : 0;
    CUDA_CHECK(cudaStreamWaitEvent(copy_.get(), done_[b].get(), 0));
    if (r.held_ids()) {  // --cache gpu: n ids instead of the images; the step gathers pixels and labels on the device
      CUDA_CHECK(cudaMemcpyAsync(in.ids, r.held_ids(), n * sizeof(int64_t), cudaMemcpyHostToDevice, copy_.get()));
    } else {
      CUDA_CHECK(cudaMemcpyAsync(in.pixels, r.batch.pixels, n * static_cast<size_t>(graph_.input_shape().size()),
                                 cudaMemcpyHostToDevice, copy_.get()));
      CUDA_CHECK(cudaMemcpyAsync(in.labels, r.batch.labels, n * sizeof(int32_t), cudaMemcpyHostToDevice, copy_.get()));
    }
    // The captured step always reads a flips buffer: no flips means zeros (no mirroring), the same pixels as null.
    if (r.batch.flips)
      CUDA_CHECK(cudaMemcpyAsync(in.flips, r.batch.flips, n, cudaMemcpyHostToDevice, copy_.get()));
    else
      CUDA_CHECK(cudaMemsetAsync(in.flips, 0, n, copy_.get()));
    if (r.transforms) {  // through pinned staging: the trainer may reuse its copy once the batch is released
      SampleTransform* staged = pinned_.transforms(slot);
      std::memcpy(staged, r.transforms, n * sizeof(SampleTransform));
      CUDA_CHECK(
          cudaMemcpyAsync(in.transforms, staged, n * sizeof(SampleTransform), cudaMemcpyHostToDevice, copy_.get()));
    }
    if (r.mix) {  // pinned like the control: the copy may run after submit returns
      pinned_.mix(slot) = *r.mix;
      CUDA_CHECK(cudaMemcpyAsync(in.mix, &pinned_.mix(slot), sizeof(BatchMix), cudaMemcpyHostToDevice, copy_.get()));
    }
    CUDA_CHECK(cudaMemcpyAsync(in.control, &ctl, sizeof(ctl), cudaMemcpyHostToDevice, copy_.get()));
    copied_[b].record(copy_.get());
  }

  // The compute stream's part of step `slot`: after its copy, the step (captured once warm, for full batches),
  // then its record to pinned memory.
  void compute(int slot, int n, bool gather, bool augment, bool mix) {
    const size_t b = static_cast<size_t>(slot);
    cudaStream_t s = ex_.stream();
    CUDA_CHECK(cudaStreamWaitEvent(s, copied_[b].get(), 0));
    start_[b].record(s);
    const bool full = n == opt_.max_batch;
    if (graphs_ && full && full_steps_ >= kWarmupSteps) {
      // A graph records whether the step gathers, augments and mixes; a step of another kind (a test mixing
      // them) records anew. A run with a recipe augments (and one with mixing mixes) every step: one graph per slot.
      const int kind = (gather ? 1 : 0) | (augment ? 2 : 0) | (mix ? 4 : 0);
      if (captured_[b].ready() && captured_kind_[b] != kind) captured_[b].reset();
      if (!captured_[b].ready()) {
        STOKE_TRACE("capture step graph");
        captured_[b].capture(s, [&] { enqueue_step(slot, n, gather, augment, mix); });
        captured_kind_[b] = kind;
      }
      captured_[b].launch(s);
    } else {
      enqueue_step(slot, n, gather, augment, mix);
    }
    if (full) ++full_steps_;
    CUDA_CHECK(cudaMemcpyAsync(&pinned_.record(slot), ex_.device_record(), sizeof(cuda::StepRecord),
                               cudaMemcpyDeviceToHost, s));
    done_[b].record(s);
  }

  // Everything a training step launches, all reading input buffer `slot`: the same calls eager or captured.
  void enqueue_step(int slot, int n, bool gather, bool augment, bool mix) {
    const InputBuffer& in = inputs_[static_cast<size_t>(slot)];
    Step step{*this, n, in.pixels, in.labels, in.flips, nullptr, nullptr, nullptr, in.control, slot};
    if (gather) step.gather_ids = in.ids;
    if (augment) step.transforms = in.transforms;
    if (mix) step.mix = in.mix;
    run_train_step(step);
  }

  // Moves completed copies (releases) and finished steps (results) out of the ring, never waiting.
  void poll() {
    ring_.poll([&](int s) { return copied_[static_cast<size_t>(s)].done(); },
               [&](int s) { return done_[static_cast<size_t>(s)].done(); },
               [&](int64_t tag) { released_.push_back(tag); },
               [&](int s, int64_t tag) { results_.push_back(result_of(s, tag)); });
  }

  StepResult result_of(int slot, int64_t tag) {
    const size_t b = static_cast<size_t>(slot);
    const cuda::StepRecord& rec = pinned_.record(slot);
    StepResult out;
    out.tag = tag;
    // The device skipped the update on the injected flag; the host reports what the trainer expects of it.
    out.loss = skip_[b] ? std::numeric_limits<float>::infinity() : rec.loss;
    out.correct = rec.correct;
    out.applied = rec.applied != 0;
    out.loss_scale = rec.loss_scale;
    // One process: its own request. Data parallel: the flag summed with the step's sums, the same on every rank.
    out.stop = sync_ ? rec.stop != 0 : stop_[b];
    out.device_seconds = static_cast<double>(cuda::Event::elapsed_ms(start_[b], done_[b])) * 1e-3;
    // The all-reduces overlap backward on the comm stream; what the step waited for after backward is the
    // communication it did not hide (the CPU backend's all-reduce blocks, so there all of it counts).
    if (sync_ && opt_.comm->world() > 1) {
      out.allreduce_bytes = sync_->bytes_per_step() + bn_bytes_per_step_;
      const float ms = cuda::Event::elapsed_ms_or_negative(backward_done_[b], comm_joined_[b]);
      if (ms >= 0.f) out.comm_seconds = static_cast<double>(ms) * 1e-3;
    }
    return out;
  }

  const Graph& graph_;
  BackendOptions opt_;
  CudaExecutor ex_;  // first: it selects the device the streams, events and buffers below belong to
  bool ema_set_ = false, ema_in_place_ = false;  // --ema: uploaded; swapped into the trained weights' place
  const bool graphs_;
  cuda::Stream copy_;
  cuda::DeviceArena inputs_arena_;
  std::array<InputBuffer, kSlots> inputs_{};
  cuda::StepControl* sync_control_ = nullptr;
  float* sums_ = nullptr;
  std::unique_ptr<cuda::GradSync> sync_;  // data parallel (NCCL); null otherwise
  int64_t bn_bytes_per_step_ = 0;         // --sync-bn: the batch-norm sums' bytes in one step
  cuda::PollPolicy poll_;                 // data parallel: how the host waits on work that holds collectives
  PinnedSlots pinned_;
  std::array<cuda::Event, kSlots> copied_;        // the batch is on the device (no timing: cheapest to record)
  std::array<cuda::Event, kSlots> start_, done_;  // the step's compute began / ended (timed: device_seconds)
  // data parallel: backward's last kernel / the compute stream's join with the comm stream (timed: comm_seconds)
  std::array<cuda::Event, kSlots> backward_done_{cuda::Event(true), cuda::Event(true)},
      comm_joined_{cuda::Event(true), cuda::Event(true)};
  std::array<bool, kSlots> skip_{};
  std::array<bool, kSlots> stop_{};
  std::array<cuda::CapturedStep, kSlots> captured_;  // one per input buffer: the pointers a graph replays are fixed
  // What that graph does besides the plain step: 1 gathers (--cache gpu), 2 augments (a recipe's transforms), 4 mixes
  std::array<int, kSlots> captured_kind_{};
  cuda::HeldDataset held_;  // --cache gpu: the held set, else empty
  int64_t full_steps_ = 0;
  StepRing ring_;
  std::vector<int64_t> released_;
  std::vector<StepResult> results_;
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<TrainingBackend> make_cuda_backend(const Graph& graph, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(graph, options);
}

}  // namespace stoke
