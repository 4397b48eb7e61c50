// The CudaExecutor against the CPU backend: one whole training step of the small CNN (from uint8 pixels through
// the augment kernel, loss, every gradient, the SGD update, BN running statistics), a graph with every op and
// fusion (residual adds, a downsampling add of two BNs, concat, avg/global pooling, conv bias) under SGD and AdamW,
// evaluation, fp16 loss scaling, deterministic mode, and 200 steps of training landing in the CPU's accuracy band.
//
// Whole-model comparisons use the relative L2 error per tensor with a noise floor (Tol<T>::model_l2, Tol<T>::noise:
// the table in gpu_test_util.h), printed as a share of it. Half-precision whole-graph parity runs avg-pool twins
// of the graphs (max-pool near-ties flip between fp32 and half activations; see the table's notes); fp32 runs the
// max-pool graphs, and the 200-step training runs the real small CNN in every precision.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <vector>

#include "engine/cpu/executor.h"
#include "engine/cuda/executor.h"
#include "engine/graph.h"
#include "engine/optimizer.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"
#include "tests/engine/thread_world.h"
#include "tests/gpu/every_op_graph.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/synthetic_digits.h"
#include "tests/gpu/train_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

const bool kNoTf32 = [] { return ::setenv("NVIDIA_TF32_OVERRIDE", "0", 1) == 0; }();

template <typename T>
class GpuExecutor : public ::testing::Test {};
TYPED_TEST_SUITE(GpuExecutor, StorageTypes, StorageNames);

template <typename T>
CudaExecutorOptions options_for(const OptimizerConfig& oc = {}) {
  CudaExecutorOptions o;
  o.precision = cuda::precision_of<T>();
  o.optimizer = oc;
  // fp16: start at a scale whose products stay finite, so the one compared step is not skipped (the default 2^16
  // can overflow a half-precision conv dW on the first step; the scaler then backs off, as PyTorch's does).
  o.loss_scale = 1024.f;
  return o;
}

std::vector<float> slice(const std::vector<float>& v, const ParamInfo& p) {
  return {v.begin() + p.offset, v.begin() + p.offset + p.size};
}

std::vector<float> minus(const std::vector<float>& a, const std::vector<float>& b) {
  std::vector<float> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];
  return d;
}

// One training step on both backends from the same state and batch; compares everything a step produces.
// `pixels` set: the GPU starts from uint8 (augment kernel, flips); otherwise from the normalised floats `x`.
struct StepInput {
  int n = 0;
  std::vector<float> x;           // normalised, n x H x W x C (what the CPU sees)
  std::vector<uint8_t> pixels;    // optional: the raw batch the GPU normalises itself
  std::vector<uint8_t> flips;     // with pixels
  float mean = 0, stdev = 1;      // with pixels (one channel)
  std::vector<int32_t> labels;
  float smoothing = 0.1f;
  float lr = 0.05f;
};

