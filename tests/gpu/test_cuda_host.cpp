// Host-side pieces of the CUDA backend that run without a GPU: error messages of the check macros, the
// counting arena that plans device memory, and the device probe's behaviour on a machine without a device.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "base/cuda_check.h"
#include "base/error.h"
#include "base/format.h"
#include "engine/cuda/arena.h"
#include "engine/cuda/conv.h"
#include "engine/cuda/lib_check.h"
#include "engine/cuda/param_layout.h"
#include "engine/cuda/runtime.h"
#include "engine/graph.h"
#include "engine/optimizer.h"

namespace stoke::cuda {
namespace {

std::string message_of(void (*fn)()) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CudaCheck, NamesStatusExpressionFileAndLine) {
  const std::string m = message_of([] { CUDA_CHECK(cudaErrorInvalidValue); });
  EXPECT_NE(m.find("cudaErrorInvalidValue"), std::string::npos) << m;
  EXPECT_NE(m.find("(1)"), std::string::npos) << m;
  EXPECT_NE(m.find("in cudaErrorInvalidValue"), std::string::npos) << m;
  EXPECT_NE(m.find("test_cuda_host.cpp:"), std::string::npos) << m;
}

TEST(CudaCheck, NoexceptVariantOnlyPrints) {
  testing::internal::CaptureStderr();
  EXPECT_NO_THROW(CUDA_CHECK_NOEXCEPT(cudaErrorMemoryAllocation));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("cudaErrorMemoryAllocation"), std::string::npos) << err;
}

TEST(CudaCheck, CudnnAndCublasStatusNames) {
  const std::string a = message_of([] { CUDNN_CHECK(CUDNN_STATUS_NOT_SUPPORTED); });
  EXPECT_NE(a.find("CUDNN_STATUS_NOT_SUPPORTED"), std::string::npos) << a;
  EXPECT_NE(a.find("cuDNN error"), std::string::npos) << a;
  const std::string b = message_of([] { CUBLAS_CHECK(CUBLAS_STATUS_NOT_SUPPORTED); });
  EXPECT_NE(b.find("CUBLAS_STATUS_NOT_SUPPORTED"), std::string::npos) << b;
  EXPECT_NE(b.find("test_cuda_host.cpp:"), std::string::npos) << b;
}

TEST(DeviceArena, CountingPlanAlignsEveryAllocation) {
  DeviceArena plan = DeviceArena::counting();
  EXPECT_TRUE(plan.is_counting());
  auto* a = plan.alloc<float>(3, "a");      // 12 B -> 256
  auto* b = plan.alloc<uint8_t>(257, "b");  // -> 512
  auto* c = plan.alloc<double>(0, "c");     // even empty requests get a distinct slot
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % DeviceArena::kAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b) - reinterpret_cast<uintptr_t>(a), 256u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(c) - reinterpret_cast<uintptr_t>(b), 512u);
  EXPECT_EQ(plan.used(), 256u + 512u + 256u);
}

TEST(DeviceArena, EmptyArenaRefusesWithTheRequestNamed) {
  DeviceArena empty;
  try {
    empty.allocate(1000, "activations of conv1");
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("activations of conv1"), std::string::npos) << m;
    EXPECT_NE(m.find("1.0 KiB"), std::string::npos) << m;  // 1000 rounded up to 1024
  }
}

TEST(DeviceArena, DebugModeFromTheEnvironment) {
  const char* old = std::getenv("STOKE_ARENA_DEBUG");
  const std::string saved = old ? old : "";
  ::unsetenv("STOKE_ARENA_DEBUG");
  EXPECT_FALSE(DeviceArena::debug_from_env());
  ::setenv("STOKE_ARENA_DEBUG", "0", 1);
  EXPECT_FALSE(DeviceArena::debug_from_env());
  ::setenv("STOKE_ARENA_DEBUG", "1", 1);
  EXPECT_TRUE(DeviceArena::debug_from_env());
  if (old)
    ::setenv("STOKE_ARENA_DEBUG", saved.c_str(), 1);
  else
    ::unsetenv("STOKE_ARENA_DEBUG");
}

