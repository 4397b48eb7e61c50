#include "io/pipeline/host_memory.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

#include "base/error.h"
#include "base/format.h"

#if STOKE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace stoke::io {

namespace {

size_t page_size() {
  const long p = ::sysconf(_SC_PAGESIZE);
  return p > 0 ? static_cast<size_t>(p) : size_t{4096};
}

}  // namespace

bool cuda_device_usable(std::string* why) {
#if STOKE_WITH_CUDA
  static std::once_flag once;
  static bool usable = false;
  static std::string reason;
  std::call_once(once, [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      reason =
          str("no usable CUDA device (cudaGetDeviceCount: ", cudaGetErrorName(e), ": ", cudaGetErrorString(e), ")");
      (void)cudaGetLastError();  // not sticky: leave no error behind for the engine's own checks
    } else if (n == 0) {
      reason = "no CUDA device";
    } else {
      usable = true;
    }
  });
  if (why) *why = reason;
  return usable;
#else
  if (why) *why = "built without CUDA";
  return false;
#endif
}

namespace {
std::atomic<int64_t> g_live_bytes{0};
}  // namespace

int64_t HostMemory::live_bytes() { return g_live_bytes.load(); }

HostMemory::HostMemory(size_t bytes, bool want_pinned) {
  STOKE_CHECK(bytes > 0, "HostMemory of 0 bytes");
  const size_t page = page_size();
  size_ = (bytes + page - 1) / page * page;
  std::string why_not;
  if (!want_pinned) {
    why_not = "pinned memory not requested";
  } else if (!cuda_device_usable(&why_not)) {
    // why_not says it
  } else {
#if STOKE_WITH_CUDA
    void* p = nullptr;
    const cudaError_t e = cudaHostAlloc(&p, size_, cudaHostAllocPortable);
    if (e == cudaSuccess && p != nullptr) {
      data_ = static_cast<uint8_t*>(p);
      pinned_ = true;
      std::memset(data_, 0, size_);
      reason_ = str("pinned host memory (", format_bytes(size_), ", cudaHostAlloc)");
      g_live_bytes += static_cast<int64_t>(size_);
      return;
    }
    (void)cudaGetLastError();
    why_not = str("cudaHostAlloc of ", format_bytes(size_), " failed (", cudaGetErrorName(e),
                  "; a locked-memory limit? see ulimit -l), falling back");
#endif
  }
  void* p = nullptr;
  if (::posix_memalign(&p, page, size_) != 0 || p == nullptr)
    throw Error(str("cannot allocate ", format_bytes(size_), " of host memory for the input pipeline"));
  data_ = static_cast<uint8_t*>(p);
  std::memset(data_, 0, size_);  // touches every page now, not in the first batches
  g_live_bytes += static_cast<int64_t>(size_);
  reason_ = str("pageable host memory (", format_bytes(size_), "): ", why_not);
}

void HostMemory::free_memory() noexcept {
  if (!data_) return;
  g_live_bytes -= static_cast<int64_t>(size_);
#if STOKE_WITH_CUDA
  if (pinned_) {
    (void)cudaFreeHost(data_);  // at process exit the runtime may already be unloading: nothing to do then
    (void)cudaGetLastError();
    data_ = nullptr;
    return;
  }
#endif
  std::free(data_);
  data_ = nullptr;
}

HostMemory::~HostMemory() { free_memory(); }

HostMemory::HostMemory(HostMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      pinned_(std::exchange(o.pinned_, false)),
      reason_(std::move(o.reason_)) {}

HostMemory& HostMemory::operator=(HostMemory&& o) noexcept {
  if (this != &o) {
    free_memory();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    pinned_ = std::exchange(o.pinned_, false);
    reason_ = std::move(o.reason_);
  }
  return *this;
}

}  // namespace stoke::io
