// libFuzzer target: the WebP path through the codec seam (the driver is tests/fuzz/fuzz_decode.h).
#include "io/codec/webp.h"

namespace {
constexpr const char* kFormat = "WebP";
constexpr auto kMatches = stoke::io::webp_matches;
}  // namespace

#include "tests/fuzz/fuzz_decode.h"
