// One captured training step: a CUDA graph recorded from the launches a callable enqueues on a stream, then
// replayed with one cudaGraphLaunch per step (instead of some hundreds of kernel and library launches).
//
// What must hold for the executor's step to be captured (and what the asynchronous backend ensures):
//   - nothing in it synchronises or reads device memory on the host: the non-finite decision, t, lr and the fp16
//     loss scale live on the device (kernels/optimizer.cuh), and the step's results go to device memory;
//   - nothing in it allocates: the arena, the cuDNN workspace and the cuBLASLt workspace are allocated at
//     construction and passed to every call, and the algorithms are chosen before (at construction, for the
//     largest batch — the only size captured);
//   - every pointer and launch argument is the same at every replay: one graph per device input buffer, the batch
//     size fixed at max_batch (a partial batch runs uncaptured), per-step values read from device memory;
//   - kernels (ours and the libraries') are loaded before capture: a few uncaptured warm-up steps run first, so
//     lazy module loading and the libraries' first-call set-up happen outside the capture.
// Capture runs in cudaStreamCaptureModeThreadLocal: other threads (the input pipeline) may keep calling CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>

namespace stoke::cuda {

class CapturedStep {
 public:
  CapturedStep() = default;
  ~CapturedStep();
  CapturedStep(const CapturedStep&) = delete;
  CapturedStep& operator=(const CapturedStep&) = delete;

  bool ready() const { return exec_ != nullptr; }
  // Records what `enqueue` launches on `stream` and instantiates it; nothing runs yet. On any failure the stream
  // is taken out of capture and stoke::Error says what went wrong (the capture status, and what to do).
  void capture(cudaStream_t stream, const std::function<void()>& enqueue);
  void launch(cudaStream_t stream) const;
  void reset() noexcept;  // forgets the graph (after which the next capture records afresh)

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace stoke::cuda
