#include "engine/cuda/precision.h"

#include "base/error.h"

namespace stoke::cuda {

Precision parse_precision(const std::string& s) {
  if (s == "auto") return Precision::automatic;
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  if (s == "fp16") return Precision::fp16;
  throw UserError(str("unknown precision '", s, "' (expected auto, fp32, bf16 or fp16)"));
}

const char* to_string(Precision p) {
  switch (p) {
    case Precision::automatic: return "auto";
    case Precision::fp32: return "fp32";
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
  }
  return "?";
}

Precision resolve_precision(Precision requested, int major) {
  if (requested != Precision::automatic) {
    if (requested == Precision::bf16 && major < 8)
      throw UserError(str("--precision bf16 needs a GPU of compute capability 8.0 or newer (this one is ", major,
                          ".x): use fp16 or fp32"));
    return requested;
  }
  return major >= 8 ? Precision::bf16 : Precision::fp16;
}

}  // namespace stoke::cuda
