// Where each parameter tensor lives on the device. The Graph's layout (and every checkpoint) packs tensors back
// to back in one fp32 array, so a tensor of 3 or 5 channels starts at any element: its bf16/fp16 copy could then
// be 2-byte aligned, which cuDNN, cuBLASLt (16-byte minimum for its vector kernels) and our 16-byte vector loads
// do not accept. On the device every tensor instead starts at a multiple of kParamAlignElems elements (256 B of
// fp32, 128 B of half), with zeros in the gaps; upload/download translate between the two layouts.
//
// Host-only (no CUDA calls), so the layout is unit-tested without a device (tests/gpu/test_cuda_host.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/cuda/arena_plan.h"
#include "engine/cuda/precision.h"
#include "engine/graph.h"

namespace stoke::cuda {

class DeviceParamLayout {
 public:
  static constexpr int64_t kParamAlignElems = cuda::kParamAlignElems;  // the arena plan counts the same

  DeviceParamLayout() = default;
  explicit DeviceParamLayout(const std::vector<ParamInfo>& params) {
    offsets_.reserve(params.size());
    int64_t at = 0;
    for (const ParamInfo& p : params) {
      offsets_.push_back(at);
      flat_.push_back(p.offset);
      sizes_.push_back(p.size);
      flat_total_ = std::max(flat_total_, p.offset + p.size);
      at += (p.size + kParamAlignElems - 1) / kParamAlignElems * kParamAlignElems;
    }
    total_ = at;
  }

  // Device offset (in elements) of parameter tensor i; a multiple of kParamAlignElems.
  int64_t offset(size_t i) const { return offsets_[i]; }
  // Elements of the device array, gaps included (>= the flat count).
  int64_t total() const { return total_; }
  int64_t flat_total() const { return flat_total_; }
  size_t tensors() const { return offsets_.size(); }

  // Flat (Graph) layout -> device layout; the gaps are zero.
  std::vector<float> to_device(const float* flat) const {
    std::vector<float> d(static_cast<size_t>(total_), 0.f);
    for (size_t i = 0; i < offsets_.size(); ++i)
      std::copy_n(flat + flat_[i], sizes_[i], d.begin() + static_cast<std::ptrdiff_t>(offsets_[i]));
    return d;
  }
  // Device layout -> flat (Graph) layout (gaps dropped).
  void to_flat(const std::vector<float>& dev, float* flat) const {
    for (size_t i = 0; i < offsets_.size(); ++i)
      std::copy_n(dev.begin() + static_cast<std::ptrdiff_t>(offsets_[i]), sizes_[i], flat + flat_[i]);
  }

 private:
  std::vector<int64_t> offsets_, flat_, sizes_;
  int64_t total_ = 0, flat_total_ = 0;
};

// Channels of the normalised input on the device. cuDNN's half-precision NHWC kernels want channel counts that
// are multiples of 8 (tensor-core tiles); for 1 (MNIST) or 3 (RGB) channels it may offer no engine at all,
// backward-filter in deterministic mode above all. So in bf16/fp16 the augment kernel writes the input padded
// with zero channels to the next multiple of 8, and each convolution reading it gets a zero-padded filter copy;
// the zero channels add exact zeros, so the result is the unpadded convolution's. Only when every reader of the
// input is a convolution (anything else would see the extra channels). fp32 and the CPU layout stay unpadded.
inline int device_input_channels(Precision storage, int channels, bool only_convolutions_read_input) {
  return padded_input_channels(storage != Precision::fp32, channels, only_convolutions_read_input);
}

}  // namespace stoke::cuda
