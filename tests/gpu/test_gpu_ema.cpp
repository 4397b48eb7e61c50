// --ema and --tta flip on the CUDA side: the EMA kernel against the CPU reference (bit for bit: the same rounded
// products and sum), its skip flag, its decay read from device memory and the swap; the backend's EMA after every
// step (with CUDA graphs, an injected skip included) against the recurrence over the weights it hands back, with a
// fixed decay and with --ema-warmup's (across a restored state); evaluation on the EMA and back; the mirrored
// evaluation against evaluation of mirrored pixels, and --tta flip's pair (one upload) against both; --bn-recalibrate
// of the EMA with it swapped into place.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/bn_recalibrate.h"
#include "engine/optimizer.h"
#include "kernels/optimizer.cuh"
#include "models/models.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/synthetic_digits.h"

namespace stoke {
namespace {

using namespace stoke::test;

TEST(GpuEma, KernelMatchesTheCpuReferenceBitForBitAndHonoursTheSkipFlag) {
  REQUIRE_GPU();
  for (const float decay : {0.75f, 0.9f, 0.9999f}) {
    for (const int64_t np : {int64_t{1}, int64_t{1000}, int64_t{100003}}) {
      const int64_t nb = np == 1000 ? 0 : 131;  // a model without batch norm has no buffers
      const std::vector<float> ema_p = random_vec(static_cast<size_t>(np), 1),
                               x_p = random_vec(static_cast<size_t>(np), 2, -3.f, 3.f);
      const std::vector<float> ema_b = random_vec(static_cast<size_t>(nb), 3, 0.f, 2.f),
                               x_b = random_vec(static_cast<size_t>(nb), 4);
      DeviceBuffer<float> dep = upload<float>(ema_p), dxp = upload<float>(x_p), deb = upload<float>(ema_b),
                          dxb = upload<float>(x_b);
      DeviceBuffer<int32_t> skip = upload_raw<int32_t>({1});
      cuda::ema_update(np, dep.get(), dxp.get(), nb, deb.get(), dxb.get(), decay, skip.get(), nullptr);
      expect_bitwise("skipped: parameters unchanged", download(dep.get(), ema_p.size()), ema_p);
      copy_to_device(skip.get(), std::vector<int32_t>{0}.data(), sizeof(int32_t));
      cuda::ema_update(np, dep.get(), dxp.get(), nb, deb.get(), dxb.get(), decay, skip.get(), nullptr);
      std::vector<float> ref_p = ema_p, ref_b = ema_b;
      ema_update(ref_p.data(), x_p.data(), np, decay);
      ema_update(ref_b.data(), x_b.data(), nb, decay);
      expect_bitwise("EMA of the parameters", download(dep.get(), ref_p.size()), ref_p);
      expect_bitwise("EMA of the buffers", download(deb.get(), ref_b.size()), ref_b);
      // --ema-warmup: the decay read from device memory (as a captured step reads prepare_step's), 0 included
      for (const float warm : {0.f, 0.37f, decay}) {
        DeviceBuffer<float> dd = upload<float>(std::vector<float>{warm});
        cuda::ema_update(np, dep.get(), dxp.get(), nb, deb.get(), dxb.get(), 0.5f, skip.get(), nullptr, dd.get());
        ema_update(ref_p.data(), x_p.data(), np, warm);
        ema_update(ref_b.data(), x_b.data(), nb, warm);
        expect_bitwise("EMA of the parameters, decay from the device", download(dep.get(), ref_p.size()), ref_p);
        expect_bitwise("EMA of the buffers, decay from the device", download(deb.get(), ref_b.size()), ref_b);
      }
      cuda::swap_values(np, dep.get(), dxp.get(), nullptr);
      expect_bitwise("swapped a", download(dep.get(), x_p.size()), x_p);
      expect_bitwise("swapped b", download(dxp.get(), ref_p.size()), ref_p);
    }
  }
}

constexpr int kBatch = 16;
constexpr float kDecay = 0.8f;

BackendOptions ema_options(float decay) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.optimizer.momentum = 0.9f;
  o.mean = {0.5f};
  o.stdev = {0.25f};
  o.precision = PrecisionRequest::fp32;
  o.deterministic = true;
  o.graphs = true;
  o.ema_decay = decay;
  return o;
}

// The CPU reference's update (the kernel is held to it bit for bit above).
void reference_ema(std::vector<float>& ema, const std::vector<float>& x, float decay) {
  ema_update(ema.data(), x.data(), static_cast<int64_t>(ema.size()), decay);
}

// A step on batch k of the digits, or an injected skip.
StepResult digits_step(TrainingBackend& be, const DigitSet& d, int k, bool skip) {
  const size_t px = static_cast<size_t>(DigitSet::kSize) * DigitSet::kSize;
  return be.train_step(kBatch, d.pixels.data() + static_cast<size_t>(k) * kBatch * px,
                       d.labels.data() + static_cast<size_t>(k) * kBatch, nullptr, 0.05f, skip);
}

// Eight steps, the fifth an injected skip; steps past the warm-up replay captured graphs, so the EMA launch is
// checked inside them too.
TEST(GpuEma, TheBackendsEmaFollowsItsWeightsInsideCapturedStepsAndEvaluatesOnIt) {
  REQUIRE_GPU();
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const DigitSet d = make_digits(8 * kBatch, 5);
  std::unique_ptr<TrainingBackend> be = make_cuda_backend(g, ema_options(kDecay));
  std::vector<float> p(static_cast<size_t>(g.num_params())), b(static_cast<size_t>(g.num_buffers())), opt, eb, ep;
  g.initialize(p.data(), b.data(), 9);
  opt.assign(p.size(), 0.f);
  be->set_state(p, b, opt, 0);
  std::vector<float> ref_p = p, ref_b = b;
  int64_t steps = 0;
  for (int k = 0; k < 8; ++k) {
    const bool skip = k == 4;
    const StepResult r = digits_step(*be, d, k, skip);
    ASSERT_EQ(r.applied, !skip) << k;
    be->get_state(p, b, opt, steps);
    if (!skip) {
      reference_ema(ref_p, p, kDecay);
      reference_ema(ref_b, b, kDecay);
    }
    be->get_ema(ep, eb);
    expect_bitwise("EMA parameters after step " + std::to_string(k), ep, ref_p);
    expect_bitwise("EMA buffers after step " + std::to_string(k), eb, ref_b);
  }
  // Evaluation on the EMA is evaluation of a backend whose weights are the EMA; afterwards the trained ones are back.
  std::unique_ptr<TrainingBackend> plain = make_cuda_backend(g, ema_options(0.f));
  plain->set_state(ep, eb, opt, steps);
  float loss = 0, want_loss = 0;
  const float* w = plain->eval_batch(kBatch, d.pixels.data(), d.labels.data(), &want_loss);
  const std::vector<float> want(w, w + kBatch * 10);
  be->use_ema(true);
  const float* got = be->eval_batch(kBatch, d.pixels.data(), d.labels.data(), &loss);
  expect_bitwise("logits on the EMA", std::vector<float>(got, got + kBatch * 10), want);
  be->use_ema(false);
  std::vector<float> p2, b2;
  be->get_state(p2, b2, opt, steps);
  expect_bitwise("trained parameters after the swap back", p2, p);
  expect_bitwise("trained buffers after the swap back", b2, b);
}

// --ema-warmup: every step's decay is the CPU reference's at the device's count of applied updates, inside captured
// steps too (the skip at step 4 does not count), and a backend given another's state and EMA (a resume: t carried
// by set_state) goes on with the count; steps 9-11 replay the second backend's captured graph.
TEST(GpuEma, WarmupDecayFollowsTheAppliedCountInCapturedStepsAndAcrossARestoredState) {
  REQUIRE_GPU();
  constexpr float kLong = 0.99f;  // reached at update 1000: all twelve steps are warm-up
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const DigitSet d = make_digits(12 * kBatch, 7);
  BackendOptions o = ema_options(kLong);
  o.ema_warmup = true;
  std::unique_ptr<TrainingBackend> be = make_cuda_backend(g, o);
  std::vector<float> p(static_cast<size_t>(g.num_params())), b(static_cast<size_t>(g.num_buffers())), opt, eb, ep;
  g.initialize(p.data(), b.data(), 11);
  opt.assign(p.size(), 0.f);
  be->set_state(p, b, opt, 0);
  std::vector<float> ref_p = p, ref_b = b;
  int64_t steps = 0, applied = 0;
  for (int k = 0; k < 12; ++k) {
    if (k == 6) {
      be->get_state(p, b, opt, steps);
      be->get_ema(ep, eb);
      be = make_cuda_backend(g, o);
      be->set_state(p, b, opt, steps);
      be->set_ema(ep, eb);
    }
    const bool skip = k == 4;
    const StepResult r = digits_step(*be, d, k, skip);
    ASSERT_EQ(r.applied, !skip) << k;
    be->get_state(p, b, opt, steps);
    if (!skip) {
      const float decay = ema_decay_at(++applied, kLong, true);
      reference_ema(ref_p, p, decay);
      reference_ema(ref_b, b, decay);
    }
    ASSERT_EQ(steps, applied);
    be->get_ema(ep, eb);
    expect_bitwise("warm-up EMA parameters after step " + std::to_string(k), ep, ref_p);
    expect_bitwise("warm-up EMA buffers after step " + std::to_string(k), eb, ref_b);
  }
}

// --bn-recalibrate with --ema on CUDA: each batch's EMA step runs with the EMA swapped into the weights' place (a
// skipped step, replayed from a captured graph past the warm-up), only the buffers move. The EMA's statistics become
// those a plain backend holding the EMA's weights recalibrates to, bit for bit; the EMA's parameters, the trained
// weights and the optimizer state stay as they were.
TEST(GpuEma, RecalibrationUnderTheEmaEqualsAPlainBackendHoldingIt) {
  REQUIRE_GPU();
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const DigitSet d = make_digits(8 * kBatch, 12);
  const size_t px = static_cast<size_t>(DigitSet::kSize) * DigitSet::kSize;
  auto request = [&](int k) {
    StepRequest r;
    r.batch.tag = k;
    r.batch.size = kBatch;
    r.batch.pixels = d.pixels.data() + static_cast<size_t>(k) * kBatch * px;
    r.batch.labels = d.labels.data() + static_cast<size_t>(k) * kBatch;
    return r;
  };
  std::unique_ptr<TrainingBackend> be = make_cuda_backend(g, ema_options(kDecay));
  std::vector<float> p(static_cast<size_t>(g.num_params())), b(static_cast<size_t>(g.num_buffers())), opt, eb, ep;
  g.initialize(p.data(), b.data(), 13);
  opt.assign(p.size(), 0.f);
  be->set_state(p, b, opt, 0);
  for (int k = 0; k < 4; ++k) ASSERT_TRUE(digits_step(*be, d, k, false).applied) << k;
  int64_t steps = 0;
  be->get_state(p, b, opt, steps);
  be->get_ema(ep, eb);
  auto next = [&](int k) { return request(4 + k); };
  std::unique_ptr<TrainingBackend> plain = make_cuda_backend(g, ema_options(0.f));
  plain->set_state(ep, eb, opt, steps);
  recalibrate_batchnorm(*plain, g, 4, next, [](int64_t) {});
  std::vector<float> want_b;
  plain->get_buffers(want_b);
  recalibrate_batchnorm(
      *be, g, 4, next, [](int64_t) {}, true);
  std::vector<float> got_p, got_b, p2, b2, opt2;
  be->get_ema(got_p, got_b);
  expect_bitwise("EMA statistics after recalibration", got_b, want_b);
  expect_bitwise("EMA parameters after recalibration", got_p, ep);
  EXPECT_NE(got_b, eb) << "the averaged statistics were replaced";
  int64_t steps2 = 0;
  be->get_state(p2, b2, opt2, steps2);
  expect_bitwise("trained parameters after recalibration", p2, p);
  expect_bitwise("optimizer state after recalibration", opt2, opt);
  EXPECT_EQ(steps2, steps);
}

TEST(GpuTta, TheMirroredEvaluationIsEvaluationOfMirroredPixels) {
  REQUIRE_GPU();
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const DigitSet d = make_digits(kBatch, 6);
  std::unique_ptr<TrainingBackend> be = make_cuda_backend(g, ema_options(0.f));
  std::vector<float> p(static_cast<size_t>(g.num_params())), b(static_cast<size_t>(g.num_buffers()));
  g.initialize(p.data(), b.data(), 4);
  be->set_state(p, b, std::vector<float>(p.size(), 0.f), 0);
  std::vector<uint8_t> mirrored(d.pixels.size());
  const int s = DigitSet::kSize;
  for (int i = 0; i < kBatch; ++i)
    for (int y = 0; y < s; ++y)
      for (int x = 0; x < s; ++x)
        mirrored[static_cast<size_t>((i * s + y) * s + x)] =
            d.pixels[static_cast<size_t>((i * s + y) * s + (s - 1 - x))];
  float loss = 0;
  const float* a = be->eval_batch(kBatch, mirrored.data(), d.labels.data(), &loss);
  const std::vector<float> want(a, a + kBatch * 10);
  const float* m = be->eval_batch_mirrored(kBatch, d.pixels.data(), d.labels.data(), &loss);
  expect_bitwise("logits of the mirrored evaluation", std::vector<float>(m, m + kBatch * 10), want);
  const float* plain = be->eval_batch(kBatch, d.pixels.data(), d.labels.data(), &loss);
  const std::vector<float> want_plain(plain, plain + kBatch * 10);
  EXPECT_NE(want_plain, want) << "the digits are not symmetric: the test means something";
  // --tta flip's pair: the batch uploaded once, mirrored on the device, the same two results.
  std::vector<float> pair_plain, pair_mirrored;
  float pair_loss = 0, plain_loss = 0;
  be->eval_batch(kBatch, d.pixels.data(), d.labels.data(), &plain_loss);
  be->eval_batch_and_mirror(kBatch, 10, d.pixels.data(), d.labels.data(), pair_plain, pair_mirrored, &pair_loss);
  expect_bitwise("the pair's plain logits", pair_plain, want_plain);
  expect_bitwise("the pair's mirrored logits", pair_mirrored, want);
  EXPECT_EQ(pair_loss, plain_loss);
}

}  // namespace
}  // namespace stoke