// Debug mode: construction allocates nothing, each allocate() is its own cudaMalloc, the capacity accounting is
// the normal arena's (an under-counted plan still fails, naming the request).
TEST(DeviceArena, DebugModeAllocatesEachBufferAlone) {
  DeviceArena a(1000, "debug test", /*debug=*/true);  // 1024 B after rounding
  EXPECT_TRUE(a.is_debug());
  EXPECT_EQ(a.base(), nullptr);
  EXPECT_EQ(a.capacity(), 1024u);
  if (device_unavailable_reason(0).empty()) {
    void* p = a.allocate(13, "thirteen bytes");
    void* q = a.allocate(300, "three hundred bytes");
    EXPECT_NE(p, q);
    EXPECT_EQ(a.used(), 256u + 512u);
    try {
      a.allocate(300, "one too many");
      FAIL() << "no throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("one too many"), std::string::npos) << e.what();
    }
  } else {
    try {
      a.allocate(13, "thirteen bytes");
      FAIL() << "a cudaMalloc succeeded without a device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("thirteen bytes"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("STOKE_ARENA_DEBUG"), std::string::npos) << e.what();
    }
  }
}

TEST(DeviceArena, FormatBytes) {
  EXPECT_EQ(format_bytes(100), "100 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(size_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(format_bytes(size_t{5} << 30), "5.00 GiB");
}

TEST(CudaRuntime, ProbeNeverThrowsAndUseDeviceExplains) {
  std::string why;
  EXPECT_NO_THROW(why = device_unavailable_reason(0));
  if (why.empty()) {
    DeviceInfo d = use_device(0);
    EXPECT_GT(d.sms, 0);
    std::printf("device: %s\n", d.describe().c_str());
  } else {
    std::printf("no device here: %s\n", why.c_str());
    try {
      use_device(0);
      FAIL() << "use_device succeeded without a device";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no usable CUDA device"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(version_string(13000), "13.0");
  EXPECT_EQ(version_string(12080), "12.8");
}

}  // namespace
}  // namespace stoke::cuda

#include "engine/cuda/loss_scaler.h"
#include "engine/cuda/precision.h"

namespace stoke::cuda {
namespace {

TEST(LossScaler, BacksOffOnOverflowAndGrowsAfterTheInterval) {
  LossScaler s(1024.f, 3);
  EXPECT_EQ(s.scale(), 1024.f);
  s.update(false);  // overflow: halve, the step was skipped
  EXPECT_EQ(s.scale(), 512.f);
  EXPECT_EQ(s.skipped(), 1);
  s.update(true);
  s.update(true);
  EXPECT_EQ(s.scale(), 512.f);
  s.update(true);  // third finite step in a row: double
  EXPECT_EQ(s.scale(), 1024.f);
  EXPECT_EQ(s.streak(), 0);
  s.update(true);
  s.update(false);  // an overflow resets the streak
  s.update(true);
  s.update(true);
  EXPECT_EQ(s.scale(), 512.f);
  s.update(true);
  EXPECT_EQ(s.scale(), 1024.f);
}

TEST(LossScaler, DefaultsArePyTorchs) {
  LossScaler s;
  EXPECT_EQ(s.scale(), 65536.f);
  for (int i = 0; i < 1999; ++i) s.update(true);
  EXPECT_EQ(s.scale(), 65536.f);
  s.update(true);
  EXPECT_EQ(s.scale(), 131072.f);
}

TEST(LossScaler, StaysWithinBounds) {
  LossScaler s(2.f, 1);
  for (int i = 0; i < 100; ++i) s.update(false);
  EXPECT_EQ(s.scale(), LossScaler::kMinScale);
  for (int i = 0; i < 100; ++i) s.update(true);
  EXPECT_EQ(s.scale(), LossScaler::kMaxScale);
}

// Every parameter tensor's device offset is aligned for 16-byte (and wider) accesses in fp32 and in half, for
// tensors whose sizes are not multiples of 8 (3- and 5-channel convs, odd biases); the flat CPU layout round-trips.
TEST(DeviceParamLayout, EveryTensorStartsAligned) {
  Graph g({13, 11, 3}, "odd");
  int x = g.conv(g.input(), 5, 3, 1, 1, true, "c1");  // 5x3x3x3 = 135 weights, 5 biases
  x = g.relu(g.batchnorm(x, "bn1"));                  // 5 + 5
  x = g.conv(x, 7, 1, 1, 0, true, "c2");              // 35 + 7
  g.linear(g.global_avgpool(x), 3, "head");           // 21 + 3
  const DeviceParamLayout pl(g.params());
  ASSERT_EQ(pl.tensors(), g.params().size());
  EXPECT_EQ(pl.flat_total(), g.num_params());
  int64_t end = 0;
  bool some_flat_offset_misaligned = false;
  for (size_t i = 0; i < pl.tensors(); ++i) {
    const ParamInfo& p = g.params()[i];
    EXPECT_EQ(pl.offset(i) * 2 % 16, 0) << p.name << " half copy";
    EXPECT_EQ(pl.offset(i) * 4 % 16, 0) << p.name << " fp32";
    EXPECT_EQ(pl.offset(i) % DeviceParamLayout::kParamAlignElems, 0) << p.name;
    EXPECT_GE(pl.offset(i), end) << p.name << " overlaps the tensor before it";
    end = pl.offset(i) + p.size;
    some_flat_offset_misaligned |= (p.offset * 2) % 16 != 0;
  }
  EXPECT_TRUE(some_flat_offset_misaligned) << "the graph no longer exercises a misaligned flat offset";
  EXPECT_GE(pl.total(), end);
  EXPECT_EQ(pl.total() % DeviceParamLayout::kParamAlignElems, 0);

  std::vector<float> flat(static_cast<size_t>(g.num_params()));
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<float>(i) + 0.5f;
  const std::vector<float> dev = pl.to_device(flat.data());
  ASSERT_EQ(static_cast<int64_t>(dev.size()), pl.total());
  double gap_sum = 0, tensor_sum = 0;
  for (float v : dev) gap_sum += v;
  for (float v : flat) tensor_sum += v;
  EXPECT_EQ(gap_sum, tensor_sum) << "the gaps must be zeros";
  for (size_t i = 0; i < pl.tensors(); ++i)
    EXPECT_EQ(dev[static_cast<size_t>(pl.offset(i))], flat[static_cast<size_t>(g.params()[i].offset)]) << i;
  std::vector<float> back(flat.size(), -1.f);
  pl.to_flat(dev, back.data());
  EXPECT_EQ(back, flat);
}

TEST(DeviceInputChannels, HalfPrecisionPadsFewChannelsToEight) {
  EXPECT_EQ(device_input_channels(Precision::bf16, 1, true), 8);
  EXPECT_EQ(device_input_channels(Precision::fp16, 3, true), 8);
  EXPECT_EQ(device_input_channels(Precision::bf16, 8, true), 8);
  EXPECT_EQ(device_input_channels(Precision::bf16, 12, true), 16);
  EXPECT_EQ(device_input_channels(Precision::fp32, 3, true), 3);   // fp32 stays the CPU's layout
  EXPECT_EQ(device_input_channels(Precision::bf16, 3, false), 3);  // a non-conv reader would see the padding
}

TEST(ConvMath, Fp32NeverRunsTensorOpOrDefaultMath) {
  EXPECT_EQ(conv_math_for(Precision::fp32, CUDNN_DEFAULT_MATH), CUDNN_FMA_MATH);  // default may pick TF32
  EXPECT_EQ(conv_math_for(Precision::fp32, CUDNN_FMA_MATH), CUDNN_FMA_MATH);
  EXPECT_FALSE(conv_math_for(Precision::fp32, CUDNN_TENSOR_OP_MATH).has_value());
  EXPECT_FALSE(conv_math_for(Precision::fp32, CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION).has_value());
  EXPECT_EQ(conv_math_for(Precision::bf16, CUDNN_TENSOR_OP_MATH), CUDNN_TENSOR_OP_MATH);
  EXPECT_EQ(conv_math_for(Precision::fp16, CUDNN_DEFAULT_MATH), CUDNN_DEFAULT_MATH);
}

TEST(Precision, AutomaticIsBf16OnAmpereAndNewerElseFp16) {
  EXPECT_EQ(resolve_precision(Precision::automatic, 9), Precision::bf16);
  EXPECT_EQ(resolve_precision(Precision::automatic, 8), Precision::bf16);
  EXPECT_EQ(resolve_precision(Precision::automatic, 7), Precision::fp16);
  EXPECT_EQ(resolve_precision(Precision::fp32, 9), Precision::fp32);
  EXPECT_THROW(resolve_precision(Precision::bf16, 7), UserError);
  EXPECT_EQ(parse_precision("fp16"), Precision::fp16);
  EXPECT_THROW(parse_precision("fp64"), UserError);
}

}  // namespace
}  // namespace stoke::cuda

#include <cmath>
#include <limits>
#include <vector>

#include "engine/cuda/fusion.h"
#include "engine/cuda/grad_sync.h"
#include "engine/cuda/step_ring.h"

namespace stoke::cuda {
namespace {

// The asynchronous step's bookkeeping with fake events: copy_done / step_done say what the "device" has
// completed. A tag is released only when its copy completed — not when it was issued (pushed).
struct FakeDevice {
  std::vector<bool> copy_done = std::vector<bool>(StepRing::kSlots, false);
  std::vector<bool> step_done = std::vector<bool>(StepRing::kSlots, false);
  std::vector<int64_t> released, finished;
  void poll(StepRing& r) {
    r.poll([&](int s) { return bool(copy_done[static_cast<size_t>(s)]); },
           [&](int s) { return bool(step_done[static_cast<size_t>(s)]); },
           [&](int64_t tag) { released.push_back(tag); },
           [&](int s, int64_t tag) {
             finished.push_back(tag);
             copy_done[static_cast<size_t>(s)] = step_done[static_cast<size_t>(s)] = false;  // the slot is free
           });
  }
};

TEST(StepRing, ReleasesOnlyAfterTheCopyCompleted) {
  StepRing r;
  FakeDevice d;
  const int s = r.push(10);
  d.poll(r);
  EXPECT_TRUE(d.released.empty()) << "released at issue time, before the copy completed";
  EXPECT_EQ(r.in_flight(), 1);
  d.copy_done[static_cast<size_t>(s)] = true;
  d.poll(r);
  EXPECT_EQ(d.released, (std::vector<int64_t>{10}));
  EXPECT_TRUE(d.finished.empty());
  EXPECT_EQ(r.in_flight(), 1);
  d.poll(r);  // reported once
  EXPECT_EQ(d.released.size(), 1u);
  d.step_done[static_cast<size_t>(s)] = true;
  d.poll(r);
  EXPECT_EQ(d.finished, (std::vector<int64_t>{10}));
  EXPECT_TRUE(r.empty());
}

TEST(StepRing, AResultNeverOvertakesItsRelease) {
  StepRing r;
  FakeDevice d;
  const int s = r.push(1);
  d.step_done[static_cast<size_t>(s)] = true;  // an inconsistent device: the step "done" before its copy
  d.poll(r);
  EXPECT_TRUE(d.released.empty());
  EXPECT_TRUE(d.finished.empty());
}

TEST(StepRing, TwoInFlightAlternateSlotsAndReportInOrder) {
  StepRing r;
  FakeDevice d;
  const int a = r.push(100);
  const int b = r.push(101);
  EXPECT_NE(a, b);
  EXPECT_TRUE(r.full());
  EXPECT_THROW(r.push(102), Error);
  // The second copy completing first (cannot happen on one copy stream) still does not release it before the first.
  d.copy_done[static_cast<size_t>(b)] = true;
  d.poll(r);
  EXPECT_TRUE(d.released.empty());
  d.copy_done[static_cast<size_t>(a)] = true;
  d.poll(r);
  EXPECT_EQ(d.released, (std::vector<int64_t>{100, 101}));
  d.step_done[static_cast<size_t>(b)] = true;
  d.poll(r);
  EXPECT_TRUE(d.finished.empty()) << "the second result overtook the first";
  d.step_done[static_cast<size_t>(a)] = true;
  d.poll(r);
  EXPECT_EQ(d.finished, (std::vector<int64_t>{100, 101}));
  // Slots come round: the third step reuses the first's slot, only after it finished.
  EXPECT_EQ(r.push(102), a);
  EXPECT_EQ(r.oldest(), a);
  EXPECT_FALSE(r.oldest_released());
  EXPECT_EQ(r.pushed(), 3);
}

// The device step rule of the loss scale is the host class's rule (one definition): a long run matches a replay.
TEST(LossScaler, DeviceRuleIsTheHostRule) {
  LossScaler host(1024.f, 3);
  LossScaleState dev{1024.f, 0, 0};
  const LossScaleRule rule{3, 0.5f, 2.f};
  for (int i = 0; i < 40; ++i) {
    const bool finite = (i % 7) != 3;
    host.update(finite);
    update_loss_scale(dev, rule, finite);
    ASSERT_EQ(host.scale(), dev.scale) << i;
    ASSERT_EQ(host.streak(), dev.streak) << i;
  }
  EXPECT_EQ(host.skipped(), dev.skipped);
}

// The step decision that runs on the device (prepare_step's body), on the host: skip, non-finite loss and fp16
// overflow all keep the update from running and t from counting; the arguments are the CPU optimizer's.
TEST(PrepareStep, SkipsCountsAndComputesArguments) {
  StepState st;
  StepConfig c;
  c.momentum = 0.9f;
  c.nesterov = true;
  StepControl ctl{0.1f, 0};
  st.record.loss = 2.f;
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.t, 1);
  EXPECT_EQ(st.skip_update, 0);
  EXPECT_EQ(st.record.applied, 1);
  EXPECT_TRUE(st.sgd.first);
  EXPECT_EQ(st.sgd.lr, 0.1f);
  EXPECT_EQ(st.sgd.inv_scale, 1.f);
  ctl = StepControl{0.2f, 1};  // injected skip
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.t, 1);
  EXPECT_EQ(st.skip_update, 1);
  EXPECT_EQ(st.record.applied, 0);
  ctl.skip = 0;
  st.record.loss = std::numeric_limits<float>::quiet_NaN();  // non-finite loss, any precision
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.t, 1);
  EXPECT_EQ(st.skip_update, 1);
  st.record.loss = 1.5f;
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.t, 2);
  EXPECT_EQ(st.skip_update, 0);
  EXPECT_FALSE(st.sgd.first);
  EXPECT_EQ(st.sgd.lr, 0.2f);
}

