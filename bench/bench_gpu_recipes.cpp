#include "bench/bench_gpu_recipes.h"

#include <numeric>

#include "engine/augment_plan.h"

namespace stoke::bench {

const std::vector<std::string>& augment_bench_recipes() {
  static const std::vector<std::string> names = {"monai", "imagenet", "cifar", "every-step"};
  return names;
}

std::vector<SampleTransform> augment_bench_transforms(const std::string& recipe, int n, int h, int w, int c) {
  AugmentFlags f;
  f.augment = recipe == "every-step" ? "monai" : recipe;
  if (recipe == "every-step") {
    f.brightness = f.contrast = f.saturation = 0.4f;
    f.hue = 0.1f;
    f.gamma = "0.8:1.25";
    f.noise = 0.05f;
    f.erase = 0.5f;
  }
  const AugmentSettings s = resolve_augment(f);
  std::vector<int64_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), int64_t{0});
  std::vector<SampleTransform> out(static_cast<size_t>(n));
  draw_batch_transforms(s.recipe, Shape3{h, w, c}, 0, 0, n, ids.data(), out.data());
  return out;
}

}  // namespace stoke::bench