template <typename T>
void compare_training_step(const Graph& g, const StepInput& in, const OptimizerConfig& oc, uint64_t seed) {
  const int classes = static_cast<int>(g.nodes().back().out.size());
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), seed);
  // Start from non-trivial running statistics so their update is visible.
  for (const ParamInfo& b : g.buffers())
    for (int64_t i = 0; i < b.size; ++i)
      buffers[static_cast<size_t>(b.offset + i)] =
          b.init == Init::ones ? 1.f + 0.01f * static_cast<float>(i % 7) : 0.05f;

  // CPU backend.
  std::vector<float> cp = params, cb = buffers, cg(params.size(), 0.f), dlogits(static_cast<size_t>(in.n * classes));
  CpuExecutor cex(g, in.n);
  const float* logits = cex.forward(in.n, in.x.data(), cp.data(), cb.data(), true);
  const std::vector<float> cpu_logits(logits, logits + in.n * classes);
  int64_t cpu_correct = 0;
  const float cpu_loss = cpu::softmax_cross_entropy(in.n, classes, logits, in.labels.data(), in.smoothing, 1.f, nullptr,
                                                    dlogits.data(), &cpu_correct);
  cex.backward(cp.data(), cg.data(), dlogits.data());
  Optimizer opt(oc, g.params(), g.num_params());
  opt.step(cp.data(), cg.data(), in.lr);

  // CUDA backend, from the same state.
  CudaExecutor ex(g, in.n + 3, options_for<T>(oc));
  std::printf(" %s\n", ex.describe().c_str());
  ex.upload_params(params.data());
  ex.upload_buffers(buffers.data());
  copy_to_device(ex.device_labels(), in.labels.data(), in.labels.size() * sizeof(int32_t), ex.stream());
  if (!in.pixels.empty()) {
    ex.set_normalization({in.mean}, {in.stdev});
    copy_to_device(ex.device_pixels(), in.pixels.data(), in.pixels.size(), ex.stream());
    if (!in.flips.empty()) copy_to_device(ex.device_flips(), in.flips.data(), in.flips.size(), ex.stream());
    ex.normalize(in.n, ex.device_pixels(), in.flips.empty() ? nullptr : ex.device_flips());
    ex.forward(in.n, true);
  } else {
    ex.forward_normalized_host(in.n, in.x.data(), true);
  }
  std::vector<float> gpu_logits(cpu_logits.size());
  ex.download_logits(gpu_logits.data());
  ex.loss(in.n, ex.device_labels(), in.smoothing, true);
  ex.backward();
  std::vector<float> gg(params.size());
  ex.download_grads(gg.data());
  ex.step(in.lr);
  const CudaStepStats st = ex.stats();
  EXPECT_TRUE(st.step_applied);
  EXPECT_EQ(ex.optimizer_steps(), 1);
  for (float& v : gg) v /= st.loss_scale;  // fp16: the gradients carry the loss scale
  std::vector<float> gp(params.size()), gb(buffers.size());
  ex.download_params(gp.data());
  ex.download_buffers(gb.data());

  expect_model_close<T>("logits", gpu_logits, cpu_logits);
  expect_model_close<T>("loss", {st.loss}, {cpu_loss});
  EXPECT_NEAR(static_cast<double>(st.correct), static_cast<double>(cpu_correct), 1.0 + 0.05 * in.n);
  // AdamW's first update is about lr * sign(g) whatever |g| is, so elements with near-zero gradients may flip
  // between backends: compare its moments (proportional to g and g^2; the update arithmetic itself is checked bit
  // for bit in GpuOps.OptimizerStepsMatchTheCpuBitForBit). SGD's update is proportional to the gradient.
  std::vector<float> gstate;
  int64_t gsteps = 0;
  ex.download_optimizer_state(gstate, gsteps);
  EXPECT_EQ(gsteps, 1);
  const std::vector<float>& cstate = opt.state();
  ASSERT_EQ(gstate.size(), cstate.size());
  const int64_t P = g.num_params();
  // The families whose rms sets each comparison's noise floor (gpu_test_util.h): all gradients, all updates, ...
  const double grad_rms = rms_of(cg), update_rms = rms_of(minus(cp, params)), stat_rms = rms_of(minus(cb, buffers));
  const double m_rms =
      rms_of({cstate.begin(), cstate.begin() + std::min<int64_t>(P, static_cast<int64_t>(cstate.size()))});
  const double v_rms = cstate.size() >= static_cast<size_t>(2 * P) ? rms_of({cstate.begin() + P, cstate.end()}) : 0.0;
  for (const ParamInfo& p : g.params()) {
    expect_model_close<T>("grad " + p.name, slice(gg, p), slice(cg, p), grad_rms);
    if (oc.kind == OptimizerKind::sgd) {
      expect_model_close<T>("update " + p.name, minus(slice(gp, p), slice(params, p)),
                            minus(slice(cp, p), slice(params, p)), update_rms);
    } else {
      ParamInfo v = p;
      v.offset += P;
      expect_model_close<T>("adam m " + p.name, slice(gstate, p), slice(cstate, p), m_rms);
      expect_model_close<T>("adam v " + p.name, slice(gstate, v), slice(cstate, v), v_rms, 2);
    }
  }
  for (const ParamInfo& b : g.buffers())
    expect_model_close<T>("running-stat change " + b.name, minus(slice(gb, b), slice(buffers, b)),
                          minus(slice(cb, b), slice(buffers, b)), stat_rms);
}