TEST(PrepareStep, Fp16OverflowBacksOffAndANonFiniteLossLeavesTheScale) {
  StepState st;
  StepConfig c;
  c.loss_scaling = true;
  c.rule = LossScaleRule{3, 0.5f, 2.f};
  st.scaler = LossScaleState{1024.f, 0, 0};
  StepControl ctl{0.1f, 0};
  st.record.loss = 1.f;
  st.found_inf = 1;  // gradient overflow
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.skip_update, 1);
  EXPECT_EQ(st.t, 0);
  EXPECT_EQ(st.record.loss_scale, 1024.f);  // the scale this step used
  EXPECT_EQ(st.scaler.scale, 512.f);        // the next step's
  st.found_inf = 0;
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.skip_update, 0);
  EXPECT_EQ(st.t, 1);
  EXPECT_EQ(st.sgd.inv_scale, 1.f / 512.f);
  EXPECT_EQ(st.scaler.streak, 1);
  st.record.loss = std::numeric_limits<float>::infinity();
  prepare_step_state(st, ctl, c);
  EXPECT_EQ(st.skip_update, 1);
  EXPECT_EQ(st.scaler.scale, 512.f);
  EXPECT_EQ(st.scaler.streak, 1);
  EXPECT_EQ(st.scaler.skipped, 1);
}

