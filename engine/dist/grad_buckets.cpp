// See engine/dist/grad_buckets.h.
#include "engine/dist/grad_buckets.h"

#include <algorithm>

#include "base/error.h"

namespace stoke::dist {

std::vector<GradBucket> plan_grad_buckets(std::vector<GradTensor> tensors, int64_t total, int64_t bucket_bytes,
                                          int64_t element_bytes) {
  STOKE_CHECK(bucket_bytes > 0 && element_bytes > 0, "bucket of ", bucket_bytes, " bytes, elements of ", element_bytes);
  std::sort(tensors.begin(), tensors.end(),
            [](const GradTensor& a, const GradTensor& b) { return a.offset > b.offset; });
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GradTensor& t = tensors[i];
    STOKE_CHECK(t.size >= 0 && t.offset >= 0 && t.offset + t.size <= total, "gradient tensor [", t.offset, ", ",
                t.offset + t.size, ") outside a buffer of ", total);
    STOKE_CHECK(i == 0 || t.offset + t.size <= tensors[i - 1].offset, "gradient tensors overlap at ", t.offset);
  }
  std::vector<GradBucket> out;
  if (total <= 0) return out;
  int64_t end = total, held = 0;
  int ready = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    held += tensors[i].size * element_bytes;
    ready = std::max(ready, tensors[i].finished_after);
    // The last tensor's bucket reaches down to 0 (whatever padding precedes the first tensor).
    if (held >= bucket_bytes || i + 1 == tensors.size()) {
      const int64_t begin = i + 1 == tensors.size() ? 0 : tensors[i].offset;
      if (!out.empty()) ready = std::max(ready, out.back().ready_after);
      out.push_back({begin, end, ready});
      end = begin;
      held = 0;
      ready = 0;
    }
  }
  if (out.empty()) out.push_back({0, total, 0});  // no tensors: one bucket of padding, ready at once
  return out;
}

}  // namespace stoke::dist
