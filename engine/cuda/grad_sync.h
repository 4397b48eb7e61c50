// The data-parallel part of a CUDA training step: the gradient all-reduce in buckets on a communication stream,
// overlapped with backward.
//
//   after loss()        pack the step's sums {loss x n, correct, n} (kernels/optimizer.cuh), record an event; the
//                       comm stream waits on it and all-reduces the 3 floats (first: ready before backward starts)
//   during backward()   after the backward op that finishes a bucket's last gradient (plan_grad_buckets, in
//                       engine/dist/grad_buckets.h), record that bucket's event on the compute stream; the comm
//                       stream waits on it and all-reduces the bucket in place
//   --sync-bn           forward and backward's batch-norm statistics are summed on the comm stream too, the compute
//                       stream waiting for each (channel_sum)
//   after backward()    the comm stream records `joined`; the compute stream waits on it, unpacks the sums (the
//                       global loss: one rank's non-finite loss skips the update on every rank) and runs the
//                       optimizer (check_finite for fp16 sees the summed gradients, the same on every rank)
//
// The calls only enqueue, so the whole step, collectives included, is captured into the step's CUDA graph: NCCL
// (2.9 and later) supports capture when the communicator is not used concurrently outside the graph, which holds
// here (the host-side collectives of the trainer run only before training starts; the warm-up steps run these same
// collectives uncaptured first, on the same thread, one after the other). The comm stream enters the capture
// through the first event it waits on and leaves it through `joined`. With graphs off the same launches run eagerly.
#pragma once

#include <cuda_runtime_api.h>

#include <vector>

#include "engine/cuda/device_collectives.h"
#include "engine/cuda/fusion.h"
#include "engine/cuda/param_layout.h"
#include "engine/cuda/runtime.h"
#include "engine/dist/grad_buckets.h"

namespace stoke::cuda {

// For each parameter tensor: where its gradient lives in the device's padded layout, and the backward node (the
// executor's loop goes from the output node down to 1) after which it is final.
struct GradSource {
  int64_t offset = 0, size = 0;
  int ready_node = 0;
};

// Where every parameter's gradient is made: the node that owns the tensor, except a batch norm fused into a group
// (engine/cuda/fusion.h), whose scale and shift gradients the group computes when backward reaches the group's
// output node. A tensor no node owns is ready at the output (it stays zero). Host-only (tested in test_cuda_host).
std::vector<GradSource> grad_sources(const Graph& g, const std::vector<FusionGroup>& groups,
                                     const DeviceParamLayout& layout);

// The buckets for gradients laid out as `sources` in a buffer of `total` floats, with backward starting at node
// `output`: plan_grad_buckets in backward positions (position = output - node). Host-only (tested in
// test_cuda_host).
std::vector<dist::GradBucket> plan_device_buckets(const std::vector<GradSource>& sources, int64_t total, int output,
                                                  int64_t bucket_bytes = dist::kDefaultBucketBytes);

class GradSync {
 public:
  // grads: the executor's gradient buffer (device, `total` floats); sums: kStepSums floats of device memory.
  // Must be constructed with the executor's device current (the stream and events belong to it).
  GradSync(DeviceCollectives& collectives, std::vector<dist::GradBucket> buckets, int output, float* grads,
           float* sums);
  ~GradSync();
  GradSync(const GradSync&) = delete;
  GradSync& operator=(const GradSync&) = delete;

  float* sums() const { return sums_; }
  size_t buckets() const { return buckets_.size(); }
  DeviceCollectives& collectives() const { return coll_; }
  // What one step all-reduces: every bucket (padding included) and the step sums, 4 bytes a float.
  int64_t bytes_per_step() const { return bytes_; }
  // The three points of the step above, all on the compute stream.
  void begin(cudaStream_t compute);
  void after_node(int node, cudaStream_t compute);
  void end(cudaStream_t compute);
  // --sync-bn: n doubles of device memory summed over the ranks, in the order of the compute stream (which waits
  // for the result). The collective runs on the comm stream like every other of the step, so one stream carries
  // all of the communicator's work in one order on every rank (NCCL calls of one communicator on two streams
  // could interleave differently on different ranks). In backward it queues behind the buckets launched before it.
  void channel_sum(double* device_data, int n, cudaStream_t compute);

 private:
  void launch(size_t bucket, cudaStream_t compute);

  DeviceCollectives& coll_;
  std::vector<dist::GradBucket> buckets_;
  int output_;
  float* grads_;
  float* sums_;
  Stream comm_;
  Event sums_ready_, joined_;
  Event bn_ready_, bn_summed_;  // channel_sum's fork to the comm stream and join back
  std::vector<Event> ready_;  // one per bucket: recorded after its last gradient, waited on by the comm stream
  size_t next_ = 0;           // the next bucket to launch in this step
  int64_t bytes_ = 0;
};

}  // namespace stoke::cuda
