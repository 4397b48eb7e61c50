// A run's settings as JSON: what config.json and every checkpoint hold, and reading them back (checked: a damaged
// file is an Error naming the key, never a half-filled config).
#include "engine/train_config.h"

#include <limits>
#include <optional>

#include "base/display_name.h"
#include "base/error.h"
#include "base/json_util.h"
#include "engine/augment_plan.h"

namespace stoke {
using json = nlohmann::json;

io::PipelineConfig training_pipeline_config(const TrainConfig& cfg, Shape3 shape, int batch) {
  io::PipelineConfig pc;
  pc.h = shape.h;
  pc.w = shape.w;
  pc.c = shape.c;
  pc.batch = batch;
  pc.decoders = cfg.decoders;
  pc.seed = cfg.seed;
  pc.shuffle = true;
  pc.aug.random_resized_crop = cfg.augment == Augment::crop_flip;
  pc.aug.hflip = cfg.augment != Augment::none && !recipe_active(cfg.augment_recipe);  // else the recipe flips
  pc.augment = pc.aug.random_resized_crop || pc.aug.hflip;
  pc.drop_last = true;
  pc.watchdog_seconds = cfg.watchdog_seconds;
  return pc;
}

json config_to_json(const TrainConfig& c) {
  // Paths are bytes: shown escaped (base/display_name.h), read back to the bytes by config_from_json.
  return {{"data", display_name(c.data)},
          {"val", display_name(c.val)},
          {"model", c.model},
          {"epochs", c.epochs},
          {"batch_size", c.batch_size},
          {"lr", c.lr},
          {"optimizer", to_string(c.optimizer.kind)},
          {"momentum", c.optimizer.momentum},
          {"nesterov", c.optimizer.nesterov},
          {"weight_decay", c.optimizer.weight_decay},
          {"beta1", c.optimizer.beta1},
          {"beta2", c.optimizer.beta2},
          {"eps", c.optimizer.eps},
          {"schedule", to_string(c.schedule)},
          {"warmup_epochs", c.warmup_epochs},
          {"label_smoothing", c.label_smoothing},
          {"clip_grad_norm", c.clip_grad_norm},
          {"seed", c.seed},
          {"init", display_name(c.init)},
          {"init_partial", c.init_partial},
          {"freeze", to_string(c.freeze)},
          {"freeze_bn", c.freeze_bn},
          {"lr_backbone_mult", c.lr_backbone_mult},
          {"normalize", c.normalize},
          {"limit_train", c.limit_train},
          {"limit_val", c.limit_val},
          {"image_size", c.image_size},
          {"augment", c.augment_preset.empty() ? std::string(to_string(c.augment)) : c.augment_preset},
          {"augment_recipe", recipe_to_json(c.augment_recipe)},
          {"augment_on", to_string(c.augment_on)},
          {"mixup", c.mix.mixup_alpha},
          {"cutmix", c.mix.cutmix_alpha},
          {"mix_prob", c.mix.prob},
          {"mix_switch_prob", c.mix.switch_prob},
          {"mix_off_epochs", c.mix_off_epochs},
          {"precision", to_string(c.precision)},
          {"deterministic", c.deterministic},
          {"sync_bn", c.sync_bn},
          {"exif_orientation", c.exif_orientation},
          {"strict", c.strict},
          {"checkpoint_every", c.checkpoint_every},
          {"keep_checkpoints", c.keep_checkpoints},
          {"max_nonfinite_steps", c.max_nonfinite_steps},
          {"eval_every", c.eval_every},
          {"bn_recalibrate", c.bn_recalibrate},
          {"best_metric", to_string(c.best_metric)},
          {"ema", c.ema},
          {"ema_warmup", c.ema_warmup},
          {"tta", c.tta_flip ? "flip" : "none"}};
}

TrainConfig config_from_json(const json& j) {
  TrainConfig c;
  constexpr int64_t kBig = int64_t{1} << 40;
  auto text = [&](const char* key, std::optional<std::string> def = std::nullopt) {
    if (!j.contains(key) && def) return *def;
    if (!j.contains(key) || !j[key].is_string()) throw Error(str("'", key, "' must be a string"));
    return j[key].get<std::string>();
  };
  auto flag = [&](const char* key, bool def) {
    if (!j.contains(key)) return def;
    if (!j[key].is_boolean()) throw Error(str("'", key, "' must be true or false"));
    return j[key].get<bool>();
  };
  auto real = [&](const char* key, double lo, double hi, std::optional<double> def = std::nullopt) {
    return static_cast<float>(json_number(j, key, lo, hi, def));
  };
  try {
    if (!j.is_object()) throw Error("not a JSON object");
    c.data = name_from_display(text("data"));
    c.val = name_from_display(text("val", std::string()));
    c.model = text("model");
    c.epochs = static_cast<int>(json_int(j, "epochs", 0, 1 << 30));
    c.batch_size = static_cast<int>(json_int(j, "batch_size", 1, 1 << 30));
    c.lr = real("lr", 0, 1e6);
    c.optimizer.kind = parse_optimizer(text("optimizer"));
    c.optimizer.momentum = real("momentum", 0, 1);
    c.optimizer.nesterov = flag("nesterov", true);
    c.optimizer.weight_decay = real("weight_decay", 0, 1e6);
    c.optimizer.beta1 = real("beta1", 0, 1, c.optimizer.beta1);
    c.optimizer.beta2 = real("beta2", 0, 1, c.optimizer.beta2);
    c.optimizer.eps = real("eps", 0, 1, c.optimizer.eps);
    c.schedule = parse_schedule(text("schedule"));
    c.warmup_epochs = real("warmup_epochs", 0, 1e9, 0.0);
    c.label_smoothing = real("label_smoothing", 0, 1, 0.0);
    c.clip_grad_norm = real("clip_grad_norm", 0, 1e30, 0.0);
    c.seed = static_cast<uint64_t>(json_int(j, "seed", 0, std::numeric_limits<int64_t>::max()));
    c.init = name_from_display(text("init", std::string()));
    c.init_partial = flag("init_partial", false);
    c.freeze = parse_freeze(text("freeze", std::string("none")));
    c.freeze_bn = flag("freeze_bn", false);
    c.lr_backbone_mult = real("lr_backbone_mult", 0, 1e6, 1.0);
    c.normalize = text("normalize", std::string("data"));  // runs from before --normalize estimated theirs
    c.limit_train = json_int(j, "limit_train", 0, kBig, 0);
    c.limit_val = json_int(j, "limit_val", 0, kBig, 0);
    c.image_size = static_cast<int>(json_int(j, "image_size", 0, 1 << 16, 0));
    const std::string augment = text("augment", std::string("none"));
    if (is_augment_preset(augment)) {
      AugmentFlags preset;
      preset.augment = augment;
      c.augment = resolve_augment(preset).decoder;
      c.augment_preset = augment;
    } else {
      c.augment = parse_augment(augment);
    }
    if (j.contains("augment_recipe")) c.augment_recipe = recipe_from_json(j["augment_recipe"]);  // else none
    c.augment_on = parse_augment_on(text("augment_on", std::string("step")));  // runs from before it: the step
    c.mix.mixup_alpha = real("mixup", 0, 1e4, 0.0);                            // runs from before mixing: none
    c.mix.cutmix_alpha = real("cutmix", 0, 1e4, 0.0);
    c.mix.prob = real("mix_prob", 0, 1, 1.0);
    c.mix.switch_prob = real("mix_switch_prob", 0, 1, 0.5);
    c.mix_off_epochs = static_cast<int>(json_int(j, "mix_off_epochs", 0, 1 << 30, 0));
    c.precision = parse_precision_flag(text("precision", std::string("auto")));
    c.deterministic = flag("deterministic", false);
    c.sync_bn = flag("sync_bn", false);
    c.exif_orientation = flag("exif_orientation", true);
    c.strict = flag("strict", false);
    c.checkpoint_every = json_int(j, "checkpoint_every", 0, kBig, 0);
    c.keep_checkpoints = static_cast<int>(json_int(j, "keep_checkpoints", 1, 1 << 20, 3));
    c.max_nonfinite_steps = static_cast<int>(json_int(j, "max_nonfinite_steps", 1, 1 << 30, 5));
    c.eval_every = static_cast<int>(json_int(j, "eval_every", 1, 1 << 30, 1));
    c.bn_recalibrate = static_cast<int>(json_int(j, "bn_recalibrate", -1, 1 << 30, -1));
    c.best_metric = parse_best_metric(text("best_metric", std::string("val_acc")));
    c.ema = real("ema", 0, 1, 0.0);            // runs from before --ema had none
    c.ema_warmup = flag("ema_warmup", false);  // runs from before --ema-warmup: a fixed decay
    const std::string tta = text("tta", std::string("none"));
    if (tta != "none" && tta != "flip") throw Error(str("'tta' must be none or flip, not '", tta, "'"));
    c.tta_flip = tta == "flip";
  } catch (const std::exception& e) {
    throw Error(str("the saved run configuration is incomplete or damaged: ", e.what()));
  }
  return c;
}

}  // namespace stoke
