#include "engine/cuda/arena.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <limits>
#include <utility>

#include "base/cuda_check.h"
#include "base/error.h"
#include "base/format.h"

namespace stoke::cuda {

DeviceArena DeviceArena::counting() {
  DeviceArena a;
  a.counting_ = true;
  a.capacity_ = std::numeric_limits<size_t>::max() / 2;
  a.base_ = reinterpret_cast<void*>(uintptr_t{DeviceArena::kAlign});  // never dereferenced
  a.purpose_ = "plan";
  return a;
}

DeviceArena::DeviceArena(size_t bytes, std::string purpose) : purpose_(std::move(purpose)) {
  bytes = arena_round(bytes == 0 ? 1 : bytes);
  cudaError_t e = cudaMalloc(&base_, bytes);
  if (e != cudaSuccess) {
    base_ = nullptr;
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw OutOfMemory(str("cannot allocate ", format_bytes(bytes), " of device memory for ", purpose_, ": ",
                    cudaGetErrorName(e), ", ", format_bytes(free_b), " free of ", format_bytes(total_b),
                    " (lower --batch-size, or free the GPU)"));
  }
  capacity_ = bytes;
}

void DeviceArena::release() noexcept {
  if (base_ && !counting_) CUDA_CHECK_NOEXCEPT(cudaFree(base_));
  base_ = nullptr;
  capacity_ = used_ = 0;
}

DeviceArena::~DeviceArena() { release(); }

DeviceArena::DeviceArena(DeviceArena&& o) noexcept
    : base_(o.base_), capacity_(o.capacity_), used_(o.used_), counting_(o.counting_), purpose_(std::move(o.purpose_)) {
  o.base_ = nullptr;
  o.capacity_ = o.used_ = 0;
  o.counting_ = false;
}

DeviceArena& DeviceArena::operator=(DeviceArena&& o) noexcept {
  if (this != &o) {
    release();
    base_ = o.base_;
    capacity_ = o.capacity_;
    used_ = o.used_;
    counting_ = o.counting_;
    purpose_ = std::move(o.purpose_);
    o.base_ = nullptr;
    o.capacity_ = o.used_ = 0;
    o.counting_ = false;
  }
  return *this;
}

void* DeviceArena::allocate(size_t bytes, const char* what) {
  const size_t need = arena_round(bytes == 0 ? 1 : bytes);
  if (base_ == nullptr || need > capacity_ - used_)
    throw Error(str("device arena (", purpose_, ") exhausted: ", what, " needs ", format_bytes(need), " but ",
                    format_bytes(capacity_ - used_), " of ", format_bytes(capacity_),
                    " are left (the memory plan under-counted: an internal error, please report it)"));
  void* p = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(base_) + used_);
  used_ += need;
  return p;
}

}  // namespace stoke::cuda
