// The train subcommand's flags, and the option helpers the other subcommands share with it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "apps/augment_flags.h"
#include "apps/cli_checks.h"
#include "engine/trainer.h"

namespace stoke {

inline const CLI::Validator kPositive = number_check(false);
inline const CLI::Validator kNonNegative = number_check(true);

// An option naming one of a few choices, parsed once, here, into the engine's enum (engine/options.h): CLI11
// checks the name first, so the parse cannot fail.
template <class E>
CLI::Option* add_choice(CLI::App* app, const std::string& flag, E& target, E (*parse)(const std::string&),
                        const std::vector<std::string>& choices, const std::string& help) {
  return app
      ->add_option_function<std::string>(
          flag, [&target, parse](const std::string& v) { target = parse(v); }, help)
      ->check(CLI::IsMember(choices))
      ->default_str(to_string(target))
      ->type_name("TEXT");
}
inline const std::vector<std::string> kDevices = {"auto", "cpu", "cuda"};
inline const std::vector<std::string> kAugments = {"none", "flip", "crop-flip"};
inline const std::vector<std::string> kPrecisions = {"auto", "bf16", "fp16", "fp32"};

// --tta none|flip, handed to `set` when given; `what` names the command in its help. follows_run (eval, predict):
// unset, the default, follows the run's own --tta (its config.json); otherwise the default is none.
void add_tta(CLI::App* app, const char* what, bool follows_run, std::function<void(bool)> set);

// The train subcommand and every flag of it; optimizer, schedule and decoders are parsed after CLI11 is done.
void add_train(CLI::App& app, TrainConfig& cfg, AugmentFlags& augment, std::string& optimizer, std::string& schedule,
               std::string& decoders);

}  // namespace stoke
