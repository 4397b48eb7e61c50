// Runs a Graph on the GPU: the CUDA twin of engine/cpu/executor.h (forward and backward over the nodes), and beside
// it the device's parts of a step (engine/train_step.h): input normalisation, the loss, the optimizer step and the
// fp16 loss scaler, which share its arena and its stream, so a step is calls that only enqueue work on one stream.
//
// Memory: everything lives in ONE device arena sized at construction for `max_batch` (engine/cuda/arena.h):
// fp32 master weights, their bf16/fp16 copies, fp32 gradients, optimizer state, BN buffers, the uint8 input
// staging, the cuDNN / cuBLASLt / reduction workspaces, and one region where activations, their gradients and
// saved tensors reuse memory by liveness (engine/cuda/arena_plan.h: the layout, also counted without a device).
// Nothing is allocated on the device afterwards (cuDNN algorithms for a batch size not seen at
// construction are chosen on first use, from heuristics, within the planned workspace).
//
// Precision (CudaExecutorOptions::precision): activations and the weight copies read by forward/backward are
// bf16 (automatic on sm_80+), fp16 (automatic below; dynamic loss scaling), or fp32. Batch-norm statistics,
// softmax and the loss, gradients, optimizer state and the master weights are fp32 always.
//
// Conventions as on the CPU: NHWC activations, the Graph's flat parameter layout (one fp32 array, offsets from
// Graph::params()), parameter gradients accumulate within a backward (zeroed at its start), PyTorch's SGD/AdamW
// semantics (engine/optimizer.h). Batch norm followed by ReLU, or by a residual add (and ReLU), runs as one fused
// kernel pass; the graph is not changed.
//
// A training step, as the trainer drives it (all calls enqueue on stream(); only stats() waits):
//
//   CudaExecutor ex(graph, batch, opts);           // once: plans and allocates the arena, picks cuDNN algorithms
//   ex.upload_params(params.data());               // fp32 masters in Graph layout (also makes the half copies)
//   ex.upload_buffers(buffers.data());             // BN running statistics
//   ex.set_normalization(mean, stdev);             // per channel, of pixel/255
//   for each batch:
//     copy pixels (uint8 NHWC), labels (int32) and flip flags (uint8) into ex.device_pixels() / device_labels()
//       / device_flips() — or anywhere on the device — e.g. cudaMemcpyAsync on a copy stream + an event that
//       ex.stream() waits on
//     ex.normalize(n, pixels, flips);               // flips, (pixel/255 - mean) / std, to the storage type
//     ex.forward(n, /*train=*/true);                // the graph
//     ex.loss(n, labels, label_smoothing, /*train=*/true);  // fused softmax-CE: loss, correct, scaled dlogits
//     ex.backward();
//     ex.step(lr);                                  // finite decision on the device; fused unscale + SGD/AdamW
//     CudaStepStats s = ex.stats();                 // waits for the stream: loss, correct, step applied, scale
//   evaluation: normalize(n, pixels, nullptr); forward(n, false); loss(n, labels, 0, false); stats()
//   checkpoints: download_params / download_buffers / download_optimizer_state (and the upload_ twins to resume)
//
// Nothing inside a step waits for the host, in any precision: whether the update runs (a non-finite loss, an
// injected skip, fp16 gradient overflow), the step count t, the fp16 loss scale and lr all live in device memory
// (kernels/optimizer.cuh: StepState, StepControl), so a step enqueues the same launches every time and can be
// captured into a CUDA graph. step(control) reads lr/skip from a device StepControl (the asynchronous backend
// copies it with the batch); step(lr) writes the executor's own one first. device_record() is where the step's
// loss, correct count, applied flag and loss scale land on the device (the backend copies it to pinned memory).
// Not thread-safe: one host thread drives an executor. The Graph must outlive it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/cuda/grad_sync.h"
#include "engine/cuda/precision.h"
#include "engine/cuda/runtime.h"
#include "engine/graph.h"
#include "engine/optimizer.h"
#include "kernels/augment.h"
#include "kernels/batchnorm.cuh"
#include "kernels/mix.h"
#include "kernels/optimizer.cuh"

namespace stoke {

struct CudaExecutorOptions {
  cuda::Precision precision = cuda::Precision::automatic;
  OptimizerConfig optimizer;    // the update step() applies (its state is planned in the arena)
  bool deterministic = false;   // cuDNN: only algorithms it reports deterministic
  bool conv_benchmark = false;  // time cuDNN's candidates at construction instead of its heuristics
  size_t conv_workspace_limit = size_t{256} << 20;
  int device = 0;
  float loss_scale = 65536.f;             // fp16: initial dynamic loss scale
  int loss_scale_growth_interval = 2000;  // fp16: finite steps before the scale doubles
  // Fine-tuning, as BackendOptions has them: per parameter a factor on the lr (0: frozen, no dW/db in backward),
  // per node a batch norm that runs in eval mode while training. Empty: all train, none in eval mode.
  std::vector<float> lr_mult;
  std::vector<char> bn_eval;
  // --ema: step() also moves the EMA (kernels/optimizer.cuh ema_update) after the update, in the same stream. 0: off.
  float ema_decay = 0.f;
  bool ema_warmup = false;  // --ema-warmup: the decay of each step from its t (StepState::ema_decay)
};

struct CudaStepStats {
  float loss = 0.f;          // mean loss of the last loss() call
  int64_t correct = 0;       // rows of that batch whose first arg-max is the label
  bool step_applied = true;  // false when the fp16 overflow check skipped the last step()
  float loss_scale = 1.f;    // the scale the last training loss() used (1 unless fp16)
};

class CudaExecutor {
 public:
  // Throws stoke::Error when there is no usable device or the arena does not fit (naming bytes needed and free),
  // UserError for an impossible precision request (bf16 below sm_80).
  CudaExecutor(const Graph& graph, int max_batch, const CudaExecutorOptions& options = {});
  ~CudaExecutor();
  CudaExecutor(const CudaExecutor&) = delete;
  CudaExecutor& operator=(const CudaExecutor&) = delete;

