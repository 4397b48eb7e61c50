// CPU reference convolution: im2col + sgemm, NHWC activations, KRSC filters.
//
// The images are cut into sub-batches of a few consecutive images (sized from the problem only). A
// sub-batch's column matrix col[rows = images*P*Q, R*S*C] has one row per output pixel; because the
// layout is NHWC, the S*C values of one filter row r are contiguous in x, so im2col copies runs of S*C
// floats. Then
//   forward:   y_sb[rows, K]    = col * W^T            (W is [K, R*S*C] row-major)
//   dx:        dcol[rows, RSC]  = dy_sb * W, col2im scatter-adds dcol into dx (assigned, zeroed first)
//   dw:        dw[K, RSC]      += dy_sb^T * col
// A 1x1, stride-1, pad-0 convolution skips im2col: x itself is the column matrix.
//
// Determinism: forward and dx write disjoint images per task. dw and db are reductions over all images:
// the sub-batches are grouped into a fixed number of chunks (from the problem size, never the thread
// count); each chunk accumulates into its own partial buffer, and the partials are added into dw/db in
// chunk order. Results are therefore bit-identical for any ThreadPool size.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "base/parallel.h"

namespace stoke::cpu {
namespace {

constexpr int64_t kTargetRows = 1024;            // column-matrix rows per sub-batch (when images are small)
constexpr int64_t kMinBatches = 16;              // keep some parallel slack for small batches of small images
constexpr int64_t kMaxChunks = 64;               // dw/db reduction chunks, at most
constexpr int64_t kPartialBudget = 16ll << 20;  // floats in all dw partials together (64 MiB)

struct Plan {
  int P = 0, Q = 0;
  int64_t PQ = 0, RSC = 0;
  bool direct = false;  // 1x1, stride 1, pad 0: x is the column matrix
  int64_t batch = 1;    // images per sub-batch
  int64_t nbatches = 0;
  int64_t nchunks = 0;  // dw/db reduction chunks; chunk c covers batches [c*nb/nc, (c+1)*nb/nc)
};

Plan make_plan(const ConvShape& sh) {
  STOKE_CHECK(sh.n > 0 && sh.h > 0 && sh.w > 0 && sh.c > 0 && sh.k > 0 && sh.r > 0 && sh.s > 0,
              "bad conv shape");
  STOKE_CHECK(sh.stride > 0 && sh.pad >= 0, "bad conv stride/pad");
  STOKE_CHECK(sh.h + 2 * sh.pad >= sh.r && sh.w + 2 * sh.pad >= sh.s, "conv filter larger than padded input");
  Plan pl;
  pl.P = sh.p();
  pl.Q = sh.q();
  pl.PQ = int64_t{pl.P} * pl.Q;
  pl.RSC = int64_t{sh.r} * sh.s * sh.c;
  pl.direct = sh.r == 1 && sh.s == 1 && sh.stride == 1 && sh.pad == 0;
  int64_t b = std::max<int64_t>(1, kTargetRows / pl.PQ);
  b = std::min(b, std::max<int64_t>(1, (sh.n + kMinBatches - 1) / kMinBatches));
  pl.batch = b;
  pl.nbatches = (sh.n + b - 1) / b;
  int64_t by_memory = std::max<int64_t>(1, kPartialBudget / (int64_t{sh.k} * pl.RSC));
  pl.nchunks = std::min({pl.nbatches, kMaxChunks, by_memory});
  return pl;
}

// Per-thread scratch that grows but is never shrunk, so steady-state training does not allocate.
float* scratch_col(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// col[(i*P + p)*Q + q, (r*S + s)*C + c] = x[n0 + i, p*stride - pad + r, q*stride - pad + s, c] (0 outside).
void im2col(const ConvShape& sh, const Plan& pl, const float* x, int64_t n0, int64_t nimg, float* col) {
  const int H = sh.h, W = sh.w, C = sh.c, R = sh.r, S = sh.s;
  const int64_t SC = int64_t{S} * C;
  for (int64_t i = 0; i < nimg; ++i) {
    const float* xn = x + (n0 + i) * H * W * C;
    for (int p = 0; p < pl.P; ++p)
      for (int q = 0; q < pl.Q; ++q) {
        float* row = col + ((i * pl.P + p) * pl.Q + q) * pl.RSC;
        const int ih0 = p * sh.stride - sh.pad, iw0 = q * sh.stride - sh.pad;
        for (int r = 0; r < R; ++r) {
          float* dst = row + r * SC;
          const int ih = ih0 + r;
          if (ih < 0 || ih >= H) {
            std::fill(dst, dst + SC, 0.f);
          } else if (iw0 >= 0 && iw0 + S <= W) {  // the whole filter row is inside: one run
            std::memcpy(dst, xn + (int64_t{ih} * W + iw0) * C, sizeof(float) * SC);
          } else {
            for (int s = 0; s < S; ++s) {
              const int iw = iw0 + s;
              if (iw < 0 || iw >= W)
                std::fill(dst + s * C, dst + (s + 1) * C, 0.f);
              else
                std::memcpy(dst + s * C, xn + (int64_t{ih} * W + iw) * C, sizeof(float) * C);
            }
          }
        }
      }
  }
}

// The adjoint of im2col: dx[images n0..n0+nimg) = 0, then every col entry is added back to its input.
void col2im(const ConvShape& sh, const Plan& pl, const float* col, int64_t n0, int64_t nimg, float* dx) {
  const int H = sh.h, W = sh.w, C = sh.c, R = sh.r, S = sh.s;
  const int64_t SC = int64_t{S} * C;
  std::fill(dx + n0 * H * W * C, dx + (n0 + nimg) * H * W * C, 0.f);
  for (int64_t i = 0; i < nimg; ++i) {
    float* dxn = dx + (n0 + i) * H * W * C;
    for (int p = 0; p < pl.P; ++p)
      for (int q = 0; q < pl.Q; ++q) {
        const float* row = col + ((i * pl.P + p) * pl.Q + q) * pl.RSC;
        const int ih0 = p * sh.stride - sh.pad, iw0 = q * sh.stride - sh.pad;
        for (int r = 0; r < R; ++r) {
          const int ih = ih0 + r;
          if (ih < 0 || ih >= H) continue;
          const float* src = row + r * SC;
          for (int s = 0; s < S; ++s) {
            const int iw = iw0 + s;
            if (iw < 0 || iw >= W) continue;
            float* d = dxn + (int64_t{ih} * W + iw) * C;
            const float* v = src + s * C;
            for (int c = 0; c < C; ++c) d[c] += v[c];
          }
        }
      }
  }
}

// Partial-sum buffers for the dw/db reductions, owned by the calling thread (grow only).
float* scratch_dw_partials(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}
double* scratch_db_partials(int64_t n) {
  thread_local std::vector<double> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

}  // namespace

void conv2d_forward(const ConvShape& sh, const float* x, const float* w, const float* b, float* y) {
  const Plan pl = make_plan(sh);
  const int K = sh.k;
  const int64_t in_img = int64_t{sh.h} * sh.w * sh.c;
  parallel_tasks(pl.nbatches, [&](int64_t t) {
    const int64_t n0 = t * pl.batch, nimg = std::min<int64_t>(pl.batch, sh.n - n0);
    const int64_t rows = nimg * pl.PQ;
    const float* col = x + n0 * in_img;  // direct: x rows are already [rows, C]
    if (!pl.direct) {
      float* buf = scratch_col(rows * pl.RSC);
      im2col(sh, pl, x, n0, nimg, buf);
      col = buf;
    }
    float* yb = y + n0 * pl.PQ * K;
    sgemm(false, true, static_cast<int>(rows), K, static_cast<int>(pl.RSC), 1.f, col, static_cast<int>(pl.RSC), w,
          static_cast<int>(pl.RSC), 0.f, yb, K);
    if (b)
      for (int64_t i = 0; i < rows; ++i)
        for (int k = 0; k < K; ++k) yb[i * K + k] += b[k];
  });
}

void conv2d_backward(const ConvShape& sh, const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db) {
  const Plan pl = make_plan(sh);
  const int K = sh.k;
  const int RSC = static_cast<int>(pl.RSC);
  const int64_t in_img = int64_t{sh.h} * sh.w * sh.c;

  // dx: each sub-batch writes its own images.
  if (dx) {
    parallel_tasks(pl.nbatches, [&](int64_t t) {
      const int64_t n0 = t * pl.batch, nimg = std::min<int64_t>(pl.batch, sh.n - n0);
      const int rows = static_cast<int>(nimg * pl.PQ);
      const float* dyb = dy + n0 * pl.PQ * K;
      if (pl.direct) {
        sgemm(false, false, rows, sh.c, K, 1.f, dyb, K, w, sh.c, 0.f, dx + n0 * in_img, sh.c);
        return;
      }
      float* dcol = scratch_col(int64_t{rows} * RSC);
      sgemm(false, false, rows, RSC, K, 1.f, dyb, K, w, RSC, 0.f, dcol, RSC);
      col2im(sh, pl, dcol, n0, nimg, dx);
    });
  }

  // dw, db: fixed chunks of sub-batches, each into its own partial, combined in chunk order.
  if (!dw && !db) return;
  const int64_t nc = pl.nchunks, wsize = int64_t{K} * RSC;
  float* pw = dw ? scratch_dw_partials(nc * wsize) : nullptr;
  double* pb = db ? scratch_db_partials(nc * K) : nullptr;
  parallel_tasks(nc, [&](int64_t c) {
    const int64_t b0 = c * pl.nbatches / nc, b1 = (c + 1) * pl.nbatches / nc;
    double* pbc = pb ? pb + c * K : nullptr;
    if (pbc) std::fill(pbc, pbc + K, 0.0);
    for (int64_t bt = b0; bt < b1; ++bt) {
      const int64_t n0 = bt * pl.batch, nimg = std::min<int64_t>(pl.batch, sh.n - n0);
      const int rows = static_cast<int>(nimg * pl.PQ);
      const float* dyb = dy + n0 * pl.PQ * K;
      if (pw) {
        const float* col = x + n0 * in_img;
        if (!pl.direct) {
          float* buf = scratch_col(int64_t{rows} * RSC);
          im2col(sh, pl, x, n0, nimg, buf);
          col = buf;
        }
        sgemm(true, false, K, RSC, rows, 1.f, dyb, K, col, RSC, bt == b0 ? 0.f : 1.f, pw + c * wsize, RSC);
      }
      if (pbc)
        for (int64_t i = 0; i < rows; ++i)
          for (int k = 0; k < K; ++k) pbc[k] += dyb[i * K + k];
    }
  });
  if (dw)
    parallel_for(wsize, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        float s = pw[i];
        for (int64_t c = 1; c < nc; ++c) s += pw[c * wsize + i];
        dw[i] += s;
      }
    });
  if (db)
    for (int k = 0; k < K; ++k) {
      double s = 0;
      for (int64_t c = 0; c < nc; ++c) s += pb[c * K + k];
      db[k] += static_cast<float>(s);
    }
}

}  // namespace stoke::cpu
