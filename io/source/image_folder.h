// ImageFolder indexing: root/<class>/.../<file> for every image extension the codecs register
// (io/codec/codec.h), classes sorted by name; inside a class, sub-folders are included recursively (as
// torchvision's ImageFolder does) and files are ordered by folder path, then by name (byte order).
//
// Nothing is skipped without a word: every entry that is not indexed is counted per class with its reason, and
// its path kept in ImageFolder::left_out, so the trainer can print index_summary() and write the list.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace stoke::io {

struct Sample {
  std::string path;  // full path (bytes as the file system has them: not necessarily UTF-8; see base/display_name.h)
  int32_t label = 0;
};

// Why an entry of the tree was not indexed.
enum class LeftOutReason {
  other_extension,    // a file whose extension no codec registers (notes.txt, a.gif, x.jpg.bak)
  hidden_or_system,   // ".x" (.DS_Store, ._x AppleDouble files, .git), Thumbs.db, desktop.ini, __MACOSX, @eaDir, ...
  dangling_link,      // a symbolic link whose target does not exist
  unreadable,         // an entry that cannot be examined or a sub-folder that cannot be listed (detail says why),
                      // or something that is neither file nor folder (a FIFO)
  not_in_class,       // a file directly in the root, outside every class folder
  link_not_followed,  // a link to the root, to a folder above it, or to a folder indexed already (detail says which)
};
inline constexpr int kLeftOutReasons = 6;
// "other extension", "hidden/system", "dangling link", "unreadable", "not in a class folder", "link not followed"
const char* left_out_reason_name(LeftOutReason r);

struct LeftOut {
  std::string path;  // full path
  LeftOutReason reason;
  std::string detail;  // e.g. the error for `unreadable`; may be empty
};

struct LeftOutCounts {
  std::array<int64_t, kLeftOutReasons> by_reason{};
  int64_t operator[](LeftOutReason r) const { return by_reason[static_cast<size_t>(r)]; }
  int64_t total() const;
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;           // sorted (byte order)
  std::vector<Sample> samples;                // grouped by class; inside a class by folder path, then file name
  std::vector<int64_t> class_counts;          // images indexed per class
  std::vector<LeftOutCounts> class_left_out;  // per class: entries left out, by reason
  LeftOutCounts root_left_out;                // entries of the root itself that are no class folder
  std::vector<LeftOut> left_out;              // every entry left out, in the order met (classes, then paths)
};

// Throws stoke::UserError with one clear line for: a missing or unreadable folder, a folder with no class
// sub-folders, a class folder with no image files (names the class), and a folder that holds train/ and val/
// (or test/) split folders with class folders inside: one level too high (the message suggests ROOT/train).
// Extensions match case-insensitively. How a file is decoded is then decided by its content, not its name.
// Symbolic links to files are followed. A link to a folder is followed after every real folder is indexed, and
// only when its target is not the root, not a folder above the link and not a folder indexed already (device and
// inode compared): otherwise `ln -s .. cat/up` would label every other class's images cat, and `ln -s . all` add
// a class of every image. Each link not followed is left out with its reason, a class folder's too.
ImageFolder index_image_folder(const std::string& root);

// One line: "indexed 1234 images in 10 classes; left out 7: 4 other extension (.txt 3, .gif 1), 2 hidden/system,
// 1 dangling link". Names in it are valid UTF-8 (display_name).
std::string index_summary(const ImageFolder& folder);
// Its part after the counts: "nothing left out" or "left out 7: ..." (the trainer's data line says the counts).
std::string left_out_summary(const ImageFolder& folder);

// The geometry of the data set, read from the headers of the first few images: the most common
// height/width, and channels = 1 when every probed image is grayscale (or gray + alpha), else 3.
//
// When the images differ in size, the shape is chosen on purpose, never taken from whichever file came first: the
// size at least half the probed images share; else a square of the median shorter side, at most kMaxAutoSide
// (so one huge outlier cannot make a run take gigabytes), with `why` saying so in one line and naming
// --image-size. Non-square sources are then centre-cropped to the target's aspect before resizing (as
// torchvision's Resize + CenterCrop do), not stretched.
struct DataShape {
  int h = 0, w = 0, c = 0;
  int probed = 0;                                   // headers read
  int min_side = 0, median_side = 0, max_side = 0;  // shorter sides of the probed images
  std::string why;                                  // non-empty when the sizes differ: how the shape was chosen
};
inline constexpr int kMaxAutoSide = 224;
DataShape probe_shape(const ImageFolder& folder, int max_probe = 64);

}  // namespace stoke::io
