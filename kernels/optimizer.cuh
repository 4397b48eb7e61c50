// Fused multi-tensor optimizer steps on fp32 master weights, the CUDA side of engine/optimizer.h (same
// semantics, same float operation order: every multiply and add is rounded separately, as the CPU reference
// rounds them, so an fp32 step is bit-identical to Optimizer::step on the same inputs).
//
// One launch updates every parameter: the flat arrays (Graph layout) are cut into chunks of one parameter each
// (OptimizerChunk, uploaded once), one block per chunk, so per-parameter weight decay costs nothing. In the same
// pass the gradient is unscaled (g * inv_scale, the fp16 loss scale's inverse; 1 otherwise) and the half-precision
// copy of the weights that forward/backward read is rewritten (params_half may be null when there is none).
// found_inf (may be null): when *found_inf != 0 the kernel changes nothing: the step is skipped.
//
// The captured step (engine/cuda/executor.h, CUDA graphs): a graph replays the same kernel arguments every time,
// so what changes from step to step — lr, the step count t, the loss scale, whether to skip — lives in device
// memory (StepState, StepControl). prepare_step() turns them into SgdArgs/AdamwArgs (and --ema's decay of t) on the
// device and the update kernels read those (args_device, decay_device) instead of their by-value arguments. The host
// never reads the loss or an overflow flag before the update.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/ema_decay.h"

#if defined(__CUDACC__)
#define STOKE_HOST_DEVICE __host__ __device__
#else
#define STOKE_HOST_DEVICE
#endif

