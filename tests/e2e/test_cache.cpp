// --cache decoded gives exactly the batches of the streaming pipeline (flip augmentation included).
#include <gtest/gtest.h>

#include "base/error.h"
#include "base/fs.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::TempDir;

TEST(Cache, DecodedCacheReproducesTheStreamingRunBitForBit) {
  TempDir tmp("cache");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 14);
  test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 3);
  for (const char* augment : {"none", "flip"}) {
    std::vector<TrainResult> runs;
    for (const char* cache : {"none", "decoded"}) {
      TrainConfig c;
      c.data = tmp.str() + "/train";
      c.val = tmp.str() + "/val";
      c.epochs = 2;
      c.batch_size = 8;
      c.quiet = true;
      c.augment = parse_augment(augment);
      c.cache = parse_cache(cache);
      c.out = tmp.str() + "/run-" + augment + "-" + cache;
      runs.push_back(train(c, build_model));
    }
    ASSERT_EQ(runs[0].step_losses.size(), runs[1].step_losses.size());
    for (size_t i = 0; i < runs[0].step_losses.size(); ++i)
      EXPECT_EQ(runs[0].step_losses[i], runs[1].step_losses[i]) << augment << " step " << i;
    EXPECT_EQ(runs[0].epochs.back().val_loss, runs[1].epochs.back().val_loss) << augment;
  }
}

// --cache gpu on the CPU backend runs the held-set protocol end to end (the backend holds the training set, each
// step hands over sample ids and flips, the backend gathers): the same losses, validation and weights, bit for bit,
// as --cache decoded and the streaming pipeline.
TEST(Cache, GpuCacheOnTheCpuBackendReproducesDecodedBitForBit) {
  TempDir tmp("cache-gpu");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 14);
  test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 3);
  std::vector<TrainResult> runs;
  std::vector<std::vector<uint8_t>> weights;  // the last checkpoint's model and optimizer files, byte for byte
  for (const char* cache : {"none", "decoded", "gpu"}) {
    TrainConfig c;
    c.data = tmp.str() + "/train";
    c.val = tmp.str() + "/val";
    c.epochs = 2;
    c.batch_size = 8;
    c.quiet = true;
    c.augment = Augment::flip;
    c.cache = parse_cache(cache);
    c.out = tmp.str() + "/run-" + cache;
    runs.push_back(train(c, build_model));
    std::vector<uint8_t> w = read_file(runs.back().last_checkpoint + "/model.safetensors");
    const std::vector<uint8_t> o = read_file(runs.back().last_checkpoint + "/optimizer.safetensors");
    w.insert(w.end(), o.begin(), o.end());
    weights.push_back(std::move(w));
  }
  const std::vector<uint8_t> sj = read_file(tmp.str() + "/run-gpu/summary.json");
  const std::string summary(sj.begin(), sj.end());
  EXPECT_NE(summary.find("held by the backend"), std::string::npos) << summary;
  for (size_t r = 1; r < runs.size(); ++r) {
    ASSERT_EQ(runs[0].step_losses.size(), runs[r].step_losses.size());
    for (size_t i = 0; i < runs[0].step_losses.size(); ++i)
      EXPECT_EQ(runs[0].step_losses[i], runs[r].step_losses[i]) << "run " << r << " step " << i;
    EXPECT_EQ(runs[0].epochs.back().val_loss, runs[r].epochs.back().val_loss) << r;
    EXPECT_TRUE(weights[0] == weights[r]) << "run " << r << ": the final weights differ";
  }
}

TEST(Cache, RefusesRandomCropsAndOversizedCaches) {
  TempDir tmp("cache-bad");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b"}, 10);
  TrainConfig c;
  c.data = tmp.str() + "/train";
  c.quiet = true;
  c.cache = CacheMode::decoded;
  c.augment = Augment::crop_flip;
  c.out = tmp.str() + "/r1";
  EXPECT_THROW(train(c, build_model), UserError);
  c.cache = CacheMode::gpu;  // the same images at the input size, held elsewhere: no crops either
  EXPECT_THROW(train(c, build_model), UserError);
  c.cache = CacheMode::decoded;
  c.augment = Augment::none;
  c.image_size = 256;  // 20 images x 64 KiB > 1 MiB budget
  c.cache_budget_mb = 1;
  c.out = tmp.str() + "/r2";
  try {
    train(c, build_model);
    ADD_FAILURE() << "an oversized cache was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--cache-budget-mb"), std::string::npos) << e.what();
  }
}

TEST(Memory, AJobTooBigForThisMachineIsAUserErrorNotAnOomKill) {
  TempDir tmp("toobig");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b"}, 10);
  TrainConfig c;
  c.data = tmp.str() + "/train";
  c.quiet = true;
  c.image_size = 4096;  // small-cnn activations at 4096x4096, batch 20: ~100 GiB
  c.out = tmp.str() + "/r";
  try {
    train(c, build_model);
    ADD_FAILURE() << "accepted a job that cannot fit";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("--batch-size"), std::string::npos) << e.what();
  }
}