TEST(PrepareStep, AdamwArgumentsAreTheCpuOptimizers) {
  StepState st;
  StepConfig c;
  c.adamw = true;
  c.beta1 = 0.9f;
  c.beta2 = 0.999f;
  c.eps = 1e-8f;
  st.t = 41;  // resumed from a checkpoint
  st.record.loss = 0.5f;
  const StepControl ctl{3e-4f, 0};
  prepare_step_state(st, ctl, c);
  ASSERT_EQ(st.t, 42);
  // engine/optimizer.cpp's arithmetic.
  const double bc1 = 1.0 - std::pow(static_cast<double>(c.beta1), 42.0);
  const double bc2 = 1.0 - std::pow(static_cast<double>(c.beta2), 42.0);
  EXPECT_EQ(st.adamw.step_size, static_cast<float>(ctl.lr / bc1));
  EXPECT_EQ(st.adamw.inv_sqrt_bc2, static_cast<float>(1.0 / std::sqrt(bc2)));
  EXPECT_EQ(st.adamw.one_minus_beta1, 1.f - c.beta1);
  EXPECT_EQ(st.adamw.lr, ctl.lr);
}

// --ema(-warmup): prepare_step writes the decay the EMA launch reads, from the count of applied updates (a skipped
// step does not count, a resumed t goes on), equal to engine/optimizer.h's ema_decay_at, the CPU backend's.
TEST(PrepareStep, EmaDecayFollowsTheAppliedCountAsTheCpuReference) {
  for (const float decay : {0.5f, 0.9f, 0.999f, 0.9999f})
    for (int64_t t = 0; t < 20000; t += 1 + t / 8)
      ASSERT_EQ(ema_step_decay(t, decay, true), ema_decay_at(t, decay, true));
  StepState st;
  StepConfig c;
  c.ema_decay = 0.99f;
  c.ema_warmup = true;
  st.record.loss = 1.f;
  prepare_step_state(st, StepControl{0.1f, 0}, c);
  EXPECT_EQ(st.ema_decay, 0.f) << "the first update copies the weights";
  prepare_step_state(st, StepControl{0.1f, 1}, c);  // skipped: t stays 1
  prepare_step_state(st, StepControl{0.1f, 0}, c);
  EXPECT_EQ(st.t, 2);
  EXPECT_EQ(st.ema_decay, ema_decay_at(2, 0.99f, true));
  st.t = 499;  // resumed
  prepare_step_state(st, StepControl{0.1f, 0}, c);
  EXPECT_EQ(st.ema_decay, ema_decay_at(500, 0.99f, true));
  EXPECT_GT(st.ema_decay, 0.98f);
  EXPECT_LT(st.ema_decay, 0.99f);
  c.ema_warmup = false;
  prepare_step_state(st, StepControl{0.1f, 0}, c);
  EXPECT_EQ(st.ema_decay, 0.99f);
}

