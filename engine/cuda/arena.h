// One device-memory arena, sized from a plan and allocated once: a bump allocator with 256-byte alignment.
//
// Planning runs the same sequence of allocations twice: first on a counting arena (DeviceArena::counting()),
// which hands out fake addresses and only adds up the bytes, then on a real arena of exactly that size.
// Nothing is freed piecemeal: the arena dies whole. No cudaMalloc happens after construction, so a training
// step never allocates.
//
// Debug mode (STOKE_ARENA_DEBUG=1, read when a real arena is made): compute-sanitizer's memcheck only sees
// cudaMalloc'd blocks, so inside one arena a write past a sub-allocation lands in its neighbour unseen. In debug
// mode every allocate() is its own cudaMalloc of exactly the bytes asked for (no rounding), so memcheck reports
// any access past it. Same capacity accounting, so an under-counted plan still fails the same way; slower to
// build (one cudaMalloc per buffer), never for training runs.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/cuda/arena_plan.h"

namespace stoke::cuda {

class DeviceArena {
 public:
  static constexpr size_t kAlign = 256;  // cuDNN/cuBLASLt's preferred alignment; 16-byte vector loads

  // A counting arena: allocate() returns distinct, aligned but unusable addresses and records the total.
  static DeviceArena counting();
  // One cudaMalloc of `bytes` on the current device. Throws stoke::Error naming `purpose`, the bytes asked for
  // and the bytes free when the device cannot provide them.
  // debug: one cudaMalloc per allocate() (see above); by default from STOKE_ARENA_DEBUG.
  DeviceArena(size_t bytes, std::string purpose, bool debug = debug_from_env());
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

  // Zeroes every byte handed out (and the whole block outside debug mode), on `stream`.
  void zero(cudaStream_t stream);

  // True when STOKE_ARENA_DEBUG is set to anything but "" or "0".
  static bool debug_from_env();

  bool is_counting() const { return counting_; }
  bool is_debug() const { return debug_; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  void* base() const { return base_; }  // null in debug mode (no single block)

 private:
  void release() noexcept;
  void* base_ = nullptr;
  size_t capacity_ = 0, used_ = 0;
  bool counting_ = false, debug_ = false;
  std::string purpose_;
  struct Block {
    void* ptr;
    size_t bytes;
  };
  std::vector<Block> blocks_;  // debug mode: every allocation
};

// Where allocate_plan put each region and each planned activation tensor.
struct PlannedPointers {
  std::vector<void*> regions;  // per ArenaPlan::regions entry
  std::vector<void*> tensors;  // per ArenaPlan::activations.tensors entry (views inside their buffer; null: none)
};

// Allocates `plan`'s regions from `a` in order: the CUDA executor's whole layout. per_tensor (debug mode): every
// planned activation tensor gets an allocation of its own instead of its place in the shared activation region,
// so compute-sanitizer sees an overrun of any one of them (memory is then not reused across liveness).
PlannedPointers allocate_plan(const ArenaPlan& plan, DeviceArena& a, bool per_tensor);

// Bytes rounded up to the arena's alignment.
constexpr size_t arena_round(size_t bytes) {
  return (bytes + DeviceArena::kAlign - 1) / DeviceArena::kAlign * DeviceArena::kAlign;
}

}  // namespace stoke::cuda
