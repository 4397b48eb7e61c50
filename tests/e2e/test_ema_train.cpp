// --ema and --tta flip through the trainer and the CLI: every step's checkpointed EMA is the recurrence over the
// checkpointed trained weights computed here; an interrupted --ema run resumes to the same bytes; the trainer's
// validation is evaluation of the EMA (with TTA when asked), which eval reproduces; flags are listed, recorded,
// compared on --resume and refused by name when out of range.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/inference.h"
#include "engine/resume.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/engine/ema_reference.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::file_bytes;
using stoke::test::reference_ema;
using stoke::test::TempDir;
using stoke::test::warmup_decay;
namespace fs = std::filesystem;

namespace {

constexpr float kDecay = 0.8f;

TrainConfig ema_config(const TempDir& tmp, const std::string& run) {
  TrainConfig c;
  c.data = (tmp.path() / "train").string();
  c.epochs = 2;
  c.batch_size = 8;
  c.lr = 0.05f;
  c.seed = 5;
  c.quiet = true;
  c.ema = kDecay;
  c.bn_recalibrate = 0;  // the checkpoints' running statistics are then the trained ones, step by step
  c.out = (tmp.path() / run).string();
  return c;
}

struct Data {
  TempDir tmp{"ema"};
  Data() {
    test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 8);  // 24 images: 3 steps of 8 per epoch
    test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 4);
  }
};
Data& data() {
  static Data d;
  return d;
}

}  // namespace

TEST(EmaTrain, EachStepsCheckpointHoldsTheRecurrenceOverTheTrainedWeights) {
  TrainConfig c = ema_config(data().tmp, "steps");
  c.checkpoint_every = 1;
  c.keep_checkpoints = 100;
  const TrainResult r = train(c, build_model);
  ASSERT_EQ(r.steps, 6);
  LoadedRun initial = load_run(r.run_dir, build_model, "initial");  // where the EMA starts
  std::vector<float> ema_p = initial.params, ema_b = initial.buffers;
  for (int step = 1; step <= 6; ++step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08d", step);
    const CheckpointData ck = load_checkpoint(r.run_dir + "/checkpoints/" + name, initial.graph, "sgd");
    ASSERT_EQ(ck.ema_params.size(), ck.params.size()) << name << " holds no ema.safetensors";
    reference_ema(ema_p, ck.params, kDecay);
    reference_ema(ema_b, ck.buffers, kDecay);
    EXPECT_EQ(ck.ema_params, ema_p) << name;
    EXPECT_EQ(ck.ema_buffers, ema_b) << name << ": the batch-norm statistics are averaged";
  }
  // The manifest covers ema.safetensors: a changed byte there is found.
  const std::string ema_file = r.last_checkpoint + "/ema.safetensors";
  std::vector<uint8_t> bytes = read_file(ema_file);
  bytes[bytes.size() - 1] ^= 1;
  write_file(ema_file, bytes.data(), bytes.size());
  EXPECT_NE(find_checkpoint(r.run_dir), r.last_checkpoint) << "a damaged ema.safetensors went unnoticed";
}

// With --ema-warmup (decay 0.8 is reached at update 12: all six are warm-up), every step's checkpoint holds the
// recurrence with the decay of its update number, and an interrupted run resumes to the same bytes: the count of
// updates goes on from the checkpoint's.
TEST(EmaTrain, WarmupEachStepsCheckpointUsesItsUpdatesDecayAndAResumeKeepsTheCount) {
  TrainConfig c = ema_config(data().tmp, "warm-steps");
  c.ema_warmup = true;
  c.checkpoint_every = 1;
  c.keep_checkpoints = 100;
  const TrainResult r = train(c, build_model);
  ASSERT_EQ(r.steps, 6);
  LoadedRun initial = load_run(r.run_dir, build_model, "initial");
  std::vector<float> ema_p = initial.params, ema_b = initial.buffers;
  for (int step = 1; step <= 6; ++step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08d", step);
    const CheckpointData ck = load_checkpoint(r.run_dir + "/checkpoints/" + name, initial.graph, "sgd");
    reference_ema(ema_p, ck.params, warmup_decay(step, kDecay));
    reference_ema(ema_b, ck.buffers, warmup_decay(step, kDecay));
    EXPECT_EQ(ck.ema_params, ema_p) << name;
    EXPECT_EQ(ck.ema_buffers, ema_b) << name;
  }
  TrainConfig cut = ema_config(data().tmp, "warm-cut");
  cut.ema_warmup = true;
  cut.interrupt_after_steps = 2;  // mid-epoch
  ASSERT_TRUE(train(cut, build_model).interrupted);
  TrainConfig rc = config_for_resume(cut.out);
  ASSERT_TRUE(rc.ema_warmup) << "config.json records --ema-warmup";
  rc.quiet = true;
  const TrainResult resumed = train(rc, build_model);
  ASSERT_FALSE(resumed.interrupted);
  for (const char* f : {"/ema.safetensors", "/model.safetensors"})
    EXPECT_EQ(file_bytes(resumed.last_checkpoint + f), file_bytes(r.last_checkpoint + f)) << f;
}

