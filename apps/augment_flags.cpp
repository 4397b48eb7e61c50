#include "apps/augment_flags.h"

#include <string>
#include <vector>

#include "apps/cli_checks.h"

namespace stoke {

void add_augment_flags(CLI::App* t, AugmentFlags& f) {
  const std::vector<std::string> kChoices = {"none", "flip", "crop-flip", "monai", "imagenet", "cifar"};
  t->add_option("--augment", f.augment,
                "none | flip | crop-flip (random-resized-crop + horizontal flip) | monai (the MedNIST tutorial's: "
                "rotate 15 and zoom 0.9:1.1 each with p 0.5, hflip 0.5) | imagenet (crop-flip and colour jitter "
                "0.4/0.4/0.4) | cifar (translate 0.125 with fill 0, hflip 0.5, erase 0.5); the flags below override "
                "a preset's values (their defaults are the identity; docs/AUGMENTATION.md)")
      ->check(CLI::IsMember(kChoices))
      ->capture_default_str();
  const CLI::Validator prob = finite_range(0.0, 1.0);
  t->add_option("--rotate", f.rotate, "Rotate by an angle uniform in [-DEG, DEG] (torchvision RandomRotation)")
      ->type_name("DEG")
      ->default_str("0")
      ->check(finite_range(0.0, 180.0));
  t->add_option("--zoom", f.zoom, "Zoom by a factor uniform in [MIN, MAX] (MONAI RandZoom; > 1 enlarges)")
      ->type_name("MIN:MAX")
      ->default_str("1:1");
  t->add_option("--translate", f.translate, "Shift x and y each by up to FRAC of the side (torchvision RandomAffine)")
      ->type_name("FRAC")
      ->default_str("0")
      ->check(prob);
  t->add_option("--shear", f.shear, "Shear x and y each by an angle uniform in [-DEG, DEG]")
      ->type_name("DEG")
      ->default_str("0")
      ->check(finite_range(0.0, 44.0));
  t->add_option("--hflip", f.hflip, "Mirror left-right with probability P")
      ->type_name("P")
      ->default_str("0")
      ->check(prob);
  t->add_option("--vflip", f.vflip, "Mirror top-bottom with probability P")
      ->type_name("P")
      ->default_str("0")
      ->check(prob);
  t->add_option("--brightness", f.brightness, "Multiply by a factor uniform in [1-A, 1+A] (torchvision ColorJitter)")
      ->type_name("A")
      ->default_str("0")
      ->check(finite_range(0.0, 0.99));
  t->add_option("--contrast", f.contrast, "Contrast factor uniform in [max(0, 1-A), 1+A], about mid-grey")
      ->type_name("A")
      ->default_str("0")
      ->check(finite_range(0.0, 10.0));
  t->add_option("--saturation", f.saturation, "Saturation factor uniform in [max(0, 1-A), 1+A] (3 channels)")
      ->type_name("A")
      ->default_str("0")
      ->check(finite_range(0.0, 10.0));
  t->add_option("--hue", f.hue, "Hue shift uniform in [-A, A] of a turn, A <= 0.5 (3 channels)")
      ->type_name("A")
      ->default_str("0")
      ->check(finite_range(0.0, 0.5));
  t->add_option("--gamma", f.gamma, "255 (v/255)^g with g uniform in [MIN, MAX] (MONAI RandAdjustContrast)")
      ->type_name("MIN:MAX")
      ->default_str("1:1");
  t->add_option("--noise", f.noise,
                "Add Gaussian noise, std uniform in [0, STD] of full scale (MONAI RandGaussianNoise)")
      ->type_name("STD")
      ->default_str("0")
      ->check(prob);
  t->add_option("--erase", f.erase,
                "Erase a random box to the fill value with probability P (torchvision RandomErasing)")
      ->type_name("P")
      ->default_str("0")
      ->check(prob);
  t->add_option("--fill", f.fill, "Pixel value outside the image and in erased boxes: V, or V1:V2:V3 per channel")
      ->type_name("V")
      ->default_str("0");
}

void add_mix_flags(CLI::App* t, MixRecipe& mix, int& off_epochs) {
  const CLI::Validator alpha = finite_range(0.0, 1e4);
  t->add_option("--mixup", mix.mixup_alpha,
                "Mixup: blend each image and its target with the batch reversed, weight lam ~ Beta(A, A) per batch "
                "(timm Mixup mixup_alpha; 0 = off)")
      ->type_name("A")
      ->capture_default_str()
      ->check(alpha);
  t->add_option("--cutmix", mix.cutmix_alpha,
                "CutMix: paste a box of the reversed batch's images, lam ~ Beta(A, A) corrected to the box's area "
                "(timm cutmix_alpha; 0 = off)")
      ->type_name("A")
      ->capture_default_str()
      ->check(alpha);
  t->add_option("--mix-prob", mix.prob, "Probability that a batch is mixed (timm mix_prob)")
      ->type_name("P")
      ->capture_default_str()
      ->check(finite_range(0.0, 1.0));
  t->add_option("--mix-switch-prob", mix.switch_prob,
                "With --mixup and --cutmix both on: probability of CutMix rather than mixup (timm switch_prob)")
      ->type_name("P")
      ->capture_default_str()
      ->check(finite_range(0.0, 1.0));
  t->add_option("--mix-off-epochs", off_epochs, "No mixing in the last N epochs (timm mixup_off_epoch)")
      ->type_name("N")
      ->capture_default_str()
      ->check(number_check(true));
}

}  // namespace stoke
