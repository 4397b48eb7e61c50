// CPU reference batch normalisation over rows x C (an NHWC tensor seen as N*H*W rows of C channels).
//
// Per-channel sums are accumulated in double over a fixed split of the rows (chunk count from `rows`
// only) and the chunk partials are added in chunk order, so the statistics and the parameter gradients
// are bit-identical for any thread count. The mean and the variance use two passes (no E[x^2]-E[x]^2).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "kernels/batchnorm.h"

namespace stoke::cpu {
namespace {

constexpr int64_t kRowsPerChunk = 512;
constexpr int64_t kMaxChunks = 64;

int64_t num_chunks(int64_t rows) {
  return std::clamp<int64_t>((rows + kRowsPerChunk - 1) / kRowsPerChunk, 1, kMaxChunks);
}

double* scratch_partials(int64_t n) {
  thread_local std::vector<double> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// Per-channel sums over the rows of one (nq = 1) or two (nq = 2) quantities, deterministic:
// f(r, acc0, acc1) adds row r's contributions to acc0[0..C) (and acc1[0..C)); the totals land in out0
// (and out1).
template <typename F>
void channel_sums(int64_t rows, int C, int nq, double* out0, double* out1, F f) {
  const int64_t nc = num_chunks(rows);
  double* part = scratch_partials(nc * nq * C);
  parallel_tasks(nc, [&](int64_t t) {
    double* a0 = part + t * nq * C;
    double* a1 = a0 + (nq > 1 ? C : 0);
    std::fill(a0, a0 + int64_t{nq} * C, 0.0);
    const int64_t r0 = t * rows / nc, r1 = (t + 1) * rows / nc;
    for (int64_t r = r0; r < r1; ++r) f(r, a0, a1);
  });
  std::fill(out0, out0 + C, 0.0);
  if (nq > 1) std::fill(out1, out1 + C, 0.0);
  for (int64_t t = 0; t < nc; ++t) {
    const double* a0 = part + t * nq * C;
    for (int c = 0; c < C; ++c) out0[c] += a0[c];
    if (nq > 1)
      for (int c = 0; c < C; ++c) out1[c] += a0[C + c];
  }
}

}  // namespace

void batchnorm_forward_train(int rows, int C, const float* x, const float* gamma, const float* beta, float eps,
                             float momentum, float* running_mean, float* running_var, float* y, float* save_mean,
                             float* save_invstd, const ChannelAllReduce* across) {
  STOKE_CHECK(rows > 0 && C > 0, "batchnorm over an empty tensor");
  // mean[C] holds the row count while the sums travel (one all-reduce for both).
  std::vector<double> mean(C + 1), var(C);
  channel_sums(rows, C, 1, mean.data(), nullptr, [&](int64_t r, double* acc, double*) {
    const float* xr = x + r * C;
    for (int c = 0; c < C; ++c) acc[c] += xr[c];
  });
  mean[C] = rows;
  if (across) (*across)(mean.data(), C + 1);
  const double total = mean[C];  // rows over every process
  for (int c = 0; c < C; ++c) mean[c] /= total;
  channel_sums(rows, C, 1, var.data(), nullptr, [&](int64_t r, double* acc, double*) {
    const float* xr = x + r * C;
    for (int c = 0; c < C; ++c) {
      const double d = xr[c] - mean[c];
      acc[c] += d * d;
    }
  });
  if (across) (*across)(var.data(), C);
  for (int c = 0; c < C; ++c) var[c] /= total;  // biased: the batch is normalised with it

  // y = (x - mean) * (gamma * invstd) + beta. Subtracting the mean first keeps channels whose mean is
  // large against their spread accurate (a folded x * scale + shift would cancel catastrophically).
  std::vector<float> m(C), scale(C);
  for (int c = 0; c < C; ++c) {
    m[c] = static_cast<float>(mean[c]);
    const float invstd = static_cast<float>(1.0 / std::sqrt(var[c] + static_cast<double>(eps)));
    if (save_mean) save_mean[c] = m[c];
    if (save_invstd) save_invstd[c] = invstd;
    scale[c] = gamma[c] * invstd;
    // PyTorch refuses a single row in training mode; here it simply keeps the (zero) biased variance.
    const double unbiased = total > 1 ? var[c] * total / (total - 1) : var[c];
    if (running_mean)
      running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + double{momentum} * mean[c]);
    if (running_var)
      running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + double{momentum} * unbiased);
  }
  parallel_for(rows, 1024, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int c = 0; c < C; ++c) y[r * C + c] = (x[r * C + c] - m[c]) * scale[c] + beta[c];
  });
}

