// Running out of resources: a full disk while checkpointing, a read-only run folder. Both use a real tmpfs
// mounted by the test (needs CAP_SYS_ADMIN, which the CI and development machines have; elsewhere the tests
// skip and say why).
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/checkpoint.h"
#include "base/error.h"
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
  void remount_read_only() { ASSERT_EQ(::mount("tmpfs", at_.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY, nullptr), 0) << std::strerror(errno); }
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
  disk.fill();
  TrainConfig r = config_for_resume(run);
  r.quiet = true;
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
  test::RunResult fresh = test::run_stoke("train --data " + tmp.str() + "/train --out " + (tmp.path() / "ro" / "other").string());
  EXPECT_EQ(fresh.exit_code, 2) << fresh.output;
  EXPECT_NE(fresh.output.find("Read-only file system"), std::string::npos) << fresh.output;
  // Resuming into it fails before training, naming the file it could not write.
  test::RunResult again = test::run_stoke("train --resume " + run);
  EXPECT_NE(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("Read-only file system"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find(run), std::string::npos) << again.output;
}