// The small CNN's layers with avg-pool where it has max-pool: half-precision whole-graph parity (see the top).
Graph small_cnn_avgpool_twin() {
  const Graph real = build_model("small-cnn", {28, 28, 1}, 10);
  Graph g({28, 28, 1}, "small-cnn-avgpool");
  int x = g.input();
  for (size_t i = 1; i < real.nodes().size(); ++i) {
    const Node& nd = real.nodes()[i];
    switch (nd.op) {
      case Op::conv: x = g.conv(x, nd.k, nd.r, nd.stride, nd.pad, nd.bias >= 0, nd.name); break;
      case Op::batchnorm: x = g.batchnorm(x, nd.name, nd.eps, nd.momentum); break;
      case Op::relu: x = g.relu(x); break;
      case Op::maxpool: x = g.avgpool(x, nd.r, nd.stride, nd.pad); break;
      case Op::global_avgpool: x = g.global_avgpool(x); break;
      case Op::linear: x = g.linear(x, nd.out_features, nd.name, nd.bias >= 0); break;
      default: ADD_FAILURE() << "the small CNN gained an op this twin does not copy: node " << i; break;
    }
  }
  EXPECT_EQ(g.num_params(), real.num_params());
  return g;
}

TYPED_TEST(GpuExecutor, SmallCnnTrainingStepMatchesTheCpuBackend) {
  REQUIRE_GPU();
  using T = TypeParam;
  const Graph g = std::is_same_v<T, float> ? build_model("small-cnn", {28, 28, 1}, 10) : small_cnn_avgpool_twin();
  const DigitSet d = make_digits(37, 21);
  const auto [mean, stdev] = digit_stats(d);
  StepInput in;
  in.n = d.n;
  in.pixels = d.pixels;
  in.labels = d.labels;
  in.mean = mean;
  in.stdev = stdev;
  in.flips.resize(static_cast<size_t>(d.n));
  for (int i = 0; i < d.n; ++i) in.flips[static_cast<size_t>(i)] = (i % 3) == 1;
  // The CPU sees the flipped images, normalised exactly as the augment kernel does.
  in.x.resize(d.pixels.size());
  const float scale = 1.f / (255.f * stdev), shift = -mean / stdev;
  for (int i = 0; i < d.n; ++i)
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        const int sx = in.flips[static_cast<size_t>(i)] ? 27 - x : x;
        in.x[static_cast<size_t>((i * 28 + y) * 28 + x)] =
            static_cast<float>(d.pixels[static_cast<size_t>((i * 28 + y) * 28 + sx)]) * scale + shift;
      }
  OptimizerConfig sgd;  // Nesterov momentum 0.9, weight decay 5e-4
  compare_training_step<T>(g, in, sgd, 3);
}

TYPED_TEST(GpuExecutor, EveryOpGraphTrainingStepMatchesTheCpuBackend) {
  REQUIRE_GPU();
  using T = TypeParam;
  const Graph g = every_op_graph(std::is_same_v<T, float>);
  StepInput in;
  in.n = 9;
  in.x = rounded<T>(random_vec(static_cast<size_t>(in.n) * 13 * 11 * 3, 301));
  for (int i = 0; i < in.n; ++i) in.labels.push_back(i % 7);
  in.smoothing = 0.f;
  in.lr = 0.02f;
  OptimizerConfig sgd;
  sgd.nesterov = false;
  compare_training_step<T>(g, in, sgd, 5);
  in.lr = 1e-3f;
  OptimizerConfig adamw;
  adamw.kind = OptimizerKind::adamw;
  adamw.weight_decay = 0.05f;
  compare_training_step<T>(g, in, adamw, 5);
}

