// Augmentation drawn by the engine (engine/augment_plan.h): the transforms of a batch are a pure function of (seed,
// epoch, sample ids), so the decoder ring, the decoded cache and --cache gpu's ids get the same ones; the presets
// and flags resolve to the recipes docs/AUGMENTATION.md lists, and the recipe survives config.json.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "base/error.h"
#include "engine/augment_plan.h"
#include "engine/train_config.h"
#include "io/pipeline/augment.h"
#include "io/pipeline/decoded_batches.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/source.h"
#include "tests/pipeline/pipeline_util.h"

namespace stoke {
namespace {

// Field by field: the struct has padding before noise_key, which a copy need not carry.
bool same(const SampleTransform& a, const SampleTransform& b) {
  return std::memcmp(a.m, b.m, sizeof a.m) == 0 && std::memcmp(a.fill, b.fill, sizeof a.fill) == 0 &&
         a.brightness == b.brightness && a.contrast == b.contrast && a.saturation == b.saturation &&
         a.hue_cos == b.hue_cos && a.hue_sin == b.hue_sin && a.gamma == b.gamma && a.noise_std == b.noise_std &&
         a.noise_key == b.noise_key && a.erase_y == b.erase_y && a.erase_x == b.erase_x && a.erase_h == b.erase_h &&
         a.erase_w == b.erase_w;
}

AugmentRecipe busy_recipe() {
  AugmentFlags f;
  f.augment = "monai";
  f.translate = 0.1f;
  f.brightness = 0.3f;
  f.noise = 0.05f;
  f.erase = 0.5f;
  return resolve_augment(f).recipe;
}

// The ring and the decoded cache (pixels, and ids as --cache gpu hands over) over the same folder: every batch's
// transforms are the same, and each sample's is draw_sample_transform of its (seed, epoch, id) key.
TEST(AugmentPlan, TheRingAndTheDecodedCacheDrawTheSameTransforms) {
  using namespace io;
  test::TempDir dir("augment-plan");
  test::write_folder(dir.path() / "data", 3, 7, 16, 16, 1);  // 21 images: 4 batches of 5 an epoch
  const std::shared_ptr<const Source> source = open_source((dir.path() / "data").string());
  const Shape3 shape{16, 16, 1};
  constexpr uint64_t kSeed = 11;
  PipelineConfig pc;
  pc.h = pc.w = 16;
  pc.c = 1;
  pc.batch = 5;
  pc.decoders = 2;
  pc.seed = kSeed;
  pc.pinned = false;
  SamplerConfig sc;
  sc.samples = source->size();
  sc.batch = 5;
  sc.seed = kSeed;
  InputPipeline ring(source, pc);
  const DecodedCache cache(source, shape, pc);
  DecodedBatches pixels(cache, sc, kSeed, false, DecodedBatches::Feed::pixels);
  DecodedBatches ids(cache, sc, kSeed, false, DecodedBatches::Feed::ids);
  const AugmentRecipe recipe = busy_recipe();
  BatchTransforms tr(recipe, shape, kSeed), tp(recipe, shape, kSeed), ti(recipe, shape, kSeed);
  ASSERT_TRUE(tr.active());
  ring.start(0, 2);
  pixels.start(0, 2);
  ids.start(0, 2);
  int differ_from_identity = 0;
  for (int k = 0; k < 6; ++k) {  // from batch 2 of epoch 0 into epoch 1
    const Batch a = ring.acquire(), b = pixels.acquire(), c = ids.acquire();
    ASSERT_TRUE(a && b && c);
    ASSERT_EQ(a.epoch, b.epoch);
    const SampleTransform *x = tr.draw(a), *y = tp.draw(b), *z = ti.draw(c);
    for (int i = 0; i < a.size; ++i) {
      ASSERT_EQ(a.ids[i], c.ids[i]);
      EXPECT_TRUE(same(x[i], y[i]) && same(x[i], z[i])) << "batch " << k << " sample " << i;
      const SampleTransform want =
          draw_sample_transform(recipe, 16, 16, 1, augment_key(kSeed, a.epoch, static_cast<uint64_t>(a.ids[i])));
      EXPECT_TRUE(same(x[i], want)) << "batch " << k << " sample " << i;
      differ_from_identity += !same(x[i], SampleTransform{});
    }
    ring.release(a.tag);
    pixels.release(b.tag);
    ids.release(c.tag);
    tr.release(a.tag);
    tp.release(b.tag);
    ti.release(c.tag);
  }
  EXPECT_GE(differ_from_identity, 28);  // of 30: a recipe that drew nothing would pass the comparisons above
}

// The same ids in another epoch, or with another seed, draw other transforms; a batch in flight keeps its own.
TEST(AugmentPlan, TransformsDependOnEpochAndSeedAndLiveUntilRelease) {
  const AugmentRecipe recipe = busy_recipe();
  const Shape3 shape{20, 24, 3};
  std::vector<int64_t> ids = {4, 9, 4, 100};
  io::Batch b;
  b.tag = 1;
  b.size = 4;
  b.ids = ids.data();
  BatchTransforms t(recipe, shape, 3), other_seed(recipe, shape, 4);
  const SampleTransform* e0 = t.draw(b);
  EXPECT_TRUE(same(e0[0], e0[2]));  // the same sample, the same transform
  EXPECT_FALSE(same(e0[0], e0[1]));
  const std::vector<SampleTransform> kept(e0, e0 + 4);
  b.tag = 2;
  b.epoch = 1;
  const SampleTransform* e1 = t.draw(b);
  EXPECT_NE(e0, e1);  // both in flight: separate storage
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(same(e0[i], kept[static_cast<size_t>(i)])) << i;
    EXPECT_FALSE(same(e1[i], kept[static_cast<size_t>(i)])) << i;
  }
  b.epoch = 0;
  const SampleTransform* s = other_seed.draw(b);
  EXPECT_FALSE(same(s[0], kept[0]));
  t.release(1);
  b.tag = 3;
  EXPECT_EQ(t.draw(b), e0);  // the released batch's storage is reused
  EXPECT_EQ(BatchTransforms(AugmentRecipe{}, shape, 3).draw(b), nullptr);
}

TEST(AugmentPlan, PresetsAndFlagsResolveToTheirRecipes) {
  AugmentFlags f;
  f.augment = "monai";
  AugmentSettings s = resolve_augment(f);
  EXPECT_EQ(s.preset, "monai");
  EXPECT_EQ(s.decoder, Augment::none);
  EXPECT_EQ(s.recipe.rotate_deg.lo, -15.f);
  EXPECT_EQ(s.recipe.rotate_deg.hi, 15.f);
  EXPECT_EQ(s.recipe.rotate_p, 0.5f);
  EXPECT_EQ(s.recipe.zoom.lo, 0.9f);
  EXPECT_EQ(s.recipe.zoom.hi, 1.1f);
  EXPECT_EQ(s.recipe.zoom_p, 0.5f);
  EXPECT_EQ(s.recipe.hflip_p, 0.5f);
  f.rotate = 30.f;  // a flag overrides its preset's value and keeps the rest
  f.zoom = "0.8:1.25";
  s = resolve_augment(f);
  EXPECT_EQ(s.recipe.rotate_deg.hi, 30.f);
  EXPECT_EQ(s.recipe.rotate_p, 0.5f);
  EXPECT_EQ(s.recipe.zoom.lo, 0.8f);
  EXPECT_EQ(s.recipe.zoom.hi, 1.25f);

  f = {};
  f.augment = "imagenet";
  s = resolve_augment(f);
  EXPECT_EQ(s.decoder, Augment::crop_flip);
  EXPECT_EQ(s.recipe.brightness_factor.lo, 0.6f);
  EXPECT_EQ(s.recipe.contrast.hi, 1.4f);
  EXPECT_EQ(s.recipe.saturation.lo, 0.6f);
  EXPECT_EQ(s.recipe.hflip_p, 0.5f);
  // The decoders crop and the recipe flips: the ring's flip is off (it would flip twice).
  TrainConfig cfg;
  cfg.augment = s.decoder;
  cfg.augment_recipe = s.recipe;
  io::PipelineConfig pc = training_pipeline_config(cfg, {8, 8, 3}, 4);
  EXPECT_TRUE(pc.aug.random_resized_crop);
  EXPECT_FALSE(pc.aug.hflip);

  f = {};
  f.augment = "cifar";
  s = resolve_augment(f);
  EXPECT_EQ(s.recipe.translate, 0.125f);
  EXPECT_EQ(s.recipe.erase_p, 0.5f);
  ASSERT_EQ(s.recipe.fill.size(), 1u);

  f = {};  // --augment flip with a geometric flag: the flip folds into the recipe
  f.augment = "flip";
  f.shear = 10.f;
  s = resolve_augment(f);
  EXPECT_EQ(s.decoder, Augment::none);
  EXPECT_EQ(s.recipe.hflip_p, 0.5f);
  f.shear.reset();  // no recipe: today's flip on the decoders
  s = resolve_augment(f);
  EXPECT_EQ(s.decoder, Augment::flip);
  EXPECT_FALSE(recipe_active(s.recipe));

  f = {};
  f.gamma = "2:1";
  EXPECT_THROW(resolve_augment(f), UserError);
  f = {};
  f.fill = "0:300";
  EXPECT_THROW(resolve_augment(f), UserError);
  f = {};
  f.fill = "0:128:255";
  f.erase = 1.f;
  EXPECT_THROW(BatchTransforms(resolve_augment(f).recipe, {8, 8, 1}, 0), UserError);
}

TEST(AugmentPlan, ConfigJsonRoundTripsTheRecipe) {
  AugmentFlags f;
  f.augment = "monai";
  f.hue = 0.1f;
  f.fill = "1:2:3";
  f.vflip = 0.25f;
  const AugmentSettings s = resolve_augment(f);
  TrainConfig c;
  c.data = "d";
  c.augment = s.decoder;
  c.augment_preset = s.preset;
  c.augment_recipe = s.recipe;
  const nlohmann::json j = config_to_json(c);
  EXPECT_EQ(j["augment"], "monai");
  EXPECT_EQ(j["augment_recipe"]["rotate_deg"][1], 15.f);
  const TrainConfig back = config_from_json(j);
  EXPECT_EQ(back.augment_preset, "monai");
  EXPECT_EQ(config_to_json(back), j);
  EXPECT_EQ(back.augment_recipe.fill, (std::vector<float>{1.f, 2.f, 3.f}));
  EXPECT_EQ(back.augment_recipe.vflip_p, 0.25f);
  nlohmann::json old = j;  // a run from before the recipe: none
  old.erase("augment_recipe");
  old["augment"] = "flip";
  EXPECT_FALSE(recipe_active(config_from_json(old).augment_recipe));
}

}  // namespace
}  // namespace stoke
