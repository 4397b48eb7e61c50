// What the trainer drives: one training step and one evaluation batch on some device. The CPU backend
// (engine/cpu/cpu_backend.cpp) runs the reference ops; the CUDA backend (engine/cuda/cuda_backend.cpp, only in CUDA
// builds) runs CudaExecutor. Both take uint8 NHWC batches exactly as the input pipeline produces them and do
// the normalisation (and flips, or an augmentation recipe's transforms) themselves; both keep PyTorch's optimizer
// semantics and the Graph's flat parameter layout, so checkpoints are interchangeable.
//
// Training steps are asynchronous (the protocol below): the trainer submits a step and goes on; the backend says
// later when the batch's host memory may be reused (its copy has completed) and what the step gave. Everything
// else (state, evaluation, the profiler) is called only with nothing in flight, after drain().
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/optimizer.h"
#include "engine/options.h"
#include "io/pipeline/batch_source.h"
#include "kernels/augment.h"
#include "kernels/mix.h"

namespace stoke {

namespace dist {
class Communicator;
struct LaunchInfo;
}  // namespace dist

struct BackendOptions {
  int max_batch = 1;
  OptimizerConfig optimizer;
  std::vector<float> mean, stdev;  // per channel, of pixel/255
  float label_smoothing = 0.f;
  float clip_grad_norm = 0.f;                                // 0 = off
  PrecisionRequest precision = PrecisionRequest::automatic;  // CUDA only: the CPU backend is fp32
  bool deterministic = false;                                // CUDA: deterministic cuDNN algorithms
  bool graphs = true;  // CUDA: replay full-size training steps as captured CUDA graphs
  // Data parallel (engine/dist/): with a world of several processes, each step's gradients are summed over the
  // ranks between backward and the optimizer, and divided so the update is that of the global batch (every rank
  // holds an equal slice of it). Null or world 1: a plain step. The CPU backend takes any communicator (MPI); the
  // CUDA backend only NCCL's (engine/cuda/nccl_communicator.h), with which it all-reduces gradient buckets during
  // backward (engine/cuda/grad_sync.h) — even in a world of 1, so one GPU can check that path.
  dist::Communicator* comm = nullptr;
  // --sync-bn: training-mode batch norm normalises with the statistics of the global batch (summed over the ranks
  // through `comm` inside forward and backward) instead of each rank's slice. Without it (the default, as in
  // PyTorch DDP) each rank uses its own slice's statistics. No effect in a world of 1 on the CPU.
  bool sync_bn = false;
  int device = 0;  // CUDA: the device this process drives (the launcher's local rank)
  // Fine-tuning (engine/init_weights.h, fine_tune_plan): per Graph parameter, a factor on the lr (empty: all 1);
  // 0 freezes it: no update, and backward skips its weight gradient and stops where nothing upstream trains.
  std::vector<float> lr_mult;
  // Per node: a batch norm that runs in eval mode during training (running statistics used, not updated).
  std::vector<char> bn_eval;
  // --ema: after every applied update, ema = decay * ema + (1 - decay) * value over the fp32 parameters and the
  // batch-norm buffers (timm's ModelEmaV2 averages both). 0: off.
  float ema_decay = 0.f;
  // --ema-warmup: the decay of applied update t is ema_decay_at(t, ema_decay, true) (engine/optimizer.h), t the
  // optimizer's step count after it (set_state's optimizer_steps carries it across a resume).
  bool ema_warmup = false;
  // eval, predict and export: the backend only evaluates (eval_batch), so it holds no optimizer state and no parameter
  // gradients (a ResNet-50's are 100 MB each), set_state takes an empty optimizer state, and a training step is an
  // internal error. CPU backend; the CUDA one keeps its arena as planned and skips the optimizer state's upload.
  bool evaluation_only = false;
};

// One training step as the trainer hands it over: the batch exactly as its source gave it (io/pipeline/batch_source.h)
// — n = batch.size samples of uint8 NHWC pixels and labels, and optional per-sample flips, in host memory that stays
// untouched until the backend releases batch.tag. Or, once the backend holds the data set (hold_dataset), null pixels
// and the samples' ids into it: the backend gathers the batch itself (on the device, for CUDA), so a step hands over a
// few bytes per sample instead of the images.
struct StepRequest {
  io::Batch batch;
  // An augmentation recipe's transforms (kernels/augment.h), one per sample, drawn by the trainer from (seed, epoch,
  // sample id) and valid until batch.tag is released, like the pixels. They replace batch.flips. Null: none.
  const SampleTransform* transforms = nullptr;
  // Batch mixing (kernels/mix.h): in the normalize phase after the transforms, the loss against the mixed targets.
  // Set on every step of a run that mixes (the identity for a batch left unmixed), so a captured step stays one graph.
  std::optional<BatchMix> mix;
  float lr = 0.f;
  bool skip = false;  // fault injection (tests): report a non-finite loss and skip the update
  bool stop = false;  // this process was asked to stop (a signal): carried to every rank with the step's sums
  // The ids to gather from the held set, or null when the batch carries its pixels.
  const int64_t* held_ids() const { return batch.pixels ? nullptr : batch.ids; }
};

struct StepResult {
  int64_t tag = 0;
  float loss = 0.f;      // the batch's mean loss (inf/NaN when it was not finite); data parallel: the global batch's
  int64_t correct = 0;   // rows whose arg-max is the label (data parallel: over the global batch)
  bool applied = false;  // the parameters were updated (false: non-finite loss, or fp16 overflow), decided by the
                         // backend itself: the host never reads the loss before the update
  float loss_scale = 1.f;
  double device_seconds = 0;  // CUDA: the step's compute on the device, between events (0 where not measured)
  // Data parallel (world > 1): the gradient all-reduce of this step. comm_seconds is the time the step spent in it
  // (CPU: the blocking all-reduce call, all of it exposed; CUDA: the compute stream's wait after backward for the
  // last bucket, the part backward did not hide; 0 where not measured) and allreduce_bytes what it
  // carried (gradients and step sums, 4 bytes each; on the CPU backend under --sync-bn also the batch-norm sums,
  // 8 bytes each, and their time). Both 0 in a world of 1.
  double comm_seconds = 0;
  int64_t allreduce_bytes = 0;
  bool stop = false;  // some rank's request for this step had stop set (world 1: this one's): every rank sees the
                      // same value for the same step, so a data-parallel job can agree on where to stop
};

class TrainingBackend {
 public:
  virtual ~TrainingBackend() = default;
  virtual std::string name() const = 0;      // "cpu" | "cuda"
  virtual std::string describe() const = 0;  // one line for the log
  // State in the Graph's flat layout (Optimizer::state() layout for the optimizer).
  virtual void set_state(const std::vector<float>& params, const std::vector<float>& buffers,
                         const std::vector<float>& optimizer_state, int64_t optimizer_steps) = 0;
  virtual void get_state(std::vector<float>& params, std::vector<float>& buffers, std::vector<float>& optimizer_state,
                         int64_t& optimizer_steps) = 0;
  // The batch-norm running statistics alone (the Graph's flat buffer layout), without the parameters and optimizer
  // state: --bn-recalibrate moves only these per batch. With use_ema(true) they are the EMA's (those in place).
  // Nothing in flight. The defaults go through get_state/set_state; the CPU and CUDA backends move the buffers only.
  virtual void get_buffers(std::vector<float>& buffers);
  virtual void set_buffers(const std::vector<float>& buffers);

