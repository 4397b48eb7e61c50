// ImageFolder indexing and shape probing on temporary trees.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <functional>
#include <string>
#include <iterator>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "io/source/image_folder.h"
#include "io/source/source.h"
#include "io/codec/jpeg.h"

namespace {

namespace fs = std::filesystem;
using stoke::io::index_image_folder;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/stoke-io-dataset-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

void touch(const std::string& path, const std::string& content = "x") {
  fs::create_directories(fs::path(path).parent_path());
  stoke::write_file(path, content.data(), content.size());
}

void write_jpeg(const std::string& path, int h, int w, int c) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 7);
  auto jpg = stoke::io::encode_jpeg(px.data(), h, w, c, 90);
  fs::create_directories(fs::path(path).parent_path());
  stoke::write_file(path, jpg.data(), jpg.size());
}

// Runs fn, which must throw stoke::UserError (not just stoke::Error) holding `substr` in one line.
void expect_user_error(const std::function<void()>& fn, const std::string& substr) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected UserError with: " << substr;
  } catch (const stoke::UserError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(substr), std::string::npos) << "message: " << m << "\nexpected: " << substr;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "not one line: " << m;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

TEST(ImageFolder, SortsClassesAndFilesByByteOrder) {
  TempDir t;
  const std::string root = t / "data";
  touch(root + "/dog/b.JPG");
  touch(root + "/dog/a.jpeg");
  touch(root + "/dog/C.Jpg");
  touch(root + "/dog/notes.txt");      // not a JPEG by extension
  touch(root + "/dog/.hidden.jpg");    // hidden
  touch(root + "/dog/d.gif");            // not a registered format
  touch(root + "/dog/jpg");            // no extension, just the name
  touch(root + "/dog/x.jpg.bak");
  fs::create_directories(root + "/dog/sub.jpg");  // a folder, not a file
  touch(root + "/cat/z.jpg");
  touch(root + "/cat/y.JPEG");
  touch(root + "/Bird/1.jpg");
  touch(root + "/_x/2.jpg");
  touch(root + "/\xc3\xa9" "clair/3.jpg");  // UTF-8: byte 0xC3 sorts after ASCII
  touch(root + "/zeta/4.jpg");
  touch(root + "/.git/objects.jpg");      // hidden class folder
  touch(root + "/README.jpg");             // a file at the top level is no class
  auto f = index_image_folder(root);
  EXPECT_EQ(f.root, root);
  const std::vector<std::string> classes = {"Bird", "_x", "cat", "dog", "zeta", "\xc3\xa9" "clair"};
  EXPECT_EQ(f.classes, classes);
  EXPECT_EQ(f.class_counts, (std::vector<int64_t>{1, 1, 2, 3, 1, 1}));
  std::vector<std::string> paths;
  std::vector<int32_t> labels;
  for (const auto& s : f.samples) {
    paths.push_back(s.path);
    labels.push_back(s.label);
  }
  const std::vector<std::string> want = {
      root + "/Bird/1.jpg", root + "/_x/2.jpg",   root + "/cat/y.JPEG", root + "/cat/z.jpg",
      root + "/dog/C.Jpg",  root + "/dog/a.jpeg", root + "/dog/b.JPG",  root + "/zeta/4.jpg",
      root + "/\xc3\xa9" "clair/3.jpg"};
  EXPECT_EQ(paths, want);
  EXPECT_EQ(labels, (std::vector<int32_t>{0, 1, 2, 2, 3, 3, 3, 4, 5}));
}

TEST(ImageFolder, Errors) {
  TempDir t;
  expect_user_error([&] { index_image_folder(t / "missing"); }, "no such folder: " + (t / "missing"));
  touch(t / "file.jpg");
  expect_user_error([&] { index_image_folder(t / "file.jpg"); }, (t / "file.jpg") + " is not a folder");

  fs::create_directories(t / "empty");
  const std::string no_classes =
      (t / "empty") + " holds no class folders (expected " + (t / "empty") + "/<class>/*.jpg)";
  expect_user_error([&] { index_image_folder(t / "empty"); }, no_classes);
  // Loose images and hidden folders do not make classes.
  touch(t / "empty/loose.jpg");
  fs::create_directories(t / "empty/.cache");
  touch(t / "empty/.cache/a.jpg");
  expect_user_error([&] { index_image_folder(t / "empty"); }, "holds no class folders");

  touch(t / "d/dog/a.jpg");
  touch(t / "d/cat/readme.txt");
  touch(t / "d/cat/.b.jpg");
  expect_user_error([&] { index_image_folder(t / "d"); },
                    "class 'cat' in " + (t / "d") + " holds no .jpg/.jpeg/.png/.webp images");
  fs::create_directories(t / "d2/emptyclass");
  touch(t / "d2/ok/a.jpg");
  expect_user_error([&] { index_image_folder(t / "d2"); }, "class 'emptyclass' in ");

  if (geteuid() != 0) {  // root reads anything
    touch(t / "locked/cls/a.jpg");
    fs::permissions(t / "locked", fs::perms::none);
    expect_user_error([&] { index_image_folder(t / "locked"); }, "cannot read folder");
    fs::permissions(t / "locked", fs::perms::owner_all);
  }
}

