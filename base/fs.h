// Reading and writing whole files. Every write goes through a temporary file and a rename, so no reader ever
// sees a half-written file. atomic_write_file is also durable (fsync of the file and of its folder): for
// checkpoints, run state and reports, which must survive a crash or power cut. write_file skips the fsyncs:
// for data sets of thousands of files that can be made again, where an fsync per file would cost minutes.
// Errors throw stoke::Error naming the file and the system's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace stoke {

// Atomically replaces `path` with `size` bytes. Throws stoke::Error naming the file and the system's reason
// (e.g. "No space left on device"); on failure the previous content of `path` is untouched and the
// temporary file is removed.
void atomic_write_file(const std::string& path, const void* data, size_t size);
inline void atomic_write_file(const std::string& path, const std::string& text) {
  atomic_write_file(path, text.data(), text.size());
}

// fsync a folder (after renames inside it). Throws stoke::Error.
void fsync_dir(const std::string& dir);

// Renames `from` to `to` (both in the same folder, `to` must not be a non-empty folder) and fsyncs the folder.
void durable_rename(const std::string& from, const std::string& to);

// Temporary file + rename, without fsync (see above). Honours inject_write_failure_after too.
void write_file(const std::string& path, const void* data, size_t size);

// Whole file into memory (also one that grows while being read); throws stoke::Error naming the file.
std::vector<uint8_t> read_file(const std::string& path);

// An allocator whose vectors leave new elements uninitialised: a buffer about to be read into is not zero-filled
// first (for a 100 MB checkpoint file that zero-fill cost as much as the read).
template <class T>
struct NoInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = NoInitAllocator<U>;
  };
  NoInitAllocator() = default;
  template <class U>
  NoInitAllocator(const NoInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using FileBytes = std::vector<uint8_t, NoInitAllocator<uint8_t>>;
// read_file without the zero-fill, for large files (checkpoints).
FileBytes read_file_bytes(const std::string& path);
// The bytes read_file has read in this process (all threads): how a test sees that a file is read once.
uint64_t read_file_total_bytes();

// 64-bit FNV-1a of bytes: the checksum recorded in checkpoint manifests.
uint64_t fnv1a64(const void* data, size_t size, uint64_t seed = 0xcbf29ce484222325ULL);
std::string hex64(uint64_t v);

// An exclusive advisory lock (flock) on `path`, created if absent, held until destruction. For work that
// several processes (or threads) may start at once on the same folder, e.g. two test binaries or two
// `stoke data mnist` fetching and writing one data set: the second waits, then finds the work done.
// flock, not fcntl: fcntl locks belong to the process, so two threads would both get one.
// The kernel releases it when the process dies, however it dies (kill -9 included), so a lock is never left stuck.
class FileLock {
 public:
  explicit FileLock(const std::string& path);  // blocks; throws stoke::Error naming the file
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // Without waiting: the lock, with `note` (who holds it: "pid 123, stoke train") written into the file for the next
  // one to read; or null when someone else holds it, with *holder set to that holder's note. Throws stoke::Error
  // naming the file when it cannot be opened.
  static std::unique_ptr<FileLock> try_lock(const std::string& path, const std::string& note, std::string* holder);

 private:
  FileLock() = default;
  int fd_ = -1;
};

// Creates the folder `path`, or when that exists `path-2`, `path-3`, ... and returns the one it created. Each
// candidate is claimed by mkdir(2), which fails when the name exists, so two processes (or threads) asking for
// the same name at the same moment get two different folders. Parent folders are created as needed. Throws
// stoke::UserError naming the folder when it cannot be created (permissions, a file in the way, no space).
std::string create_unique_directory(const std::string& path);

// Test hook: makes the next writes fail with ENOSPC after `bytes` bytes in total (negative: off).
void inject_write_failure_after(int64_t bytes);

}  // namespace stoke
