// CPU reference fully connected layer: three sgemm_parallel calls (which never split the inner
// dimension, so they are thread-count independent) and a bias column sum in double, one column per item.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "base/parallel.h"

namespace stoke::cpu {

void linear_forward(int n, int in, int out, const float* x, const float* w, const float* b, float* y) {
  sgemm_parallel(false, true, n, out, in, 1.f, x, in, w, in, 0.f, y, out);
  if (!b) return;
  parallel_for(n, std::max(1, 16384 / std::max(out, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int j = 0; j < out; ++j) y[r * out + j] += b[j];
  });
}

void linear_backward(int n, int in, int out, const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db) {
  if (dx) sgemm_parallel(false, false, n, in, out, 1.f, dy, out, w, in, 0.f, dx, in);  // [n,out]*[out,in]
  if (dw) sgemm_parallel(true, false, out, in, n, 1.f, dy, out, x, in, 1.f, dw, in);   // [out,n]*[n,in]
  if (db)
    // Each column's sum runs over the rows in order, whatever range of columns a task gets.
    parallel_for(out, 64, [&](int64_t j0, int64_t j1) {
      std::vector<double> s(static_cast<size_t>(j1 - j0), 0.0);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t j = j0; j < j1; ++j) s[j - j0] += dy[r * out + j];
      for (int64_t j = j0; j < j1; ++j) db[j] += static_cast<float>(s[j - j0]);
    });
}

}  // namespace stoke::cpu
