// What the trainer drives: one training step and one evaluation batch on some device. The CPU backend
// (engine/cpu/cpu_backend.cpp) runs the reference ops; the CUDA backend (engine/cuda/cuda_backend.cpp, only in CUDA
// builds) runs CudaExecutor. Both take uint8 NHWC batches exactly as the input pipeline produces them and do
// the normalisation (and flips) themselves; both keep PyTorch's optimizer semantics and the Graph's flat
// parameter layout, so checkpoints are interchangeable.
//
// Calls are synchronous in effect: when a call returns, the caller may reuse the pixel and label memory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/optimizer.h"

namespace stoke {

struct BackendOptions {
  int max_batch = 1;
  OptimizerConfig optimizer;
  std::vector<float> mean, stdev;  // per channel, of pixel/255
  float label_smoothing = 0.f;
  float clip_grad_norm = 0.f;      // 0 = off
  std::string precision = "auto";  // CUDA: auto | bf16 | fp16 | fp32 (the CPU backend is fp32)
  bool deterministic = false;      // CUDA: deterministic cuDNN algorithms
};

struct StepOutcome {
  float loss = 0.f;      // the batch's mean loss (inf/NaN when it was not finite)
  int64_t correct = 0;   // rows whose arg-max is the label
  bool applied = false;  // the parameters were updated (false: non-finite loss, or fp16 overflow)
  float loss_scale = 1.f;
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
  // One training step on n samples (uint8 NHWC pixels, labels, optional per-sample flip flags, host memory).
  // `skip` forces the update to be skipped and the loss reported as infinite (fault injection in tests).
  virtual StepOutcome train_step(int n, const uint8_t* pixels, const int32_t* labels, const uint8_t* flips, float lr,
                                 bool skip) = 0;
  // Evaluation-mode forward of n samples; returns the logits (n x classes, host, valid until the next call) and
  // the batch's mean loss in *loss.
  virtual const float* eval_batch(int n, const uint8_t* pixels, const int32_t* labels, float* loss) = 0;
  // --profile-steps: start / stop the device profiler's capture (CUDA: cudaProfilerStart/Stop, for
  // `nsys --capture-range=cudaProfilerApi`). Returns false when the backend has no device profiler.
  virtual bool profiler(bool /*on*/) { return false; }
};

std::unique_ptr<TrainingBackend> make_cpu_backend(const Graph& graph, const BackendOptions& options);

// The CUDA backend lives in another library (stoke_engine_cuda depends on stoke_engine); the program that links
// it registers its factory here at start-up (apps/cli.cpp does).
using BackendFactory = std::function<std::unique_ptr<TrainingBackend>(const Graph&, const BackendOptions&)>;
void set_cuda_backend_factory(BackendFactory factory);
// Defined only in CUDA builds (engine/cuda/cuda_backend.cpp, library stoke_engine_cuda).
std::unique_ptr<TrainingBackend> make_cuda_backend(const Graph& graph, const BackendOptions& options);
const BackendFactory& cuda_backend_factory();

}  // namespace stoke
