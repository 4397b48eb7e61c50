#include "engine/options.h"

#include <array>
#include <utility>

#include "base/error.h"

namespace stoke {
namespace {

template <class E, size_t N>
using Names = std::array<std::pair<E, const char*>, N>;

constexpr Names<Augment, 3> kAugment{{{Augment::none, "none"}, {Augment::flip, "flip"}, {Augment::crop_flip, "crop-flip"}}};
constexpr Names<BestMetric, 3> kBestMetric{
    {{BestMetric::val_acc, "val_acc"}, {BestMetric::val_auc, "val_auc"}, {BestMetric::val_loss, "val_loss"}}};
constexpr Names<DeviceRequest, 3> kDevice{
    {{DeviceRequest::automatic, "auto"}, {DeviceRequest::cpu, "cpu"}, {DeviceRequest::cuda, "cuda"}}};

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
const char* to_string(Augment a) { return name_of(kAugment, a); }
const char* to_string(BestMetric m) { return name_of(kBestMetric, m); }
const char* to_string(DeviceRequest d) { return name_of(kDevice, d); }

}  // namespace stoke
