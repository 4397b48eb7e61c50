// Training a classifier from ImageFolder data: the loop behind `stoke train`.
#pragma once

#include <string>

#include "engine/train_config.h"

namespace stoke {

// Runs the whole job (or continues it when cfg.resume names a run folder). Throws UserError for what the
// user can fix (missing data, bad flags, a checkpoint of another model), Error for runtime failures.
TrainResult train(const TrainConfig& cfg, const ModelFactory& build_model);

// The settings saved in a run folder's latest checkpoint, with resume and out set (engine/resume.h: with the
// command line's flags applied).
TrainConfig config_for_resume(const std::string& run_dir);

}  // namespace stoke
