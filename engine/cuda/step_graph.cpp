#include "engine/cuda/step_graph.h"

#include "base/cuda_check.h"
#include "base/error.h"

namespace stoke::cuda {
namespace {

// Leaves capture mode whatever state the capture is in, discarding what was recorded.
void abandon_capture(cudaStream_t stream) noexcept {
  cudaGraph_t g = nullptr;
  (void)cudaStreamEndCapture(stream, &g);
  if (g) CUDA_CHECK_NOEXCEPT(cudaGraphDestroy(g));
  (void)cudaGetLastError();  // an invalidated capture leaves its (non-sticky) error behind: not the next call's
}

const char* kAdvice =
    "\n  the training step could not be captured into a CUDA graph; train with --no-graphs (or STOKE_NO_GRAPHS=1) "
    "and report this";

}  // namespace

CapturedStep::~CapturedStep() { reset(); }

void CapturedStep::reset() noexcept {
  if (exec_) CUDA_CHECK_NOEXCEPT(cudaGraphExecDestroy(exec_));
  exec_ = nullptr;
}

void CapturedStep::capture(cudaStream_t stream, const std::function<void()>& enqueue) {
  reset();
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue();
  } catch (const Error& e) {
    abandon_capture(stream);
    throw Error(str(e.what(), kAdvice));
  } catch (...) {
    abandon_capture(stream);
    throw;
  }
  // A call that is illegal during capture (a synchronisation, a legacy-stream dependency) invalidates the capture
  // without necessarily failing itself; EndCapture is where that shows.
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  const cudaError_t query = cudaStreamIsCapturing(stream, &status);
  if (query != cudaSuccess || status != cudaStreamCaptureStatusActive) {
    abandon_capture(stream);
    throw Error(str("capture status ", static_cast<int>(status), " after enqueueing the step (",
                    cudaGetErrorName(query), ")", kAdvice));
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (end != cudaSuccess || graph == nullptr) {
    if (graph) CUDA_CHECK_NOEXCEPT(cudaGraphDestroy(graph));
    (void)cudaGetLastError();
    throw Error(str(cuda_error_text(end, "cudaStreamEndCapture", __FILE__, __LINE__), kAdvice));
  }
  const cudaError_t inst = cudaGraphInstantiate(&exec_, graph, 0);
  CUDA_CHECK_NOEXCEPT(cudaGraphDestroy(graph));  // the executable graph is independent of it
  if (inst != cudaSuccess) {
    exec_ = nullptr;
    throw Error(str(cuda_error_text(inst, "cudaGraphInstantiate", __FILE__, __LINE__), kAdvice));
  }
}

void CapturedStep::launch(cudaStream_t stream) const {
  STOKE_CHECK(exec_ != nullptr, "launching a step graph that was never captured");
  CUDA_CHECK(cudaGraphLaunch(exec_, stream));
}

}  // namespace stoke::cuda
