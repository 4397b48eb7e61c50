// GPU microbenchmarks of the handwritten kernels (Google Benchmark, manual time from CUDA events).
//
// Every kernel reports the bytes it must move (reads + writes of the algorithm as written: e.g. batch norm's
// statistics pass reads x once and its element-wise pass reads x again and writes y), the GB/s achieved, and
// `of_d2d`: that bandwidth as a fraction of a device-to-device cudaMemcpy measured in the same process (counted the
// same way: bytes read + bytes written). Memory-bound kernels flush the L2 (a memset over twice its size) before
// every timed repeat, so they are measured from DRAM, as in a training step on large tensors.
//
// Targets (shared/DESIGN.md): streaming kernels (casts, optimizer, augment, mixup) >= 0.90 of D2D; reductions (BN
// statistics, softmax-CE) >= 0.80.
#include <benchmark/benchmark.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/cuda_check.h"
#include "bench/bench_gpu_recipes.h"
#include "engine/cuda/poll_wait.h"
#include "kernels/activation.cuh"
#include "kernels/augment.cuh"
#include "kernels/batchnorm.cuh"
#include "kernels/cast.cuh"
#include "kernels/mix.cuh"
#include "kernels/optimizer.cuh"
#include "kernels/pool.cuh"
#include "kernels/softmax_ce.cuh"
#include "kernels/tensor_ops.cuh"

namespace {

using bf16 = __nv_bfloat16;

// ---- device memory and timing helpers -----------------------------------------------------------------------------

class Buf {
 public:
  explicit Buf(size_t bytes) : bytes_(bytes) {
    CUDA_CHECK(cudaMalloc(&p_, bytes));
    CUDA_CHECK(cudaMemset(p_, 0, bytes));
  }
  ~Buf() { CUDA_CHECK_NOEXCEPT(cudaFree(p_)); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_;
};

// Fills a buffer with small finite values of T (a kernel fed zeros or NaNs may take shortcuts).
template <typename T>
__global__ void fill_kernel(T* p, size_t n, float lo, float hi) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint32_t h = static_cast<uint32_t>(i) * 2654435761u;
    const float u = static_cast<float>(h >> 8) * (1.f / 16777216.f);
    if constexpr (std::is_same_v<T, float>)
      p[i] = lo + (hi - lo) * u;
    else if constexpr (std::is_same_v<T, __half>)
      p[i] = __float2half_rn(lo + (hi - lo) * u);
    else if constexpr (std::is_same_v<T, bf16>)
      p[i] = __float2bfloat16_rn(lo + (hi - lo) * u);
    else
      p[i] = static_cast<T>(h >> 24);
  }
}
template <typename T>
void fill(const Buf& b, float lo = -1.f, float hi = 1.f) {
  fill_kernel<T><<<1024, 256>>>(b.as<T>(), b.bytes() / sizeof(T), lo, hi);
  CUDA_LAUNCH_CHECK(nullptr);
}

struct Device {
  cudaDeviceProp prop{};
  int driver = 0, runtime = 0;
  size_t l2 = 0;
};
const Device& device() {
  static const Device d = [] {
    Device r;
    CUDA_CHECK(cudaGetDeviceProperties(&r.prop, 0));
    CUDA_CHECK(cudaDriverGetVersion(&r.driver));
    CUDA_CHECK(cudaRuntimeGetVersion(&r.runtime));
    r.l2 = static_cast<size_t>(r.prop.l2CacheSize);
    return r;
  }();
  return d;
}

// Overwrites twice the L2 so the next kernel starts cold.
void flush_l2(cudaStream_t s) {
  static Buf* scratch = new Buf(std::max<size_t>(2 * device().l2, size_t{64} << 20));
  static int value = 0;
  CUDA_CHECK(cudaMemsetAsync(scratch->as<char>(), ++value & 0xff, scratch->bytes(), s));
}

// Times `launch` per iteration with events; `bytes` is what one launch moves (read + written).
template <typename F>
void run_timed(benchmark::State& state, double bytes, bool flush, F&& launch, double reference_gbps);

double d2d_gbps();

template <typename F>
void timed(benchmark::State& state, double bytes, bool flush, F&& launch) {
  run_timed(state, bytes, flush, std::forward<F>(launch), d2d_gbps());
}