// Images of every size: no size is shared by half of them, so the shape is chosen on purpose (the median shorter
// side, square), said in one line naming --image-size, and a huge outlier changes nothing.
TEST(ImageFolder, MixedSizesGetTheMedianShorterSideNotTheFirstFile) {
  TempDir t;
  const std::string root = t / "mixed";
  const int sizes[][2] = {{40, 60}, {48, 32}, {50, 50}, {36, 80}, {44, 44}, {2000, 1500}, {30, 90}};
  for (size_t i = 0; i < std::size(sizes); ++i)
    write_jpeg(root + "/" + (i % 2 ? "a" : "b") + "/" + std::to_string(i) + ".jpg", sizes[i][0], sizes[i][1], 1);
  auto f = index_image_folder(root);
  auto s = stoke::io::probe_shape(f);
  // Shorter sides 40, 32, 50, 36, 44, 1500, 30 -> sorted 30 32 36 40 44 50 1500: the median is 40.
  EXPECT_EQ(s.h, 40);
  EXPECT_EQ(s.w, 40);
  EXPECT_EQ(s.probed, 7);
  EXPECT_EQ(s.max_side, 1500);
  EXPECT_NE(s.why.find("--image-size"), std::string::npos) << s.why;
  EXPECT_NE(s.why.find("differ in size"), std::string::npos) << s.why;
  // Large photos: the median is capped, so the step stays affordable.
  const std::string big = t / "big";
  for (int i = 0; i < 3; ++i) write_jpeg(big + "/a/" + std::to_string(i) + ".jpg", 400 + 20 * i, 500, 1);
  f = index_image_folder(big);
  s = stoke::io::probe_shape(f);
  EXPECT_EQ(s.h, stoke::io::kMaxAutoSide);
  EXPECT_NE(s.why.find("capped"), std::string::npos) << s.why;
}

TEST(ImageFolder, ProbeShape) {
  TempDir t;
  const std::string root = t / "p";
  for (int i = 0; i < 5; ++i) write_jpeg(root + "/a/" + std::to_string(i) + ".jpg", 28, 30, 1);
  write_jpeg(root + "/b/odd.jpg", 40, 20, 1);
  for (int i = 0; i < 5; ++i) write_jpeg(root + "/b/" + std::to_string(i) + ".jpg", 28, 30, 1);
  auto f = index_image_folder(root);
  auto s = stoke::io::probe_shape(f);
  EXPECT_EQ(s.h, 28);
  EXPECT_EQ(s.w, 30);
  EXPECT_EQ(s.c, 1);

  // One colour image among the probed ones makes it RGB.
  write_jpeg(root + "/c/0.jpg", 28, 30, 3);
  f = index_image_folder(root);
  s = stoke::io::probe_shape(f, 100);
  EXPECT_EQ(s.c, 3);
  EXPECT_EQ(s.h, 28);

  // Unreadable headers are skipped while some image reads.
  touch(root + "/c/1.jpg", "not a jpeg");
  f = index_image_folder(root);
  s = stoke::io::probe_shape(f, 100);
  EXPECT_EQ(s.w, 30);

  // Nothing readable at all: a UserError naming a file.
  const std::string bad = t / "bad";
  touch(bad + "/x/1.jpg", "garbage");
  touch(bad + "/x/2.jpg", "garbage");
  f = index_image_folder(bad);
  expect_user_error([&] { stoke::io::probe_shape(f); }, bad + "/x/1.jpg");
}

}  // namespace

// A --val or eval folder whose classes differ is named by class, not by count: equal counts can hide a rename.
TEST(ClassDifference, NamesMissingAndExtraClasses) {
  using stoke::io::class_difference;
  EXPECT_EQ(class_difference({"a", "b"}, {"a", "b"}, "--val"), "");
  EXPECT_EQ(class_difference({"cat", "dog", "fox"}, {"cat", "dgo", "fox"}, "--val"),
            "missing from --val: dog; extra in --val: dgo");
  EXPECT_EQ(class_difference({"a", "b", "c"}, {"a"}, "V"), "missing from V: b, c");
  EXPECT_EQ(class_difference({"a"}, {"a", "z"}, "V"), "extra in V: z");
  std::vector<std::string> many;
  for (int i = 0; i < 20; ++i) many.push_back(std::string(1, static_cast<char>('a' + i)));
  EXPECT_EQ(class_difference(many, {"a"}, "V"), "missing from V: b, c, d, e, f, g, h, i and 11 more");
  EXPECT_EQ(class_difference({"ok"}, {"ok", "caf\xE9"}, "V"), "extra in V: caf\\xE9")
      << "names that are not UTF-8 shown escaped";
}
