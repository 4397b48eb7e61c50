// Reliability end to end: an interrupted run resumed from its checkpoint continues bit-exactly; non-finite
// losses are skipped, then stop the run; SIGINT finishes the step, checkpoints and exits 0.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/error.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/inference.h"
#include "engine/resume.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/test_util.h"

extern char** environ;

using namespace stoke;
using stoke::test::file_bytes;
using stoke::test::TempDir;
namespace fs = std::filesystem;

namespace {

TrainConfig tiny_config(const TempDir& tmp, const std::string& run) {
  TrainConfig c;
  c.data = (tmp.path() / "train").string();
  c.val = (tmp.path() / "val").string();
  c.epochs = 3;
  c.batch_size = 8;
  c.lr = 0.05f;
  c.seed = 3;
  c.quiet = true;
  c.checkpoint_every = 4;
  c.out = (tmp.path() / run).string();
  return c;
}

void make_data(const TempDir& tmp) {
  test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 20);  // 60 images: 7 steps of 8 per epoch
  test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 4);
}

}  // namespace

TEST(Resume, InterruptedRunsContinueBitExactly) {
  TempDir tmp("resume");
  make_data(tmp);
  TrainResult full = train(tiny_config(tmp, "full"), build_model);
  ASSERT_FALSE(full.interrupted);
  ASSERT_EQ(full.step_losses.size(), 21u);

  // Interrupt mid-epoch (after 5), exactly at an epoch boundary (after 7), and twice in a row.
  for (std::vector<int64_t> cuts : {std::vector<int64_t>{5}, std::vector<int64_t>{7}, std::vector<int64_t>{3, 9}}) {
    const std::string run = "cut" + std::to_string(cuts[0]) + "-" + std::to_string(cuts.size());
    TrainConfig c = tiny_config(tmp, run);
    c.interrupt_after_steps = cuts[0];
    std::vector<float> losses;
    TrainResult r = train(c, build_model);
    ASSERT_TRUE(r.interrupted);
    EXPECT_EQ(r.steps, cuts[0]);
    losses = r.step_losses;
    for (size_t k = 1; k <= cuts.size(); ++k) {
      TrainConfig rc = config_for_resume(c.out);
      rc.quiet = true;
      if (k < cuts.size()) rc.interrupt_after_steps = cuts[k];
      TrainResult rr = train(rc, build_model);
      EXPECT_EQ(rr.first_step, static_cast<int64_t>(losses.size()));
      losses.insert(losses.end(), rr.step_losses.begin(), rr.step_losses.end());
      r = rr;
    }
    EXPECT_FALSE(r.interrupted);
    ASSERT_EQ(losses.size(), full.step_losses.size()) << run;
    for (size_t i = 0; i < losses.size(); ++i) EXPECT_EQ(losses[i], full.step_losses[i]) << run << " step " << i;
    // Same final weights, byte for byte, and the same last-epoch numbers.
    EXPECT_EQ(file_bytes(r.last_checkpoint + "/model.safetensors"),
              file_bytes(full.last_checkpoint + "/model.safetensors"))
        << run;
    ASSERT_FALSE(r.epochs.empty());
    EXPECT_EQ(r.epochs.back().train_loss, full.epochs.back().train_loss) << run;
    EXPECT_EQ(r.epochs.back().val_loss, full.epochs.back().val_loss) << run;
  }
}

