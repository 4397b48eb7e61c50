// See engine/cuda/grad_sync.h.
#include "engine/cuda/grad_sync.h"

#include "base/cuda_check.h"
#include "base/error.h"
#include "base/trace.h"
#include "kernels/optimizer.cuh"

namespace stoke::cuda {

std::vector<GradSource> grad_sources(const Graph& g, const std::vector<FusionGroup>& groups,
                                     const DeviceParamLayout& layout) {
  std::vector<GradSource> out(g.params().size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = {layout.offset(i), g.params()[i].size, g.output()};
  for (size_t n = 1; n < g.nodes().size(); ++n) {
    const Node& nd = g.nodes()[n];
    for (int p : {nd.weight, nd.bias})
      if (p >= 0) out[static_cast<size_t>(p)].ready_node = static_cast<int>(n);
  }
  for (const FusionGroup& gr : groups) {
    const Node& bn = g.node(gr.bn);
    for (int p : {bn.weight, bn.bias})
      if (p >= 0) out[static_cast<size_t>(p)].ready_node = gr.out;
  }
  return out;
}

std::vector<dist::GradBucket> plan_device_buckets(const std::vector<GradSource>& sources, int64_t total, int output,
                                                  int64_t bucket_bytes) {
  std::vector<dist::GradTensor> t;
  t.reserve(sources.size());
  for (const GradSource& s : sources) {
    STOKE_CHECK(s.ready_node >= 1 && s.ready_node <= output, "gradient ready at node ", s.ready_node, " of ", output);
    t.push_back({s.offset, s.size, output - s.ready_node});
  }
  return dist::plan_grad_buckets(std::move(t), total, bucket_bytes);
}

GradSync::GradSync(DeviceCollectives& collectives, std::vector<dist::GradBucket> buckets, int output, float* grads,
                   float* sums)
    : coll_(collectives), buckets_(std::move(buckets)), output_(output), grads_(grads), sums_(sums) {
  ready_.reserve(buckets_.size());
  for (size_t i = 0; i < buckets_.size(); ++i) ready_.emplace_back(false);
  int64_t floats = kStepSums;
  for (const dist::GradBucket& k : buckets_) floats += k.end - k.begin;
  bytes_ = floats * static_cast<int64_t>(sizeof(float));
}

GradSync::~GradSync() { CUDA_CHECK_NOEXCEPT(cudaStreamSynchronize(comm_.get())); }

void GradSync::begin(cudaStream_t compute) {
  next_ = 0;
  sums_ready_.record(compute);
  comm_.wait(sums_ready_);
  coll_.allreduce_sum_async(sums_, kStepSums, comm_);
}

void GradSync::launch(size_t b, cudaStream_t compute) {
  STOKE_TRACE("launch gradient bucket");
  const dist::GradBucket& k = buckets_[b];
  ready_[b].record(compute);
  comm_.wait(ready_[b]);
  coll_.allreduce_sum_async(grads_ + k.begin, static_cast<size_t>(k.end - k.begin), comm_);
}

void GradSync::after_node(int node, cudaStream_t compute) {
  const int position = output_ - node;
  while (next_ < buckets_.size() && buckets_[next_].ready_after <= position) launch(next_++, compute);
}

void GradSync::channel_sum(double* device_data, int n, cudaStream_t compute) {
  bn_ready_.record(compute);
  comm_.wait(bn_ready_);
  coll_.allreduce_sum_async(device_data, static_cast<size_t>(n), comm_);
  bn_summed_.record(comm_);
  CUDA_CHECK(cudaStreamWaitEvent(compute, bn_summed_.get(), 0));
}

void GradSync::end(cudaStream_t compute) {
  // Every rank must issue every bucket, in order, even one whose last node the loop did not report.
  while (next_ < buckets_.size()) launch(next_++, compute);
  joined_.record(comm_);
  CUDA_CHECK(cudaStreamWaitEvent(compute, joined_.get(), 0));
}

}  // namespace stoke::cuda