// --sync-bn through every batch norm of the every-op graph (plain, fused with ReLU, with an add), in a world of two
// ranks as threads: rank 0 the CUDA executor, rank 1 the CPU executor, each with half of the batch and the mean loss
// over its half, their batch-norm sums exchanged (the device's through host memory). The two ranks' gradients
// averaged, as the gradient all-reduce does, are the gradients of one CPU executor over the whole batch. fp32: the
// comparison is about the sums, not the storage type (GpuSyncBn.* covers those).
TEST(GpuExecutorSyncBn, TwoRanksGpuAndCpuHaveTheGradientsOfOneRank) {
  REQUIRE_GPU();
  const Graph g = every_op_graph(true);
  const int half = 5, n = 2 * half, classes = 7;
  const Shape3 in = g.input_shape();
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 8);
  const std::vector<float> x = random_vec(static_cast<size_t>(n) * in.size(), 303);
  std::vector<int32_t> labels;
  for (int i = 0; i < n; ++i) labels.push_back((i * 3) % classes);

  auto cpu_grads = [&](CpuExecutor& ex, int k, const float* xs, const int32_t* ls, std::vector<float>& bufs) {
    std::vector<float> gr(params.size(), 0.f), dl(static_cast<size_t>(k * classes));
    const float* logits = ex.forward(k, xs, params.data(), bufs.data(), true);
    cpu::softmax_cross_entropy(k, classes, logits, ls, 0.f, 1.f, nullptr, dl.data(), nullptr);
    ex.backward(params.data(), gr.data(), dl.data());
    return gr;
  };
  std::vector<float> whole_buffers = buffers;
  CpuExecutor whole(g, n);
  const std::vector<float> expect = cpu_grads(whole, n, x.data(), labels.data(), whole_buffers);

  ThreadWorld world(2);
  std::vector<float> grads[2], bufs[2] = {buffers, buffers};
  world.run([&](int r) {
    const float* xs = x.data() + static_cast<size_t>(r) * half * in.size();
    const int32_t* ls = labels.data() + r * half;
    if (r == 1) {
      CpuExecutor ex(g, half);
      ex.set_sync_batchnorm(bn_sums_over(world.rank(r)));
      grads[1] = cpu_grads(ex, half, xs, ls, bufs[1]);
      return;
    }
    CudaExecutor ex(g, half, options_for<float>());
    ex.set_sync_batchnorm(through_host(bn_sums_over(world.rank(r))));
    ex.upload_params(params.data());
    ex.upload_buffers(buffers.data());
    copy_to_device(ex.device_labels(), ls, half * sizeof(int32_t), ex.stream());
    ex.forward_normalized_host(half, xs, true);
    ex.loss(half, ex.device_labels(), 0.f, true);
    ex.backward();
    grads[0].resize(params.size());
    ex.download_grads(grads[0].data());
    const float scale = ex.stats().loss_scale;
    for (float& v : grads[0]) v /= scale;
    ex.download_buffers(bufs[0].data());
  });
  const double grad_rms = rms_of(expect);
  for (const ParamInfo& p : g.params()) {
    std::vector<float> avg = slice(grads[0], p);
    const std::vector<float> g1 = slice(grads[1], p);
    for (size_t i = 0; i < avg.size(); ++i) avg[i] = 0.5f * (avg[i] + g1[i]);
    expect_model_close<float>("averaged grad " + p.name, avg, slice(expect, p), grad_rms);
  }
  // Both ranks' running statistics are the whole batch's (the same sums on both).
  const double stat_rms = rms_of(minus(whole_buffers, buffers));
  expect_model_close<float>("rank 0 (GPU) running-stat change", minus(bufs[0], buffers), minus(whole_buffers, buffers),
                            stat_rms);
  expect_model_close<float>("rank 1 (CPU) running-stat change", minus(bufs[1], buffers), minus(whole_buffers, buffers),
                            stat_rms);
}

