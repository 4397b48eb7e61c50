// CPU reference softmax cross-entropy with label smoothing (plain or against mixed targets), fused with its gradient.
//
// Rows are independent; each row's loss is computed in double with the max subtracted (stable), and
// the mean is summed over the rows in row order, so the result does not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "kernels/softmax_ce.h"

namespace stoke::cpu {
namespace {

// mix null: the plain loss. Otherwise row r's second label is row n-1-r's, with weight 1 - lam.
float cross_entropy(int n, int classes, const float* logits, const int32_t* labels, const BatchMix* mix,
                    float smoothing, float grad_scale, float* losses, float* dlogits, int64_t* correct) {
  STOKE_CHECK(n > 0 && classes > 0, "softmax cross-entropy over an empty batch");
  for (int i = 0; i < n; ++i)
    STOKE_CHECK(labels[i] >= 0 && labels[i] < classes, "label ", labels[i], " of row ", i, " is outside [0, ", classes,
                ")");
  const int K = classes;
  const double off = double{smoothing} / K;  // t_k = off + (k == y) * (1 - smoothing)
  const double on = 1.0 - smoothing + off;
  const double wa = mix ? double{mix->lam} : 1.0, wb = 1.0 - wa;  // the two labels' weights
  const float g = grad_scale / static_cast<float>(n);
  std::vector<double> row_loss(n);
  std::vector<uint8_t> hit(n);
  parallel_for(n, std::max(1, 8192 / K), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * K;
      const int y = labels[r], yb = labels[n - 1 - r];
      int am = 0;  // first maximum
      for (int k = 1; k < K; ++k)
        if (z[k] > z[am]) am = k;
      const double m = z[am];
      double se = 0, sz = 0;
      for (int k = 0; k < K; ++k) {
        se += std::exp(z[k] - m);
        sz += z[k];
      }
      const double lse = m + std::log(se);
      // -sum_k t_k (z_k - lse) = lse - (1 - e) z_y - (e / K) sum_k z_k; mixed, z_y is wa z_y + wb z_yb
      if (!mix) {
        row_loss[r] = lse - (1.0 - smoothing) * z[y] - off * sz;
        hit[r] = am == y;
      } else {
        row_loss[r] = lse - (1.0 - smoothing) * (wa * z[y] + wb * z[yb]) - off * sz;
        hit[r] = am == (wa >= 0.5 ? y : yb);
      }
      if (losses) losses[r] = static_cast<float>(row_loss[r]);
      if (dlogits) {
        float* d = dlogits + r * K;
        for (int k = 0; k < K; ++k) {
          const double p = std::exp(z[k] - lse);
          const double t =
              !mix ? (k == y ? on : off) : off + (1.0 - smoothing) * ((k == y ? wa : 0.0) + (k == yb ? wb : 0.0));
          d[k] = static_cast<float>((p - t) * g);
        }
      }
    }
  });
  double total = 0;
  int64_t right = 0;
  for (int i = 0; i < n; ++i) {
    total += row_loss[i];
    right += hit[i];
  }
  if (correct) *correct = right;
  return static_cast<float>(total / n);
}

}  // namespace

float softmax_cross_entropy(int n, int classes, const float* logits, const int32_t* labels, float smoothing,
                            float grad_scale, float* losses, float* dlogits, int64_t* correct) {
  return cross_entropy(n, classes, logits, labels, nullptr, smoothing, grad_scale, losses, dlogits, correct);
}

float softmax_cross_entropy_mixed(int n, int classes, const float* logits, const int32_t* labels, const BatchMix* mix,
                                  float smoothing, float grad_scale, float* losses, float* dlogits, int64_t* correct) {
  STOKE_CHECK(mix != nullptr, "mixed cross-entropy without its batch's mix");
  return cross_entropy(n, classes, logits, labels, mix, smoothing, grad_scale, losses, dlogits, correct);
}

}  // namespace stoke::cpu
