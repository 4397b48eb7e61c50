// One big host buffer, allocated once before any thread starts (the ring of batches lives in it).
//
// Pinned (cudaHostAlloc) when the build has CUDA (STOKE_WITH_CUDA=1) and a device is usable, so host-to-device
// copies run at DMA speed and cudaMemcpyAsync is truly asynchronous; page-aligned pageable memory otherwise.
// Pinning can fail (the locked-memory limit of a container, a driver the runtime cannot use): the buffer then
// falls back to pageable memory and reason() says why in one line the caller can print. The memory is zeroed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace stoke::io {

class HostMemory {
 public:
  HostMemory() = default;
  // bytes > 0. want_pinned = false asks for pageable memory outright. Throws stoke::Error only when even the
  // pageable allocation fails.
  HostMemory(size_t bytes, bool want_pinned);
  ~HostMemory();
  HostMemory(HostMemory&& other) noexcept;
  HostMemory& operator=(HostMemory&& other) noexcept;
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }  // as asked, rounded up to whole pages
  bool pinned() const { return pinned_; }
  // One line: "pinned host memory (256.0 MiB, cudaHostAlloc)" or "pageable host memory (...): <why not pinned>".
  const std::string& reason() const { return reason_; }
  // Bytes held by every HostMemory of the process: a test checks with it that the input's memory outlives the
  // copies that read it.
  static int64_t live_bytes();

 private:
  void free_memory() noexcept;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool pinned_ = false;
  std::string reason_;
};

// Whether the CUDA runtime sees a usable device (always false in a build without CUDA); *why says why not.
// Cached after the first call.
bool cuda_device_usable(std::string* why = nullptr);

}  // namespace stoke::io