TEST(EmaTrain, AnInterruptedRunResumesToTheSameBytes) {
  const TrainResult full = train(ema_config(data().tmp, "full"), build_model);
  TrainConfig c = ema_config(data().tmp, "cut");
  c.interrupt_after_steps = 2;  // mid-epoch
  ASSERT_TRUE(train(c, build_model).interrupted);
  TrainConfig rc = config_for_resume(c.out);
  rc.quiet = true;
  const TrainResult resumed = train(rc, build_model);
  ASSERT_FALSE(resumed.interrupted);
  for (const char* f : {"/ema.safetensors", "/model.safetensors"})
    EXPECT_EQ(file_bytes(resumed.last_checkpoint + f), file_bytes(full.last_checkpoint + f)) << f;
}

// The trainer's validation ran on the EMA with TTA: eval of the checkpoint with both gives its numbers exactly, and
// leaving out either gives others.
TEST(EmaTrain, ValidationIsTheEmaWithTtaAndEvalReproducesIt) {
  TrainConfig c = ema_config(data().tmp, "val-run");
  c.val = (data().tmp.path() / "val").string();
  c.tta_flip = true;
  const TrainResult r = train(c, build_model);
  const EpochStats& last = r.epochs.back();
  const std::string val = c.val;
  const LoadedRun ema = load_run(r.run_dir, build_model, "latest");
  ASSERT_TRUE(ema.ema);
  const ClassificationReport both = evaluate_folder(ema, val, 5, 1, DeviceRequest::cpu, true);
  EXPECT_DOUBLE_EQ(both.accuracy, last.val_acc);
  EXPECT_NEAR(both.loss, last.val_loss, 1e-6);
  const LoadedRun raw = load_run(r.run_dir, build_model, "latest", false);
  ASSERT_FALSE(raw.ema);
  EXPECT_GT(std::fabs(evaluate_folder(raw, val, 5, 1, DeviceRequest::cpu, true).loss - last.val_loss), 1e-4);
  EXPECT_GT(std::fabs(evaluate_folder(ema, val, 5, 1, DeviceRequest::cpu, false).loss - last.val_loss), 1e-4);
  const nlohmann::json cfg = nlohmann::json::parse(file_bytes(r.run_dir + "/config.json"));
  EXPECT_FLOAT_EQ(cfg.at("ema").get<float>(), kDecay);
  EXPECT_EQ(cfg.at("tta"), "flip");
}

