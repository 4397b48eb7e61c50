// ImageFolder indexing: root/<class>/<file> for every image extension the codecs register (io/codec/codec.h),
// classes sorted by name, files sorted by name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stoke::io {

struct Sample {
  std::string path;  // full path
  int32_t label = 0;
};

struct ImageFolder {
  std::string root;
  std::vector<std::string> classes;  // sorted
  std::vector<Sample> samples;       // grouped by class, sorted by file name inside a class
  std::vector<int64_t> class_counts;
};

// Throws stoke::UserError with one clear line for: a missing or unreadable folder, a folder with no class
// sub-folders, a class folder with no image files (names the class). Extensions match case-insensitively; files
// with other extensions are ignored, and so are hidden files (".x"). How a file is decoded is then decided by its
// content, not its name.
ImageFolder index_image_folder(const std::string& root);

// The geometry of the data set, read from the headers of the first few images: the most common
// height/width, and channels = 1 when every probed image is grayscale, else 3.
struct DataShape {
  int h = 0, w = 0, c = 0;
};
DataShape probe_shape(const ImageFolder& folder, int max_probe = 16);

}  // namespace stoke::io
