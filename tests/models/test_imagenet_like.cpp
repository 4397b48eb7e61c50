// The synthetic ImageNet-like photos (io/imagenet_like.*): class counts, the JPEG tree (plain and
// train/val/test), sizes and file sizes like photographs, byte-for-byte determinism, the completion marker, and
// that its classes are learnable from content rather than from the average colour.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "io/source/image_folder.h"
#include "io/codec/jpeg.h"
#include "io/datasets/imagenet_like.h"
#include "base/parallel.h"
#include "tests/models/small_cnn_fit.h"
#include "tests/test_util.h"

using namespace stoke;
namespace fs = std::filesystem;

using test::read_tree;

TEST(ImageNetLike, ClassCountsAndNames) {
  EXPECT_EQ(io::imagenet_like_counts(10, 4), (std::vector<int64_t>{3, 3, 2, 2}));
  EXPECT_EQ(io::imagenet_like_counts(io::kImageNetLikeCount, io::kImageNetLikeClasses),
            std::vector<int64_t>(static_cast<size_t>(io::kImageNetLikeClasses), 128));
  EXPECT_EQ(io::imagenet_like_counts(0, 3), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_THROW(io::imagenet_like_counts(5, 0), UserError);
  EXPECT_THROW(io::imagenet_like_counts(-1, 3), UserError);
  EXPECT_EQ(io::imagenet_like_class_name(0), "n00000000");
  EXPECT_EQ(io::imagenet_like_class_name(42), "n00000042");
  EXPECT_LT(io::imagenet_like_class_name(9), io::imagenet_like_class_name(10)) << "sorted names follow class order";
}

TEST(ImageNetLike, TreeLooksLikePhotosAndIsDeterministic) {
  test::TempDir tmp("imagenet-like");
  const fs::path a = tmp.path() / "a", b = tmp.path() / "b", c = tmp.path() / "c";
  int64_t last_done = -1;
  io::write_imagenet_like(a.string(), 24, 4, 5, [&](int64_t done, int64_t) { last_done = done; });
  EXPECT_EQ(last_done, 24);
  io::write_imagenet_like(b.string(), 24, 4, 5);
  io::write_imagenet_like(c.string(), 24, 4, 6);

  io::ImageFolder f = io::index_image_folder(a.string());
  EXPECT_EQ(f.classes, (std::vector<std::string>{"n00000000", "n00000001", "n00000002", "n00000003"}));
  EXPECT_EQ(f.class_counts, (std::vector<int64_t>{6, 6, 6, 6}));
  size_t bytes_total = 0, smallest = SIZE_MAX, largest = 0;
  for (const io::Sample& s : f.samples) {
    std::vector<uint8_t> bytes = read_file(s.path);
    io::JpegInfo info;
    std::string err;
    ASSERT_TRUE(io::jpeg_info(bytes.data(), bytes.size(), info, &err)) << s.path << ": " << err;
    EXPECT_EQ(info.w, io::kImageNetLikeWidth);
    EXPECT_EQ(info.h, io::kImageNetLikeHeight);
    EXPECT_EQ(info.components, 3) << "colour JPEGs";
    io::Image img;
    ASSERT_TRUE(io::decode_jpeg(bytes.data(), bytes.size(), 3, img, &err)) << s.path << ": " << err;
    bytes_total += bytes.size();
    smallest = std::min(smallest, bytes.size());
    largest = std::max(largest, bytes.size());
  }
  const double mean_kb = static_cast<double>(bytes_total) / static_cast<double>(f.samples.size()) / 1024.0;
  std::printf("JPEG sizes: mean %.1f KB, %.1f..%.1f KB\n", mean_kb, smallest / 1024.0, largest / 1024.0);
  EXPECT_GT(mean_kb, 60.0) << "photo-like detail (ImageNet's 500x375 JPEGs average ~110 KB)";
  EXPECT_LT(mean_kb, 160.0);
  EXPECT_GT(smallest, 20u * 1024u) << "no flat, nearly empty images";

  const auto ta = read_tree(a), tb = read_tree(b), tc = read_tree(c);
  EXPECT_EQ(ta.size(), 25u);  // 24 images and the marker
  EXPECT_TRUE(ta == tb) << "same seed, same bytes";
  int same = 0;
  for (const auto& [path, bytes] : ta) same += tc.count(path) && tc.at(path) == bytes;
  EXPECT_EQ(same, 0) << "another seed draws other images (and another marker)";

  // Image k of class c depends on neither the count nor the number of classes.
  test::TempDir more("imagenet-like-more");
  io::write_imagenet_like(more.str(), 30, 5, 5);
  EXPECT_EQ(read_file((more.path() / "n00000002" / "000004.jpeg").string()), ta.at("n00000002/000004.jpeg"));

  // A complete tree is not rewritten; a different one is refused; classes must not be empty.
  const auto stamp = fs::last_write_time(a / "n00000001" / "000000.jpeg");
  io::write_imagenet_like(a.string(), 24, 4, 5);
  EXPECT_EQ(fs::last_write_time(a / "n00000001" / "000000.jpeg"), stamp);
  EXPECT_THROW(io::write_imagenet_like(a.string(), 24, 4, 7), UserError);
  EXPECT_THROW(io::write_imagenet_like(a.string(), 28, 4, 5), UserError);
  EXPECT_THROW(io::write_imagenet_like((tmp.path() / "few").string(), 3, 4, 5), UserError);
  EXPECT_THROW(
      io::write_imagenet_like((tmp.path() / "few-split").string(), 11, 4, 5, {}, io::SyntheticSplit::train_val_test),
      UserError);
  EXPECT_THROW(io::write_imagenet_like((tmp.path() / "one").string(), 10, 1, 5), UserError);
  EXPECT_THROW(io::write_imagenet_like((tmp.path() / "q").string(), 10, 2, 5, {}, io::SyntheticSplit::none, 0),
               UserError);
}

TEST(ImageNetLike, TrainValTestSplit) {
  test::TempDir tmp("imagenet-like-split");
  io::write_imagenet_like(tmp.str(), 30, 3, 1, {}, io::SyntheticSplit::train_val_test);
  int64_t total = 0;
  for (const char* split : {"train", "val", "test"}) {
    io::ImageFolder f = io::index_image_folder((tmp.path() / split).string());
    EXPECT_EQ(f.classes.size(), 3u) << split;
    for (int64_t n : f.class_counts) EXPECT_EQ(n, std::string(split) == "train" ? 8 : 1) << split;
    total += static_cast<int64_t>(f.samples.size());
  }
  EXPECT_EQ(total, 30);
  test::TempDir plain("imagenet-like-plain");
  io::write_imagenet_like(plain.str(), 30, 3, 1);
  EXPECT_EQ(read_file((tmp.path() / "test" / "n00000001" / "000009.jpeg").string()),
            read_file((plain.path() / "n00000001" / "000009.jpeg").string()));
}

// The classes are objects (shape, arrangement, palette, texture) at random places, sizes and rotations over
// varied scenes: a small CNN learns them from 80 images per class at 40x40 (82% on 6 classes when written), while the
// average colour of an image — the shortcut a careless generator leaves — does much worse.
TEST(ImageNetLike, ClassesAreLearnableFromContent) {
  constexpr int classes = 6, per_train = 80, per_test = 20, S = 40, C = 3, px = S * S * C;
  auto make = [&](int first, int per, std::vector<float>& x, std::vector<int32_t>& y) {
    const int n = per * classes;
    x.assign(static_cast<size_t>(n) * px, 0.f);
    y.assign(static_cast<size_t>(n), 0);
    parallel_for(n, 1, [&](int64_t lo, int64_t hi) {
      std::vector<uint8_t> img(static_cast<size_t>(io::kImageNetLikeWidth) * io::kImageNetLikeHeight * 3),
          dec(static_cast<size_t>(px));
      for (int64_t i = lo; i < hi; ++i) {
        const int c = static_cast<int>(i % classes), k = first + static_cast<int>(i / classes);  // interleaved
        io::render_imagenet_like(c, 3, k, img.data());
        std::vector<uint8_t> jpg = io::encode_jpeg(img.data(), io::kImageNetLikeHeight, io::kImageNetLikeWidth, 3, 90);
        std::string err;
        if (!io::decode_jpeg_to(jpg.data(), jpg.size(), S, S, C, dec.data(), &err)) throw Error(err);
        for (int j = 0; j < px; ++j)
          x[static_cast<size_t>(i) * px + static_cast<size_t>(j)] =
              (static_cast<float>(dec[static_cast<size_t>(j)]) - 110.f) / 60.f;
        y[static_cast<size_t>(i)] = c;
      }
    });
  };
  std::vector<float> xtr, xte;
  std::vector<int32_t> ytr, yte;
  make(0, per_train, xtr, ytr);
  make(1000, per_test, xte, yte);

  double colour_acc = 0;
  {  // nearest class-mean colour (R, G, B averages)
    auto mean_rgb = [&](const std::vector<float>& x, size_t i) {
      std::array<double, 3> m{0, 0, 0};
      for (int j = 0; j < S * S; ++j)
        for (int ch = 0; ch < C; ++ch)
          m[static_cast<size_t>(ch)] += x[i * px + static_cast<size_t>(j * C + ch)] / (S * S);
      return m;
    };
    std::vector<std::array<double, 3>> centre(classes, {0, 0, 0});
    for (size_t i = 0; i < ytr.size(); ++i) {
      auto m = mean_rgb(xtr, i);
      for (int ch = 0; ch < 3; ++ch)
        centre[static_cast<size_t>(ytr[i])][static_cast<size_t>(ch)] += m[static_cast<size_t>(ch)] / per_train;
    }
    int right = 0;
    for (size_t i = 0; i < yte.size(); ++i) {
      auto m = mean_rgb(xte, i);
      int best = 0;
      double bestd = 1e30;
      for (int c = 0; c < classes; ++c) {
        double d = 0;
        for (int ch = 0; ch < 3; ++ch)
          d += std::pow(m[static_cast<size_t>(ch)] - centre[static_cast<size_t>(c)][static_cast<size_t>(ch)], 2);
        if (d < bestd) bestd = d, best = c;
      }
      right += best == yte[i];
    }
    const double acc = static_cast<double>(right) / static_cast<double>(yte.size());
    std::printf("nearest mean colour: %.1f%% test accuracy (chance %.1f%%)\n", 100 * acc, 100.0 / classes);
    EXPECT_LT(acc, 0.5);
    colour_acc = acc;
  }

  const int ntrain = static_cast<int>(ytr.size());
  const double acc = test::small_cnn_held_out_accuracy({S, S, C}, classes, xtr, ytr, xte, yte, 16, 24, 3e-3f);
  std::printf("small-cnn, %d training images at %dx%d, 16 epochs: %.1f%% on %zu held-out images\n", ntrain, S, S,
              100 * acc, yte.size());
  EXPECT_GE(acc, 0.7);
  EXPECT_GE(acc, colour_acc + 0.25) << "learnt from content, not from the average colour";
}