// --bn-recalibrate: the same steps and weights as without it, other running statistics, and those are what the
// checkpoint holds and the last evaluation used. On by default for this 21-step run (auto: 7 batches, one epoch's).
// (Resume.InterruptedRunsContinueBitExactly above runs with it on: a resumed run recalibrates to the same bytes.)
TEST(Resume, BnRecalibrateChangesOnlyTheRunningStatisticsAndTheCheckpointHoldsThem) {
  TempDir tmp("recal");
  make_data(tmp);
  TrainConfig off = tiny_config(tmp, "off"), on = tiny_config(tmp, "on");
  off.bn_recalibrate = 0;
  const TrainResult a = train(off, build_model), b = train(on, build_model);
  EXPECT_EQ(a.step_losses, b.step_losses);
  const LoadedRun ra = load_run(a.run_dir, build_model, "latest"), rb = load_run(b.run_dir, build_model, "latest");
  EXPECT_EQ(ra.params, rb.params);    // no weight moves
  EXPECT_NE(ra.buffers, rb.buffers);  // the statistics do
  nlohmann::json last;
  std::ifstream metrics(b.run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);)
    if (nlohmann::json j = nlohmann::json::parse(line); j.value("kind", "") == "epoch") last = j;
  EXPECT_EQ(last.value("bn_recalibrated_batches", 0), 7);
  // The checkpoint's statistics are the evaluated ones: its loss on the validation set is the last epoch's.
  const ClassificationReport rep = evaluate_folder(rb, on.val, 8, 1, DeviceRequest::cpu);
  EXPECT_NEAR(rep.loss, b.epochs.back().val_loss, 1e-5 * b.epochs.back().val_loss);
  const ClassificationReport rep_off = evaluate_folder(ra, off.val, 8, 1, DeviceRequest::cpu);
  EXPECT_NEAR(rep_off.loss, a.epochs.back().val_loss, 1e-5 * a.epochs.back().val_loss);
  EXPECT_NE(rep.loss, rep_off.loss);
}

TEST(Resume, RefusesDifferentData) {
  TempDir tmp("resume-data");
  make_data(tmp);
  TrainConfig c = tiny_config(tmp, "run");
  c.interrupt_after_steps = 2;
  train(c, build_model);
  test::write_tiny_folder(tmp.path() / "train", {"a"}, 21);  // one more image in class a
  TrainConfig rc = config_for_resume(c.out);
  try {
    train(rc, build_model);
    ADD_FAILURE() << "resumed on different data";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("1 new file (a/20.jpg)"), std::string::npos) << m;  // named, not a fingerprint
    EXPECT_NE(m.find("--force"), std::string::npos) << m;
  }
  EXPECT_THROW(config_for_resume((tmp.path() / "nowhere").string()), UserError);
}

TEST(Numerics, NonFiniteStepsAreSkippedThenStopTheRun) {
  TempDir tmp("nonfinite");
  make_data(tmp);
  TrainConfig c = tiny_config(tmp, "skip");
  c.inject_nonfinite_steps = {2, 9};
  TrainResult r = train(c, build_model);
  EXPECT_EQ(r.skipped_steps, 2);
  EXPECT_FALSE(std::isfinite(r.step_losses[2]));
  EXPECT_EQ(r.steps, 21);

  TrainConfig s = tiny_config(tmp, "stop");
  s.max_nonfinite_steps = 3;
  s.inject_nonfinite_steps = {9, 10, 11};
  try {
    train(s, build_model);
    ADD_FAILURE() << "the run should stop";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("3 consecutive steps"), std::string::npos) << m;
    EXPECT_NE(m.find("step 12"), std::string::npos) << m;
    EXPECT_NE(m.find("step-00000008"), std::string::npos) << m;  // the last good checkpoint, by name
  }
}

TEST(Numerics, GradientClippingBoundsEveryUpdate) {
  TempDir tmp("clip");
  make_data(tmp);
  TrainConfig c = tiny_config(tmp, "free");
  c.optimizer.momentum = 0.f;
  c.optimizer.weight_decay = 0.f;
  c.schedule = ScheduleKind::constant;
  c.epochs = 2;
  TrainResult free_run = train(c, build_model);
  c.out = tmp.str() + "/clipped";
  c.clip_grad_norm = 1e-6f;  // updates of at most lr * 1e-6: the weights stay where they started
  TrainResult clipped = train(c, build_model);
  c.out = tmp.str() + "/frozen";
  c.clip_grad_norm = 0.f;
  c.lr = 1e-12f;  // the same batches through (practically) untouched weights
  TrainResult frozen = train(c, build_model);
  ASSERT_EQ(clipped.step_losses.size(), frozen.step_losses.size());
  double free_gap = 0;
  for (size_t i = 0; i < frozen.step_losses.size(); ++i) {
    EXPECT_NEAR(clipped.step_losses[i], frozen.step_losses[i], 1e-4) << "step " << i;
    free_gap = std::max(free_gap, std::abs(static_cast<double>(free_run.step_losses[i]) - frozen.step_losses[i]));
  }
  EXPECT_GT(free_gap, 0.1);  // without the clip, training moves the loss
}

