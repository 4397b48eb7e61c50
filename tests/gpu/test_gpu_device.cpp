// The device probe a data-parallel rank makes for its own GPU (its launcher's local rank): the free memory it
// reports is that device's, and a local rank with no GPU of its own is an error that names it, not a quiet fall
// back to the CPU beside ranks that train on GPUs.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include "base/error.h"
#include "engine/device.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

TEST(GpuDevice, EachRankProbesItsOwnDevice) {
  REQUIRE_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  const DeviceProbe last = probe_cuda(count - 1);
  EXPECT_TRUE(last.usable) << last.reason;
  EXPECT_EQ(last.device, count - 1);
  EXPECT_GT(last.free_bytes, 0);
  const DeviceProbe beyond = probe_cuda(count);
  EXPECT_FALSE(beyond.usable);
  EXPECT_NE(beyond.reason.find(str("cuda:", count)), std::string::npos) << beyond.reason;
  EXPECT_THROW(choose_device(DeviceRequest::automatic, true, count), UserError);
}

}  // namespace
}  // namespace stoke