TYPED_TEST(GpuExecutor, EvaluationMatchesTheCpuBackend) {
  REQUIRE_GPU();
  using T = TypeParam;
  const Graph g = every_op_graph(std::is_same_v<T, float>);
  const int n = 11;
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 9);
  const auto rs = random_vec(buffers.size(), 302, 0.2f, 1.5f);
  for (const ParamInfo& b : g.buffers())  // running means in [-0.5, 0.5], variances in [0.2, 1.5]
    for (int64_t i = 0; i < b.size; ++i)
      buffers[static_cast<size_t>(b.offset + i)] =
          b.init == Init::ones ? rs[static_cast<size_t>(b.offset + i)] : rs[static_cast<size_t>(b.offset + i)] - 0.85f;
  const auto x = rounded<T>(random_vec(static_cast<size_t>(n) * 13 * 11 * 3, 303));
  CpuExecutor cex(g, n);
  const float* logits = cex.forward(n, x.data(), params.data(), buffers.data(), false);
  CudaExecutor ex(g, n, options_for<T>());
  ex.upload_params(params.data());
  ex.upload_buffers(buffers.data());
  ex.forward_normalized_host(n, x.data(), false);
  std::vector<float> gl(static_cast<size_t>(n) * 7);
  ex.download_logits(gl.data());
  expect_model_close<T>("eval logits", gl, std::vector<float>(logits, logits + n * 7));
  std::vector<float> gb(buffers.size());
  ex.download_buffers(gb.data());
  expect_bitwise("running statistics untouched by eval", gb, buffers);
}

// fp16: a loss scale so large that the gradients overflow makes the step a no-op and halves the scale.
TEST(GpuExecutorFp16, OverflowSkipsTheStepAndBacksOff) {
  REQUIRE_GPU();
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  CudaExecutorOptions o;
  o.precision = cuda::Precision::fp16;
  o.loss_scale = std::ldexp(1.f, 40);
  CudaExecutor ex(g, 16, o);
  const DigitSet d = make_digits(16, 31);
  std::vector<float> before(static_cast<size_t>(g.num_params())), after(before.size());
  ex.download_params(before.data());
  copy_to_device(ex.device_pixels(), d.pixels.data(), d.pixels.size(), ex.stream());
  copy_to_device(ex.device_labels(), d.labels.data(), d.labels.size() * sizeof(int32_t), ex.stream());
  ex.normalize(16, ex.device_pixels(), nullptr);
  ex.forward(16, true);
  ex.loss(16, ex.device_labels(), 0.f, true);
  ex.backward();
  ex.step(0.1f);
  CudaStepStats st = ex.stats();
  EXPECT_FALSE(st.step_applied);
  EXPECT_EQ(st.loss_scale, std::ldexp(1.f, 40));
  EXPECT_EQ(ex.optimizer_steps(), 0);
  ex.download_params(after.data());
  expect_bitwise("fp16 params after a skipped step", after, before);
  // The next step runs at half the scale.
  ex.normalize(16, ex.device_pixels(), nullptr);
  ex.forward(16, true);
  ex.loss(16, ex.device_labels(), 0.f, true);
  st = ex.stats();
  EXPECT_EQ(st.loss_scale, std::ldexp(1.f, 39));
}

// --deterministic: two executors fed the same batches end with the same bits.
TEST(GpuExecutorDeterminism, DeterministicRunsAreBitIdentical) {
  REQUIRE_GPU();
  const Graph g = every_op_graph();
  const auto x = random_vec(static_cast<size_t>(12) * 13 * 11 * 3, 311);
  std::vector<int32_t> labels(12);
  for (int i = 0; i < 12; ++i) labels[static_cast<size_t>(i)] = (i * 5) % 7;
  std::vector<std::vector<float>> finals;
  std::vector<float> losses;
  for (int run = 0; run < 2; ++run) {
    CudaExecutorOptions o;
    o.deterministic = true;
    CudaExecutor ex(g, 12, o);
    copy_to_device(ex.device_labels(), labels.data(), labels.size() * sizeof(int32_t), ex.stream());
    for (int step = 0; step < 3; ++step) {
      ex.forward_normalized_host(12, x.data(), true);
      ex.loss(12, ex.device_labels(), 0.f, true);
      ex.backward();
      ex.step(0.02f);
      losses.push_back(ex.stats().loss);
    }
    finals.emplace_back(static_cast<size_t>(g.num_params()));
    ex.download_params(finals.back().data());
  }
  expect_bitwise("params after 3 deterministic steps", finals[1], finals[0]);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(losses[static_cast<size_t>(i)], losses[static_cast<size_t>(i + 3)]);
}

