// Running out of resources: a full disk while checkpointing, a read-only run folder. Both use a real tmpfs
// mounted by the test (needs CAP_SYS_ADMIN, which the CI and development machines have; elsewhere the tests
// skip and say why).
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::TempDir;
namespace fs = std::filesystem;

namespace {
class Tmpfs {
 public:
  Tmpfs(const fs::path& at, const std::string& opts) : at_(at) {
    fs::create_directories(at);
    if (::mount("tmpfs", at.c_str(), "tmpfs", 0, opts.c_str()) != 0) error_ = std::strerror(errno);
  }
  ~Tmpfs() {
    if (error_.empty()) ::umount2(at_.c_str(), MNT_DETACH);
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  void remount_read_only() {
    ASSERT_EQ(::mount("tmpfs", at_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr), 0) << std::strerror(errno);
  }
  void fill() {  // writes until the file system is full
    std::ofstream f(at_ / "filler", std::ios::binary);
    std::string block(4096, 'x');
    while (f.write(block.data(), static_cast<std::streamsize>(block.size()))) {
    }
  }

 private:
  fs::path at_;
  std::string error_;
};

TrainConfig tiny(const TempDir& tmp, const std::string& out) {
  TrainConfig c;
  c.data = tmp.str() + "/train";
  c.epochs = 2;
  c.batch_size = 8;
  c.quiet = true;
  c.out = out;
  return c;
}
}  // namespace

TEST(Resources, DiskFullWhileCheckpointingKeepsThePreviousCheckpoint) {
  TempDir tmp("diskfull");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b"}, 12);
  Tmpfs disk(tmp.path() / "disk", "size=4m");
  if (!disk.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.error();
  const std::string run = (tmp.path() / "disk" / "run").string();
  TrainConfig c = tiny(tmp, run);
  c.interrupt_after_steps = 2;
  TrainResult first = train(c, build_model);
  ASSERT_TRUE(first.interrupted);
  const std::string good = find_checkpoint(run);
  ASSERT_FALSE(good.empty());
  TrainConfig r = config_for_resume(run);
  r.quiet = true;
  // Full once the run has checked its space at the start (TooLittleSpaceIsFoundAtTheStart covers that check).
  r.before_input = [&] { disk.fill(); };
  try {
    train(r, build_model);
    ADD_FAILURE() << "training on a full disk should fail at its first checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
  }
  fs::remove(tmp.path() / "disk" / "filler");
  EXPECT_EQ(find_checkpoint(run), good);
  Graph g = small_cnn({12, 12, 1}, 2);
  EXPECT_NO_THROW(load_checkpoint(good, g, "sgd"));
  // With space again, the run resumes from the intact checkpoint and finishes.
  TrainResult done = train(config_for_resume(run), build_model);
  EXPECT_FALSE(done.interrupted);
  EXPECT_EQ(done.steps, 2 * (24 / 8));
}

namespace {
int64_t file_bytes(const fs::path& dir) {
  int64_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) n += static_cast<int64_t>(e.file_size());
  return n;
}
}  // namespace

// The size the free-space check expects is the size a tiny run's checkpoint really takes: SGD (one moment) and
// AdamW (two), with validation (history lines) and without.
TEST(Resources, ACheckpointsSizeIsKnownBeforeItIsWritten) {
  TempDir tmp("ckbytes");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 8);
  test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 2);
  for (const std::string opt : {"sgd", "adamw"}) {
    for (const bool val : {false, true}) {
      SCOPED_TRACE(opt + (val ? " with validation" : ""));
      TrainConfig c = tiny(tmp, tmp.str() + "/run-" + opt + (val ? "-val" : ""));
      c.optimizer.kind = parse_optimizer(opt);
      if (val) c.val = tmp.str() + "/val";
      const TrainResult t = train(c, build_model);
      const std::vector<uint8_t> text = read_file(t.last_checkpoint + "/state.json");
      const nlohmann::json state = nlohmann::json::parse(text.begin(), text.end());
      const Graph g = build_model("small-cnn", {12, 12, 1}, 3);
      const size_t moments = opt == "adamw" ? 2 : 1;
      const int64_t expected =
          checkpoint_bytes(g, opt, moments * static_cast<size_t>(g.num_params()), state.at("config"), 1, c.epochs);
      const int64_t real = file_bytes(t.last_checkpoint);
      std::printf("%s%s: expected %lld bytes, written %lld (%+.2f%%)\n", opt.c_str(), val ? " val" : "",
                  static_cast<long long>(expected), static_cast<long long>(real),
                  100.0 * static_cast<double>(expected - real) / static_cast<double>(real));
      EXPECT_NEAR(static_cast<double>(expected), static_cast<double>(real), 0.02 * static_cast<double>(real));
      EXPECT_GE(expected, real) << "an estimate below the real size lets a run start that cannot checkpoint";
    }
  }
}

