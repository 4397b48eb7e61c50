// CPU backend microbenchmarks: GEMM and the convolution shapes of the small CNN. Each reports GFLOP/s;
// BM_GemmNaive is the in-run reference the blocked kernel is compared against.
#include <benchmark/benchmark.h>

#include <vector>

#include "base/rng.h"
#include "kernels/augment.h"
#include "kernels/batchnorm.h"
#include "kernels/conv2d.h"
#include "kernels/gemm.h"
#include "base/parallel.h"

using namespace stoke;

namespace {
std::vector<float> randn(size_t n, uint64_t key) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = normal01(key, i);
  return v;
}

void BM_Gemm(benchmark::State& st) {
  const int m = static_cast<int>(st.range(0)), n = static_cast<int>(st.range(1)), k = static_cast<int>(st.range(2));
  auto a = randn(static_cast<size_t>(m) * k, 1), b = randn(static_cast<size_t>(k) * n, 2);
  std::vector<float> c(static_cast<size_t>(m) * n);
  for (auto _ : st) {
    sgemm(false, true, m, n, k, 1.f, a.data(), k, b.data(), k, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2e-9 * m * n * k, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Gemm)->Args({784, 32, 144})->Args({196, 64, 288})->Args({512, 512, 512})->Unit(benchmark::kMicrosecond);

void BM_GemmNaive(benchmark::State& st) {
  const int m = static_cast<int>(st.range(0)), n = static_cast<int>(st.range(1)), k = static_cast<int>(st.range(2));
  auto a = randn(static_cast<size_t>(m) * k, 1), b = randn(static_cast<size_t>(k) * n, 2);
  std::vector<float> c(static_cast<size_t>(m) * n);
  for (auto _ : st) {
    sgemm_naive(false, true, m, n, k, 1.f, a.data(), k, b.data(), k, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2e-9 * m * n * k, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GemmNaive)->Args({784, 32, 144})->Unit(benchmark::kMicrosecond);

// The small CNN's convolutions at batch 128: forward + backward.
void BM_ConvFwdBwd(benchmark::State& st) {
  ConvShape s;
  s.n = 128;
  s.h = s.w = static_cast<int>(st.range(0));
  s.c = static_cast<int>(st.range(1));
  s.k = static_cast<int>(st.range(2));
  s.r = s.s = 3;
  s.pad = 1;
  auto x = randn(static_cast<size_t>(s.n) * s.h * s.w * s.c, 3), w = randn(static_cast<size_t>(s.k) * 9 * s.c, 4);
  std::vector<float> y(static_cast<size_t>(s.n) * s.p() * s.q() * s.k), dx(x.size()), dw(w.size());
  auto dy = randn(y.size(), 5);
  for (auto _ : st) {
    cpu::conv2d_forward(s, x.data(), w.data(), nullptr, y.data());
    cpu::conv2d_backward(s, x.data(), w.data(), dy.data(), s.c > 1 ? dx.data() : nullptr, dw.data(), nullptr);
    benchmark::DoNotOptimize(dw.data());
  }
  const double macs = double(s.n) * s.p() * s.q() * s.k * 9 * s.c;
  st.counters["GFLOP/s"] =
      benchmark::Counter(2e-9 * macs * (s.c > 1 ? 3 : 2), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = ThreadPool::threads();
}
BENCHMARK(BM_ConvFwdBwd)
    ->Args({28, 1, 16})
    ->Args({14, 16, 32})
    ->Args({7, 32, 64})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_BatchNormTrainFwdBwd(benchmark::State& st) {
  const int rows = 128 * 14 * 14, c = 32;
  auto x = randn(static_cast<size_t>(rows) * c, 6), dy = randn(x.size(), 7);
  std::vector<float> y(x.size()), dx(x.size()), g(c, 1.f), b(c, 0.f), rm(c, 0.f), rv(c, 1.f), sm(c), si(c), dg(c),
      db(c);
  for (auto _ : st) {
    cpu::batchnorm_forward_train(rows, c, x.data(), g.data(), b.data(), 1e-5f, 0.1f, rm.data(), rv.data(), y.data(),
                                 sm.data(), si.data());
    cpu::batchnorm_backward(rows, c, x.data(), g.data(), sm.data(), si.data(), dy.data(), dx.data(), dg.data(),
                            db.data());
    benchmark::DoNotOptimize(dx.data());
  }
  st.counters["GB/s"] =
      benchmark::Counter(1e-9 * 5.0 * sizeof(float) * x.size(), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_BatchNormTrainFwdBwd)->Unit(benchmark::kMicrosecond)->UseRealTime();

// The one-pass augmentation reference on a batch of 32 224x224x3 images: arg 0 the identity (the plain
// normalisation's cost), 1 rotation, zoom, flips, colour jitter, gamma, noise and an erase box, 2 the imagenet
// preset's part (flip, brightness/contrast/saturation 0.4), 3 the monai preset (rotate 15, zoom 0.9:1.1 each with
// p 0.5, flip). Arg 1 of the pair: pool threads (0 = all). GB/s counts the uint8 input and the fp32 output once;
// ms_per_image is what one thread spends on an image (the figure to set against a decoder thread's time per image).
void BM_AugmentTransformNormalize(benchmark::State& st) {
  const int n = 32, h = 224, w = 224, c = 3;
  const int threads_before = ThreadPool::threads();
  if (st.range(1) > 0) ThreadPool::set_threads(static_cast<int>(st.range(1)));
  std::vector<uint8_t> x(static_cast<size_t>(n) * h * w * c);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>(uniform_below(9, i, 256));
  AugmentRecipe r;
  if (st.range(0) == 1) {
    r.rotate_deg = {-15.f, 15.f}, r.zoom = {0.9f, 1.1f}, r.translate = 0.1f, r.hflip_p = 0.5f;
    r.brightness = {-0.1f, 0.1f}, r.contrast = {0.8f, 1.2f}, r.saturation = {0.8f, 1.2f}, r.hue = {-0.05f, 0.05f};
    r.gamma = {0.8f, 1.2f}, r.noise_p = 1.f, r.noise_std = {0.02f, 0.05f}, r.erase_p = 0.5f;
  } else if (st.range(0) == 2) {
    r.hflip_p = 0.5f, r.brightness_factor = {0.6f, 1.4f}, r.contrast = {0.6f, 1.4f}, r.saturation = {0.6f, 1.4f};
  } else if (st.range(0) == 3) {
    r.rotate_deg = {-15.f, 15.f}, r.rotate_p = 0.5f, r.zoom = {0.9f, 1.1f}, r.zoom_p = 0.5f, r.hflip_p = 0.5f;
  }
  std::vector<SampleTransform> ts;
  for (int i = 0; i < n; ++i) ts.push_back(draw_sample_transform(r, h, w, c, static_cast<uint64_t>(i)));
  std::vector<float> scale, shift, y(x.size());
  normalize_coefficients({0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, scale, shift);
  for (auto _ : st) {
    cpu::augment_transform_normalize(n, h, w, c, x.data(), ts.data(), scale.data(), shift.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GB/s"] =
      benchmark::Counter(1e-9 * 5.0 * static_cast<double>(x.size()), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["threads"] = ThreadPool::threads();
  st.counters["ms_per_image"] = benchmark::Counter(n / (1e3 * ThreadPool::threads()),
                                                   benchmark::Counter::kIsIterationInvariantRate |
                                                       benchmark::Counter::kInvert);
  ThreadPool::set_threads(threads_before);
}
BENCHMARK(BM_AugmentTransformNormalize)
    ->ArgsProduct({{0, 1, 2, 3}, {0, 1}})
    ->ArgNames({"recipe", "threads"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
