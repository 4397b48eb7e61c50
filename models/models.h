// The model zoo: build a Graph by name for a given input shape and class count.
#pragma once

#include <string>
#include <vector>

#include "engine/graph.h"

namespace stoke {

// Throws UserError naming the known models when `name` is unknown.
Graph build_model(const std::string& name, Shape3 input, int classes);
std::vector<std::string> model_names();

// The small CNN for 28x28 digits (and any small image): three conv-BN-ReLU blocks with max pooling,
// widths 16/32/64 (x width multiplier), and a linear head on the flattened 3x3 map.
Graph small_cnn(Shape3 input, int classes, int width = 16);

}  // namespace stoke
