// The choices of stoke's flags as enums, parsed once where the command line is read: the engine compares
// enums, never strings. parse_* throws UserError naming the flag, the value and the choices; to_string gives the
// flag's spelling back (config.json, checkpoints, the log).
#pragma once

#include <string>

namespace stoke {

enum class Augment { none, flip, crop_flip };           // --augment none | flip | crop-flip
enum class BestMetric { val_acc, val_auc, val_loss };   // --best-metric
enum class DeviceRequest { automatic, cpu, cuda };      // --device auto | cpu | cuda
enum class PrecisionRequest { automatic, bf16, fp16, fp32 };  // --precision (CUDA; the CPU backend is fp32)
enum class CacheMode { automatic, files, decoded, gpu, none };  // --cache
enum class AugmentOn { automatic, decoders, step };              // --augment-on

Augment parse_augment(const std::string& s);
BestMetric parse_best_metric(const std::string& s);
DeviceRequest parse_device(const std::string& s);
PrecisionRequest parse_precision_flag(const std::string& s);
CacheMode parse_cache(const std::string& s);
AugmentOn parse_augment_on(const std::string& s);
const char* to_string(Augment a);
const char* to_string(BestMetric m);
const char* to_string(DeviceRequest d);
const char* to_string(PrecisionRequest p);
const char* to_string(CacheMode m);
const char* to_string(AugmentOn a);
// --cache decoded and gpu: every image decoded once at the model's input size (gpu: held by the backend).
inline bool decodes_once(CacheMode m) { return m == CacheMode::decoded || m == CacheMode::gpu; }

}  // namespace stoke
