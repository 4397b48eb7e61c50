// The synthetic MedNIST-like data: class proportions, the JPEG tree (plain and train/val/test), decodability,
// byte-for-byte determinism, the completion marker — and that its classes are learnable: the small CNN
// reaches high accuracy on held-out images after a short CPU run.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "io/source/image_folder.h"
#include "io/codec/jpeg.h"
#include "io/datasets/synthetic.h"
#include "tests/models/small_cnn_fit.h"
#include "tests/test_util.h"

using namespace stoke;
namespace fs = std::filesystem;

using test::read_tree;

TEST(Synthetic, ClassCountsFollowMedNist) {
  EXPECT_EQ(io::synthetic_mednist_counts(io::kMedNistCount),
            (std::vector<int64_t>{10000, 8954, 10000, 10000, 10000, 10000}));
  EXPECT_EQ(io::synthetic_mednist_counts(60), (std::vector<int64_t>{11, 9, 10, 10, 10, 10}));
  EXPECT_EQ(io::synthetic_mednist_counts(0), (std::vector<int64_t>(6, 0)));
  for (int64_t n : {1, 5, 7, 600, 12345, 100000}) {
    auto c = io::synthetic_mednist_counts(n);
    EXPECT_EQ(std::accumulate(c.begin(), c.end(), int64_t{0}), n) << n;
  }
  EXPECT_THROW(io::synthetic_mednist_counts(-1), UserError);
  const auto& names = io::synthetic_mednist_classes();
  EXPECT_EQ(names, (std::vector<std::string>{"AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"}));
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
}

TEST(Synthetic, TreeIsDecodableDeterministicAndMarked) {
  test::TempDir tmp("synthetic");
  const fs::path a = tmp.path() / "a", b = tmp.path() / "b", c = tmp.path() / "c";
  int64_t last_done = -1, last_total = -1;
  io::write_synthetic_mednist_like(a.string(), 60, 3, [&](int64_t done, int64_t total) {
    last_done = done;
    last_total = total;
  });
  EXPECT_EQ(last_done, 60);
  EXPECT_EQ(last_total, 60);
  io::write_synthetic_mednist_like(b.string(), 60, 3);
  io::write_synthetic_mednist_like(c.string(), 60, 4);

  io::ImageFolder f = io::index_image_folder(a.string());
  EXPECT_EQ(f.classes, io::synthetic_mednist_classes());
  EXPECT_EQ(f.class_counts, io::synthetic_mednist_counts(60));
  ASSERT_EQ(f.samples.size(), 60u);
  for (const io::Sample& s : f.samples) {
    std::vector<uint8_t> bytes = read_file(s.path);
    io::Image img;
    std::string err;
    ASSERT_TRUE(io::decode_jpeg(bytes.data(), bytes.size(), 1, img, &err)) << s.path << ": " << err;
    EXPECT_EQ(img.h, 64);
    EXPECT_EQ(img.w, 64);
    io::JpegInfo info;
    ASSERT_TRUE(io::jpeg_info(bytes.data(), bytes.size(), info, &err));
    EXPECT_EQ(info.components, 1) << "grayscale JPEGs";
  }
  EXPECT_TRUE(fs::exists(a / "AbdomenCT" / "000010.jpeg"));
  EXPECT_TRUE(fs::exists(a / ".stoke-synthetic-complete"));

  const auto ta = read_tree(a), tb = read_tree(b), tc = read_tree(c);
  EXPECT_EQ(ta.size(), 61u);  // 60 images and the marker
  EXPECT_TRUE(ta == tb) << "same seed, same bytes";
  int same = 0;
  for (const auto& [path, bytes] : ta) same += tc.count(path) && tc.at(path) == bytes;
  EXPECT_EQ(same, 0) << "another seed draws other images (and another marker)";

  // Image k of a class does not depend on the total count.
  test::TempDir tmp2("synthetic-more");
  io::write_synthetic_mednist_like(tmp2.str(), 120, 3);
  EXPECT_EQ(read_file((tmp2.path() / "Hand" / "000007.jpeg").string()), ta.at("Hand/000007.jpeg"));

  // A complete tree is not rewritten; a different one is refused.
  const auto stamp = fs::last_write_time(a / "CXR" / "000000.jpeg");
  io::write_synthetic_mednist_like(a.string(), 60, 3);
  EXPECT_EQ(fs::last_write_time(a / "CXR" / "000000.jpeg"), stamp);
  EXPECT_THROW(io::write_synthetic_mednist_like(a.string(), 60, 9), UserError);
  EXPECT_THROW(io::write_synthetic_mednist_like(a.string(), 61, 3), UserError);
}

