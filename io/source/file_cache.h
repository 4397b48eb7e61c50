// Folders of small JPEGs, read once: a Source wrapper that keeps each sample's file bytes (still encoded) in
// memory after its first read, so later epochs cost no open/read/close per file.
//
// Why: for 64x64 or 28x28 JPEGs the per-file system calls cost as much as decoding (docs/PERFORMANCE.md):
// 2 decoders over a 64x64 folder reached 0.57 of raw libjpeg-turbo speed against 0.86 from a pack. Encoded
// bytes are small (MedNIST: 58,954 files, ~110 MB; MNIST: 70,000 files, ~45 MB), so keeping them costs little
// memory and makes every epoch after the first as fast as a pack, with no `stoke pack` step for the user.
//
// Memory: one reservation of `budget` bytes of address space (mmap, MAP_NORESERVE), filled by an atomic bump
// pointer; pages are only touched as files are stored. When the budget is spent the remaining samples are read
// from disk as before (a partial cache, first come first kept). Files over 16 MiB are never kept.
//
// Thread safety: read() may be called from any number of threads. A sample is published with a release store
// of its (offset, length) after its bytes are copied; readers acquire it. Two threads reading the same uncached
// sample at once both store it; the loser's copy is wasted space, never a wrong answer.
//
// Semantics: once kept, a sample is served from memory even if its file is later changed or deleted (nothing is
// lost mid-run). Failed reads are not kept (the decoder pool marks bad samples itself).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "io/source/source.h"

namespace stoke::io {

class FileCacheSource final : public Source {
 public:
  // Throws stoke::Error when the address space cannot be reserved.
  FileCacheSource(std::shared_ptr<const Source> base, int64_t budget_bytes);
  ~FileCacheSource() override;
  FileCacheSource(const FileCacheSource&) = delete;
  FileCacheSource& operator=(const FileCacheSource&) = delete;

  int64_t size() const override { return base_->size(); }
  int32_t label(int64_t i) const override { return base_->label(i); }
  const std::vector<std::string>& classes() const override { return base_->classes(); }
  std::string name(int64_t i) const override { return base_->name(i); }
  std::string description() const override;
  // A kept sample: a view of the cache (valid while this object lives), no system call. Otherwise the base's
  // read, then the bytes are kept when the budget allows.
  ReadStatus read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                  std::string* error) const override;
  // Loads a kept sample's slot and first bytes into the cache (the pool calls it one sample ahead).
  void prefetch(int64_t i) const override;

  struct Stats {
    int64_t kept = 0;        // samples in memory
    int64_t kept_bytes = 0;  // their bytes (what the cache holds, with alignment and lost races)
    int64_t hits = 0;        // reads served from memory
    int64_t misses = 0;      // reads that went to the base
    bool full = false;       // the budget was reached: some samples are read from disk every time
  };
  Stats stats() const;
  int64_t budget() const { return budget_; }

 private:
  static constexpr int kLengthBits = 24;  // up to 16 MiB per file
  std::shared_ptr<const Source> base_;
  int64_t budget_ = 0;
  uint8_t* memory_ = nullptr;
  mutable std::atomic<int64_t> used_{0};
  mutable std::unique_ptr<std::atomic<uint64_t>[]> slots_;  // (offset << 24 | length), 0 = not kept
  mutable std::atomic<int64_t> kept_{0}, misses_{0};
  // Hits are counted in per-thread shards: one shared counter bounced its cache line between the decoders on
  // every sample.
  struct alignas(64) Counter {
    std::atomic<int64_t> v{0};
  };
  static constexpr int kHitShards = 16;
  mutable Counter hits_[kHitShards];
  mutable std::atomic<bool> full_{false};
};

// Bytes of memory this process may still use now: MemAvailable from /proc/meminfo, lowered to what the cgroup's
// limit leaves (cgroup v2 memory.max - memory.current, or v1 memory.limit_in_bytes - memory.usage_in_bytes) when
// the process runs in a container with a memory limit. 0 when unknown.
int64_t available_memory_bytes();
// The same from other files (tests): a meminfo file and a cgroup folder ("" or missing files: no limit).
int64_t available_memory_bytes_from(const std::string& meminfo, const std::string& cgroup_dir);

// The default budget for folder sources: a quarter of the available memory, at most 4 GiB (0 when unknown).
int64_t default_file_cache_budget();

}  // namespace stoke::io