namespace {
// Starts the stoke binary with output to a file; returns its pid.
pid_t spawn_stoke(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv_s = {test::binary_dir() + "/bin/stoke"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid = -1;
  posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}
bool wait_for(const std::function<bool()>& cond, double seconds) {
  auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}
int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
}  // namespace

TEST(Signals, SigintCheckpointsAndExitsZeroThenResumeFinishes) {
  TempDir tmp("sigint");
  make_data(tmp);
  const std::string run = tmp.str() + "/run", log = tmp.str() + "/log";
  pid_t pid =
      spawn_stoke({"train", "--data", tmp.str() + "/train", "--epochs", "500", "--batch-size", "8", "--out", run}, log);
  ASSERT_GT(pid, 0);
  // Wait until it is training (the first epoch's checkpoint exists), then interrupt.
  ASSERT_TRUE(wait_for([&] { return fs::exists(run + "/checkpoints/latest"); }, 60)) << file_bytes(log);
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 0) << file_bytes(log);
  const std::string out = file_bytes(log);
  EXPECT_NE(out.find("checkpoint written to"), std::string::npos) << out;
  EXPECT_NE(out.find("stoke train --resume " + run), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(run + "/summary.json"));

  // Changing a setting on resume is refused; --epochs may change.
  test::RunResult bad = test::run_stoke("train --resume " + run + " --lr 0.5");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--lr 0.5 differs from the run's 0.1"), std::string::npos) << bad.output;
  // Two epochs past where the interrupt stopped it: on a quiet machine the run may have passed epoch 3 before the
  // signal arrived, and a resume to an epoch already reached has nothing to do.
  const int64_t stopped = run_position(run).epoch;
  test::RunResult ok = test::run_stoke("train --resume " + run + " --epochs " + std::to_string(stopped + 2));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("resuming: "), std::string::npos) << ok.output;
  EXPECT_TRUE(fs::exists(run + "/summary.json"));
}

TEST(Signals, SecondSigintExitsAtOnceAndLeavesCheckpointsLoadable) {
  TempDir tmp("sigint2");
  make_data(tmp);
  const std::string run = tmp.str() + "/run", log = tmp.str() + "/log";
  pid_t pid = spawn_stoke({"train", "--data", tmp.str() + "/train", "--epochs", "500", "--batch-size", "8",
                           "--checkpoint-every", "1", "--out", run},
                          log);
  ASSERT_TRUE(wait_for([&] { return fs::exists(run + "/checkpoints/latest"); }, 60)) << file_bytes(log);
  ::kill(pid, SIGINT);
  ::kill(pid, SIGINT);
  const int code = wait_exit(pid);
  EXPECT_TRUE(code == 0 || code == 130) << code << "\n" << file_bytes(log);
  // Whatever instant it died at, the named checkpoint is complete and the run resumes.
  test::RunResult ok = test::run_stoke("train --resume " + run + " --epochs 1 --quiet");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
}

TEST(Signals, KillNineAtAnyMomentLeavesTheLatestCheckpointLoadable) {
  TempDir tmp("kill9");
  make_data(tmp);
  const std::string run = tmp.str() + "/run", log = tmp.str() + "/log";
  // Checkpoint after every step, and kill -9 at scattered moments: mid-step, mid-write, mid-rename.
  pid_t pid = spawn_stoke({"train", "--data", tmp.str() + "/train", "--epochs", "500", "--batch-size", "8",
                           "--checkpoint-every", "1", "--out", run},
                          log);
  ASSERT_TRUE(wait_for([&] { return fs::exists(run + "/checkpoints/latest"); }, 60)) << file_bytes(log);
  for (int round = 0; round < 6; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(37 + 53 * round));
    ::kill(pid, SIGKILL);
    wait_exit(pid);
    // The named checkpoint is complete, whatever was in flight.
    EXPECT_NO_THROW(config_for_resume(run));
    Graph g = small_cnn({12, 12, 1}, 3);
    EXPECT_NO_THROW(load_checkpoint(find_checkpoint(run), g, "sgd")) << "round " << round;
    pid = spawn_stoke({"train", "--resume", run, "--epochs", "500"}, log);
    ASSERT_TRUE(wait_for([&] { return file_bytes(log).find("resuming: ") != std::string::npos; }, 60))
        << file_bytes(log);
  }
  ::kill(pid, SIGKILL);
  wait_exit(pid);
}
