// Host-side pieces of the CUDA backend that run without a GPU: error messages of the check macros, the
// counting arena that plans device memory, and the device probe's behaviour on a machine without a device.
#include <gtest/gtest.h>

#include <string>

#include "engine/cuda/arena.h"
#include "base/cuda_check.h"
#include "engine/cuda/lib_check.h"
#include "engine/cuda/runtime.h"
#include "base/error.h"
#include "base/format.h"

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
  auto* a = plan.alloc<float>(3, "a");  // 12 B -> 256
  auto* b = plan.alloc<uint8_t>(257, "b");  // -> 512
  auto* c = plan.alloc<double>(0, "c");  // even empty requests get a distinct slot
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