  // ---- the asynchronous step ----------------------------------------------------------------------------------
  // submit() queues one step and returns (it blocks only while the backend's queue is full). collect() moves out
  // what has happened since the last call, in submission order: the tags of batches whose copy has completed (the
  // trainer may now reuse their memory: a ring slot goes back to the decoders only then) and finished steps'
  // results. With wait, it blocks until there is at least one of either, or nothing is in flight. drain() blocks
  // until every submitted step has finished; its releases and results are then ready to collect.
  // The default runs each step inside submit() (a backend without a queue of its own).
  virtual void submit(const StepRequest& request);
  virtual void collect(std::vector<int64_t>& released, std::vector<StepResult>& results, bool wait);
  virtual void drain() {}
  virtual int in_flight() const { return 0; }
  // The most steps that can be in flight after a submit() returns: a step's result is collected before the
  // trainer has submitted more than this many steps beyond it.
  virtual int max_in_flight() const { return 0; }
  // One step, synchronously (submit, drain, collect): for diagnose and tests. Nothing else may be in flight.
  StepResult train_step(const StepRequest& request);
  StepResult train_step(int n, const uint8_t* pixels, const int32_t* labels, const uint8_t* flips, float lr,
                        bool skip = false);
  // --cache gpu: keeps a copy of a whole uint8 NHWC data set (samples x sample_bytes pixels, samples labels) for
  // steps that name their samples by id (StepRequest::held_ids); the caller's memory may be freed once this returns.
  // Returns false, with the reason in *why (one line naming the sizes), when the set does not fit or the backend
  // cannot hold one; nothing is held then and pixel steps go on as before. Called with nothing in flight; a second
  // call replaces the held set.
  virtual bool hold_dataset(const uint8_t* pixels, const int32_t* labels, int64_t samples, int64_t sample_bytes,
                            std::string* why);
  // Evaluation-mode forward of n samples; returns the logits (n x classes, host, valid until the next call) and
  // the batch's mean loss in *loss.
  virtual const float* eval_batch(int n, const uint8_t* pixels, const int32_t* labels, float* loss) = 0;
  // The same of the images mirrored left to right (--tta flip), the mirror made where the backend normalises.
  virtual const float* eval_batch_mirrored(int n, const uint8_t* pixels, const int32_t* labels, float* loss);
  // --tta flip: eval_batch of the images and then of their mirrors, the batch handed over once (the CUDA backend
  // uploads it once and mirrors it on the device). The two passes' logits (n x classes each) in `plain` and
  // `mirrored`, *loss the plain pass's. The default calls eval_batch and eval_batch_mirrored.
  virtual void eval_batch_and_mirror(int n, int classes, const uint8_t* pixels, const int32_t* labels,
                                     std::vector<float>& plain, std::vector<float>& mirrored, float* loss);
  // --ema (BackendOptions::ema_decay > 0): the averaged parameters and buffers, in the Graph's flat layout.
  // use_ema(true) puts them in the trained weights' place (use_ema(false) puts each back, bit for bit): eval_batch
  // runs on them, get_buffers/set_buffers move their buffers, and the only steps allowed are those with `skip` set
  // (--bn-recalibrate: a training-mode forward on the EMA that moves only the running statistics in place); the
  // state and EMA transfers are refused until use_ema(false). Nothing in flight for any of these. Backends without
  // EMA throw.
  virtual void set_ema(const std::vector<float>& params, const std::vector<float>& buffers);
  virtual void get_ema(std::vector<float>& params, std::vector<float>& buffers);
  virtual void use_ema(bool on);
  // --profile-steps: start / stop the device profiler's capture (CUDA: cudaProfilerStart/Stop, for
  // `nsys --capture-range=cudaProfilerApi`). Returns false when the backend has no device profiler.
  virtual bool profiler(bool /*on*/) { return false; }

