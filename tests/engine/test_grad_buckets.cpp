// engine/dist/grad_buckets.h: how the CUDA backend's data-parallel step groups its gradient all-reduces.
#include <gtest/gtest.h>

#include "base/error.h"
#include "engine/dist/grad_buckets.h"

namespace {

using stoke::dist::GradBucket;
using stoke::dist::GradTensor;
using stoke::dist::plan_grad_buckets;

// Every element of [0, total) in exactly one bucket, buckets from the top of the buffer down.
void expect_partition(const std::vector<GradBucket>& b, int64_t total) {
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(b.front().end, total);
  EXPECT_EQ(b.back().begin, 0);
  for (size_t i = 0; i < b.size(); ++i) {
    EXPECT_LT(b[i].begin, b[i].end) << "bucket " << i;
    if (i > 0) {
      EXPECT_EQ(b[i].end, b[i - 1].begin) << "bucket " << i;
      EXPECT_GE(b[i].ready_after, b[i - 1].ready_after) << "bucket " << i;
    }
  }
}

// A padded layout as engine/cuda/param_layout.h makes it (every tensor at a multiple of 64 elements), finished by
// backward from the last tensor to the first.
std::vector<GradTensor> padded(const std::vector<int64_t>& sizes, int64_t& total) {
  std::vector<GradTensor> t;
  int64_t at = 0;
  for (int64_t s : sizes) {
    t.push_back({at, s, 0});
    at += (s + 63) / 64 * 64;
  }
  total = at;
  for (size_t i = 0; i < t.size(); ++i) t[i].finished_after = static_cast<int>(t.size() - 1 - i);
  return t;
}

TEST(DistGradBuckets, ASmallModelIsOneBucketReadyWhenBackwardEnds) {
  int64_t total = 0;
  const auto t = padded({10, 3, 100, 7}, total);
  const auto b = plan_grad_buckets(t, total, int64_t{25} << 20);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0], (GradBucket{0, total, 3}));
}

TEST(DistGradBuckets, BucketsCloseAtTheSizeAndBoundariesAreTensorOffsets) {
  int64_t total = 0;
  // Four tensors of 100 floats (400 bytes, padded to 128 elements), buckets of 800 bytes: two tensors each.
  const auto t = padded({100, 100, 100, 100}, total);
  ASSERT_EQ(total, 512);
  const auto b = plan_grad_buckets(t, total, 800);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], (GradBucket{256, 512, 1}));  // tensors 3 and 2, the first two backward finishes
  EXPECT_EQ(b[1], (GradBucket{0, 256, 3}));
  expect_partition(b, total);
}

TEST(DistGradBuckets, ATensorLargerThanABucketIsABucketOfItsOwn) {
  int64_t total = 0;
  const auto t = padded({10, 1000, 10}, total);
  const auto b = plan_grad_buckets(t, total, 400);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], (GradBucket{64, total, 1}));  // the last tensor alone is 40 bytes: it waits for the large one
  EXPECT_EQ(b[1], (GradBucket{0, 64, 2}));
  expect_partition(b, total);
}

TEST(DistGradBuckets, ABucketWaitsForItsLastTensorAndNeverLaunchesBeforeTheOneAbove) {
  // Backward does not finish tensors in reverse offset order (a fused batch norm finishes its scale and shift
  // after the convolution above it): each bucket is ready after its latest tensor, and a bucket whose tensors
  // finish early still launches after the bucket before it, so every rank keeps the same order.
  std::vector<GradTensor> t = {{0, 64, 1}, {64, 64, 5}, {128, 64, 0}, {192, 64, 2}};
  const auto b = plan_grad_buckets(t, 256, 256);  // one tensor per bucket
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0], (GradBucket{192, 256, 2}));
  EXPECT_EQ(b[1], (GradBucket{128, 192, 2}));  // finished after op 0, but the bucket above is ready only after 2
  EXPECT_EQ(b[2], (GradBucket{64, 128, 5}));
  EXPECT_EQ(b[3], (GradBucket{0, 64, 5}));
  expect_partition(b, 256);
}

TEST(DistGradBuckets, TensorOrderInTheInputDoesNotMatter) {
  std::vector<GradTensor> t = {{128, 64, 0}, {0, 64, 2}, {64, 64, 1}};
  std::vector<GradTensor> r(t.rbegin(), t.rend());
  EXPECT_EQ(plan_grad_buckets(t, 192, 256), plan_grad_buckets(r, 192, 256));
}

TEST(DistGradBuckets, HalfPrecisionElementsCountTheirOwnBytes) {
  int64_t total = 0;
  const auto t = padded({100, 100, 100, 100}, total);
  EXPECT_EQ(plan_grad_buckets(t, total, 800, 4).size(), 2u);
  EXPECT_EQ(plan_grad_buckets(t, total, 800, 2).size(), 1u);
}

TEST(DistGradBuckets, OverlappingOrOutOfRangeTensorsAreRefused) {
  EXPECT_THROW(plan_grad_buckets({{0, 100, 0}, {64, 64, 1}}, 256, 1024), stoke::Error);
  EXPECT_THROW(plan_grad_buckets({{200, 100, 0}}, 256, 1024), stoke::Error);
}

TEST(DistGradBuckets, NoTensorsIsOneBucketOfPaddingOrNothing) {
  EXPECT_EQ(plan_grad_buckets({}, 64, 1024), (std::vector<GradBucket>{{0, 64, 0}}));
  EXPECT_TRUE(plan_grad_buckets({}, 0, 1024).empty());
}

}  // namespace
