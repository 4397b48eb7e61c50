// One device-memory arena, sized from a plan and allocated once: a bump allocator with 256-byte alignment.
//
// Planning runs the same sequence of allocations twice: first on a counting arena (DeviceArena::counting()),
// which hands out fake addresses and only adds up the bytes, then on a real arena of exactly that size.
// Nothing is freed piecemeal: the arena dies whole. No cudaMalloc happens after construction, so a training
// step never allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace stoke::cuda {

class DeviceArena {
 public:
  static constexpr size_t kAlign = 256;  // cuDNN/cuBLASLt's preferred alignment; 16-byte vector loads

  // A counting arena: allocate() returns distinct, aligned but unusable addresses and records the total.
  static DeviceArena counting();
  // One cudaMalloc of `bytes` on the current device. Throws stoke::Error naming `purpose`, the bytes asked for
  // and the bytes free when the device cannot provide them.
  DeviceArena(size_t bytes, std::string purpose);
  DeviceArena() = default;  // empty; allocate() fails on it
  ~DeviceArena();
  DeviceArena(DeviceArena&& o) noexcept;
  DeviceArena& operator=(DeviceArena&& o) noexcept;
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // `bytes` rounded up to kAlign. Throws stoke::Error (what, bytes needed, bytes free) when exhausted.
  void* allocate(size_t bytes, const char* what);
  template <typename T>
  T* alloc(size_t count, const char* what) {
    return static_cast<T*>(allocate(count * sizeof(T), what));
  }

  bool is_counting() const { return counting_; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  void* base() const { return base_; }

 private:
  void release() noexcept;
  void* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
  bool counting_ = false;
  std::string purpose_;
};

// Bytes rounded up to the arena's alignment.
constexpr size_t arena_round(size_t bytes) { return (bytes + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign; }

}  // namespace stoke::cuda
