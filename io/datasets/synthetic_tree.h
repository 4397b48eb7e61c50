// The part the synthetic data-set writers (io/datasets/synthetic.h, io/datasets/imagenet_like.h) share: a JPEG
// ImageFolder tree written in parallel, optionally split 80/10/10 into train/ val/ test/, ending with a marker file.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/datasets/synthetic.h"

namespace stoke::io {

struct SyntheticTree {
  std::string out_dir;
  std::string marker_file;  // name of the completion marker inside out_dir
  std::string marker;       // its text: every parameter that changes the bytes
  std::string what;         // for messages: "synthetic data set", "ImageNet-like data set"
  std::vector<std::string> classes;
  std::vector<int64_t> per_class;
  SyntheticSplit split = SyntheticSplit::none;
  int64_t chunk = 4096;  // images per parallel chunk (progress is reported after each)
  int64_t grain = 64;    // parallel_for grain
};

// Returns false (writing nothing) when out_dir already holds this exact tree; throws UserError when it holds a
// different one. Otherwise creates the folders, writes image k of class c as <class>/<k:06>.jpeg (or under its split)
// with the bytes jpeg(c, k) returns — called from several threads at once — and then the marker.
bool write_synthetic_tree(const SyntheticTree& tree, const std::function<std::vector<uint8_t>(int, int64_t)>& jpeg,
                          const std::function<void(int64_t, int64_t)>& progress);

}  // namespace stoke::io
