#include "engine/options.h"

#include <array>
#include <utility>

#include "base/error.h"

namespace stoke {
namespace {

template <class E, size_t N>
using Names = std::array<std::pair<E, const char*>, N>;

constexpr Names<Augment, 3> kAugment{
    {{Augment::none, "none"}, {Augment::flip, "flip"}, {Augment::crop_flip, "crop-flip"}}};
constexpr Names<BestMetric, 3> kBestMetric{
    {{BestMetric::val_acc, "val_acc"}, {BestMetric::val_auc, "val_auc"}, {BestMetric::val_loss, "val_loss"}}};
constexpr Names<DeviceRequest, 3> kDevice{
    {{DeviceRequest::automatic, "auto"}, {DeviceRequest::cpu, "cpu"}, {DeviceRequest::cuda, "cuda"}}};

constexpr Names<PrecisionRequest, 4> kPrecision{{{PrecisionRequest::automatic, "auto"},
                                          {PrecisionRequest::bf16, "bf16"},
                                          {PrecisionRequest::fp16, "fp16"},
                                          {PrecisionRequest::fp32, "fp32"}}};
constexpr Names<CacheMode, 5> kCache{{{CacheMode::automatic, "auto"},
                                      {CacheMode::files, "files"},
                                      {CacheMode::decoded, "decoded"},
                                      {CacheMode::gpu, "gpu"},
                                      {CacheMode::none, "none"}}};
constexpr Names<AugmentOn, 3> kAugmentOn{
    {{AugmentOn::automatic, "auto"}, {AugmentOn::decoders, "decoders"}, {AugmentOn::step, "step"}}};

template <class E, size_t N>
E parse(const Names<E, N>& names, const std::string& s, const char* flag) {
  std::string choices;
  for (const auto& [value, name] : names) {
    if (s == name) return value;
    choices += str(choices.empty() ? "" : ", ", name);
  }
  throw UserError(str(flag, " must be one of ", choices, " (got '", s, "')"));
}

template <class E, size_t N>
const char* name_of(const Names<E, N>& names, E e) {
  for (const auto& [value, name] : names)
    if (value == e) return name;
  return "?";
}

}  // namespace

Augment parse_augment(const std::string& s) { return parse(kAugment, s, "--augment"); }
BestMetric parse_best_metric(const std::string& s) { return parse(kBestMetric, s, "--best-metric"); }
DeviceRequest parse_device(const std::string& s) { return parse(kDevice, s, "--device"); }
PrecisionRequest parse_precision_flag(const std::string& s) { return parse(kPrecision, s, "--precision"); }
CacheMode parse_cache(const std::string& s) { return parse(kCache, s, "--cache"); }
AugmentOn parse_augment_on(const std::string& s) { return parse(kAugmentOn, s, "--augment-on"); }
const char* to_string(AugmentOn a) { return name_of(kAugmentOn, a); }
const char* to_string(PrecisionRequest p) { return name_of(kPrecision, p); }
const char* to_string(CacheMode m) { return name_of(kCache, m); }
const char* to_string(Augment a) { return name_of(kAugment, a); }
const char* to_string(BestMetric m) { return name_of(kBestMetric, m); }
const char* to_string(DeviceRequest d) { return name_of(kDevice, d); }

}  // namespace stoke