namespace stoke::cuda {

struct OptimizerChunk {
  int64_t begin = 0;         // first element, in the flat arrays
  int32_t count = 0;         // elements (<= kOptimizerChunk)
  float weight_decay = 0.f;  // this parameter's decay (0 for BN affine parameters and biases)
  float lr_mult = 1.f;       // this parameter's factor on the lr; 0: frozen, the block returns before any write
};
inline constexpr int32_t kOptimizerChunk = 8192;

struct SgdArgs {
  float lr = 0.f, momentum = 0.f;
  bool nesterov = false;
  bool first = false;  // the first step: buf = g
  float inv_scale = 1.f;
};

// momentum_buf may be null when momentum == 0. args_device (may be null): read the arguments from device memory
// (written by prepare_step) instead of `a` — a captured graph replays launch arguments unchanged.
template <typename T>
void sgd_step(const OptimizerChunk* chunks, int nchunks, float* params, T* params_half, const float* grads,
              float* momentum_buf, const SgdArgs& a, const int32_t* found_inf, cudaStream_t stream,
              const SgdArgs* args_device = nullptr);

struct AdamwArgs {
  float lr = 0.f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;  // (1.f - beta), computed in float as the CPU does
  float step_size = 0.f;                                   // float(lr / (1 - beta1^t)), computed in double on the host
  float inv_sqrt_bc2 = 1.f;                                // float(1 / sqrt(1 - beta2^t))
  float inv_scale = 1.f;
};

template <typename T>
void adamw_step(const OptimizerChunk* chunks, int nchunks, float* params, T* params_half, const float* grads, float* m,
                float* v, const AdamwArgs& a, const int32_t* found_inf, cudaStream_t stream,
                const AdamwArgs* args_device = nullptr);

// --ema, the twin of engine/optimizer.h's ema_update, over two flat ranges in one launch (the parameters in their
// device layout, then the batch-norm buffers): e = decay * e + (1 - decay) * x, (1 - decay) formed in float. skip
// (device, may be null): when *skip != 0 the step's update was skipped and nothing changes. decay_device (may be
// null): read the decay from device memory instead (StepState::ema_decay, which prepare_step writes: a captured
// graph replays its launch arguments unchanged, and --ema-warmup's decay changes every step).
void ema_update(int64_t n_params, float* ema_params, const float* params, int64_t n_buffers, float* ema_buffers,
                const float* buffers, float decay, const int32_t* skip, cudaStream_t stream,
                const float* decay_device = nullptr);
// Exchanges a[0, n) and b[0, n): evaluation with the EMA swaps it into the trained weights' place and back, exactly.
void swap_values(int64_t n, float* a, float* b, cudaStream_t stream);

// Sets *found_inf = 1 when any of x[0, n) is infinite or NaN (never clears it: zero it before the first check of
// a step). Integer atomics only, so the flag is deterministic.
void check_finite(int64_t n, const float* x, int32_t* found_inf, cudaStream_t stream);

// ---- the step's control state in device memory -----------------------------------------------------------------

// fp16 dynamic loss scaling (PyTorch GradScaler's rules), one definition for the host LossScaler
// (engine/cuda/loss_scaler.h) and the device's prepare_step:
//   not finite: the step was skipped, scale *= backoff (not below kMinLossScale), streak = 0, ++skipped
//   finite:     ++streak; after `interval` finite steps in a row, scale *= growth (not above kMaxLossScale)
inline constexpr float kMinLossScale = 1.f / 65536.f;
inline constexpr float kMaxLossScale = 16777216.f;  // 2^24: far past what fp16 gradients ever need
struct LossScaleRule {
  int32_t interval = 2000;
  float backoff = 0.5f, growth = 2.f;
};
struct LossScaleState {
  float scale = 65536.f;
  int32_t streak = 0;
  int64_t skipped = 0;
};
STOKE_HOST_DEVICE inline void update_loss_scale(LossScaleState& s, const LossScaleRule& r, bool finite) {
  if (!finite) {
    s.scale *= r.backoff;
    if (s.scale < kMinLossScale) s.scale = kMinLossScale;
    s.streak = 0;
    ++s.skipped;
    return;
  }
  if (++s.streak >= r.interval) {
    const float grown = s.scale * r.growth;
    if (grown <= kMaxLossScale) s.scale = grown;
    s.streak = 0;
  }
}

// What the host sets per step: written by set_step_control, or copied into device memory with the batch.
struct StepControl {
  float lr = 0.f;
  int32_t skip = 0;  // fault injection: treat the loss as non-finite (skip the update)
  int32_t stop = 0;  // this process was asked to stop: carried to every rank with the step's sums
};

// What the host reads back per step (one small device-to-host copy, no wait inside the step).
struct StepRecord {
  float loss = 0.f;  // mean loss of the last loss() (written by softmax_cross_entropy)
  int32_t correct = 0;
  int32_t applied = 1;     // the last prepare_step let the update run
  float loss_scale = 1.f;  // the scale the last step's loss was computed with
  int32_t stop = 0;        // data parallel: some rank's control had stop set for this step (from the sums)
};

// Device-resident across steps (one per executor).
struct StepState {
  StepRecord record;
  int32_t found_inf = 0;             // fp16: gradient overflow, set by check_finite
  int32_t skip_update = 0;           // the update kernels' flag: non-finite loss, injected skip or overflow
  int64_t t = 0;                     // optimizer steps applied
  float ema_decay = 0.f;             // --ema: the decay of this step's EMA update (ema_step_decay of t)
  LossScaleState scaler{1.f, 0, 0};  // scale stays 1 without loss scaling
  SgdArgs sgd;
  AdamwArgs adamw;
};

// The constant part of the update (engine/optimizer.h's config); lr comes from StepControl.
struct StepConfig {
  bool adamw = false;
  float momentum = 0.f;
  bool nesterov = false;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  bool loss_scaling = false;  // fp16: read found_inf, move the scale
  LossScaleRule rule;
  // Data parallel: the gradients are the sum over the ranks of each rank's mean over its equal slice of the global
  // batch, so the update multiplies them by 1/world (folded into inv_scale: one multiply, as the CPU backend's).
  float inv_world = 1.f;
  float ema_decay = 0.f;    // --ema (0: off)
  bool ema_warmup = false;  // --ema-warmup
};

// The decision and the arguments of one step: prepare_step's whole body, a plain function so that the host tests
// it (tests/gpu/test_cuda_host.cpp) and the kernel runs exactly this.
STOKE_HOST_DEVICE inline void prepare_step_state(StepState& st, const StepControl& ctl, const StepConfig& c) {
#if defined(__CUDA_ARCH__)
  const bool finite_loss = isfinite(st.record.loss);
  auto dpow = [](double x, double y) { return pow(x, y); };
  auto dsqrt = [](double x) { return sqrt(x); };
#else
  const bool finite_loss = std::isfinite(st.record.loss);
  auto dpow = [](double x, double y) { return std::pow(x, y); };
  auto dsqrt = [](double x) { return std::sqrt(x); };
#endif
  const bool bad_loss = ctl.skip != 0 || !finite_loss;
  const bool overflow = c.loss_scaling && st.found_inf != 0;
  const bool skip = bad_loss || overflow;
  st.skip_update = skip ? 1 : 0;
  st.record.applied = skip ? 0 : 1;
  const float scale = st.scaler.scale;
  st.record.loss_scale = scale;
  const float inv_scale = (c.loss_scaling ? 1.f / scale : 1.f) * c.inv_world;
  if (!skip) ++st.t;
  const int64_t t = st.t > 0 ? st.t : 1;  // a skipped first step: arguments unused, keep them finite
  if (c.ema_decay > 0.f) st.ema_decay = ema_step_decay(t, c.ema_decay, c.ema_warmup);  // unused when skipped
  const float lr = ctl.lr;
  if (c.adamw) {
    // As engine/optimizer.cpp computes them (double, then rounded to float once).
    const double bc1 = 1.0 - dpow(static_cast<double>(c.beta1), static_cast<double>(t));
    const double bc2 = 1.0 - dpow(static_cast<double>(c.beta2), static_cast<double>(t));
    AdamwArgs a;
    a.lr = lr;
    a.beta1 = c.beta1;
    a.beta2 = c.beta2;
    a.eps = c.eps;
    a.one_minus_beta1 = 1.f - c.beta1;
    a.one_minus_beta2 = 1.f - c.beta2;
    a.step_size = static_cast<float>(lr / bc1);
    a.inv_sqrt_bc2 = static_cast<float>(1.0 / dsqrt(bc2));
    a.inv_scale = inv_scale;
    st.adamw = a;
  } else {
    SgdArgs a;
    a.lr = lr;
    a.momentum = c.momentum;
    a.nesterov = c.nesterov;
    a.first = t == 1;
    a.inv_scale = inv_scale;
    st.sgd = a;
  }
  // A non-finite loss never reached the scaler before the update moved onto the device: it still does not.
  if (c.loss_scaling && !bad_loss) update_loss_scale(st.scaler, c.rule, !overflow);
}

// Data parallel: what one all-reduce carries besides the gradients, as the CPU backend's step does: {this rank's
// loss x n (NaN when that loss is not finite or the step is injected-skipped), correct, n}. After the sum the
// record holds the global batch's loss and correct count, and a non-finite loss on any rank is non-finite on
// every rank, so prepare_step takes the same skip decision everywhere. (fp16 overflow needs nothing more:
// check_finite runs on the summed gradients, which are the same on every rank.)
constexpr int kStepSums = 4;  // loss x n, correct, n, stop requests
STOKE_HOST_DEVICE inline void pack_step_sums_state(const StepRecord& rec, const StepControl& ctl, int n, float* sums) {
#if defined(__CUDA_ARCH__)
  const bool finite_loss = isfinite(rec.loss);
  const float nan = __int_as_float(0x7fc00000);
#else
  const bool finite_loss = std::isfinite(rec.loss);
  const float nan = std::numeric_limits<float>::quiet_NaN();
#endif
  sums[0] = ctl.skip == 0 && finite_loss ? rec.loss * static_cast<float>(n) : nan;
  sums[1] = static_cast<float>(rec.correct);
  sums[2] = static_cast<float>(n);
  sums[3] = ctl.stop != 0 ? 1.f : 0.f;
}
STOKE_HOST_DEVICE inline void unpack_step_sums_state(StepRecord& rec, const float* sums) {
  rec.loss = sums[0] / sums[2];
  rec.correct = static_cast<int32_t>(sums[1] + 0.5f);  // an exact small integer: counts stay below 2^24
  rec.stop = sums[3] > 0.5f ? 1 : 0;
}

// One thread: ctl = {lr, skip}.
void set_step_control(StepControl* ctl, float lr, bool skip, cudaStream_t stream);
// One thread, after the loss (and, with loss scaling, check_finite of the gradients): decides skip_update
// (ctl->skip, a non-finite record.loss, or found_inf), counts t when the update will run, writes sgd/adamw
// arguments as the host used to compute them (bias corrections in double) and the record's applied/loss_scale,
// then moves the loss scale (not on a non-finite loss: as before, such a step never reached the scaler).
void prepare_step(StepState* state, const StepControl* ctl, const StepConfig& config, cudaStream_t stream);
// One thread each: pack_step_sums_state into sums (device, kStepSums floats) after the loss; unpack after the sum.
void pack_step_sums(const StepState* state, const StepControl* ctl, int n, float* sums, cudaStream_t stream);
void unpack_step_sums(StepState* state, const float* sums, cudaStream_t stream);

}  // namespace stoke::cuda
