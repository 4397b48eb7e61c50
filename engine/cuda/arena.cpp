#include "engine/cuda/arena.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

bool DeviceArena::debug_from_env() {
  const char* e = std::getenv("STOKE_ARENA_DEBUG");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}

DeviceArena::DeviceArena(size_t bytes, std::string purpose, bool debug) : debug_(debug), purpose_(std::move(purpose)) {
  bytes = arena_round(bytes == 0 ? 1 : bytes);
  if (debug_) {  // no block: allocate() makes one per request
    capacity_ = bytes;
    std::fprintf(stderr, "stoke: STOKE_ARENA_DEBUG: %s gets one cudaMalloc per buffer\n", purpose_.c_str());
    return;
  }
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
  for (const Block& b : blocks_) CUDA_CHECK_NOEXCEPT(cudaFree(b.ptr));
  blocks_.clear();
  base_ = nullptr;
  capacity_ = used_ = 0;
}

void DeviceArena::zero(cudaStream_t stream) {
  STOKE_CHECK(!counting_, "zero() on a counting arena");
  if (base_) CUDA_CHECK(cudaMemsetAsync(base_, 0, capacity_, stream));
  for (const Block& b : blocks_) CUDA_CHECK(cudaMemsetAsync(b.ptr, 0, b.bytes, stream));
}

DeviceArena::~DeviceArena() { release(); }

DeviceArena::DeviceArena(DeviceArena&& o) noexcept
    : base_(o.base_),
      capacity_(o.capacity_),
      used_(o.used_),
      counting_(o.counting_),
      debug_(o.debug_),
      purpose_(std::move(o.purpose_)),
      blocks_(std::move(o.blocks_)) {
  o.base_ = nullptr;
  o.capacity_ = o.used_ = 0;
  o.counting_ = o.debug_ = false;
  o.blocks_.clear();
}

DeviceArena& DeviceArena::operator=(DeviceArena&& o) noexcept {
  if (this != &o) {
    release();
    base_ = o.base_;
    capacity_ = o.capacity_;
    used_ = o.used_;
    counting_ = o.counting_;
    debug_ = o.debug_;
    purpose_ = std::move(o.purpose_);
    blocks_ = std::move(o.blocks_);
    o.base_ = nullptr;
    o.capacity_ = o.used_ = 0;
    o.counting_ = o.debug_ = false;
    o.blocks_.clear();
  }
  return *this;
}

void* DeviceArena::allocate(size_t bytes, const char* what) {
  const size_t need = arena_round(bytes == 0 ? 1 : bytes);
  if ((base_ == nullptr && !debug_) || need > capacity_ - used_)
    throw Error(str("device arena (", purpose_, ") exhausted: ", what, " needs ", format_bytes(need), " but ",
                    format_bytes(capacity_ - used_), " of ", format_bytes(capacity_),
                    " are left (the memory plan under-counted: an internal error, please report it)"));
  if (debug_) {
    const size_t exact = bytes == 0 ? 1 : bytes;  // exactly what was asked: memcheck flags the first byte past it
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, exact);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw OutOfMemory(str("STOKE_ARENA_DEBUG: cannot cudaMalloc ", format_bytes(exact), " for ", what, " (", purpose_,
                            "): ", cudaGetErrorName(e)));
    }
    blocks_.push_back({p, exact});
    used_ += need;
    return p;
  }
  void* p = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(base_) + used_);
  used_ += need;
  return p;
}

PlannedPointers allocate_plan(const ArenaPlan& plan, DeviceArena& a, bool per_tensor) {
  static_assert(arena_round(1) == static_cast<size_t>(arena_rounded(1)) && DeviceArena::kAlign == 256);
  PlannedPointers out;
  const auto& T = plan.activations.tensors;
  out.tensors.assign(T.size(), nullptr);
  for (const ArenaRegion& r : plan.regions) {
    if (r.id != Region::activations || !per_tensor) {
      out.regions.push_back(a.allocate(static_cast<size_t>(r.bytes), r.what));
      if (r.id != Region::activations) continue;
      auto* base = static_cast<std::byte*>(out.regions.back());
      for (size_t t = 0; t < T.size(); ++t) out.tensors[t] = base + T[t].offset;
      continue;
    }
    out.regions.push_back(nullptr);  // debug: no shared region, one allocation per tensor
    for (size_t t = 0; t < T.size(); ++t)
      if (T[t].is_allocation()) out.tensors[t] = a.allocate(static_cast<size_t>(T[t].bytes), T[t].name.c_str());
    for (size_t t = 0; t < T.size(); ++t)
      if (!T[t].is_allocation())
        out.tensors[t] = static_cast<std::byte*>(out.tensors[static_cast<size_t>(T[t].view_of)]) +
                         (T[t].offset - T[static_cast<size_t>(T[t].view_of)].offset);
  }
  return out;
}

}  // namespace stoke::cuda