TEST(EmaTrain, TheCliListsRecordsComparesAndRefusesTheFlags) {
  using test::run_stoke;
  const std::string help = run_stoke("train --help").output;
  EXPECT_NE(help.find("--ema"), std::string::npos);
  EXPECT_NE(help.find("--ema-warmup"), std::string::npos);
  EXPECT_NE(help.find("--tta"), std::string::npos);
  for (const char* sub : {"eval", "predict"}) {
    const std::string h = run_stoke(std::string(sub) + " --help").output;
    EXPECT_NE(h.find("--no-ema"), std::string::npos) << sub;
    EXPECT_NE(h.find("--tta"), std::string::npos) << sub;
  }
  const std::string data_dir = (data().tmp.path() / "train").string();
  for (const char* bad : {"0", "1", "1.5", "-0.1", "nan", "0.999999999"}) {
    const test::RunResult r =
        run_stoke("train --data " + data_dir + " --ema " + bad + " --out " + (data().tmp.path() / "never").string());
    EXPECT_EQ(r.exit_code, 2) << bad;
    EXPECT_NE(r.output.find("--ema"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(data().tmp.path() / "never"));
  // The start says how the EMA moves, config.json records it, and the recalibration line names the EMA's statistics.
  const std::string warm_run = (data().tmp.path() / "cli-warm").string();
  const test::RunResult w =
      run_stoke("train --data " + data_dir +
                " --epochs 1 --batch-size 8 --ema 0.9 --ema-warmup --bn-recalibrate 1 --out " + warm_run);
  ASSERT_EQ(w.exit_code, 0) << w.output;
  EXPECT_NE(w.output.find("weight EMA: decay min(0.9, 1 - t^(-2/3)) at applied update t (--ema-warmup"),
            std::string::npos)
      << w.output;
  EXPECT_NE(w.output.find("0.9 from update 32 on"), std::string::npos) << w.output;
  EXPECT_NE(w.output.find("with the final weights, and the weight EMA's under its own weights, in"), std::string::npos)
      << w.output;
  EXPECT_EQ(nlohmann::json::parse(file_bytes(warm_run + "/config.json")).at("ema_warmup"), true);
  const std::string run = (data().tmp.path() / "cli").string(), val = (data().tmp.path() / "val").string();
  const std::string args = "train --data " + data_dir + " --epochs 1 --batch-size 8 --ema 0.9 --quiet --out " + run;
  ASSERT_EQ(run_stoke(args).exit_code, 0);
  const test::RunResult changed = run_stoke("train --resume " + run + " --epochs 2 --ema 0.99");
  EXPECT_EQ(changed.exit_code, 2);
  EXPECT_NE(changed.output.find("--ema 0.99 differs from the run's 0.9"), std::string::npos) << changed.output;
  const test::RunResult warm = run_stoke("train --resume " + run + " --epochs 2 --ema-warmup");
  EXPECT_EQ(warm.exit_code, 2);
  EXPECT_NE(warm.output.find("--ema-warmup true differs from the run's false"), std::string::npos) << warm.output;
  const test::RunResult alone =
      run_stoke("train --data " + data_dir + " --ema-warmup --out " + (data().tmp.path() / "never").string());
  EXPECT_EQ(alone.exit_code, 2);
  EXPECT_NE(alone.output.find("--ema-warmup needs --ema"), std::string::npos) << alone.output;
  EXPECT_FALSE(fs::exists(data().tmp.path() / "never"));
  const test::RunResult ev = run_stoke("eval --run " + run + " --data " + val + " --tta flip");
  EXPECT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_NE(ev.output.find("(weight EMA)"), std::string::npos) << ev.output;
  EXPECT_NE(ev.output.find("with --tta flip"), std::string::npos) << ev.output;
  const test::RunResult raw = run_stoke("eval --run " + run + " --data " + val + " --no-ema");
  EXPECT_EQ(raw.output.find("weight EMA"), std::string::npos) << raw.output;
}

// eval and predict of a run trained with --tta flip flip as its validation did, unless --tta none says otherwise,
// and say which they do; a run trained without it is evaluated without it.
TEST(EmaTrain, EvalAndPredictFollowTheRunsTta) {
  using test::run_stoke;
  for (const char* sub : {"eval", "predict"})
    EXPECT_NE(run_stoke(std::string(sub) + " --help").output.find("as the run"), std::string::npos) << sub;
  const std::string train_dir = (data().tmp.path() / "train").string(), val = (data().tmp.path() / "val").string();
  const std::string run = (data().tmp.path() / "tta-run").string();
  ASSERT_EQ(run_stoke("train --data " + train_dir + " --val " + val +
                      " --epochs 1 --batch-size 8 --tta flip --quiet --out " + run)
                .exit_code,
            0);
  auto result_line = [](const std::string& out) {  // "N images evaluated ...: accuracy, loss, AUC"
    const size_t at = out.find("images evaluated");
    return at == std::string::npos ? std::string() : out.substr(at, out.find('\n', at) - at);
  };
  const test::RunResult as_run = run_stoke("eval --run " + run + " --data " + val);
  const test::RunResult flip = run_stoke("eval --run " + run + " --data " + val + " --tta flip");
  const test::RunResult none = run_stoke("eval --run " + run + " --data " + val + " --tta none");
  ASSERT_EQ(as_run.exit_code, 0) << as_run.output;
  EXPECT_NE(as_run.output.find("test-time augmentation: flip (as the run"), std::string::npos) << as_run.output;
  EXPECT_NE(none.output.find("test-time augmentation: none (--tta none"), std::string::npos) << none.output;
  EXPECT_EQ(result_line(as_run.output), result_line(flip.output));
  EXPECT_NE(result_line(as_run.output), result_line(none.output));
  // predict's probabilities at full precision: the run's default is the flipped ones, --tta none the plain ones.
  const std::string image = (data().tmp.path() / "val" / "a" / "0.jpg").string();
  auto probabilities = [&](const std::string& flags) {
    const test::RunResult r = run_stoke("predict --json --run " + run + " " + image + flags);
    const size_t brace = r.output.find('{');
    EXPECT_NE(brace, std::string::npos) << r.output;
    return brace == std::string::npos
               ? nlohmann::json()
               : nlohmann::json::parse(r.output.substr(brace, r.output.find('\n', brace) - brace)).at("probabilities");
  };
  const nlohmann::json p_run = probabilities(""), p_flip = probabilities(" --tta flip");
  EXPECT_EQ(p_run, p_flip);
  EXPECT_NE(p_run, probabilities(" --tta none"));
  EXPECT_NE(run_stoke("predict --run " + run + " " + image).output.find("flip (as the run"), std::string::npos);
  // A run without --tta: no flip, and nothing said about it.
  const std::string plain = (data().tmp.path() / "no-tta-run").string();
  ASSERT_EQ(run_stoke("train --data " + train_dir + " --epochs 1 --batch-size 8 --quiet --out " + plain).exit_code, 0);
  const test::RunResult ev = run_stoke("eval --run " + plain + " --data " + val);
  EXPECT_EQ(ev.output.find("test-time augmentation"), std::string::npos) << ev.output;
  EXPECT_EQ(ev.output.find("with --tta flip"), std::string::npos) << ev.output;
}