TEST(Synthetic, TrainValTestSplit) {
  test::TempDir tmp("synthetic-split");
  io::write_synthetic_mednist_like(tmp.str(), 60, 3, {}, io::SyntheticSplit::train_val_test);
  const auto per_class = io::synthetic_mednist_counts(60);
  int64_t total = 0;
  for (const char* split : {"train", "val", "test"}) {
    io::ImageFolder f = io::index_image_folder((tmp.path() / split).string());
    EXPECT_EQ(f.classes, io::synthetic_mednist_classes()) << split;
    for (size_t c = 0; c < per_class.size(); ++c) {
      const int64_t held = io::synthetic_split_held_out(per_class[c]);
      const int64_t want = std::string(split) == "train" ? per_class[c] - 2 * held : held;
      EXPECT_EQ(f.class_counts[c], want) << split << " " << f.classes[c];
    }
    total += static_cast<int64_t>(f.samples.size());
  }
  EXPECT_EQ(total, 60);
  EXPECT_EQ(io::synthetic_split_held_out(10000), 1000);
  EXPECT_EQ(io::synthetic_split_held_out(8954), 895);
  EXPECT_EQ(io::synthetic_split_held_out(9), 1);
  EXPECT_THROW(
      io::write_synthetic_mednist_like((tmp.path() / "tiny").string(), 17, 3, {}, io::SyntheticSplit::train_val_test),
      UserError);
  EXPECT_THROW(io::write_synthetic_mednist_like((tmp.path() / "tiny").string(), 5, 3), UserError);
  EXPECT_NO_THROW(io::write_synthetic_mednist_like((tmp.path() / "least-split").string(), 18, 3, {},
                                                   io::SyntheticSplit::train_val_test));
  EXPECT_NO_THROW(io::write_synthetic_mednist_like((tmp.path() / "least").string(), 6, 3));
  // The split folders hold the same images the plain tree would, moved.
  test::TempDir plain("synthetic-plain");
  io::write_synthetic_mednist_like(plain.str(), 60, 3);
  EXPECT_EQ(read_file((tmp.path() / "test" / "AbdomenCT" / "000010.jpeg").string()),  // 11: 9 / 1 / 1
            read_file((plain.path() / "AbdomenCT" / "000010.jpeg").string()));
}

// --pose upright centres every scene at scale 1, unrotated, and keeps the other draws: the mass centre of a class's
// upright images sits within a pixel of the frame's centre where varied ones wander, and a tree written varied is
// not mistaken for an upright one.
TEST(Synthetic, UprightPoseCentresTheScene) {
  const int S = io::kSyntheticSize;
  auto spread = [&](io::SyntheticPose pose) {
    double worst = 0, first_x = 0, first_y = 0;  // against image 0 of the same pose
    std::vector<uint8_t> px(static_cast<size_t>(S * S));
    for (int k = 0; k < 20; ++k) {
      io::render_synthetic_mednist_like(4, 5, k, px.data(), pose);  // Hand: an off-centre shape, dark background
      double m = 0, mx = 0, my = 0;
      for (int y = 0; y < S; ++y)
        for (int x = 0; x < S; ++x) {
          const double v = std::max(0, px[static_cast<size_t>(y * S + x)] - 60);  // the hand, not the noise
          m += v, mx += v * x, my += v * y;
        }
      if (k == 0) first_x = mx / m, first_y = my / m;
      worst = std::max({worst, std::abs(mx / m - first_x), std::abs(my / m - first_y)});
    }
    return worst;
  };
  const double upright = spread(io::SyntheticPose::upright), varied = spread(io::SyntheticPose::varied);
  std::printf("mass centre spread over 20 Hand images: upright %.2f px, varied %.2f px\n", upright, varied);
  EXPECT_LT(upright, 1.0);
  EXPECT_GT(varied, 4.0);
  test::TempDir tmp("synthetic-pose");
  io::write_synthetic_mednist_like(tmp.str(), 6, 3);
  EXPECT_THROW(
      io::write_synthetic_mednist_like(tmp.str(), 6, 3, {}, io::SyntheticSplit::none, io::SyntheticPose::upright),
      UserError);
}

