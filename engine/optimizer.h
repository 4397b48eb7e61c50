// Optimizers over the flat parameter array, and learning-rate schedules.
//
// Semantics follow PyTorch so a user's hyper-parameters mean the same here:
//   SGD:   g = grad + wd*p;  buf = momentum*buf + g (buf = g on the first step);
//          g = nesterov ? g + momentum*buf : buf;  p -= lr*g
//   AdamW: p -= lr*wd*p;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
//          p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
// Weight decay applies only to parameters whose ParamInfo says so (not to BN affine parameters or biases).
// A parameter's lr multiplier scales the lr of its update (discriminative fine-tuning); 0 freezes it: it and its
// moment buffers are left untouched, bit for bit (an lr of 0 alone would still apply AdamW's decay).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/graph.h"

namespace stoke {

enum class OptimizerKind { sgd, adamw };
OptimizerKind parse_optimizer(const std::string& s);  // throws UserError
const char* to_string(OptimizerKind k);

// --freeze: which parameters train. backbone: only the classifier (the last linear layer).
enum class Freeze { none, backbone };
Freeze parse_freeze(const std::string& s);  // throws UserError
const char* to_string(Freeze f);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::sgd;
  float momentum = 0.9f;
  bool nesterov = true;
  float weight_decay = 5e-4f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

class Optimizer {
 public:
  // lr_mult: one factor per parameter (empty: all 1; 0: frozen).
  Optimizer(const OptimizerConfig& cfg, const std::vector<ParamInfo>& params, int64_t num_params,
            std::vector<float> lr_mult = {});

  // One update of params from grads (grads are already divided by the batch, as the loss is a mean).
  void step(float* params, const float* grads, float lr);

  const OptimizerConfig& config() const { return cfg_; }
  int64_t steps() const { return t_; }
  // State for checkpoints: the moment buffers (sgd: momentum; adamw: m then v) and the step count.
  std::vector<float>& state() { return state_; }
  const std::vector<float>& state() const { return state_; }
  void set_steps(int64_t t) { t_ = t; }

 private:
  OptimizerConfig cfg_;
  std::vector<ParamInfo> params_;
  int64_t n_;
  int64_t t_ = 0;
  std::vector<float> state_;
  std::vector<float> lr_mult_;
};

// --ema, the CPU reference of kernels/optimizer.cuh's ema_update: ema[i] = decay * ema[i] + (1 - decay) * x[i],
// with (1 - decay) formed once in float and each product and the sum rounded on its own.
void ema_update(float* ema, const float* x, int64_t n, float decay);

// The decay of applied update t (1-based, counted from the run's start and carried across --resume). Without
// warm-up: `decay`. --ema-warmup: timm's ModelEmaV3 warm-up with its defaults (warmup_gamma 1, warmup_power 2/3,
// min_decay 0, no update_after_step): 1 - (1 + (t - 1))^(-2/3) in double, clamped to [0, decay], rounded to float
// once; so the first update copies the weights (decay 0). Defined once, for the device too: kernels/ema_decay.h.
float ema_decay_at(int64_t t, float decay, bool warmup);

// Scales g so its global L2 norm is at most max_norm (no-op when already below); returns the norm before.
// Deterministic: fixed chunking, partial sums in order.
double clip_grad_norm(float* g, int64_t n, double max_norm);

enum class ScheduleKind { constant, cosine, onecycle };
ScheduleKind parse_schedule(const std::string& s);  // throws UserError
const char* to_string(ScheduleKind k);

// lr(step) for step in [0, total): an optional linear warm-up from lr*warmup_start_factor to lr over
// warmup_steps, then: constant; cosine decay to lr*final_factor; or one-cycle (PyTorch OneCycleLR with
// cosine annealing: from lr/div_factor up to lr over pct_start of the run, then down to lr/(div*final_div)).
struct Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  float lr = 0.1f;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;
  float warmup_start_factor = 0.1f;
  float final_factor = 0.0f;      // cosine: end at lr*final_factor
  float pct_start = 0.25f;        // one-cycle
  float div_factor = 25.f;        // one-cycle
  float final_div_factor = 1e4f;  // one-cycle
  float at(int64_t step) const;
};

}  // namespace stoke