// Data parallel: the summed gradients are scaled by 1/world in the same multiply as the fp16 unscale.
TEST(PrepareStep, DataParallelDividesTheSummedGradientsByTheWorld) {
  StepState st;
  StepConfig c;
  c.inv_world = 1.f / 4.f;
  st.record.loss = 1.f;
  prepare_step_state(st, StepControl{0.1f, 0}, c);
  EXPECT_EQ(st.sgd.inv_scale, 0.25f);
  c.adamw = true;
  c.loss_scaling = true;
  st.scaler = LossScaleState{1024.f, 0, 0};
  prepare_step_state(st, StepControl{0.1f, 0}, c);
  EXPECT_EQ(st.adamw.inv_scale, 1.f / 4096.f);
}

// What the all-reduce carries besides the gradients: every rank ends with the global batch's loss and correct
// count, and one rank's non-finite (or injected-skip) loss makes the summed loss non-finite on all of them.
TEST(DataParallelStep, SumsGiveTheGlobalLossAndOneBadRankSkipsEveryRank) {
  auto rank = [](float loss, int correct, int skip, float* sums) {
    StepRecord r;
    r.loss = loss;
    r.correct = correct;
    pack_step_sums_state(r, StepControl{0.1f, skip}, 32, sums);
  };
  float a[kStepSums], b[kStepSums], sum[kStepSums];
  rank(2.f, 10, 0, a);
  rank(1.f, 20, 0, b);
  for (int i = 0; i < kStepSums; ++i) sum[i] = a[i] + b[i];
  StepRecord g;
  unpack_step_sums_state(g, sum);
  EXPECT_EQ(g.loss, 1.5f);
  EXPECT_EQ(g.correct, 30);
  StepConfig c;
  for (int bad = 0; bad < 2; ++bad) {  // a NaN loss on one rank, then an injected skip
    rank(bad == 0 ? std::numeric_limits<float>::quiet_NaN() : 1.f, 20, bad, b);
    for (int i = 0; i < kStepSums; ++i) sum[i] = a[i] + b[i];
    StepState st;
    unpack_step_sums_state(st.record, sum);
    EXPECT_FALSE(std::isfinite(st.record.loss)) << bad;
    prepare_step_state(st, StepControl{0.1f, 0}, c);  // the healthy rank's own control says nothing is wrong
    EXPECT_EQ(st.skip_update, 1) << bad;
    EXPECT_EQ(st.t, 0) << bad;
  }
  // A stop asked of one rank reaches both with the same step (so every rank stops after the same step).
  StepRecord r;
  r.loss = 1.f;
  pack_step_sums_state(r, StepControl{0.1f, 0, 0}, 32, a);
  pack_step_sums_state(r, StepControl{0.1f, 0, 1}, 32, b);
  for (int i = 0; i < kStepSums; ++i) sum[i] = a[i] + b[i];
  unpack_step_sums_state(g, sum);
  EXPECT_EQ(g.stop, 1);
  for (int i = 0; i < kStepSums; ++i) sum[i] = a[i] + a[i];
  unpack_step_sums_state(g, sum);
  EXPECT_EQ(g.stop, 0);
}

