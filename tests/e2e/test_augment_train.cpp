// Training with an augmentation recipe end to end: `stoke train --augment monai` runs and records the recipe; the
// transforms come from (seed, epoch, sample id), so a run resumed mid-epoch repeats the uninterrupted run's losses
// exactly and the decoded cache gives the streaming ring's losses. Batch mixing (--mixup, --cutmix) likewise: its draw
// is keyed by (seed, epoch, batch index), so a mid-epoch resume repeats the uninterrupted run with mixing on.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/fs.h"
#include "engine/augment_plan.h"
#include "engine/resume.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::TempDir;

namespace {

void make_data(const TempDir& tmp) {
  test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 20);  // 60 images: 7 steps of 8 per epoch
  test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 4);
}

TrainConfig monai_config(const TempDir& tmp, const std::string& run) {
  TrainConfig c;
  c.data = (tmp.path() / "train").string();
  c.val = (tmp.path() / "val").string();
  c.epochs = 2;
  c.batch_size = 8;
  c.lr = 0.05f;
  c.seed = 5;
  c.quiet = true;
  c.device = DeviceRequest::cpu;
  c.checkpoint_every = 3;
  c.out = (tmp.path() / run).string();
  AugmentFlags f;
  f.augment = "monai";
  const AugmentSettings s = resolve_augment(f);
  c.augment = s.decoder;
  c.augment_preset = s.preset;
  c.augment_recipe = s.recipe;
  c.augment_on = AugmentOn::step;  // the op in the step, whatever the input path (the decoders' path: below)
  return c;
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(test::file_bytes(path)); }

// Trains `cut` until it is interrupted after 5 steps (mid-epoch: the resume starts at batch 5 of epoch 0), resumes
// its run folder and gives both parts' step losses in order. on_resume sees the resumed configuration and gives
// the session flags again (a resume does not take them from config.json).
void cut_and_resume(TrainConfig cut, std::vector<float>& losses,
                    const std::function<void(TrainConfig&)>& on_resume = nullptr) {
  cut.interrupt_after_steps = 5;
  const TrainResult a = train(cut, build_model);
  ASSERT_TRUE(a.interrupted);
  TrainConfig rc = config_for_resume(cut.out);
  rc.quiet = true;
  if (on_resume) on_resume(rc);
  const TrainResult b = train(rc, build_model);
  losses = a.step_losses;
  losses.insert(losses.end(), b.step_losses.begin(), b.step_losses.end());
}

}  // namespace

