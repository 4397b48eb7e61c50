// CPU reference of batch mixing, and the host's per-batch draw (kernels/mix.h). Built with -ffp-contract=off: the
// blend's products and sums are rounded apart, as the CUDA twin's __fmul_rn/__fadd_rn are.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "base/error.h"
#include "base/parallel.h"
#include "base/rng.h"
#include "kernels/mix.h"

namespace stoke {
namespace {

constexpr uint64_t kMixPurpose = 0x313978;
// Counters of the draw: one per decision; the Beta draws' rejection loops take theirs from kGammaCounters on.
constexpr uint64_t kMixOrNot = 0, kSwitch = 1, kCentreY = 2, kCentreX = 3, kGammaCounters = 16;

// Uniform in (0, 1) with 53 bits (never 0 or 1: logs stay finite).
double open01(uint64_t key, uint64_t counter) {
  return (static_cast<double>(mix64(key ^ mix64(counter)) >> 11) + 0.5) * 0x1p-53;
}

// log of a Gamma(a, 1) draw (Marsaglia and Tsang), its counters from *c on. Below a = 1 through Gamma(a + 1) times
// U^(1/a), in logs, so a tiny alpha (draws near 0 or 1) neither underflows nor gives 0/0.
double log_gamma_draw(double a, uint64_t key, uint64_t* c) {
  double boost = 0;
  if (a < 1) {
    boost = std::log(open01(key, (*c)++)) / a;
    a += 1;
  }
  const double d = a - 1.0 / 3.0, s = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    const double u1 = open01(key, (*c)++), u2 = open01(key, (*c)++);
    const double x = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);  // Box-Muller
    const double v = 1.0 + s * x;
    if (v <= 0) continue;
    const double v3 = v * v * v, u = open01(key, (*c)++);
    if (std::log(u) < 0.5 * x * x + d - d * v3 + d * std::log(v3)) return std::log(d * v3) + boost;
  }
}

// Beta(a, a) = G1 / (G1 + G2) = 1 / (1 + exp(log G2 - log G1)).
float beta_draw(float alpha, uint64_t key) {
  uint64_t c = kGammaCounters;
  const double g1 = log_gamma_draw(alpha, key, &c), g2 = log_gamma_draw(alpha, key, &c);
  return static_cast<float>(std::clamp(1.0 / (1.0 + std::exp(g2 - g1)), 0.0, 1.0));
}

}  // namespace

bool mix_active(const MixRecipe& r) { return (r.mixup_alpha > 0.f || r.cutmix_alpha > 0.f) && r.prob > 0.f; }

BatchMix cutmix_box(float lam, int h, int w, int cy, int cx) {
  const double ratio = std::sqrt(1.0 - static_cast<double>(lam));
  const int cut_h = static_cast<int>(h * ratio), cut_w = static_cast<int>(w * ratio);
  BatchMix m;
  m.cutmix = 1;
  m.y0 = std::clamp(cy - cut_h / 2, 0, h);
  m.y1 = std::clamp(cy + cut_h / 2, 0, h);
  m.x0 = std::clamp(cx - cut_w / 2, 0, w);
  m.x1 = std::clamp(cx + cut_w / 2, 0, w);
  const double area = static_cast<double>(m.y1 - m.y0) * (m.x1 - m.x0);
  m.lam = static_cast<float>(1.0 - area / (static_cast<double>(h) * w));
  return m;
}

BatchMix draw_batch_mix(const MixRecipe& r, int h, int w, uint64_t key) {
  key = hash_key(key, kMixPurpose);
  if (!mix_active(r) || !(uniform01(key, kMixOrNot) < r.prob)) return {};
  bool cut = r.cutmix_alpha > 0.f;
  if (cut && r.mixup_alpha > 0.f) cut = uniform01(key, kSwitch) < r.switch_prob;
  const float lam = beta_draw(cut ? r.cutmix_alpha : r.mixup_alpha, key);
  if (!cut) return BatchMix{lam, 0, 0, 0, 0, 0};
  const auto cy = static_cast<int>(uniform_below(key, kCentreY, static_cast<uint64_t>(h)));
  const auto cx = static_cast<int>(uniform_below(key, kCentreX, static_cast<uint64_t>(w)));
  return cutmix_box(lam, h, w, cy, cx);
}

namespace cpu {

void mix_batch(int n, int h, int w, int c, const BatchMix* mix, float* x) {
  STOKE_CHECK(n > 0 && h > 0 && w > 0 && c > 0 && mix, "mixing an empty batch");
  const BatchMix m = *mix;
  if (m.lam == 1.f && !m.cutmix) return;
  const int64_t image = int64_t{h} * w * c;
  const float lam = m.lam, rest = 1.f - m.lam;
  // Sample i and its partner j = n-1-i together (i <= j), so the pair can be rewritten in place.
  parallel_for((n + 1) / 2, 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      float* a = x + i * image;
      float* b = x + (n - 1 - i) * image;
      if (m.cutmix) {
        if (a == b) continue;  // the middle sample of an odd batch is its own partner
        for (int y = m.y0; y < m.y1; ++y)
          for (int64_t k = (int64_t{y} * w + m.x0) * c; k < (int64_t{y} * w + m.x1) * c; ++k) std::swap(a[k], b[k]);
        continue;
      }
      for (int64_t k = 0; k < image; ++k) {
        const float va = a[k], vb = b[k];
        a[k] = va * lam + vb * rest;
        b[k] = vb * lam + va * rest;  // the middle sample: written twice, the same value
      }
    }
  });
}

}  // namespace cpu
}  // namespace stoke