// ---- 200 steps of training ------------------------------------------------------------------------------------------
double train_gpu(const Graph& g, const DigitSet& train, const DigitSet& test, const TrainRecipe& r, cuda::Precision p) {
  const auto [mean, stdev] = digit_stats(train);
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), r.seed);
  CudaExecutorOptions o;
  o.precision = p;
  o.optimizer = r.optimizer;
  CudaExecutor ex(g, r.batch, o);
  ex.upload_params(params.data());
  ex.upload_buffers(buffers.data());
  ex.set_normalization({mean}, {stdev});
  const Schedule sched = recipe_schedule(r);
  constexpr int px = DigitSet::kSize * DigitSet::kSize;
  std::vector<uint8_t> batch(static_cast<size_t>(r.batch) * px);
  auto stage = [&](const DigitSet& set, int first, int count) {
    for (int i = 0; i < count; ++i)
      std::copy_n(set.pixels.begin() + static_cast<std::ptrdiff_t>(((first + i) % set.n) * px), px,
                  batch.begin() + static_cast<std::ptrdiff_t>(i) * px);
    const auto labels = batch_labels(set, first, count);
    CUDA_CHECK(cudaMemcpyAsync(ex.device_pixels(), batch.data(), static_cast<size_t>(count) * px,
                               cudaMemcpyHostToDevice, ex.stream()));
    CUDA_CHECK(cudaMemcpyAsync(ex.device_labels(), labels.data(), labels.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, ex.stream()));
    CUDA_CHECK(cudaStreamSynchronize(ex.stream()));  // the host buffers are reused next batch
  };
  int skipped = 0;
  for (int step = 0; step < r.steps; ++step) {
    stage(train, step * r.batch, r.batch);
    ex.normalize(r.batch, ex.device_pixels(), nullptr);
    ex.forward(r.batch, true);
    ex.loss(r.batch, ex.device_labels(), 0.f, true);
    ex.backward();
    ex.step(sched.at(step));
    const CudaStepStats st = ex.stats();
    skipped += st.step_applied ? 0 : 1;
    EXPECT_TRUE(std::isfinite(st.loss)) << "step " << step;
  }
  int64_t correct = 0;
  for (int first = 0; first < test.n; first += r.batch) {
    const int count = std::min(r.batch, test.n - first);
    stage(test, first, count);
    ex.normalize(count, ex.device_pixels(), nullptr);
    ex.forward(count, false);
    ex.loss(count, ex.device_labels(), 0.f, false);
    correct += ex.stats().correct;
  }
  std::printf("  %s: %d of %d steps skipped by the loss scaler\n", cuda::to_string(ex.precision()), skipped, r.steps);
  return static_cast<double>(correct) / test.n;
}

TYPED_TEST(GpuExecutor, SyntheticDigits200StepsLandInTheCpuAccuracyBand) {
  REQUIRE_GPU();
  using T = TypeParam;
  static const DigitSet train = make_digits(200 * 64, 11), test = make_digits(2000, 12);
  static const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  static const double cpu_acc = train_cpu(g, train, test, TrainRecipe{});
  const double gpu_acc = train_gpu(g, train, test, TrainRecipe{}, cuda::precision_of<T>());
  std::printf("  200 steps of 64 synthetic digits: CPU backend %.2f%%, CUDA %s %.2f%% (band +-2 points)\n",
              100 * cpu_acc, Tol<T>::name, 100 * gpu_acc);
  EXPECT_GE(cpu_acc, 0.90);
  EXPECT_NEAR(gpu_acc, cpu_acc, 0.02);
}

}  // namespace
}  // namespace stoke