TEST(AugmentTrain, MonaiFromTheCommandLineRunsAndRecordsItsRecipe) {
  TempDir tmp("augment-cli");
  make_data(tmp);
  const test::RunResult help = test::run_stoke("train --help");
  for (const char* flag :
       {"--rotate", "--zoom", "--translate", "--shear", "--hflip", "--vflip", "--brightness", "--contrast", "--gamma",
        "--noise", "--saturation", "--hue", "--erase", "--fill", "monai", "imagenet", "cifar"})
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
  const std::string run = tmp.str() + "/run";
  const std::string args = "--augment monai --rotate 20 --batch-size 8 --device cpu --quiet --checkpoint-every 3";
  test::RunResult r = test::run_stoke("train --data " + tmp.str() + "/train --epochs 1 --out " + run + " " + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json cfg = read_json(run + "/config.json");
  EXPECT_EQ(cfg["augment"], "monai");
  const nlohmann::json& rec = cfg["augment_recipe"];
  EXPECT_EQ(rec["rotate_deg"][0], -20.0);  // the flag over the preset's 15
  EXPECT_EQ(rec["rotate_p"], 0.5);
  EXPECT_FLOAT_EQ(rec["zoom"][1].get<float>(), 1.1f);
  EXPECT_EQ(rec["hflip_p"], 0.5);
  // Resuming with the same flags is accepted; another angle is refused as a change of the run's settings.
  r = test::run_stoke("train --resume " + run + " --epochs 2 " + args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = test::run_stoke("train --resume " + run + " --epochs 3 --augment monai --rotate 10 --quiet");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--rotate"), std::string::npos) << r.output;
}

TEST(AugmentTrain, ResumedMidEpochAndDecodedCacheRepeatTheStreamingRunsLosses) {
  TempDir tmp("augment-resume");
  make_data(tmp);
  const TrainResult full = train(monai_config(tmp, "full"), build_model);
  ASSERT_EQ(full.step_losses.size(), 14u);

  std::vector<float> losses;
  ASSERT_NO_FATAL_FAILURE(cut_and_resume(monai_config(tmp, "cut"), losses));
  ASSERT_EQ(losses.size(), full.step_losses.size());
  for (size_t i = 0; i < losses.size(); ++i) EXPECT_EQ(losses[i], full.step_losses[i]) << "step " << i;

  TrainConfig dc = monai_config(tmp, "decoded");
  dc.cache = CacheMode::decoded;
  const TrainResult d = train(dc, build_model);
  ASSERT_EQ(d.step_losses.size(), full.step_losses.size());
  for (size_t i = 0; i < d.step_losses.size(); ++i) EXPECT_EQ(d.step_losses[i], full.step_losses[i]) << "step " << i;

  TrainConfig gc = monai_config(tmp, "gpu-cache");  // on the CPU backend: the held set, gathered by id
  gc.cache = CacheMode::gpu;
  const TrainResult g = train(gc, build_model);
  EXPECT_EQ(g.step_losses, full.step_losses);

  TrainConfig none = monai_config(tmp, "none");  // the recipe is what made those losses
  none.augment_preset.clear();
  none.augment_recipe = {};
  const TrainResult n = train(none, build_model);
  ASSERT_EQ(n.step_losses.size(), full.step_losses.size());
  EXPECT_NE(n.step_losses, full.step_losses);
}

TEST(AugmentTrain, OnTheDecodersAnyDecoderCountAndAResumeRepeatTheRunAndTheStepAgrees) {
  TempDir tmp("augment-decoders");
  make_data(tmp);
  auto on_decoders = [&](const std::string& run, int decoders) {
    TrainConfig c = monai_config(tmp, run);
    c.augment_recipe.translate = 0.1f;  // every sample warped, not only the rotated or zoomed half
    c.augment_recipe.contrast = {0.7f, 1.3f};
    c.cache = CacheMode::none;
    c.augment_on = AugmentOn::decoders;
    c.decoders = decoders;
    return c;
  };
  const TrainResult one = train(on_decoders("one", 1), build_model);
  ASSERT_EQ(one.step_losses.size(), 14u);
  const TrainResult three = train(on_decoders("three", 3), build_model);
  EXPECT_EQ(three.step_losses, one.step_losses);  // every transform drawn from (seed, epoch, sample id)

  std::vector<float> losses;
  ASSERT_NO_FATAL_FAILURE(cut_and_resume(on_decoders("cut", 2), losses, [](TrainConfig& rc) {
    rc.augment_on = AugmentOn::decoders;  // a session flag, as --cache: given again
    rc.cache = CacheMode::none;
  }));
  EXPECT_EQ(losses, one.step_losses);

  // The step's op applies the same transforms in fp32: the same run to within the decoders' rounding (a level).
  TrainConfig sc = on_decoders("step", 2);
  sc.augment_on = AugmentOn::step;
  const TrainResult s = train(sc, build_model);
  TrainConfig nc = on_decoders("none", 2);
  nc.augment_recipe = {};
  const TrainResult n = train(nc, build_model);
  ASSERT_EQ(s.step_losses.size(), one.step_losses.size());
  ASSERT_EQ(n.step_losses.size(), one.step_losses.size());
  // SGD amplifies a level's difference over the steps, so: the first step's loss (the same weights, inputs a level
  // apart) and the run's mean loss, against what the recipe itself does to them.
  auto mean = [](const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m += x;
    return m / static_cast<double>(v.size());
  };
  EXPECT_LT(std::fabs(one.step_losses[0] - s.step_losses[0]), 0.005);
  EXPECT_GT(std::fabs(one.step_losses[0] - n.step_losses[0]), 0.02);
  const double to_step = std::fabs(mean(one.step_losses) - mean(s.step_losses));
  const double to_none = std::fabs(mean(one.step_losses) - mean(n.step_losses));
  EXPECT_LT(to_step, 0.1 * to_none) << "mean loss: decoders " << mean(one.step_losses) << ", step "
                                    << mean(s.step_losses) << ", no recipe " << mean(n.step_losses);
}

TEST(AugmentTrain, MixFlagsAreListedRecordedComparedOnResumeAndCheckedByName) {
  TempDir tmp("mix-cli");
  make_data(tmp);
  const test::RunResult help = test::run_stoke("train --help");
  for (const char* flag : {"--mixup", "--cutmix", "--mix-prob", "--mix-switch-prob", "--mix-off-epochs"})
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
  const std::string run = tmp.str() + "/run";
  const std::string args =
      "--mixup 0.4 --cutmix 1 --mix-prob 0.9 --mix-off-epochs 1 --batch-size 8 --device cpu --quiet "
      "--checkpoint-every 3";
  test::RunResult r = test::run_stoke("train --data " + tmp.str() + "/train --epochs 1 --out " + run + " " + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json cfg = read_json(run + "/config.json");
  EXPECT_FLOAT_EQ(cfg["mixup"].get<float>(), 0.4f);
  EXPECT_EQ(cfg["cutmix"], 1.0);
  EXPECT_FLOAT_EQ(cfg["mix_prob"].get<float>(), 0.9f);
  EXPECT_EQ(cfg["mix_switch_prob"], 0.5);
  EXPECT_EQ(cfg["mix_off_epochs"], 1);
  r = test::run_stoke("train --resume " + run + " --epochs 2 " + args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  r = test::run_stoke("train --resume " + run + " --epochs 3 --mixup 0.2 --quiet");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--mixup"), std::string::npos) << r.output;
  // Bad values: one line naming the flag, exit 2, before anything is written.
  for (const char* bad : {"--mixup -0.5", "--cutmix nan", "--mix-prob 1.5", "--mix-switch-prob -0.1", "--mix-prob inf",
                          "--mix-off-epochs -1"}) {
    r = test::run_stoke("train --data " + tmp.str() + "/train --out " + tmp.str() + "/bad --device cpu " + bad);
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    const std::string flag = std::string(bad).substr(0, std::string(bad).find(' '));
    EXPECT_NE(r.output.find(flag), std::string::npos) << bad << ": " << r.output;
    EXPECT_FALSE(std::filesystem::exists(tmp.path() / "bad")) << bad;
  }
}

TrainConfig mix_config(const TempDir& tmp, const std::string& run) {
  TrainConfig c = monai_config(tmp, run);
  c.mix.mixup_alpha = 0.4f;
  c.mix.cutmix_alpha = 1.f;
  return c;
}

TEST(AugmentTrain, MixedRunResumedMidEpochRepeatsTheUninterruptedRunsLosses) {
  TempDir tmp("mix-resume");
  make_data(tmp);
  const TrainResult full = train(mix_config(tmp, "full"), build_model);
  ASSERT_EQ(full.step_losses.size(), 14u);

  std::vector<float> losses;
  ASSERT_NO_FATAL_FAILURE(cut_and_resume(mix_config(tmp, "cut"), losses, [](TrainConfig& rc) {
    EXPECT_EQ(rc.mix.cutmix_alpha, 1.f);  // the checkpoint's settings carry the mixing
  }));
  EXPECT_EQ(losses, full.step_losses);

  TrainConfig gc = mix_config(tmp, "gpu-cache");  // on the CPU backend: the held set, labels gathered by id
  gc.cache = CacheMode::gpu;
  EXPECT_EQ(train(gc, build_model).step_losses, full.step_losses);

  // Mixing is what made those losses; switched off for every epoch (--mix-off-epochs) a mixing run is the plain run
  // bit for bit.
  const TrainResult plain = train(monai_config(tmp, "plain"), build_model);
  EXPECT_NE(plain.step_losses, full.step_losses);
  TrainConfig off = mix_config(tmp, "off");
  off.mix_off_epochs = 2;
  EXPECT_EQ(train(off, build_model).step_losses, plain.step_losses);
}