  cuda::Precision precision() const;
  const cuda::DeviceInfo& device() const;
  cudaStream_t stream() const;
  size_t arena_bytes() const;
  int max_batch() const;
  int outputs() const;  // classes
  // One line: device, precision, arena size, the chosen cuDNN algorithms count.
  std::string describe() const;
  // The cuDNN algorithm chosen for every convolution shape, one line each.
  std::string conv_algorithms() const;

  // ---- state in the Graph's flat layout (host arrays); downloads synchronise the stream ----
  void upload_params(const float* params);  // num_params fp32 masters; the half copies are refreshed
  void upload_buffers(const float* buffers);
  void download_params(float* params) const;
  void download_buffers(float* buffers) const;
  // The fp32 gradients of the last backward(): multiplied by the loss scale in fp16 mode (see stats()).
  void download_grads(float* grads) const;
  // engine/optimizer.h's layout: SGD with momentum: num_params momentum values; AdamW: m then v (2 x num_params);
  // plain SGD: empty. `steps` is the optimizer's step count t.
  void upload_optimizer_state(const std::vector<float>& state, int64_t steps);
  void download_optimizer_state(std::vector<float>& state, int64_t& steps) const;
  int64_t optimizer_steps() const;
  // --ema (options.ema_decay > 0): the averaged parameters (Graph layout) and buffers. swap_ema() exchanges them with
  // the trained ones on the device (evaluation runs on the EMA between two swaps); only between steps.
  void upload_ema(const float* params, const float* buffers);
  void download_ema(float* params, float* buffers) const;
  void seed_ema();  // the EMA := the trained parameters and buffers, copied on the device in stream order
  void swap_ema();  // in stream order: nothing waits for it
  // Per-channel mean and std of pixel/255 (the trainer's normalisation).
  void set_normalization(const std::vector<float>& mean, const std::vector<float>& stdev);

  // ---- staging for one batch (max_batch samples), device memory in the arena ----
  uint8_t* device_pixels();  // max_batch x H x W x C
  int32_t* device_labels();  // max_batch
  uint8_t* device_flips();   // max_batch, nonzero = mirror horizontally

  // ---- one step (engine/train_step.h names the phases; forward and backward are the graph only) ----
  // uint8 NHWC pixels (device pointers; flips may be null), mirrored where flagged and normalised, into the graph's
  // input at the storage type (channels padded on the device where it pays).
  void normalize(int n, const uint8_t* pixels, const uint8_t* flips);
  // The same with one SampleTransform per sample (device memory, kernels/augment.h), which replaces the flips: the
  // augmentation and the normalisation in one pass (cuda::augment_transform_normalize). Null: as above.
  void normalize(int n, const uint8_t* pixels, const uint8_t* flips, const SampleTransform* transforms);
  // Mixup or cutmix of the normalised input in place, sample i with sample n-1-i (kernels/mix.cuh); mix: device
  // memory, read when the kernel runs. After normalize(), before forward().
  void mix_input(int n, const BatchMix* mix);
  // The graph over the input normalize() wrote (the same n). train: batch statistics (and their running averages are
  // updated) and everything backward needs is kept; eval: running statistics.
  void forward(int n, bool train);
  // The same from an already normalised fp32 host batch (n x H x W x C) — for tests and comparisons; it copies
  // synchronously and is not meant for the training loop.
  void forward_normalized_host(int n, const float* x, bool train);
  // Softmax cross-entropy of the last forward's logits against device labels. train: also the gradient (times the
  // loss scale) that backward() starts from.
  // mix (device memory, may be null): against the batch's mixed targets (kernels/softmax_ce.cuh).
  void loss(int n, const int32_t* labels, float label_smoothing, bool train, const BatchMix* mix = nullptr);
  void backward();
  void step(float lr);
  void step(const cuda::StepControl* control);  // control: device memory, read when the step runs
  // Device memory holding the last loss() / step()'s results (valid until the next step is enqueued).
  const cuda::StepRecord* device_record() const;
  // Waits for the stream and returns the last loss()'s results and whether the last step() was applied.
  CudaStepStats stats();
  // Logits of the last forward, n x classes, as fp32 (synchronises).
  void download_logits(float* logits) const;

  // ---- data parallel (engine/cuda/grad_sync.h drives these; all enqueue only) ----
  // Each parameter's gradient in the device layout and the backward node that finishes it.
  std::vector<cuda::GradSource> grad_sources() const;
  float* device_grads();              // the fp32 gradient buffer, device layout (gaps included)
  int64_t device_grad_count() const;  // its length in floats
  // Called on the host after backward() has enqueued the work of each node, from the output down to node 1 (every
  // node, also one that had no gradient to propagate). Empty: none.
  void set_backward_hook(std::function<void(int node)> hook);
  // --sync-bn: training-mode batch norm takes the statistics of every process's batch, summed through `across`
  // (kernels/batchnorm.cuh; it enqueues on the compute stream it is given). Empty (the default): this process's.
  // Only between steps, and before the step graph is captured.
  void set_sync_batchnorm(cuda::DeviceChannelAllReduce across);
  // The update's gradient factor: 1/world (the summed gradients are world times the global batch's mean).
  void set_inv_world(float inv_world);
  // kernels/optimizer.cuh's step sums: pack after loss() (n = that loss's rows), unpack after the all-reduce,
  // before step().
  void pack_step_sums(const cuda::StepControl* control, float* sums);
  void unpack_step_sums(const float* sums);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace stoke
