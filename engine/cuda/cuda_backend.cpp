// The CUDA backend behind engine/backend.h: CudaExecutor driven one synchronous step at a time.
//
// Each train_step copies the batch (pixels, labels, flips) into the executor's staging, runs forward, loss and
// backward, then reads the loss back (one small synchronisation) so that a non-finite bf16/fp32 loss skips the
// update exactly as on the CPU; fp16 overflow is decided on the device by the executor's scaler. The overlapped,
// graph-captured step without per-step synchronisation is the next step.
#include <cuda_profiler_api.h>

#include <cmath>
#include <limits>

#include "engine/backend.h"
#include "base/cuda_check.h"
#include "engine/cuda/executor.h"
#include "base/error.h"

namespace stoke {
namespace {

class CudaBackend final : public TrainingBackend {
 public:
  CudaBackend(const Graph& g, const BackendOptions& o) : graph_(g), opt_(o), ex_(g, o.max_batch, options(o)) {
    ex_.set_normalization(o.mean, o.stdev);
    logits_.resize(static_cast<size_t>(o.max_batch) * static_cast<size_t>(ex_.outputs()));
  }

  static CudaExecutorOptions options(const BackendOptions& o) {
    if (o.clip_grad_norm > 0.f)
      throw UserError("--clip-grad-norm is not implemented on the CUDA backend yet: use --device cpu or drop the flag");
    CudaExecutorOptions x;
    x.precision = cuda::parse_precision(o.precision);
    x.optimizer = o.optimizer;
    x.deterministic = o.deterministic;
    return x;
  }

  std::string name() const override { return "cuda"; }
  std::string describe() const override { return ex_.describe(); }
  bool profiler(bool on) override {
    if (on) {
      CUDA_CHECK(cudaDeviceSynchronize());  // the window starts with nothing of earlier steps in flight
      CUDA_CHECK(cudaProfilerStart());
    } else {
      CUDA_CHECK(cudaDeviceSynchronize());
      CUDA_CHECK(cudaProfilerStop());
    }
    return true;
  }

  void set_state(const std::vector<float>& params, const std::vector<float>& buffers,
                 const std::vector<float>& optimizer_state, int64_t optimizer_steps) override {
    ex_.upload_params(params.data());
    ex_.upload_buffers(buffers.data());
    ex_.upload_optimizer_state(optimizer_state, optimizer_steps);
  }

  void get_state(std::vector<float>& params, std::vector<float>& buffers, std::vector<float>& optimizer_state,
                 int64_t& optimizer_steps) override {
    params.resize(static_cast<size_t>(graph_.num_params()));
    buffers.resize(static_cast<size_t>(graph_.num_buffers()));
    ex_.download_params(params.data());
    ex_.download_buffers(buffers.data());
    ex_.download_optimizer_state(optimizer_state, optimizer_steps);
  }

  void stage(int n, const uint8_t* pixels, const int32_t* labels, const uint8_t* flips) {
    const size_t px = static_cast<size_t>(n) * static_cast<size_t>(graph_.input_shape().size());
    cudaStream_t s = ex_.stream();
    CUDA_CHECK(cudaMemcpyAsync(ex_.device_pixels(), pixels, px, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(ex_.device_labels(), labels, static_cast<size_t>(n) * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    if (flips) CUDA_CHECK(cudaMemcpyAsync(ex_.device_flips(), flips, static_cast<size_t>(n), cudaMemcpyHostToDevice, s));
  }

  StepOutcome train_step(int n, const uint8_t* pixels, const int32_t* labels, const uint8_t* flips, float lr,
                         bool skip) override {
    stage(n, pixels, labels, flips);
    ex_.forward(n, ex_.device_pixels(), flips ? ex_.device_flips() : nullptr, true);
    ex_.loss(n, ex_.device_labels(), opt_.label_smoothing, true);
    ex_.backward();
    CudaStepStats st = ex_.stats();  // the host buffers may be reused from here on
    StepOutcome out;
    out.loss = skip ? std::numeric_limits<float>::infinity() : st.loss;
    out.correct = st.correct;
    out.loss_scale = st.loss_scale;
    if (!std::isfinite(out.loss)) return out;
    ex_.step(lr);
    out.applied = ex_.stats().step_applied;
    return out;
  }

  const float* eval_batch(int n, const uint8_t* pixels, const int32_t* labels, float* loss) override {
    stage(n, pixels, labels, nullptr);
    ex_.forward(n, ex_.device_pixels(), nullptr, false);
    ex_.loss(n, ex_.device_labels(), 0.f, false);
    *loss = ex_.stats().loss;
    ex_.download_logits(logits_.data());
    return logits_.data();
  }

 private:
  const Graph& graph_;
  BackendOptions opt_;
  CudaExecutor ex_;
  std::vector<float> logits_;
};

}  // namespace

std::unique_ptr<TrainingBackend> make_cuda_backend(const Graph& graph, const BackendOptions& options) {
  return std::make_unique<CudaBackend>(graph, options);
}

}  // namespace stoke