 protected:
  // The step itself, for the default protocol: run it to the end before returning.
  virtual StepResult run_step(const StepRequest& request) = 0;

 private:
  std::vector<int64_t> released_;
  std::vector<StepResult> results_;
};

std::unique_ptr<TrainingBackend> make_cpu_backend(const Graph& graph, const BackendOptions& options);

// --sync-bn: one exchange of batch-norm sums (doubles) in a training step. Collectives pair by their order on each
// rank, and two layers of equal width exchange equal sizes, so an executor that issued them in another order would
// mix two layers' statistics without any error: every executor issues them in the order below.
struct BnExchange {
  int node = 0;  // the batch norm
  bool backward = false;
  int values = 0;  // doubles summed
  bool operator==(const BnExchange&) const = default;
};
// Node order: forward, each batch norm's two (C + 1, then C) from the first node up; then backward, each one's
// 2C + 1 from the last node down. The CPU executor runs exactly this; the CUDA executor's fusion plan keeps it.
std::vector<BnExchange> sync_batchnorm_exchanges(const Graph& graph);

// --sync-bn: the bytes one training step of `graph` exchanges for its batch-norm statistics (doubles), which the
// backends add to StepResult::allreduce_bytes.
int64_t sync_batchnorm_bytes(const Graph& graph);

// The CUDA backend lives in another library (stoke_engine_cuda depends on stoke_engine); the program that links
// it registers its factory here at start-up (apps/cli.cpp does).
using BackendFactory = std::function<std::unique_ptr<TrainingBackend>(const Graph&, const BackendOptions&)>;
void set_cuda_backend_factory(BackendFactory factory);
// Likewise the NCCL communicator (make_nccl_communicator, in CUDA builds that found NCCL): the launch, and an MPI
// communicator of the same job to hand out NCCL's unique id, or null (then the TCP rendezvous of the launch).
using DeviceCommFactory =
    std::function<std::unique_ptr<dist::Communicator>(const dist::LaunchInfo&, dist::Communicator* bootstrap)>;
void set_nccl_communicator_factory(DeviceCommFactory factory);
const DeviceCommFactory& nccl_communicator_factory();
// Defined only in CUDA builds (engine/cuda/cuda_backend.cpp, library stoke_engine_cuda).
std::unique_ptr<TrainingBackend> make_cuda_backend(const Graph& graph, const BackendOptions& options);
const BackendFactory& cuda_backend_factory();
// The CUDA backend (through the registered factory) or the CPU one.
std::unique_ptr<TrainingBackend> make_backend(bool cuda, const Graph& graph, const BackendOptions& options);

// Benchmarks and tests: while set, make_backend builds this backend whatever the device (e.g. one that does no
// work, to measure what the trainer itself costs per step). An empty factory turns it off.
void set_backend_override(BackendFactory factory);

}  // namespace stoke