void batchnorm_forward_eval(int rows, int C, const float* x, const float* gamma, const float* beta,
                            const float* running_mean, const float* running_var, float eps, float* y) {
  std::vector<float> scale(C);
  for (int c = 0; c < C; ++c)
    scale[c] = gamma[c] * static_cast<float>(1.0 / std::sqrt(double{running_var[c]} + double{eps}));
  parallel_for(rows, 1024, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int c = 0; c < C; ++c) y[r * C + c] = (x[r * C + c] - running_mean[c]) * scale[c] + beta[c];
  });
}

// With xhat = (x - mean) * invstd and y = gamma * xhat + beta:
//   dbeta  = sum dy,  dgamma = sum dy * xhat,
//   dx     = gamma * invstd / rows * (rows * dy - dbeta - xhat * dgamma),
// the sums in dx (and rows) over every process under `across`.
void batchnorm_backward(int rows, int C, const float* x, const float* gamma, const float* save_mean,
                        const float* save_invstd, const float* dy, float* dx, float* dgamma, float* dbeta,
                        const ChannelAllReduce* across) {
  STOKE_CHECK(rows > 0 && C > 0, "batchnorm over an empty tensor");
  // One buffer, so one all-reduce carries both sums and the row count: [sum dy | sum dy * xhat | rows].
  std::vector<double> sums(2 * static_cast<size_t>(C) + 1);
  double* sum_dy = sums.data();
  double* sum_dy_xhat = sums.data() + C;
  channel_sums(rows, C, 2, sum_dy, sum_dy_xhat, [&](int64_t r, double* a0, double* a1) {
    const float* xr = x + r * C;
    const float* dyr = dy + r * C;
    for (int c = 0; c < C; ++c) {
      const double xhat = (double{xr[c]} - save_mean[c]) * save_invstd[c];
      a0[c] += dyr[c];
      a1[c] += dyr[c] * xhat;
    }
  });
  for (int c = 0; c < C; ++c) {
    if (dbeta) dbeta[c] += static_cast<float>(sum_dy[c]);
    if (dgamma) dgamma[c] += static_cast<float>(sum_dy_xhat[c]);
  }
  if (!dx && !across) return;  // across: every process takes part in the all-reduce, dx or not
  sums[2 * static_cast<size_t>(C)] = rows;
  if (across) (*across)(sums.data(), 2 * C + 1);
  if (!dx) return;
  const double total = sums[2 * static_cast<size_t>(C)];
  // dx = k1 * dy + k2 * (x - mean) + k3, per channel, with the sums folded into the coefficients.
  std::vector<float> k1(C), k2(C), k3(C);
  for (int c = 0; c < C; ++c) {
    const double invstd = save_invstd[c];
    const double g = double{gamma[c]} * invstd;
    k1[c] = static_cast<float>(g);
    k2[c] = static_cast<float>(-g * sum_dy_xhat[c] * invstd / total);
    k3[c] = static_cast<float>(-g * sum_dy[c] / total);
  }
  parallel_for(rows, 1024, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int c = 0; c < C; ++c) {
        const int64_t i = r * C + c;
        dx[i] = k1[c] * dy[i] + k2[c] * (x[i] - save_mean[c]) + k3[c];
      }
  });
}

// Eval mode the statistics are constants: xhat = (x - running_mean) * invstd, dx = gamma * invstd * dy.
void batchnorm_backward_eval(int rows, int C, const float* x, const float* gamma, const float* running_mean,
                             const float* running_var, float eps, const float* dy, float* dx, float* dgamma,
                             float* dbeta) {
  STOKE_CHECK(rows > 0 && C > 0, "batchnorm over an empty tensor");
  std::vector<double> invstd(C);
  for (int c = 0; c < C; ++c) invstd[c] = 1.0 / std::sqrt(double{running_var[c]} + double{eps});
  if (dgamma || dbeta) {
    std::vector<double> sums(2 * static_cast<size_t>(C));
    channel_sums(rows, C, 2, sums.data(), sums.data() + C, [&](int64_t r, double* a0, double* a1) {
      const float* xr = x + r * C;
      const float* dyr = dy + r * C;
      for (int c = 0; c < C; ++c) {
        a0[c] += dyr[c];
        a1[c] += dyr[c] * ((double{xr[c]} - running_mean[c]) * invstd[c]);
      }
    });
    for (int c = 0; c < C; ++c) {
      if (dbeta) dbeta[c] += static_cast<float>(sums[static_cast<size_t>(c)]);
      if (dgamma) dgamma[c] += static_cast<float>(sums[static_cast<size_t>(C + c)]);
    }
  }
  if (!dx) return;
  std::vector<float> k(C);
  for (int c = 0; c < C; ++c) k[c] = static_cast<float>(double{gamma[c]} * invstd[c]);
  parallel_for(rows, 1024, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int c = 0; c < C; ++c) dx[r * C + c] = k[c] * dy[r * C + c];
  });
}

}  // namespace stoke::cpu
