// Resume as people use it: the same command again with --resume appended, a finished run, more epochs, data that
// lost or gained files, a run killed before its first checkpoint, and the run's time across sessions.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/resume.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::TempDir;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

struct Data {
  TempDir tmp{"resume-use"};
  Data() {
    test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 12);  // 36 images: 4 steps of 8 per epoch
    test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 3);
  }
  TrainConfig config(const std::string& run, int epochs = 2) const {
    TrainConfig c;
    c.data = (tmp.path() / "train").string();
    c.val = (tmp.path() / "val").string();
    c.epochs = epochs;
    c.batch_size = 8;
    c.lr = 0.05f;
    c.seed = 5;
    c.quiet = true;
    c.out = (tmp.path() / run).string();
    return c;
  }
};

std::vector<json> metrics_lines(const std::string& run) {
  std::istringstream in(test::file_bytes(run + "/metrics.jsonl"));
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

std::string user_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// The command that started the run, typed again with --resume appended: every flag equals the run's own value,
// so it is accepted; a real change is refused naming the flag and both values; session flags take effect.
TEST(ResumeUse, TheSameCommandWithResumeAppendedIsAccepted) {
  Data d;
  TrainConfig c = d.config("run");
  c.interrupt_after_steps = 3;
  ASSERT_TRUE(train(c, build_model).interrupted);

  TrainConfig again = d.config("run");
  again.data = d.tmp.str() + "/./train/";  // the same folder, spelt differently
  again.resume = again.out;
  const std::vector<std::string> flags = {"--data", "--val",  "--epochs", "--batch-size",
                                          "--lr",   "--seed", "--out",    "--resume"};
  TrainConfig merged = resume_config(again.out, again, flags);
  EXPECT_EQ(merged.resume, again.out);
  EXPECT_EQ(merged.lr, 0.05f);
  EXPECT_EQ(train(merged, build_model).steps, 8);

  TrainConfig changed = again;
  changed.lr = 0.5f;
  const std::string m = user_error([&] { resume_config(again.out, changed, flags); });
  EXPECT_NE(m.find("--lr 0.5 differs from the run's 0.05"), std::string::npos) << m;

  TrainConfig session = again;
  session.epochs = 5;
  session.threads = 1;
  const TrainConfig s = resume_config(again.out, session, {"--epochs", "--threads"});
  EXPECT_EQ(s.epochs, 5);
  EXPECT_EQ(s.threads, 1);
  EXPECT_NE(user_error([&] { resume_config(again.out, again, {"--overwrite"}); }).find("choose one"),
            std::string::npos);
}

// Resuming a finished run changes nothing (not a byte of the run folder); --epochs beyond it continues the run
// where it stopped, with the schedule laid out over the new length; fewer epochs than trained is an error.
TEST(ResumeUse, AFinishedRunChangesNothingUntilEpochsExtendIt) {
  Data d;
  const TrainResult first = train(d.config("run", 1), build_model);
  const std::string run = first.run_dir;
  const std::string metrics = test::file_bytes(run + "/metrics.jsonl"),
                    summary = test::file_bytes(run + "/summary.json");
  const std::string latest = find_checkpoint(run);

  const TrainResult again = train(config_for_resume(run), build_model);
  EXPECT_EQ(again.steps, 4);
  ASSERT_EQ(again.epochs.size(), 1u);
  EXPECT_DOUBLE_EQ(again.epochs[0].val_acc, first.epochs[0].val_acc);
  EXPECT_EQ(test::file_bytes(run + "/metrics.jsonl"), metrics);
  EXPECT_EQ(test::file_bytes(run + "/summary.json"), summary);
  EXPECT_EQ(find_checkpoint(run), latest);

  TrainConfig more = config_for_resume(run);
  more.epochs = 3;
  const TrainResult longer = train(more, build_model);
  EXPECT_EQ(longer.first_step, 4);
  EXPECT_EQ(longer.steps, 12);
  const json s = json::parse(test::file_bytes(run + "/summary.json"));
  EXPECT_EQ(s.at("history").size(), 3u);
  EXPECT_EQ(s.at("epochs"), 3);

  TrainConfig fewer = config_for_resume(run);
  fewer.epochs = 2;
  EXPECT_NE(user_error([&] { train(fewer, build_model); }).find("has already trained 3 epochs"), std::string::npos);
}

// Files removed and added since the checkpoint are named; --force continues on the data as it is now, and the
// next resume compares with that.
TEST(ResumeUse, ChangedDataIsNamedAndForceContinues) {
  Data d;
  TrainConfig c = d.config("run");
  c.interrupt_after_steps = 2;
  ASSERT_TRUE(train(c, build_model).interrupted);
  fs::remove(d.tmp.path() / "train" / "b" / "3.jpg");
  fs::copy_file(d.tmp.path() / "train" / "c" / "0.jpg", d.tmp.path() / "train" / "c" / "new.jpg");

  TrainConfig rc = config_for_resume(c.out);
  rc.quiet = true;
  const std::string m = user_error([&] { train(rc, build_model); });
  EXPECT_NE(m.find("1 missing file (b/3.jpg), 1 new file (c/new.jpg)"), std::string::npos) << m;
  EXPECT_NE(m.find("--force"), std::string::npos) << m;

  rc.force = true;
  rc.interrupt_after_steps = 1;
  const TrainResult forced = train(rc, build_model);
  EXPECT_TRUE(forced.interrupted);
  EXPECT_EQ(forced.steps, 3);
  TrainConfig next = config_for_resume(c.out);  // no --force needed now: the list was updated
  next.quiet = true;
  const TrainResult done = train(next, build_model);
  EXPECT_FALSE(done.interrupted);
  EXPECT_EQ(done.steps, 8);

  // Other classes are never accepted, --force or not: the model's outputs are the classes.
  for (const char* split : {"train", "val"}) fs::rename(d.tmp.path() / split / "c", d.tmp.path() / split / "z");
  TrainConfig other = config_for_resume(c.out);
  other.epochs = 3;
  other.force = true;
  const std::string m2 = user_error([&] { train(other, build_model); });
  EXPECT_NE(m2.find("are not the run's"), std::string::npos) << m2;
}

// A run killed before its first checkpoint: --resume starts it again from its saved settings, and a new run in
// the same folder starts without asking for --overwrite (no advice that loops between the two).
TEST(ResumeUse, ARunKilledBeforeItsFirstCheckpointStartsAgain) {
  Data d;
  const TrainResult r = train(d.config("run", 1), build_model);
  fs::remove_all(fs::path(r.run_dir) / "checkpoints");  // as if killed before the first checkpoint was written

  std::string note;
  TrainConfig given;
  const TrainConfig restart = resume_config(r.run_dir, given, {"--resume"}, &note);
  EXPECT_NE(note.find("stopped before its first checkpoint"), std::string::npos) << note;
  EXPECT_TRUE(restart.resume.empty());
  EXPECT_TRUE(restart.overwrite);
  EXPECT_EQ(restart.data, d.config("run").data);
  TrainConfig quiet = restart;
  quiet.quiet = true;
  EXPECT_EQ(train(quiet, build_model).steps, 4);

  fs::remove_all(fs::path(r.run_dir) / "checkpoints");
  EXPECT_EQ(train(d.config("run", 1), build_model).steps, 4);  // same --out, no --overwrite needed

  TrainConfig lib = config_for_resume(r.run_dir);  // a library caller resuming such a folder gets one clear way out
  fs::remove_all(fs::path(r.run_dir) / "checkpoints");
  EXPECT_NE(user_error([&] { train(lib, build_model); }).find("run it again without --resume"), std::string::npos);
}

// The run's clock goes on across sessions: metrics.jsonl's elapsed_s never goes back, summary.json's
// seconds_total counts every session, and an epoch cut by an interruption reports its whole time.
TEST(ResumeUse, TheRunsTimeAddsUpAcrossSessions) {
  Data d;
  TrainConfig c = d.config("run");
  c.interrupt_after_steps = 2;
  train(c, build_model);
  const json state = json::parse(test::file_bytes(find_checkpoint(c.out) + "/state.json"));
  const double before = state.at("elapsed_s").get<double>();
  const double epoch_part = state.at("epoch_sums").at("seconds").get<double>();
  EXPECT_GT(before, 0);
  EXPECT_GT(epoch_part, 0);
  const TrainResult rest = train(config_for_resume(c.out), build_model);
  double last = 0;
  for (const json& j : metrics_lines(c.out)) {
    const double e = j.at("elapsed_s").get<double>();
    EXPECT_GE(e, last) << j.dump();
    last = e;
  }
  const json s = json::parse(test::file_bytes(c.out + "/summary.json"));
  EXPECT_GE(s.at("seconds_total").get<double>(), before + s.at("seconds_this_session").get<double>() - 1e-6);
  EXPECT_NEAR(s.at("seconds_this_session").get<double>(), rest.seconds, 0.5);
  EXPECT_GE(rest.epochs.at(0).seconds, epoch_part);
}
