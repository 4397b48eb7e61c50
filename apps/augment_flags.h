// The augmentation flags of `stoke train` (--augment's presets and the individual flags), read into AugmentFlags and
// resolved into a run's settings by engine/augment_plan.h after the parse, so a flag overrides its preset whatever
// the order on the command line.
#pragma once

#include <CLI/CLI.hpp>

#include "engine/augment_plan.h"

namespace stoke {

void add_augment_flags(CLI::App* train, AugmentFlags& flags);
// --mixup, --cutmix, --mix-prob, --mix-switch-prob, --mix-off-epochs (timm's Mixup), straight into the run's settings.
void add_mix_flags(CLI::App* train, MixRecipe& mix, int& off_epochs);

}  // namespace stoke