template <typename F>
void run_timed(benchmark::State& state, double bytes, bool flush, F&& launch, double reference_gbps) {
  cudaStream_t s = nullptr;
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  launch(s);  // warm-up (and first-touch of everything)
  CUDA_CHECK(cudaStreamSynchronize(s));
  double total_s = 0;
  int64_t iters = 0;
  for (auto _ : state) {
    if (flush) flush_l2(s);
    CUDA_CHECK(cudaEventRecord(start, s));
    launch(s);
    CUDA_CHECK(cudaEventRecord(stop, s));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms / 1e3);
    total_s += ms / 1e3;
    ++iters;
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  const double gbps = iters > 0 && total_s > 0 ? bytes * static_cast<double>(iters) / total_s / 1e9 : 0.0;
  state.SetBytesProcessed(static_cast<int64_t>(bytes * static_cast<double>(iters)));
  state.counters["MB"] = bytes / 1e6;
  state.counters["GB/s"] = gbps;
  if (reference_gbps > 0) state.counters["of_d2d"] = gbps / reference_gbps;
}

// Device-to-device copy bandwidth (bytes read + written), measured once per process on 256 MiB from DRAM.
double d2d_gbps() {
  static const double v = [] {
    const size_t n = size_t{256} << 20;
    Buf a(n), b(n);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    CUDA_CHECK(cudaMemcpy(b.as<char>(), a.as<char>(), n, cudaMemcpyDeviceToDevice));
    double best = 0;
    for (int i = 0; i < 10; ++i) {
      flush_l2(nullptr);
      CUDA_CHECK(cudaEventRecord(e0));
      CUDA_CHECK(cudaMemcpyAsync(b.as<char>(), a.as<char>(), n, cudaMemcpyDeviceToDevice));
      CUDA_CHECK(cudaEventRecord(e1));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      best = std::max(best, 2.0 * static_cast<double>(n) / (ms / 1e3) / 1e9);
    }
    CUDA_CHECK(cudaEventDestroy(e0));
    CUDA_CHECK(cudaEventDestroy(e1));
    return best;
  }();
  return v;
}

// ---- the reference ------------------------------------------------------------------------------------------------

void BM_D2DMemcpy(benchmark::State& state) {
  const size_t n = size_t{256} << 20;
  Buf a(n), b(n);
  run_timed(
      state, 2.0 * static_cast<double>(n), true,
      [&](cudaStream_t s) { CUDA_CHECK(cudaMemcpyAsync(b.as<char>(), a.as<char>(), n, cudaMemcpyDeviceToDevice, s)); },
      0);
  state.counters["best_GB/s"] = d2d_gbps();
}
BENCHMARK(BM_D2DMemcpy)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- streaming kernels ---------------------------------------------------------------------------------------------

constexpr int64_t kElems = int64_t{64} << 20;  // 64 Mi elements: 128 MiB of bf16, far beyond L2

