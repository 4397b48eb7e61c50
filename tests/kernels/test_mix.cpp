// Batch mixing (kernels/mix.h): the per-batch draw, the cutmix box, the in-place pixel op and the cross-entropy
// against mixed targets, checked against values worked out by hand and against the distributions they draw from.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/mix.h"
#include "kernels/softmax_ce.h"
#include "tests/kernels/test_util.h"

namespace stoke {
namespace {

using test::random_vec;

// timm's rand_bbox with correct_lam: sides int(32 sqrt(1 - lam)), half of each on either side of the centre.
TEST(Mix, CutmixBoxIsTimmsRandBboxWithTheAreaCorrection) {
  BatchMix m = cutmix_box(0.75f, 32, 32, 16, 16);  // a 16 x 16 box in the middle: a quarter of the image
  EXPECT_EQ(m.cutmix, 1);
  EXPECT_EQ(m.y0, 8);
  EXPECT_EQ(m.y1, 24);
  EXPECT_EQ(m.x0, 8);
  EXPECT_EQ(m.x1, 24);
  EXPECT_EQ(m.lam, 0.75f);
  m = cutmix_box(0.75f, 32, 32, 0, 31);  // clipped at the corner to 8 x 9: lam is that box's share
  EXPECT_EQ(m.y0, 0);
  EXPECT_EQ(m.y1, 8);
  EXPECT_EQ(m.x0, 23);
  EXPECT_EQ(m.x1, 32);
  EXPECT_FLOAT_EQ(m.lam, 1.f - 72.f / 1024.f);
  m = cutmix_box(0.5f, 10, 7, 4, 3);  // sides int(7.07) = 7 and int(4.95) = 4: rows 1..7, columns 1..5
  EXPECT_EQ(m.y0, 1);
  EXPECT_EQ(m.y1, 7);
  EXPECT_EQ(m.x0, 1);
  EXPECT_EQ(m.x1, 5);
  EXPECT_FLOAT_EQ(m.lam, 1.f - 24.f / 70.f);
}

TEST(Mix, TheDrawIsAPureFunctionOfTheKeyAndFollowsTheRecipe) {
  MixRecipe r;
  EXPECT_FALSE(mix_active(r));
  EXPECT_EQ(draw_batch_mix(r, 8, 8, 1).lam, 1.f);
  r.mixup_alpha = 0.4f;
  EXPECT_TRUE(mix_active(r));
  const BatchMix a = draw_batch_mix(r, 8, 8, 77), b = draw_batch_mix(r, 8, 8, 77), c = draw_batch_mix(r, 8, 8, 78);
  EXPECT_EQ(a.lam, b.lam);
  EXPECT_NE(a.lam, c.lam);
  r.prob = 0.f;
  EXPECT_FALSE(mix_active(r));
  EXPECT_EQ(draw_batch_mix(r, 8, 8, 77).lam, 1.f);
}

// Over many keys: Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)); prob and switch_prob are the shares of
// mixed batches and of cutmix among them; a cutmix lam is 1 - its box's share of the image.
TEST(Mix, DrawsFollowBetaAndTheProbabilities) {
  constexpr int kDraws = 20000;
  for (float alpha : {0.2f, 0.4f, 1.f, 3.f}) {
    MixRecipe r;
    r.mixup_alpha = alpha;
    double s = 0, s2 = 0;
    for (int k = 0; k < kDraws; ++k) {
      const BatchMix m = draw_batch_mix(r, 16, 16, static_cast<uint64_t>(k));
      ASSERT_EQ(m.cutmix, 0);
      ASSERT_TRUE(m.lam >= 0.f && m.lam <= 1.f) << m.lam;
      s += m.lam;
      s2 += double{m.lam} * m.lam;
    }
    const double mean = s / kDraws, var = s2 / kDraws - mean * mean, want = 1.0 / (4.0 * (2.0 * alpha + 1.0));
    std::printf(" Beta(%g, %g): mean %.4f, variance %.4f (want 0.5, %.4f)\n", double{alpha}, double{alpha}, mean, var,
                want);
    EXPECT_NEAR(mean, 0.5, 0.01) << alpha;
    EXPECT_NEAR(var, want, 0.05 * want) << alpha;
  }
  MixRecipe r;
  r.mixup_alpha = 1.f;
  r.cutmix_alpha = 1.f;
  r.prob = 0.6f;
  r.switch_prob = 0.25f;
  int mixed = 0, cut = 0;
  for (int k = 0; k < kDraws; ++k) {
    const BatchMix m = draw_batch_mix(r, 12, 20, static_cast<uint64_t>(k));
    mixed += m.lam != 1.f || m.cutmix;
    if (m.cutmix) {
      ++cut;
      ASSERT_FLOAT_EQ(m.lam, 1.f - static_cast<float>((m.y1 - m.y0) * (m.x1 - m.x0)) / 240.f);
      ASSERT_TRUE(m.y0 >= 0 && m.y0 <= m.y1 && m.y1 <= 12 && m.x0 >= 0 && m.x0 <= m.x1 && m.x1 <= 20);
    }
  }
  EXPECT_NEAR(mixed / double{kDraws}, 0.6, 0.015);
  EXPECT_NEAR(cut / static_cast<double>(mixed), 0.25, 0.015);
}

// Sample i with sample n-1-i; an odd batch's middle sample with itself.
TEST(Mix, MixupBlendsEachSampleWithTheBatchReversed) {
  const int n = 5, h = 3, w = 4, c = 2, image = h * w * c;
  const std::vector<float> x = random_vec(static_cast<size_t>(n) * image, 5, -2.f, 2.f);
  std::vector<float> y = x;
  const BatchMix m{0.7f, 0, 0, 0, 0, 0};
  cpu::mix_batch(n, h, w, c, &m, y.data());
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < image; ++k) {
      const float a = x[static_cast<size_t>(i * image + k)], b = x[static_cast<size_t>((n - 1 - i) * image + k)];
      ASSERT_EQ(y[static_cast<size_t>(i * image + k)], a * 0.7f + b * (1.f - 0.7f)) << i << " " << k;
    }
  std::vector<float> same = x;
  const BatchMix none;
  cpu::mix_batch(n, h, w, c, &none, same.data());
  EXPECT_TRUE(test::bitwise_equal(same, x));
}

TEST(Mix, CutmixPastesThePartnersBoxAndNothingElse) {
  const int n = 4, h = 5, w = 6, c = 3;
  const std::vector<float> x = random_vec(static_cast<size_t>(n) * h * w * c, 6);
  std::vector<float> y = x;
  BatchMix m;
  m.cutmix = 1;
  m.y0 = 1;
  m.y1 = 3;
  m.x0 = 2;
  m.x1 = 6;
  m.lam = 1.f - 8.f / 30.f;
  cpu::mix_batch(n, h, w, c, &m, y.data());
  int pasted = 0;
  for (int i = 0; i < n; ++i)
    for (int r = 0; r < h; ++r)
      for (int q = 0; q < w; ++q)
        for (int k = 0; k < c; ++k) {
          const bool in = r >= 1 && r < 3 && q >= 2 && q < 6;
          const int src = in ? n - 1 - i : i;
          pasted += in;
          ASSERT_EQ(y[static_cast<size_t>(((i * h + r) * w + q) * c + k)],
                    x[static_cast<size_t>(((src * h + r) * w + q) * c + k)]);
        }
  EXPECT_EQ(pasted, n * 8 * c);
}

// Two rows, three classes, worked by hand: row 0 (label 0) has logits log(1, 2, 5), so softmax (1/8, 2/8, 5/8);
// its partner is row 1 (label 2). With lam 0.25 and no smoothing its target is (0.25, 0, 0.75): loss
// -(0.25 log 1/8 + 0.75 log 5/8), gradient softmax - target over the batch of 2, and its arg-max (2) is the label
// of the larger weight, so it counts as correct.
TEST(Mix, MixedCrossEntropyKnownValues) {
  const std::vector<float> z = {0.f, std::log(2.f), std::log(5.f), 1.f, 1.f, 1.f};
  const std::vector<int32_t> labels = {0, 2};
  const BatchMix m{0.25f, 0, 0, 0, 0, 0};
  std::vector<float> losses(2), dz(6);
  int64_t correct = 0;
  cpu::softmax_cross_entropy_mixed(2, 3, z.data(), labels.data(), &m, 0.f, 1.f, losses.data(), dz.data(), &correct);
  EXPECT_NEAR(losses[0], -(0.25 * std::log(1.0 / 8) + 0.75 * std::log(5.0 / 8)), 1e-6);
  EXPECT_NEAR(losses[1], std::log(3.0), 1e-6);  // uniform logits: log 3 whatever the target
  const double want0[3] = {(1.0 / 8 - 0.25) / 2, (2.0 / 8) / 2, (5.0 / 8 - 0.75) / 2};
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(dz[static_cast<size_t>(k)], want0[k], 1e-7) << k;
  const double want1[3] = {(1.0 / 3 - 0.75) / 2, (1.0 / 3) / 2, (1.0 / 3 - 0.25) / 2};  // own label 2 weighs 0.25
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(dz[static_cast<size_t>(3 + k)], want1[k], 1e-7) << k;
  EXPECT_EQ(correct, 2);  // row 0 by its partner's label 2; row 1's first maximum (0) is its partner's label too
}

// The identity mix is the plain loss bit for bit (a run that mixes some batches and not others loses nothing on the
// others), and a real mix changes it.
TEST(Mix, TheIdentityMixIsThePlainLossBitForBit) {
  const int n = 7, K = 11;
  const std::vector<float> z = random_vec(static_cast<size_t>(n) * K, 8, -4.f, 4.f);
  const std::vector<int32_t> labels = {0, 10, 3, 3, 7, 1, 5};
  for (float smoothing : {0.f, 0.1f}) {
    std::vector<float> la(n), lb(n), da(z.size()), db(z.size());
    int64_t ca = 0, cb = 0;
    const float a =
        cpu::softmax_cross_entropy(n, K, z.data(), labels.data(), smoothing, 2.f, la.data(), da.data(), &ca);
    const BatchMix none;
    const float b = cpu::softmax_cross_entropy_mixed(n, K, z.data(), labels.data(), &none, smoothing, 2.f, lb.data(),
                                                     db.data(), &cb);
    EXPECT_EQ(a, b);
    EXPECT_TRUE(test::bitwise_equal(la, lb));
    EXPECT_TRUE(test::bitwise_equal(da, db));
    EXPECT_EQ(ca, cb);
    const BatchMix half{0.5f, 0, 0, 0, 0, 0};
    EXPECT_NE(a, cpu::softmax_cross_entropy_mixed(n, K, z.data(), labels.data(), &half, smoothing, 2.f, nullptr,
                                                  nullptr, nullptr));
  }
}

}  // namespace
}  // namespace stoke