// A disk too small is found before any compute: a new run that cannot write even one checkpoint is refused (exit 2,
// naming the folder and the numbers, nothing of an earlier run removed), one that cannot hold the checkpoints it
// keeps at once is warned at the start (and indeed fails at its second checkpoint), and a resume onto a full disk
// is refused before its first epoch.
TEST(Resources, TooLittleSpaceIsFoundAtTheStart) {
  TempDir tmp("space");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b"}, 12);
  const std::string args = " --data " + tmp.str() +
                           "/train --epochs 2 --batch-size 8 --model small-cnn-wide "
                           "--optimizer adamw --keep-checkpoints 1";
  test::RunResult sized = test::run_stoke("train --quiet --out " + tmp.str() + "/sized" + args);
  ASSERT_EQ(sized.exit_code, 0) << sized.output;
  const int64_t ck = file_bytes(tmp.path() / "sized" / "checkpoints" / "step-00000006");
  {
    Tmpfs disk(tmp.path() / "small", str("size=", ck / 2 / 1024, "k"));
    if (!disk.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.error();
    const std::string run = (tmp.path() / "small" / "run").string();
    test::RunResult r = test::run_stoke("train --out " + run + args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("not enough free space in " + run + " for even one checkpoint"), std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find("epoch 1/2"), std::string::npos) << "refused after training: " << r.output;
    EXPECT_FALSE(fs::exists(fs::path(run) / "checkpoints"));
  }
  {
    Tmpfs disk(tmp.path() / "mid", str("size=", ck * 8 / 5 / 1024, "k"));  // one checkpoint and the files, not two
    ASSERT_TRUE(disk.ok()) << disk.error();
    const std::string run = (tmp.path() / "mid" / "run").string();
    test::RunResult r = test::run_stoke("train --out " + run + args);
    const size_t warned = r.output.find("warning: " + run + " has ");
    ASSERT_NE(warned, std::string::npos) << r.output;
    EXPECT_NE(r.output.find("room for 1 checkpoint of", warned), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("holds 2 at once", warned), std::string::npos) << r.output;
    EXPECT_LT(warned, r.output.find("epoch 1/2")) << "the warning comes before any compute";
    // The warning was right: the second checkpoint does not fit beside the first, which stays intact.
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("No space left on device"), std::string::npos) << r.output;
    EXPECT_EQ(fs::path(find_checkpoint(run)).filename(), "step-00000003");
    // Filled up, a resume is refused at its start rather than after an epoch.
    disk.fill();
    test::RunResult again = test::run_stoke("train --resume " + run);
    EXPECT_EQ(again.exit_code, 2) << again.output;
    EXPECT_NE(again.output.find("not enough free space in " + run), std::string::npos) << again.output;
    EXPECT_EQ(again.output.find("epoch 2/2"), std::string::npos) << again.output;
  }
}

TEST(Resources, ReadOnlyRunFolderIsAClearError) {
  TempDir tmp("readonly");
  test::write_tiny_folder(tmp.path() / "train", {"a", "b"}, 12);
  Tmpfs disk(tmp.path() / "ro", "size=4m");
  if (!disk.ok()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.error();
  const std::string run = (tmp.path() / "ro" / "run").string();
  TrainConfig c = tiny(tmp, run);
  c.interrupt_after_steps = 1;
  train(c, build_model);
  disk.remount_read_only();
  // A new run cannot even create its folder: one line, exit 2.
  test::RunResult fresh =
      test::run_stoke("train --data " + tmp.str() + "/train --out " + (tmp.path() / "ro" / "other").string());
  EXPECT_EQ(fresh.exit_code, 2) << fresh.output;
  EXPECT_NE(fresh.output.find("Read-only file system"), std::string::npos) << fresh.output;
  // Resuming into it fails before training, naming the file it could not write.
  test::RunResult again = test::run_stoke("train --resume " + run);
  EXPECT_NE(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("Read-only file system"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find(run), std::string::npos) << again.output;
}
