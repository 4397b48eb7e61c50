// A synthetic stand-in for MedNIST: 64x64 grayscale JPEGs in six classes named like MedNIST's (AbdomenCT,
// BreastMRI, CXR, ChestCT, Hand, HeadCT), in MedNIST's proportions (58,954 images: 10,000 per class, 8,954
// BreastMRI), for benchmarking the MedNIST job where the real data cannot be fetched.
//
// Each class draws its own anatomy-like scene — an abdomen with organs and a spine, two breasts over a chest
// wall with fibrous texture, a frontal chest film with dark lungs and ribs, an axial chest with lungs, heart
// and spine, a hand with fingers and bones, a skull ring around a brain with ventricles — with random
// position (+-8 px), scale (0.8-1.2), rotation (+-17 degrees), organ jitter, contrast, brightness and
// Gaussian noise, so a CNN must learn shapes rather than a mean intensity, yet reaches high accuracy.
//
// Deterministic: image k of class c is a pure function of (seed, c, k) — the same whatever `count` is or
// how many threads write — and JPEG encoding is deterministic, so a tree is byte-identical for a seed.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace stoke::io {

inline constexpr int64_t kMedNistCount = 58954;
inline constexpr int kSyntheticSize = 64;

// The class folder names, sorted (as ImageFolder orders them).
const std::vector<std::string>& synthetic_mednist_classes();

// Images per class for a total of `count`: MedNIST's proportions, largest remainder, summing to count.
std::vector<int64_t> synthetic_mednist_counts(int64_t count);

// How the scene sits in the frame: `varied` draws its position, scale and rotation per image (above); `upright`
// centres it at scale 1, unrotated, and keeps every other draw (anatomy, contrast, noise) as `varied` makes it. A
// training set drawn upright and tested varied is where geometric augmentation (--augment monai) has to carry
// what the data does not show.
enum class SyntheticPose { varied, upright };

// Draws image `index` of class `cls` (0..5) into 64*64 bytes.
void render_synthetic_mednist_like(int cls, uint64_t seed, int64_t index, uint8_t* pixels,
                                   SyntheticPose pose = SyntheticPose::varied);

enum class SyntheticSplit {
  none,            // out_dir/<Class>/<index>.jpeg
  train_val_test,  // out_dir/{train,val,test}/<Class>/<index>.jpeg: per class, val and test get
                   // synthetic_split_held_out(n) images each (the last ones), train the rest (about 80/10/10)
};
// Images of a class of n that go to val, and as many to test: 10% rounded down, at least 1 (n >= 3).
int64_t synthetic_split_held_out(int64_t n);

// Writes the tree in parallel (base/parallel.h) at JPEG quality 90, then a marker file naming count, seed
// and split. When out_dir already holds a complete tree with the same parameters nothing is written; with
// different ones it throws UserError rather than mixing two data sets. progress(done, total) is called from
// time to time on the calling thread. Throws UserError when a class (or a class in a split) would be empty.
void write_synthetic_mednist_like(const std::string& out_dir, int64_t count = kMedNistCount, uint64_t seed = 0,
                                  const std::function<void(int64_t, int64_t)>& progress = {},
                                  SyntheticSplit split = SyntheticSplit::none,
                                  SyntheticPose pose = SyntheticPose::varied);

}  // namespace stoke::io
