// A synthetic stand-in for ImageNet-style photos: 500x375 colour JPEGs (quality 90, about 100 KB each), in N
// classes, for benchmarking the 224x224-from-JPEG jobs (ResNet-50) where real photos cannot be fetched.
//
// What an image holds, so that decode cost, file size and learnability resemble photographs:
//   - a background scene: an outdoor view (sky gradient with clouds over textured ground and a wavy horizon),
//     an indoor view (wall with frames over a planked floor) or a close-up field of foliage-like texture;
//   - the class's object: 2-4 parts (ellipses, rectangles, triangles, blobs, rings) in a fixed arrangement,
//     each with its class colours and fill texture (smooth shading, stripes, spots, checks, grain), placed with
//     a random position, size (30-75% of the short side), rotation, mirror and colour jitter;
//   - 0-3 distractor shapes of random kinds and colours, partly occluding or behind the object;
//   - lighting (a brightness gradient and vignette), fine grain and sensor noise.
// Class c's prototype (its object, palette, preferred background) depends on (seed, c) only, so a class looks
// the same whatever the number of classes; the rest varies per image.
//
// Deterministic: image k of class c is a pure function of (seed, c, k) — the same whatever `count` is or how
// many threads write — and JPEG encoding is deterministic, so a tree is byte-identical for a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/datasets/synthetic.h"  // SyntheticSplit, synthetic_split_held_out

namespace stoke::io {

inline constexpr int kImageNetLikeWidth = 500;
inline constexpr int kImageNetLikeHeight = 375;
inline constexpr int64_t kImageNetLikeCount = 12800;  // a default for front ends; any count >= classes works
inline constexpr int kImageNetLikeClasses = 100;
inline constexpr int kImageNetLikeQuality = 90;

// Class folder name: "n%08d" (ImageNet-like WordNet ids), so sorted names follow class order.
std::string imagenet_like_class_name(int cls);

// Images per class for a total of `count`: count / classes each, the first count % classes classes one more.
// Throws UserError for classes < 1 or count < 0.
std::vector<int64_t> imagenet_like_counts(int64_t count, int classes);

// Draws image `index` of class `cls` (>= 0) into kImageNetLikeHeight * kImageNetLikeWidth * 3 bytes (RGB, HWC).
void render_imagenet_like(int cls, uint64_t seed, int64_t index, uint8_t* rgb);

// Writes out_dir/<class>/<index>.jpeg (or out_dir/{train,val,test}/<class>/ with SyntheticSplit::train_val_test:
// per class synthetic_split_held_out(n) images each to val and test, the last ones, the rest to train), in
// parallel (base/parallel.h), then a marker file naming count, classes, seed, split and quality. When out_dir
// already holds a complete tree with the same parameters nothing is written; with different ones it throws
// UserError. progress(done, total) is called from time to time on the calling thread. Throws UserError when a
// class (or a class in a split) would be empty, or for classes outside 2..100000 or quality outside 1..100.
void write_imagenet_like(const std::string& out_dir, int64_t count = kImageNetLikeCount,
                         int classes = kImageNetLikeClasses, uint64_t seed = 0,
                         const std::function<void(int64_t, int64_t)>& progress = {},
                         SyntheticSplit split = SyntheticSplit::none, int quality = kImageNetLikeQuality);

}  // namespace stoke::io
