// Links to folders in an ImageFolder: followed only to a folder that is not the root, not above the link and not
// indexed already, so no image is filed under a second class; each link not followed is left out with its reason.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "base/fs.h"
#include "io/codec/png.h"
#include "io/source/image_folder.h"
#include "tests/test_util.h"

namespace stoke::io {
namespace {

namespace fs = std::filesystem;

void put_png(const fs::path& p) {
  fs::create_directories(p.parent_path());
  std::vector<uint8_t> px(4 * 3, 7);
  const std::vector<uint8_t> bytes = encode_png(px.data(), 4, 3, 1);
  write_file(p.string(), bytes.data(), bytes.size());
}

std::string reason_of(const ImageFolder& f, const fs::path& p) {
  for (const LeftOut& l : f.left_out)
    if (l.path == p.string()) return std::string(left_out_reason_name(l.reason)) + ": " + l.detail;
  return "(not listed)";
}

TEST(FolderLinks, LinksUpOrToIndexedFoldersAreNotFollowedAndSaySo) {
  test::TempDir dir("folder-links");
  const fs::path root = dir.path() / "data";
  for (const char* cls : {"0", "1", "2"}) {
    put_png(root / cls / "a.png");
    put_png(root / cls / "sub" / "b.png");
  }
  put_png(dir.path() / "elsewhere" / "x.png");  // outside the root: links to it are followed
  put_png(dir.path() / "pool" / "y.png");
  fs::create_directory_symlink("..", root / "0" / "up");                 // the root: every class again, as 0
  fs::create_directory_symlink(".", root / "self");                      // the root as a class of every image
  fs::create_directory_symlink("2", root / "00");                        // a class again, under another name
  fs::create_directory_symlink("../2/sub", root / "1" / "again");        // indexed already (met before the link)
  fs::create_directory_symlink(".", root / "2" / "here");                // the folder holding the link
  fs::create_directory_symlink("../../..", root / "2" / "sub" / "top");  // above the root
  fs::create_directory_symlink("../../elsewhere", root / "1" / "out");
  fs::create_directory_symlink("../pool", root / "3");
  fs::create_directory_symlink("../../../pool", root / "0" / "sub" / "pool");  // the class 3 folder: indexed

  const ImageFolder f = index_image_folder(root.string());
  EXPECT_EQ(f.classes, (std::vector<std::string>{"0", "1", "2", "3"}));
  std::vector<std::pair<std::string, int32_t>> got;
  for (const Sample& s : f.samples) got.emplace_back(fs::path(s.path).lexically_relative(root).string(), s.label);
  EXPECT_EQ(got, (std::vector<std::pair<std::string, int32_t>>{{"0/a.png", 0},
                                                               {"0/sub/b.png", 0},
                                                               {"1/a.png", 1},
                                                               {"1/out/x.png", 1},
                                                               {"1/sub/b.png", 1},
                                                               {"2/a.png", 2},
                                                               {"2/sub/b.png", 2},
                                                               {"3/y.png", 3}}));
  EXPECT_EQ(f.class_counts, (std::vector<int64_t>{2, 3, 2, 1}));

  const std::string root_reason = "link not followed: a link to the root of the data";
  const std::string above = "link not followed: a link to a folder above it";
  EXPECT_EQ(reason_of(f, root / "self"), root_reason);
  EXPECT_EQ(reason_of(f, root / "0" / "up"), root_reason);
  EXPECT_EQ(reason_of(f, root / "00"),
            "link not followed: a link to a folder indexed already: " + (root / "2").string());
  EXPECT_EQ(reason_of(f, root / "1" / "again"),
            "link not followed: a link to a folder indexed already: " + (root / "2" / "sub").string());
  EXPECT_EQ(reason_of(f, root / "2" / "here"), above);
  EXPECT_EQ(reason_of(f, root / "2" / "sub" / "top"), above);
  EXPECT_EQ(reason_of(f, root / "0" / "sub" / "pool"),
            "link not followed: a link to a folder indexed already: " + (root / "3").string());
  EXPECT_EQ(f.left_out.size(), 7u);
  EXPECT_EQ(f.root_left_out[LeftOutReason::link_not_followed], 2);
  ASSERT_EQ(f.class_left_out.size(), 4u);
  EXPECT_EQ(f.class_left_out[0][LeftOutReason::link_not_followed], 2);
  EXPECT_EQ(f.class_left_out[1][LeftOutReason::link_not_followed], 1);
  EXPECT_EQ(f.class_left_out[2][LeftOutReason::link_not_followed], 2);
  EXPECT_EQ(index_summary(f), "indexed 8 images in 4 classes; left out 7: 7 link not followed");
}

TEST(FolderLinks, AClassThatIsALinkToAFolderElsewhereIsIndexed) {
  test::TempDir dir("folder-link-class");
  const fs::path root = dir.path() / "data";
  put_png(root / "cat" / "a.png");
  put_png(dir.path() / "store" / "dogs" / "d.png");
  fs::create_directory_symlink(dir.path() / "store" / "dogs", root / "dog");
  const ImageFolder f = index_image_folder(root.string());
  EXPECT_EQ(f.classes, (std::vector<std::string>{"cat", "dog"}));
  ASSERT_EQ(f.samples.size(), 2u);
  EXPECT_EQ(f.samples[1].path, (root / "dog" / "d.png").string());
  EXPECT_EQ(f.samples[1].label, 1);
  EXPECT_TRUE(f.left_out.empty());
}

}  // namespace
}  // namespace stoke::io
