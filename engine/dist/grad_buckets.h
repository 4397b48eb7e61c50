// How a data-parallel step groups its gradient all-reduces: buckets of about kDefaultBucketBytes, each a contiguous
// range of the gradient buffer, launched in reverse parameter order as soon as backward has finished every
// gradient in it, so the sums of the last layers travel while backward still computes the first ones.
//
// Host-only and pure (no device, no communicator): the CUDA backend plans its buckets once at construction, and
// the plan is unit-tested on the CPU (tests/engine/test_dist.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace stoke::dist {

// PyTorch DDP's default bucket (bucket_cap_mb = 25): large enough that NCCL runs near its bandwidth, small enough
// that the last bucket (the part of the all-reduce backward cannot hide) is a small share of a large model.
constexpr int64_t kDefaultBucketBytes = int64_t{25} << 20;

// One parameter tensor where its gradient lives: [offset, offset + size) elements of the gradient buffer, and the
// position in backward order (0 = the first backward op) of the op after which that gradient is final.
struct GradTensor {
  int64_t offset = 0;
  int64_t size = 0;
  int finished_after = 0;
};

// One all-reduce: elements [begin, end) of the gradient buffer, launched once backward op `ready_after` is done.
struct GradBucket {
  int64_t begin = 0, end = 0;
  int ready_after = 0;
  bool operator==(const GradBucket&) const = default;
};

// The buckets, in launch order. Tensors are taken from the highest offset down (backward finishes the last layers
// first) and a bucket is closed once it holds at least bucket_bytes of gradients; the buckets cover [0, total)
// exactly and without overlap (padding between tensors rides along: it is zero on every rank, so its sum is zero).
// A bucket is ready after the last of its tensors is finished; ready_after never decreases from one bucket to the
// next, so every rank launches the same collectives in the same order whatever the order backward finishes them
// in (NCCL needs that order to agree). Tensors must not overlap and must lie in [0, total); throws otherwise.
std::vector<GradBucket> plan_grad_buckets(std::vector<GradTensor> tensors, int64_t total, int64_t bucket_bytes,
                                          int64_t element_bytes = 4);

}  // namespace stoke::dist
