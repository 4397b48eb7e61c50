#include "io/source/file_cache.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "base/error.h"

namespace stoke::io {

namespace {

constexpr int64_t kAlign = 16;

// This thread's hit counter shard: threads take shards in the order they first count.
int hit_shard(int shards) {
  static std::atomic<int> next{0};
  thread_local const int mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine % shards;
}

}  // namespace

namespace {

// The first number in a file ("max" or anything unreadable: -1).
int64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word.empty() || word.find_first_not_of("0123456789") != std::string::npos) return -1;
  try {
    return std::stoll(word);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

int64_t available_memory_bytes_from(const std::string& meminfo, const std::string& cgroup_dir) {
  int64_t avail = 0;
  {
    std::ifstream in(meminfo);
    std::string key, unit;
    int64_t kb = 0;
    while (in >> key >> kb >> unit)
      if (key == "MemAvailable:") {
        avail = kb * 1024;
        break;
      }
  }
  if (cgroup_dir.empty()) return avail;
  // cgroup v2, then v1 (a v1 "no limit" is a huge number: it never wins the min).
  for (const auto& [limit_file, usage_file] :
       {std::pair{"/memory.max", "/memory.current"},
        std::pair{"/memory/memory.limit_in_bytes", "/memory/memory.usage_in_bytes"}}) {
    const int64_t limit = read_number(cgroup_dir + limit_file), used = read_number(cgroup_dir + usage_file);
    if (limit > 0 && used >= 0) {
      const int64_t left = std::max<int64_t>(limit - used, 0);
      return avail > 0 ? std::min(avail, left) : left;
    }
  }
  return avail;
}

int64_t available_memory_bytes() { return available_memory_bytes_from("/proc/meminfo", "/sys/fs/cgroup"); }

int64_t default_file_cache_budget() {
  const int64_t avail = available_memory_bytes();
  return std::min<int64_t>(avail / 4, int64_t{4} << 30);
}

FileCacheSource::FileCacheSource(std::shared_ptr<const Source> base, int64_t budget_bytes)
    : base_(std::move(base)), budget_(std::max<int64_t>(budget_bytes, 0)) {
  STOKE_CHECK(base_ != nullptr);
  slots_.reset(new std::atomic<uint64_t>[static_cast<size_t>(std::max<int64_t>(base_->size(), 1))]);
  for (int64_t i = 0; i < base_->size(); ++i) slots_[static_cast<size_t>(i)].store(0, std::memory_order_relaxed);
  if (budget_ > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(budget_), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
      throw Error(
          str("cannot reserve ", budget_ >> 20, " MiB of address space for the file cache: ", std::strerror(errno)));
    memory_ = static_cast<uint8_t*>(p);
    // Samples are read in shuffled order: with 4 KiB pages nearly every small file costs a TLB miss. The bump
    // pointer fills the region in order, so huge pages waste at most one partly used page. Only a hint.
    ::madvise(memory_, static_cast<size_t>(budget_), MADV_HUGEPAGE);
  }
}

FileCacheSource::~FileCacheSource() {
  if (memory_) ::munmap(memory_, static_cast<size_t>(budget_));
}

std::string FileCacheSource::description() const { return base_->description(); }

ReadStatus FileCacheSource::read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                                 std::string* error) const {
  std::atomic<uint64_t>& slot = slots_[static_cast<size_t>(i)];
  if (const uint64_t v = slot.load(std::memory_order_acquire); v != 0) {
    hits_[hit_shard(kHitShards)].v.fetch_add(1, std::memory_order_relaxed);
    const uint64_t len = v & ((uint64_t{1} << kLengthBits) - 1), off = v >> kLengthBits;
    bytes = std::span<const uint8_t>(memory_ + off, static_cast<size_t>(len));
    return ReadStatus::ok;
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  const ReadStatus st = base_->read(i, scratch, bytes, error);
  if (st != ReadStatus::ok || bytes.empty() || !memory_ || full_.load(std::memory_order_relaxed) ||
      bytes.size() >= (size_t{1} << kLengthBits))
    return st;
  const int64_t len = static_cast<int64_t>(bytes.size());
  const int64_t need = (len + kAlign - 1) / kAlign * kAlign;
  const int64_t off = used_.fetch_add(need, std::memory_order_relaxed);
  if (off + need > budget_) {
    full_.store(true, std::memory_order_relaxed);
    return st;
  }
  std::memcpy(memory_ + off, bytes.data(), static_cast<size_t>(len));
  uint64_t expected = 0;
  const uint64_t v = (static_cast<uint64_t>(off) << kLengthBits) | static_cast<uint64_t>(len);
  if (slot.compare_exchange_strong(expected, v, std::memory_order_release, std::memory_order_relaxed)) {
    kept_.fetch_add(1, std::memory_order_relaxed);
    bytes = std::span<const uint8_t>(memory_ + off, static_cast<size_t>(len));  // the kept copy: scratch is free again
  }
  return st;
}

void FileCacheSource::prefetch(int64_t i) const {
  const uint64_t v = slots_[static_cast<size_t>(i)].load(std::memory_order_relaxed);
  if (v == 0) return;
  const uint64_t len = v & ((uint64_t{1} << kLengthBits) - 1), off = v >> kLengthBits;
  prefetch_bytes(memory_ + off, static_cast<size_t>(len));
}

FileCacheSource::Stats FileCacheSource::stats() const {
  Stats s;
  s.kept = kept_.load(std::memory_order_relaxed);
  s.kept_bytes = std::min(used_.load(std::memory_order_relaxed), budget_);
  for (const Counter& h : hits_) s.hits += h.v.load(std::memory_order_relaxed);
  s.misses = misses_.load(std::memory_order_relaxed);
  s.full = full_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace stoke::io
