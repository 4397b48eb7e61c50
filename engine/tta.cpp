#include "engine/tta.h"

#include <algorithm>
#include <cmath>

namespace stoke {

std::vector<double> softmax_rows(const float* logits, int n, int classes) {
  std::vector<double> p(static_cast<size_t>(n) * static_cast<size_t>(classes));
  for (int i = 0; i < n; ++i) {
    const float* z = logits + static_cast<int64_t>(i) * classes;
    double* q = p.data() + static_cast<int64_t>(i) * classes;
    const double mx = *std::max_element(z, z + classes);
    double sum = 0;
    for (int k = 0; k < classes; ++k) sum += q[k] = std::exp(static_cast<double>(z[k]) - mx);
    for (int k = 0; k < classes; ++k) q[k] /= sum;
  }
  return p;
}

const float* eval_logits(TrainingBackend& backend, int n, int classes, const uint8_t* pixels, const int32_t* labels,
                         bool tta_flip, float* loss, std::vector<float>& scratch) {
  if (!tta_flip) return backend.eval_batch(n, pixels, labels, loss);
  std::vector<float> plain_logits, mirrored_logits;
  backend.eval_batch_and_mirror(n, classes, pixels, labels, plain_logits, mirrored_logits, loss);
  std::vector<double> p = softmax_rows(plain_logits.data(), n, classes);
  const std::vector<double> mirrored = softmax_rows(mirrored_logits.data(), n, classes);
  scratch.resize(p.size());
  double nll = 0;
  for (size_t j = 0; j < p.size(); ++j) {
    p[j] = 0.5 * (p[j] + mirrored[j]);
    scratch[j] = static_cast<float>(std::log(std::max(p[j], 1e-300)));  // no -inf: a class no pass saw at all
  }
  for (int i = 0; i < n; ++i) nll -= std::log(std::max(p[static_cast<size_t>(i) * classes + labels[i]], 1e-300));
  *loss = static_cast<float>(nll / n);
  return scratch.data();
}

}  // namespace stoke