TEST(FusionPlan, BatchNormReluAndResidualGroups) {
  Graph g({8, 8, 3}, "fuse");
  int x = g.conv(g.input(), 4, 3, 1, 1, false, "c1");
  const int bn1 = g.batchnorm(x, "bn1");
  const int r1 = g.relu(bn1);
  const int c2 = g.conv(r1, 4, 3, 1, 1, false, "c2");
  const int bn2 = g.batchnorm(c2, "bn2");
  const int add = g.add(bn2, r1);
  const int r2 = g.relu(add);
  g.linear(g.global_avgpool(r2), 2, "head");
  const FusionPlan p = plan_fusion(g);
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[0].bn, bn1);
  EXPECT_EQ(p.groups[0].out, r1);
  EXPECT_EQ(p.groups[1].bn, bn2);
  EXPECT_EQ(p.groups[1].residual, r1);
  EXPECT_EQ(p.groups[1].out, r2);
  EXPECT_TRUE(p.interior[static_cast<size_t>(bn2)]);
  EXPECT_TRUE(p.interior[static_cast<size_t>(add)]);
  EXPECT_FALSE(p.interior[static_cast<size_t>(r2)]);
  EXPECT_EQ(p.group_at_out[static_cast<size_t>(r2)], 1);
}

// Data parallel: each gradient is ready after the node that makes it; a batch norm fused into a group makes its
// scale and shift gradients when backward reaches the group's output. The buckets then cover the padded buffer.
TEST(GradSources, FusedBatchNormIsReadyAtItsGroupsOutput) {
  Graph g({8, 8, 3}, "dp");
  const int c1 = g.conv(g.input(), 4, 3, 1, 1, true, "c1");
  const int bn1 = g.batchnorm(c1, "bn1");
  const int r1 = g.relu(bn1);
  const int head = g.linear(g.global_avgpool(r1), 2, "head");
  const FusionPlan fp = plan_fusion(g);
  ASSERT_EQ(fp.groups.size(), 1u);
  const DeviceParamLayout pl(g.params());
  const std::vector<GradSource> src = grad_sources(g, fp.groups, pl);
  ASSERT_EQ(src.size(), g.params().size());
  auto ready = [&](int p) { return src[static_cast<size_t>(p)].ready_node; };
  EXPECT_EQ(ready(g.node(c1).weight), c1);
  EXPECT_EQ(ready(g.node(c1).bias), c1);
  EXPECT_EQ(ready(g.node(bn1).weight), r1);  // not bn1: the fused group runs at its output
  EXPECT_EQ(ready(g.node(bn1).bias), r1);
  EXPECT_EQ(ready(g.node(head).weight), head);
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(src[i].offset, pl.offset(i));
  // Small: one bucket over the whole padded buffer, ready after the last node backward visits (c1, node 1).
  const auto b = plan_device_buckets(src, pl.total(), g.output());
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].begin, 0);
  EXPECT_EQ(b[0].end, pl.total());
  EXPECT_EQ(b[0].ready_after, g.output() - c1);
  // One tensor per bucket: the head's weight and bias go first, right after the head's backward.
  const auto k = plan_device_buckets(src, pl.total(), g.output(), 1);
  ASSERT_EQ(k.size(), src.size());
  EXPECT_EQ(k[0].ready_after, 0);
  EXPECT_EQ(k.back().ready_after, g.output() - c1);
}

}  // namespace
}  // namespace stoke::cuda
