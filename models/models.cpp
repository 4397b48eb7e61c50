#include "models/models.h"

#include "base/error.h"

namespace stoke {

std::vector<std::string> model_names() {
  return {"small-cnn", "small-cnn-wide", "small-cnn-nobn", "resnet18", "resnet34", "resnet50", "densenet121"};
}

Graph build_model(const std::string& name, Shape3 input, int classes) {
  if (classes < 2) throw UserError(str("a classifier needs at least 2 classes, the data has ", classes));
  if (name == "small-cnn") return small_cnn(input, classes, 16);
  if (name == "small-cnn-wide") return small_cnn(input, classes, 32);
  // Without batch norm every sample's gradient is independent of the others in its batch, so a data-parallel run
  // reaches the single-process weights (the dist tests compare them).
  if (name == "small-cnn-nobn") return small_cnn(input, classes, 16, false);
  if (name == "resnet18") return resnet(18, input, classes);
  if (name == "resnet34") return resnet(34, input, classes);
  if (name == "resnet50") return resnet(50, input, classes);
  if (name == "densenet121") return densenet121(input, classes);
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw UserError(str("unknown model '", name, "' (known: ", known, ")"));
}

}  // namespace stoke
