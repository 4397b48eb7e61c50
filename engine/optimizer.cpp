#include "engine/optimizer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "base/error.h"
#include "base/parallel.h"
#include "kernels/ema_decay.h"

namespace stoke {

OptimizerKind parse_optimizer(const std::string& s) {
  if (s == "sgd") return OptimizerKind::sgd;
  if (s == "adamw") return OptimizerKind::adamw;
  throw UserError(str("unknown optimizer '", s, "' (expected sgd or adamw)"));
}
const char* to_string(OptimizerKind k) { return k == OptimizerKind::sgd ? "sgd" : "adamw"; }

Freeze parse_freeze(const std::string& s) {
  if (s == "none") return Freeze::none;
  if (s == "backbone") return Freeze::backbone;
  throw UserError(str("unknown --freeze '", s, "' (expected backbone or none)"));
}
const char* to_string(Freeze f) { return f == Freeze::none ? "none" : "backbone"; }

ScheduleKind parse_schedule(const std::string& s) {
  if (s == "constant") return ScheduleKind::constant;
  if (s == "cosine") return ScheduleKind::cosine;
  if (s == "onecycle") return ScheduleKind::onecycle;
  throw UserError(str("unknown schedule '", s, "' (expected constant, cosine or onecycle)"));
}
const char* to_string(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::constant: return "constant";
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::onecycle: return "onecycle";
  }
  return "?";
}

Optimizer::Optimizer(const OptimizerConfig& cfg, const std::vector<ParamInfo>& params, int64_t num_params,
                     std::vector<float> lr_mult)
    : cfg_(cfg), params_(params), n_(num_params), lr_mult_(std::move(lr_mult)) {
  STOKE_CHECK(lr_mult_.empty() || lr_mult_.size() == params.size(), "one lr multiplier per parameter");
  size_t per = static_cast<size_t>(num_params);
  if (cfg.kind == OptimizerKind::sgd && cfg.momentum != 0.f) state_.assign(per, 0.f);
  if (cfg.kind == OptimizerKind::adamw) state_.assign(2 * per, 0.f);
}

void Optimizer::step(float* params, const float* grads, float base_lr) {
  ++t_;
  const OptimizerConfig c = cfg_;
  const bool first = t_ == 1;
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), static_cast<double>(t_));
  // Element-wise and independent: any split over threads gives the same bits.
  parallel_tasks(static_cast<int64_t>(params_.size()), [&](int64_t pi) {
    const ParamInfo& info = params_[static_cast<size_t>(pi)];
    const float mult = lr_mult_.empty() ? 1.f : lr_mult_[static_cast<size_t>(pi)];
    if (mult == 0.f) return;          // frozen: no decay, no moment update
    const float lr = base_lr * mult;  // x 1 is exact: an unscaled parameter gets the bits it always had
    const float wd = info.weight_decay ? c.weight_decay : 0.f;
    float* p = params + info.offset;
    const float* g = grads + info.offset;
    if (c.kind == OptimizerKind::sgd) {
      if (c.momentum == 0.f) {
        for (int64_t i = 0; i < info.size; ++i) p[i] -= lr * (g[i] + wd * p[i]);
        return;
      }
      float* buf = state_.data() + info.offset;
      for (int64_t i = 0; i < info.size; ++i) {
        float gi = g[i] + wd * p[i];
        buf[i] = first ? gi : c.momentum * buf[i] + gi;
        float d = c.nesterov ? gi + c.momentum * buf[i] : buf[i];
        p[i] -= lr * d;
      }
    } else {
      float* m = state_.data() + info.offset;
      float* v = state_.data() + n_ + info.offset;
      const float step_size = static_cast<float>(base_lr / bc1) * mult;  // as the CUDA kernel forms it
      const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
      for (int64_t i = 0; i < info.size; ++i) {
        p[i] -= lr * wd * p[i];
        m[i] = c.beta1 * m[i] + (1.f - c.beta1) * g[i];
        v[i] = c.beta2 * v[i] + (1.f - c.beta2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + c.eps);
      }
    }
  });
}

void ema_update(float* ema, const float* x, int64_t n, float decay) {
  const float keep = decay, take = 1.f - decay;
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {  // element-wise: any split gives the same bits
    for (int64_t i = b; i < e; ++i) {
      const float kept = keep * ema[i], taken = take * x[i];
      ema[i] = kept + taken;
    }
  });
}

float ema_decay_at(int64_t t, float decay, bool warmup) { return ema_step_decay(t, decay, warmup); }

double clip_grad_norm(float* g, int64_t n, double max_norm) {
  const int64_t chunks = std::clamp<int64_t>(n / 65536, 1, 64);
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  parallel_tasks(chunks, [&](int64_t t) {
    double s = 0;
    for (int64_t i = n * t / chunks; i < n * (t + 1) / chunks; ++i) s += static_cast<double>(g[i]) * g[i];
    part[static_cast<size_t>(t)] = s;
  });
  double sum = 0;
  for (double p : part) sum += p;
  const double norm = std::sqrt(sum);
  if (norm > max_norm) {
    const auto k = static_cast<float>(max_norm / (norm + 1e-12));
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) g[i] *= k;
    });
  }
  return norm;
}

float Schedule::at(int64_t step) const {
  constexpr double pi = 3.14159265358979323846;
  const double base = lr;
  if (kind == ScheduleKind::onecycle) {
    // PyTorch OneCycleLR (anneal_strategy="cos", three_phase=False). Its own warm-up replaces warmup_steps.
    const double initial = base / div_factor, final_lr = initial / final_div_factor;
    const double up = std::max(1.0, static_cast<double>(pct_start) * static_cast<double>(total_steps) - 1.0);
    const double s = static_cast<double>(step);
    auto cosine = [&](double from, double to, double frac) {
      return to + (from - to) * 0.5 * (1.0 + std::cos(pi * frac));
    };
    if (s <= up) return static_cast<float>(cosine(initial, base, s / up));
    const double down = std::max(1.0, static_cast<double>(total_steps - 1) - up);
    return static_cast<float>(cosine(base, final_lr, std::min(1.0, (s - up) / down)));
  }
  if (step < warmup_steps) {
    const double f = warmup_start_factor +
                     (1.0 - warmup_start_factor) * static_cast<double>(step) / static_cast<double>(warmup_steps);
    return static_cast<float>(base * f);
  }
  if (kind == ScheduleKind::constant) return lr;
  const double span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double frac = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  const double lo = base * final_factor;
  return static_cast<float>(lo + (base - lo) * 0.5 * (1.0 + std::cos(pi * frac)));
}

}  // namespace stoke
