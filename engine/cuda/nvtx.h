// NVTX ranges (header-only NVTX3: costs a branch when no profiler is attached).
//   STOKE_NVTX_RANGE("forward");   a range for the rest of the scope
//   STOKE_NVTX_FN();               a range named after the enclosing function
#pragma once

#include <nvtx3/nvToolsExt.h>

namespace stoke::cuda {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace stoke::cuda

#define STOKE_NVTX_CONCAT2(a, b) a##b
#define STOKE_NVTX_CONCAT(a, b) STOKE_NVTX_CONCAT2(a, b)
#define STOKE_NVTX_RANGE(name) ::stoke::cuda::NvtxRange STOKE_NVTX_CONCAT(stoke_nvtx_range_, __LINE__)(name)
#define STOKE_NVTX_FN() STOKE_NVTX_RANGE(__func__)
