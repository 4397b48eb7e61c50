// libFuzzer target: the PNG path through the codec seam (the driver is tests/fuzz/fuzz_decode.h).
#include "io/codec/png.h"

namespace {
constexpr const char* kFormat = "PNG";
constexpr auto kMatches = stoke::io::png_matches;
}  // namespace

#include "tests/fuzz/fuzz_decode.h"
