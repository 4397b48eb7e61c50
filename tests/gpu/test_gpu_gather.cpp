// --cache gpu on the device: the gather kernel against its CPU reference (every word width: 16-byte, 4-byte and
// byte copies, a misaligned destination), and the CUDA backend's steps by sample id against the same batches
// handed over as pixels, bit for bit in fp32 deterministic mode, with CUDA graphs (the gather inside the captured
// step) and without.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "kernels/gather.cuh"
#include "kernels/gather.h"
#include "models/models.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

TEST(GpuGather, MatchesTheCpuReferenceForEveryWordWidth) {
  REQUIRE_GPU();
  const int64_t samples = 29;
  const std::vector<int64_t> ids = {28, 0, 5, 5, 17, 3, 28, 11, 2};  // repeats, as the sampler's padding repeats
  const int n = static_cast<int>(ids.size());
  // 784 (28x28 gray) and 3072 (32x32 RGB): 16-byte words; 12: 4-byte words; 105 (7x5x3): bytes.
  for (int64_t bytes : {int64_t{784}, int64_t{3072}, int64_t{12}, int64_t{105}}) {
    for (int64_t offset : {int64_t{0}, int64_t{1}}) {  // 1: a misaligned destination takes the byte path
      std::vector<uint8_t> set(static_cast<size_t>(samples * bytes));
      for (size_t i = 0; i < set.size(); ++i) set[i] = static_cast<uint8_t>((i * 131 + i / 7) % 256);
      std::vector<int32_t> labels(static_cast<size_t>(samples));
      for (int64_t i = 0; i < samples; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(100 + i);
      std::vector<uint8_t> ref(static_cast<size_t>(n * bytes));
      std::vector<int32_t> ref_labels(static_cast<size_t>(n));
      cpu::gather_samples(n, ids.data(), samples, bytes, set.data(), labels.data(), ref.data(), ref_labels.data());
      auto dset = upload_raw(set);
      auto dlab = upload_raw(labels);
      auto dids = upload_raw(ids);
      DeviceBuffer<uint8_t> dpx(ref.size() + 1);
      DeviceBuffer<int32_t> dout(ref_labels.size());
      cuda::gather_samples(n, dids.get(), samples, bytes, dset.get(), dlab.get(), dpx.get() + offset, dout.get(),
                           nullptr);
      EXPECT_EQ(download_raw(dpx.get() + offset, ref.size()), ref) << bytes << "-byte samples, offset " << offset;
      EXPECT_EQ(download_raw(dout.get(), ref_labels.size()), ref_labels) << bytes << "-byte samples";
    }
  }
}

constexpr int kBatch = 16;
const Shape3 kShape{28, 28, 1};

struct BackendRun {
  std::vector<StepResult> results;
  std::vector<float> params;
};

// 9 full steps (past the 3 warm-up steps, so both input buffers' graphs are captured and replayed) and a partial one.
BackendRun run_backend(const std::vector<uint8_t>& set, const std::vector<int32_t>& labels, int64_t samples, bool held,
                bool graphs) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.optimizer.momentum = 0.9f;
  o.mean = {0.5f};
  o.stdev = {0.25f};
  o.precision = PrecisionRequest::fp32;
  o.deterministic = true;
  o.graphs = graphs;
  const Graph g = build_model("small-cnn", kShape, 10);
  std::unique_ptr<TrainingBackend> be = make_cuda_backend(g, o);
  if (held) {
    std::string why;
    EXPECT_TRUE(be->hold_dataset(set.data(), labels.data(), samples, kShape.size(), &why)) << why;
  }
  BackendRun r;
  std::vector<int64_t> released;
  for (int k = 0; k < 10; ++k) {
    const int n = k == 9 ? 11 : kBatch;
    std::vector<int64_t> ids;
    std::vector<uint8_t> flips, px;
    std::vector<int32_t> lab;
    for (int i = 0; i < n; ++i) {
      const int64_t id = (k * 37 + i * 11) % samples;
      ids.push_back(id);
      flips.push_back(static_cast<uint8_t>((i + k) % 3 == 0));
      px.insert(px.end(), set.begin() + id * kShape.size(), set.begin() + (id + 1) * kShape.size());
      lab.push_back(labels[static_cast<size_t>(id)]);
    }
    StepRequest q;
    q.batch.tag = k;
    q.batch.size = n;
    q.batch.flips = flips.data();
    q.lr = 0.02f * static_cast<float>(1 + k % 3);
    if (held) {
      q.batch.ids = ids.data();
    } else {
      q.batch.pixels = px.data();
      q.batch.labels = lab.data();
    }
    be->submit(q);
    be->drain();  // the request's vectors die with this iteration
    be->collect(released, r.results, false);
  }
  std::vector<float> buffers, state;
  int64_t steps = 0;
  be->get_state(r.params, buffers, state, steps);
  return r;
}

TEST(GpuGather, BackendStepsByIdMatchStepsByPixelsBitForBit) {
  REQUIRE_GPU();
  const int64_t samples = 97;
  std::vector<uint8_t> set(static_cast<size_t>(samples * kShape.size()));
  for (size_t i = 0; i < set.size(); ++i) set[i] = static_cast<uint8_t>((i * 29 + i / 13) % 256);
  std::vector<int32_t> labels(static_cast<size_t>(samples));
  for (int64_t i = 0; i < samples; ++i) labels[static_cast<size_t>(i)] = static_cast<int32_t>(i % 10);
  for (bool graphs : {false, true}) {
    const BackendRun pixels = run_backend(set, labels, samples, false, graphs);
    const BackendRun ids = run_backend(set, labels, samples, true, graphs);
    ASSERT_EQ(pixels.results.size(), ids.results.size());
    for (size_t k = 0; k < ids.results.size(); ++k) {
      EXPECT_EQ(pixels.results[k].loss, ids.results[k].loss) << "graphs " << graphs << ", step " << k;
      EXPECT_EQ(pixels.results[k].correct, ids.results[k].correct) << "graphs " << graphs << ", step " << k;
    }
    expect_bitwise(graphs ? "held set, CUDA graphs" : "held set, no graphs", ids.params, pixels.params);
  }
}

}  // namespace
}  // namespace stoke