void BM_CastFp32ToBf16(benchmark::State& state) {
  Buf x(kElems * 4), y(kElems * 2);
  fill<float>(x);
  timed(state, kElems * 6.0, true,
        [&](cudaStream_t s) { stoke::cuda::cast<float, bf16>(kElems, x.as<float>(), y.as<bf16>(), s); });
}
BENCHMARK(BM_CastFp32ToBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

template <typename T>
void BM_ReluForward(benchmark::State& state) {
  Buf x(kElems * sizeof(T)), y(kElems * sizeof(T));
  fill<T>(x);
  timed(state, 2.0 * kElems * sizeof(T), true,
        [&](cudaStream_t s) { stoke::cuda::relu_forward<T>(kElems, x.as<T>(), y.as<T>(), s); });
}
BENCHMARK(BM_ReluForward<bf16>)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ReluForward<float>)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_ReluBackwardBf16(benchmark::State& state) {
  Buf y(kElems * 2), dy(kElems * 2), dx(kElems * 2);
  fill<bf16>(y);
  fill<bf16>(dy);
  timed(state, 3.0 * kElems * 2, true, [&](cudaStream_t s) {
    stoke::cuda::relu_backward<bf16>(kElems, y.as<bf16>(), dy.as<bf16>(), dx.as<bf16>(), s);
  });
}
BENCHMARK(BM_ReluBackwardBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_AddBf16(benchmark::State& state) {
  Buf a(kElems * 2), b(kElems * 2), y(kElems * 2);
  fill<bf16>(a);
  fill<bf16>(b);
  timed(state, 3.0 * kElems * 2, true,
        [&](cudaStream_t s) { stoke::cuda::add_forward<bf16>(kElems, a.as<bf16>(), b.as<bf16>(), y.as<bf16>(), s); });
}
BENCHMARK(BM_AddBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// A part written into its channel slice of a concat buffer (DenseNet: 32 new channels into 256).
void BM_ConcatSliceBf16(benchmark::State& state) {
  const int64_t rows = 256 * 28 * 28;
  const int c = 32, total = 256;
  Buf src(static_cast<size_t>(rows) * c * 2), dst(static_cast<size_t>(rows) * total * 2);
  fill<bf16>(src);
  timed(state, 2.0 * static_cast<double>(rows) * c * 2, true, [&](cudaStream_t s) {
    stoke::cuda::copy_channels<bf16>(rows, c, src.as<bf16>(), c, dst.as<bf16>() + 64, total, s);
  });
}
BENCHMARK(BM_ConcatSliceBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// uint8 NHWC batch (256 x 224 x 224 x 3) -> normalised bf16 with flips.
void BM_AugmentNormalizeBf16(benchmark::State& state) {
  const int n = 256, h = 224, w = 224, c = 3;
  const size_t count = static_cast<size_t>(n) * h * w * c;
  Buf x(count), y(count * 2), flips(n);
  fill<uint8_t>(x);
  fill<uint8_t>(flips);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  const auto p = stoke::cuda::normalize_params(mean, sd, 3);
  timed(state, 3.0 * static_cast<double>(count), true, [&](cudaStream_t s) {
    stoke::cuda::augment_normalize<bf16>(n, h, w, c, x.as<uint8_t>(), flips.as<uint8_t>(), p, y.as<bf16>(), s);
  });
}
BENCHMARK(BM_AugmentNormalizeBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// Mixup of a normalised bf16 batch in place (256 x 224 x 224, 8 channels: the executor's padded input): every value
// read and written once, as its partner's in the same thread.
void BM_MixupBf16(benchmark::State& state) {
  const int n = 256, h = 224, w = 224, c = 8;
  const size_t count = static_cast<size_t>(n) * h * w * c;
  Buf x(count * 2), mix(sizeof(stoke::BatchMix));
  fill<bf16>(x);
  const stoke::BatchMix m{0.3f, 0, 0, 0, 0, 0};
  CUDA_CHECK(cudaMemcpy(mix.as<stoke::BatchMix>(), &m, sizeof(m), cudaMemcpyHostToDevice));
  timed(state, 2.0 * static_cast<double>(count) * 2, true,
        [&](cudaStream_t s) { stoke::cuda::mix_batch<bf16>(n, h, w, c, mix.as<stoke::BatchMix>(), x.as<bf16>(), s); });
}
BENCHMARK(BM_MixupBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- optimizer (ResNet-18-sized: 11.7 M parameters in chunks like the executor's)
// ------------------------------------

constexpr int64_t kParams = 11'700'000;

Buf* optimizer_chunks(int& nchunks) {
  static std::vector<stoke::cuda::OptimizerChunk> host = [] {
    std::vector<stoke::cuda::OptimizerChunk> v;
    for (int64_t b = 0; b < kParams; b += stoke::cuda::kOptimizerChunk)
      v.push_back({b, static_cast<int32_t>(std::min<int64_t>(stoke::cuda::kOptimizerChunk, kParams - b)), 5e-4f});
    return v;
  }();
  static Buf* d = [] {
    Buf* b = new Buf(host.size() * sizeof(stoke::cuda::OptimizerChunk));
    CUDA_CHECK(cudaMemcpy(b->as<char>(), host.data(), b->bytes(), cudaMemcpyHostToDevice));
    return b;
  }();
  nchunks = static_cast<int>(host.size());
  return d;
}

void BM_SgdNesterovBf16Copy(benchmark::State& state) {
  int nchunks = 0;
  Buf* chunks = optimizer_chunks(nchunks);
  Buf p(kParams * 4), g(kParams * 4), buf(kParams * 4), half(kParams * 2);
  fill<float>(p);
  fill<float>(g, -0.01f, 0.01f);
  stoke::cuda::SgdArgs a;
  a.lr = 0.01f;
  a.momentum = 0.9f;
  a.nesterov = true;
  // reads p, g, buf; writes p, buf, the bf16 copy
  timed(state, kParams * (12.0 + 10.0), true, [&](cudaStream_t s) {
    stoke::cuda::sgd_step<bf16>(chunks->as<stoke::cuda::OptimizerChunk>(), nchunks, p.as<float>(), half.as<bf16>(),
                                g.as<float>(), buf.as<float>(), a, nullptr, s);
  });
}
BENCHMARK(BM_SgdNesterovBf16Copy)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_AdamwBf16Copy(benchmark::State& state) {
  int nchunks = 0;
  Buf* chunks = optimizer_chunks(nchunks);
  Buf p(kParams * 4), g(kParams * 4), m(kParams * 4), v(kParams * 4), half(kParams * 2);
  fill<float>(p);
  fill<float>(g, -0.01f, 0.01f);
  stoke::cuda::AdamwArgs a;
  a.lr = 1e-3f;
  a.step_size = 1e-3f;
  // reads p, g, m, v; writes p, m, v, the bf16 copy
  timed(state, kParams * (16.0 + 14.0), true, [&](cudaStream_t s) {
    stoke::cuda::adamw_step<bf16>(chunks->as<stoke::cuda::OptimizerChunk>(), nchunks, p.as<float>(), half.as<bf16>(),
                                  g.as<float>(), m.as<float>(), v.as<float>(), a, nullptr, s);
  });
}
BENCHMARK(BM_AdamwBf16Copy)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_CheckFinite(benchmark::State& state) {
  Buf g(kParams * 4), flag(4);
  fill<float>(g);
  timed(state, kParams * 4.0, true,
        [&](cudaStream_t s) { stoke::cuda::check_finite(kParams, g.as<float>(), flag.as<int32_t>(), s); });
}
BENCHMARK(BM_CheckFinite)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- reductions -----------------------------------------------------------------------------------------------------

// ResNet-50's first stage: 256 x 56 x 56 rows of 64 channels (bf16).
constexpr int kBnRows = 256 * 56 * 56, kBnC = 64;

void BM_BatchNormReluForwardTrainBf16(benchmark::State& state) {
  const size_t n = static_cast<size_t>(kBnRows) * kBnC;
  Buf x(n * 2), y(n * 2), gamma(kBnC * 4), beta(kBnC * 4), rm(kBnC * 4), rv(kBnC * 4), sm(kBnC * 4), si(kBnC * 4),
      ws(static_cast<size_t>(stoke::cuda::batchnorm_workspace_bytes(kBnRows, kBnC)));
  fill<bf16>(x);
  fill<float>(gamma, 0.5f, 1.5f);
  // statistics pass reads x; the element-wise pass reads x and writes y
  timed(state, 3.0 * n * 2, true, [&](cudaStream_t s) {
    stoke::cuda::batchnorm_add_relu_forward_train<bf16>(kBnRows, kBnC, x.as<bf16>(), nullptr, true, gamma.as<float>(),
                                                        beta.as<float>(), 1e-5f, 0.1f, rm.as<float>(), rv.as<float>(),
                                                        y.as<bf16>(), sm.as<float>(), si.as<float>(), ws.as<char>(), s);
  });
}
BENCHMARK(BM_BatchNormReluForwardTrainBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_BatchNormAddReluBackwardBf16(benchmark::State& state) {
  const size_t n = static_cast<size_t>(kBnRows) * kBnC;
  Buf x(n * 2), y(n * 2), dy(n * 2), dx(n * 2), dr(n * 2), gamma(kBnC * 4), sm(kBnC * 4), si(kBnC * 4), dg(kBnC * 4),
      db(kBnC * 4), ws(static_cast<size_t>(stoke::cuda::batchnorm_workspace_bytes(kBnRows, kBnC)));
  fill<bf16>(x);
  fill<bf16>(y);
  fill<bf16>(dy);
  fill<float>(gamma, 0.5f, 1.5f);
  fill<float>(si, 0.5f, 1.5f);
  // sums pass reads dy, y, x; the element-wise pass reads dy, y, x and writes dx and dresidual
  timed(state, 8.0 * n * 2, true, [&](cudaStream_t s) {
    stoke::cuda::batchnorm_add_relu_backward<bf16>(kBnRows, kBnC, x.as<bf16>(), gamma.as<float>(), sm.as<float>(),
                                                   si.as<float>(), y.as<bf16>(), dy.as<bf16>(), true, dx.as<bf16>(),
                                                   dr.as<bf16>(), dg.as<float>(), db.as<float>(), ws.as<char>(), s);
  });
}
BENCHMARK(BM_BatchNormAddReluBackwardBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// 65,536 rows of 1,000 classes (bf16): reads the logits, writes their gradient.
void BM_SoftmaxCrossEntropyBf16(benchmark::State& state) {
  const int n = 65536, K = 1000;
  const size_t nk = static_cast<size_t>(n) * K;
  Buf z(nk * 2), dz(nk * 2), labels(static_cast<size_t>(n) * 4), mean(4), correct(4),
      ws(static_cast<size_t>(stoke::cuda::softmax_ce_workspace_bytes(n)));
  fill<bf16>(z, -4.f, 4.f);
  CUDA_CHECK(cudaMemset(labels.as<int32_t>(), 0, labels.bytes()));
  timed(state, 2.0 * nk * 2, true, [&](cudaStream_t s) {
    stoke::cuda::softmax_cross_entropy<bf16>(n, K, z.as<bf16>(), labels.as<int32_t>(), 0.1f, 1.f, nullptr,
                                             dz.as<bf16>(), mean.as<float>(), correct.as<int32_t>(), ws.as<char>(), s);
  });
}
BENCHMARK(BM_SoftmaxCrossEntropyBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- pooling --------------------------------------------------------------------------------------------------------

stoke::PoolShape resnet_stem_pool() {
  stoke::PoolShape sh;
  sh.n = 256, sh.h = 112, sh.w = 112, sh.c = 64, sh.kernel = 3, sh.stride = 2, sh.pad = 1;
  return sh;
}

void BM_MaxPoolForwardBf16(benchmark::State& state) {
  const stoke::PoolShape sh = resnet_stem_pool();
  const size_t nin = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c,
               nout = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.c;
  Buf x(nin * 2), y(nout * 2), arg(nout * 4);
  fill<bf16>(x);
  timed(state, nin * 2.0 + nout * 6.0, true, [&](cudaStream_t s) {
    stoke::cuda::maxpool_forward<bf16>(sh, x.as<bf16>(), y.as<bf16>(), arg.as<int32_t>(), s);
  });
}
BENCHMARK(BM_MaxPoolForwardBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_MaxPoolBackwardBf16(benchmark::State& state) {
  const stoke::PoolShape sh = resnet_stem_pool();
  const size_t nin = static_cast<size_t>(sh.n) * sh.h * sh.w * sh.c,
               nout = static_cast<size_t>(sh.n) * sh.p() * sh.q() * sh.c;
  Buf x(nin * 2), y(nout * 2), arg(nout * 4), dy(nout * 2), dx(nin * 2);
  fill<bf16>(x);
  fill<bf16>(dy);
  stoke::cuda::maxpool_forward<bf16>(sh, x.as<bf16>(), y.as<bf16>(), arg.as<int32_t>(), nullptr);
  timed(state, nout * 6.0 + nin * 2.0, true, [&](cudaStream_t s) {
    stoke::cuda::maxpool_backward<bf16>(sh, arg.as<int32_t>(), dy.as<bf16>(), dx.as<bf16>(), s);
  });
}
BENCHMARK(BM_MaxPoolBackwardBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

void BM_GlobalAvgPoolForwardBf16(benchmark::State& state) {
  const int n = 256, hw = 7 * 7, c = 2048;
  const size_t nin = static_cast<size_t>(n) * hw * c;
  Buf x(nin * 2), y(static_cast<size_t>(n) * c * 2);
  fill<bf16>(x);
  timed(state, nin * 2.0 + n * c * 2.0, true,
        [&](cudaStream_t s) { stoke::cuda::global_avgpool_forward<bf16>(n, hw, c, x.as<bf16>(), y.as<bf16>(), s); });
}
BENCHMARK(BM_GlobalAvgPoolForwardBf16)->UseManualTime()->Unit(benchmark::kMicrosecond);

// ---- host waits ------------------------------------------------------------------------------------------------
// The step's waits on the host: a kernel that spins for arg 1 microseconds, then a blocking cudaEventSynchronize
// (mode 0) against the backend's polling wait (mode 1: yield for the first millisecond, then 100 us naps;
// engine/cuda/poll_wait.h) and the former sleep-poll (mode 2: 100 us naps from the start). Wall time per launch and
// wait; `late_us` is what lies above the kernel's own length, the wait's lateness.
__global__ void spin_for_ns(unsigned long long ns) {
  unsigned long long t0 = 0, t = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

void BM_HostWait(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  const int us = static_cast<int>(state.range(1));
  cudaStream_t s = nullptr;
  cudaEvent_t e = nullptr;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  stoke::cuda::PollPolicy p;
  if (mode == 2) p.spin = std::chrono::microseconds(0);
  auto query = [&] {
    const cudaError_t q = cudaEventQuery(e);
    if (q == cudaErrorNotReady) return false;
    CUDA_CHECK(q);
    return true;
  };
  double total = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    spin_for_ns<<<1, 1, 0, s>>>(static_cast<unsigned long long>(us) * 1000);
    CUDA_LAUNCH_CHECK(s);
    CUDA_CHECK(cudaEventRecord(e, s));
    if (mode == 0)
      CUDA_CHECK(cudaEventSynchronize(e));
    else
      stoke::cuda::poll_until(query, [] {}, p);
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(t);
    total += t;
  }
  state.counters["late_us"] = total / static_cast<double>(state.iterations()) * 1e6 - us;
  state.SetLabel(mode == 0 ? "cudaEventSynchronize" : mode == 1 ? "poll: spin 1 ms, then naps" : "poll: naps only");
  CUDA_CHECK(cudaEventDestroy(e));
  CUDA_CHECK(cudaStreamDestroy(s));
}
BENCHMARK(BM_HostWait)
    ->ArgsProduct({{0, 1, 2}, {50, 300, 3000}})
    ->ArgNames({"mode", "us"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// ---- augment: transform + normalise ------------------------------------------------------------------------------

// Best bandwidth of a device-to-device copy that moves `bytes` (half read, half written), L2 flushed, so the
// kernel is compared with a copy of exactly its own traffic measured in the same run.
double copy_gbps(double bytes) {
  const size_t half = static_cast<size_t>(bytes / 2);
  Buf a(half), b(half);
  cudaEvent_t e0, e1;
  CUDA_CHECK(cudaEventCreate(&e0));
  CUDA_CHECK(cudaEventCreate(&e1));
  double best = 0;
  for (int i = 0; i < 10; ++i) {
    flush_l2(nullptr);
    CUDA_CHECK(cudaEventRecord(e0));
    CUDA_CHECK(cudaMemcpyAsync(b.as<char>(), a.as<char>(), half, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaEventRecord(e1));
    CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    best = std::max(best, 2.0 * static_cast<double>(half) / (ms / 1e3) / 1e9);
  }
  CUDA_CHECK(cudaEventDestroy(e0));
  CUDA_CHECK(cudaEventDestroy(e1));
  return best;
}

// The fused augment op on an ImageNet-sized batch: uint8 NHWC 256 x 224 x 224 x 3 -> augmented, normalised T with
// out_c channels per pixel, the transforms drawn from a real recipe (bench/bench_gpu_recipes.h; arg 0 indexes
// augment_bench_recipes()). The executor's layouts: bf16 padded to 8 channels (one 16-byte store a pixel), fp32 3.
// Bytes: the uint8 input read once and T written once (the bilinear taps' re-reads of neighbouring pixels hit the
// cache). of_copy: that bandwidth over a device-to-device cudaMemcpy of the same bytes, L2 flushed, measured in the
// same run. Target: of_copy >= 0.8.
template <typename T>
void BM_AugmentTransformNormalize(benchmark::State& state) {
  const int n = 256, h = 224, w = 224, c = 3, out_c = static_cast<int>(state.range(1));
  const std::string& recipe = stoke::bench::augment_bench_recipes().at(static_cast<size_t>(state.range(0)));
  const size_t in = static_cast<size_t>(n) * h * w * c, out = static_cast<size_t>(n) * h * w * out_c * sizeof(T);
  Buf x(in), y(out), tr(sizeof(stoke::SampleTransform) * n);
  fill<uint8_t>(x);
  const auto ts = stoke::bench::augment_bench_transforms(recipe, n, h, w, c);
  CUDA_CHECK(cudaMemcpy(tr.as<stoke::SampleTransform>(), ts.data(), tr.bytes(), cudaMemcpyHostToDevice));
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  const auto p = stoke::cuda::normalize_params(mean, sd, c);
  const double bytes = static_cast<double>(in + out);
  timed(state, bytes, true, [&](cudaStream_t s) {
    stoke::cuda::augment_transform_normalize<T>(n, h, w, c, x.as<uint8_t>(), tr.as<stoke::SampleTransform>(), p,
                                                y.as<T>(), s, out_c);
  });
  const double copy = copy_gbps(bytes);
  const double ratio = copy > 0 ? state.counters["GB/s"].value / copy : 0.0;
  state.counters["copy_GB/s"] = copy;
  state.counters["of_copy"] = ratio;
  state.SetLabel(recipe + (ratio >= 0.8 ? ", of_copy >= 0.8" : ", of_copy BELOW the 0.8 target"));
}
// The plain op (no transforms) on the same batch, as the floor the recipes are held against.
template <typename T>
void BM_AugmentNormalizePlain(benchmark::State& state) {
  const int n = 256, h = 224, w = 224, c = 3, out_c = static_cast<int>(state.range(0));
  const size_t in = static_cast<size_t>(n) * h * w * c, out = static_cast<size_t>(n) * h * w * out_c * sizeof(T);
  Buf x(in), y(out);
  fill<uint8_t>(x);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  const auto p = stoke::cuda::normalize_params(mean, sd, c);
  const double bytes = static_cast<double>(in + out);
  timed(state, bytes, true, [&](cudaStream_t s) {
    stoke::cuda::augment_normalize<T>(n, h, w, c, x.as<uint8_t>(), nullptr, p, y.as<T>(), s, out_c);
  });
  const double copy = copy_gbps(bytes);
  state.counters["copy_GB/s"] = copy;
  state.counters["of_copy"] = copy > 0 ? state.counters["GB/s"].value / copy : 0.0;
}
const std::vector<int64_t> kRecipeArgs = {0, 1, 2, 3};  // augment_bench_recipes(): monai, imagenet, cifar, every-step
BENCHMARK(BM_AugmentTransformNormalize<bf16>)
    ->ArgsProduct({kRecipeArgs, {8, 3}})
    ->ArgNames({"recipe", "out_c"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AugmentTransformNormalize<float>)
    ->ArgsProduct({kRecipeArgs, {3}})
    ->ArgNames({"recipe", "out_c"})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AugmentNormalizePlain<bf16>)->Arg(8)->ArgName("out_c")->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_AugmentNormalizePlain<float>)->Arg(3)->ArgName("out_c")->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    std::printf("bench_gpu: no usable GPU (%s): nothing to measure\n",
                e != cudaSuccess ? cudaGetErrorName(e) : "no devices");
    return 0;
  }
  const Device& d = device();
  benchmark::AddCustomContext("gpu", d.prop.name);
  benchmark::AddCustomContext("sm", std::to_string(d.prop.major) + std::to_string(d.prop.minor));
  benchmark::AddCustomContext("driver", std::to_string(d.driver));
  benchmark::AddCustomContext("cuda_runtime", std::to_string(d.runtime));
  benchmark::AddCustomContext("l2_mib", std::to_string(d.l2 >> 20));
  benchmark::AddCustomContext("d2d_gbps", std::to_string(d2d_gbps()));
  if (const char* c = std::getenv("STOKE_COMMIT")) benchmark::AddCustomContext("commit", c);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
