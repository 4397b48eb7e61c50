// The shape of one sample: height, width, channels (NHWC without the N; the batch belongs to whoever holds
// the batch). Shared by the graph, the input pipeline and the caches.
#pragma once

#include <cstdint>

namespace stoke {

struct Shape3 {
  int h = 1, w = 1, c = 1;
  int64_t size() const { return int64_t{h} * w * c; }
  bool operator==(const Shape3&) const = default;
};

}  // namespace stoke
