#include <cstring>

#include "base/error.h"
#include "kernels/gather.h"

namespace stoke::cpu {

void gather_samples(int n, const int64_t* ids, int64_t samples, int64_t sample_bytes, const uint8_t* set_pixels,
                    const int32_t* set_labels, uint8_t* pixels, int32_t* labels) {
  STOKE_CHECK(n >= 0 && sample_bytes > 0);
  for (int k = 0; k < n; ++k) {
    const int64_t id = ids[k];
    STOKE_CHECK(id >= 0 && id < samples, "sample id ", id, " of a held set of ", samples);
    std::memcpy(pixels + int64_t{k} * sample_bytes, set_pixels + id * sample_bytes, static_cast<size_t>(sample_bytes));
    labels[k] = set_labels[id];
  }
}

}  // namespace stoke::cpu
