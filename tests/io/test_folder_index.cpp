// ImageFolder indexing beyond the flat case: nested sub-folders, every left-out entry counted with its reason,
// the one-line summary, a root one level too high, and names that are not valid UTF-8.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "io/codec/codec.h"
#include "io/codec/jpeg.h"
#include "io/codec/png.h"
#include "io/codec/webp.h"
#include "io/source/image_folder.h"
#include "io/source/source.h"
#include "tests/test_util.h"

namespace stoke::io {
namespace {

namespace fs = std::filesystem;

void put(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  write_file(p.string(), bytes.data(), bytes.size());
}

std::vector<uint8_t> small_jpeg() {
  std::vector<uint8_t> px(6 * 5 * 3, 90);
  return encode_jpeg(px.data(), 6, 5, 3, 90);
}
std::vector<uint8_t> small_png() {
  std::vector<uint8_t> px(6 * 5, 40);
  return encode_png(px.data(), 6, 5, 1);
}
std::vector<uint8_t> small_webp() {
  std::vector<uint8_t> px(6 * 5 * 3, 200);
  return encode_webp(px.data(), 6, 5, 3, true);
}

std::vector<std::string> relative_paths(const ImageFolder& f) {
  std::vector<std::string> out;
  for (const Sample& s : f.samples) out.push_back(fs::relative(s.path, f.root).string());
  return out;
}

TEST(Folder, NestedSubFoldersAreIndexedInSortedOrder) {
  test::TempDir dir("folder-nested");
  const fs::path root = dir.path() / "data";
  put(root / "cat" / "z.jpg", small_jpeg());
  put(root / "cat" / "sub" / "b.png", small_png());
  put(root / "cat" / "sub" / "deeper" / "c.webp", small_webp());
  put(root / "cat" / "sub-x" / "e.jpg", small_jpeg());  // '-' sorts before '/': "cat/sub-x" < "cat/sub/deeper"
  put(root / "cat" / "a" / "d.jpg", small_jpeg());
  put(root / "dog" / "1.jpg", small_jpeg());
  const ImageFolder f = index_image_folder(root.string());
  EXPECT_EQ(f.classes, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(f.class_counts, (std::vector<int64_t>{5, 1}));
  // By folder path, then name (torchvision's sorted(os.walk(...))).
  EXPECT_EQ(relative_paths(f), (std::vector<std::string>{"cat/z.jpg", "cat/a/d.jpg", "cat/sub/b.png", "cat/sub-x/e.jpg",
                                                         "cat/sub/deeper/c.webp", "dog/1.jpg"}));
  EXPECT_TRUE(f.left_out.empty());
  EXPECT_EQ(index_summary(f), "indexed 6 images in 2 classes; nothing left out");
}

TEST(Folder, EverythingLeftOutIsCountedWithItsReason) {
  test::TempDir dir("folder-left-out");
  const fs::path root = dir.path() / "data";
  put(root / "cat" / "a.jpg", small_jpeg());
  put(root / "cat" / "notes.txt", {'x'});
  put(root / "cat" / "anim.gif", {'G', 'I', 'F'});
  put(root / "cat" / "b.jpg.bak", {'x'});
  put(root / "cat" / ".DS_Store", {0});
  put(root / "cat" / "Thumbs.db", {0});
  put(root / "cat" / "sub" / "._c.jpg", {0});  // an AppleDouble file, in a sub-folder
  put(root / "cat" / "sub" / "c.png", small_png());
  put(root / "cat" / "__MACOSX" / "x.jpg", small_jpeg());
  fs::create_symlink(root / "cat" / "gone.jpg", root / "cat" / "dangling.jpg");
  fs::create_directory_symlink(root / "cat", root / "cat" / "loop");  // a link back to the class folder
  put(root / "dog" / "d.webp", small_webp());
  put(root / "dog" / "e.TXT", {'x'});
  ASSERT_EQ(::mkfifo((root / "dog" / "pipe.jpg").c_str(), 0600), 0);
  put(root / "README.md", {'x'});
  put(root / ".git" / "HEAD", {'x'});

  const ImageFolder f = index_image_folder(root.string());
  EXPECT_EQ(f.classes, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(relative_paths(f), (std::vector<std::string>{"cat/a.jpg", "cat/sub/c.png", "dog/d.webp"}));
  ASSERT_EQ(f.class_left_out.size(), 2u);
  const LeftOutCounts& cat = f.class_left_out[0];
  EXPECT_EQ(cat[LeftOutReason::other_extension], 3);
  EXPECT_EQ(cat[LeftOutReason::hidden_or_system], 4);  // .DS_Store, Thumbs.db, ._c.jpg, __MACOSX
  EXPECT_EQ(cat[LeftOutReason::dangling_link], 1);
  EXPECT_EQ(cat[LeftOutReason::link_not_followed], 1);  // the loop
  const LeftOutCounts& dog = f.class_left_out[1];
  EXPECT_EQ(dog[LeftOutReason::other_extension], 1);
  EXPECT_EQ(dog[LeftOutReason::unreadable], 1);  // the FIFO
  EXPECT_EQ(f.root_left_out[LeftOutReason::not_in_class], 1);
  EXPECT_EQ(f.root_left_out[LeftOutReason::hidden_or_system], 1);
  EXPECT_EQ(f.left_out.size(), 13u);
  auto reason_of = [&](const fs::path& p) {
    for (const LeftOut& l : f.left_out)
      if (l.path == p.string())
        return std::string(left_out_reason_name(l.reason)) + (l.detail.empty() ? "" : ": " + l.detail);
    return std::string("(not listed)");
  };
  EXPECT_EQ(reason_of(root / "cat" / "dangling.jpg"), "dangling link");
  EXPECT_EQ(reason_of(root / "cat" / "notes.txt"), "other extension");
  EXPECT_EQ(reason_of(root / "cat" / "sub" / "._c.jpg"), "hidden/system");
  EXPECT_EQ(reason_of(root / "cat" / "loop"), "link not followed: a link to a folder above it");
  EXPECT_EQ(reason_of(root / "README.md"), "not in a class folder");
  EXPECT_EQ(reason_of(root / "dog" / "pipe.jpg").rfind("unreadable", 0), 0u);
  const std::string line = index_summary(f);
  EXPECT_EQ(line,
            "indexed 3 images in 2 classes; left out 13: 4 other extension (.txt 2, .bak 1, .gif 1), "
            "5 hidden/system, 1 dangling link, 1 unreadable, 1 not in a class folder, 1 link not followed")
      << line;
  EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(Folder, UnreadableSubFolderIsLeftOutNotFatal) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any folder";
  test::TempDir dir("folder-locked");
  const fs::path root = dir.path() / "data";
  put(root / "cat" / "a.jpg", small_jpeg());
  put(root / "cat" / "locked" / "b.jpg", small_jpeg());
  fs::permissions(root / "cat" / "locked", fs::perms::none);
  const ImageFolder f = index_image_folder(root.string());
  fs::permissions(root / "cat" / "locked", fs::perms::owner_all);
  EXPECT_EQ(f.samples.size(), 1u);
  EXPECT_EQ(f.class_left_out[0][LeftOutReason::unreadable], 1);
}

void expect_user_error(const std::string& root, const std::string& want) {
  try {
    index_image_folder(root);
    ADD_FAILURE() << "no error for " << root;
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(want), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(Folder, ARootOneLevelTooHighIsNamed) {
  test::TempDir dir("folder-splits");
  const fs::path root = dir.path() / "data";
  put(root / "train" / "cat" / "a.jpg", small_jpeg());
  put(root / "train" / "dog" / "b.jpg", small_jpeg());
  put(root / "val" / "cat" / "c.jpg", small_jpeg());
  expect_user_error(root.string(), "one level too high");
  expect_user_error(root.string(), "use " + (root / "train").string());
  put(root / "test" / "cat" / "d.jpg", small_jpeg());
  expect_user_error(root.string(), "one level too high");
  EXPECT_EQ(index_image_folder((root / "train").string()).classes, (std::vector<std::string>{"cat", "dog"}));

  // Classes that happen to be called train and test, holding images: a data set like any other.
  const fs::path odd = dir.path() / "odd";
  put(odd / "train" / "a.jpg", small_jpeg());
  put(odd / "test" / "b.jpg", small_jpeg());
  EXPECT_EQ(index_image_folder(odd.string()).samples.size(), 2u);
  // A real class beside them: taken as it is.
  const fs::path mixed = dir.path() / "mixed";
  put(mixed / "train" / "x" / "a.jpg", small_jpeg());
  put(mixed / "val" / "x" / "b.jpg", small_jpeg());
  put(mixed / "zebra" / "c.jpg", small_jpeg());
  EXPECT_EQ(index_image_folder(mixed.string()).classes.size(), 3u);
}

TEST(Folder, NamesThatAreNotUtf8) {
  test::TempDir dir("folder-bytes");
  const fs::path root = dir.path() / "data";
  const std::string cafe = "caf\xe9";  // Latin-1 e-acute: not valid UTF-8
  const std::string file = "\xff\xfe-1.png";
  put(root / cafe / file, small_png());
  put(root / "ok" / "\xc3\xa9t\xc3\xa9.jpg", small_jpeg());  // valid UTF-8 "ete" with accents
  const ImageFolder f = index_image_folder(root.string());
  EXPECT_EQ(f.classes, (std::vector<std::string>{cafe, "ok"}));
  ASSERT_EQ(f.samples.size(), 2u);
  // The bytes work for reading and decoding.
  FolderSource src(f);
  std::vector<uint8_t> scratch;
  std::span<const uint8_t> bytes;
  std::string err;
  ASSERT_EQ(src.read(0, scratch, bytes, &err), ReadStatus::ok) << err;
  std::vector<uint8_t> out(6 * 5);
  ASSERT_TRUE(decode_to(bytes.data(), bytes.size(), 6, 5, 1, out.data(), &err)) << err;
  EXPECT_EQ(out[0], 40);
  // Shown as valid UTF-8 (base/display_name.h; its own tests are in tests/base).
  EXPECT_EQ(display_name(cafe), "caf\\xE9");
  EXPECT_EQ(display_name(file), "\\xFF\\xFE-1.png");
  EXPECT_EQ(display_name("\xc3\xa9t\xc3\xa9"), "\xc3\xa9t\xc3\xa9") << "valid UTF-8 is kept";
  EXPECT_EQ(display_name(f.samples[0].path), display_name(f.samples[0].path));
  EXPECT_TRUE(is_valid_utf8(display_name(f.samples[0].path)));
  EXPECT_FALSE(is_valid_utf8(f.samples[0].path));
  // Overlong forms, surrogates, truncated sequences, code points past U+10FFFF are escaped too.
  EXPECT_EQ(display_name("\xc0\xaf"), "\\xC0\\xAF");
  EXPECT_EQ(display_name("\xed\xa0\x80"), "\\xED\\xA0\\x80");
  EXPECT_EQ(display_name("a\xe2\x82"), "a\\xE2\\x82");
  EXPECT_EQ(display_name("\xf4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");
  EXPECT_EQ(display_name("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80");
  // Messages about such names are valid UTF-8.
  fs::create_directories(root /
                         "\xfe"
                         "empty");
  try {
    index_image_folder(root.string());
    ADD_FAILURE() << "an empty class";
  } catch (const UserError& e) {
    EXPECT_TRUE(is_valid_utf8(e.what())) << e.what();
    EXPECT_NE(std::string(e.what()).find("\\xFEempty"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(is_valid_utf8(index_summary(f)));
}

}  // namespace
}  // namespace stoke::io