// The small CNN on 64 images per class (JPEG round trip, as training would see them), tested on 32 others per
// class: the classes must be learnable, not just distinguishable by mean brightness.
TEST(Synthetic, ClassesAreLearnable) {
  const int classes = 6, per_train = 64, per_test = 32, S = io::kSyntheticSize, px = S * S;
  auto make = [&](int first, int per, std::vector<float>& x, std::vector<int32_t>& y) {
    std::vector<uint8_t> img(static_cast<size_t>(px)), dec(static_cast<size_t>(px));
    for (int k = 0; k < per; ++k)
      for (int c = 0; c < classes; ++c) {  // interleaved, so any prefix is balanced
        io::render_synthetic_mednist_like(c, 11, first + k, img.data());
        std::vector<uint8_t> jpg = io::encode_jpeg(img.data(), S, S, 1, 90);
        std::string err;
        ASSERT_TRUE(io::decode_jpeg_to(jpg.data(), jpg.size(), S, S, 1, dec.data(), &err)) << err;
        for (int i = 0; i < px; ++i) x.push_back((static_cast<float>(dec[static_cast<size_t>(i)]) - 80.f) / 70.f);
        y.push_back(c);
      }
  };
  std::vector<float> xtr, xte;
  std::vector<int32_t> ytr, yte;
  make(0, per_train, xtr, ytr);
  make(1000, per_test, xte, yte);

  // Mean brightness alone must not separate the classes well (nearest class mean on the test images).
  {
    std::vector<double> mean(classes, 0);
    for (size_t i = 0; i < ytr.size(); ++i)
      mean[static_cast<size_t>(ytr[i])] +=
          std::accumulate(xtr.begin() + static_cast<std::ptrdiff_t>(i * px),
                          xtr.begin() + static_cast<std::ptrdiff_t>((i + 1) * px), 0.0) /
          px / per_train;
    int right = 0;
    for (size_t i = 0; i < yte.size(); ++i) {
      const double m = std::accumulate(xte.begin() + static_cast<std::ptrdiff_t>(i * px),
                                       xte.begin() + static_cast<std::ptrdiff_t>((i + 1) * px), 0.0) / px;
      int best = 0;
      for (int c = 1; c < classes; ++c)
        if (std::abs(m - mean[static_cast<size_t>(c)]) < std::abs(m - mean[static_cast<size_t>(best)])) best = c;
      right += best == yte[i];
    }
    const double acc = static_cast<double>(right) / static_cast<double>(yte.size());
    std::printf("nearest mean brightness: %.1f%% test accuracy\n", 100 * acc);
    EXPECT_LT(acc, 0.75);
  }

  const int ntrain = static_cast<int>(ytr.size());
  const double acc = test::small_cnn_held_out_accuracy({S, S, 1}, classes, xtr, ytr, xte, yte, 6, 32, 3e-3f);
  std::printf("small-cnn, %d training images, 6 epochs: %.1f%% on %zu held-out images\n", ntrain, 100 * acc,
              yte.size());
  EXPECT_GE(acc, 0.9);
}
