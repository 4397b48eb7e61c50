#include "base/fs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "base/error.h"

namespace stoke {
namespace {
std::atomic<int64_t> g_fail_after{-1};

// write(2) until done, honouring the injected failure.
bool write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    size_t chunk = n;
    int64_t budget = g_fail_after.load();
    if (budget >= 0) {
      if (budget == 0) {
        errno = ENOSPC;
        return false;
      }
      chunk = std::min<size_t>(chunk, static_cast<size_t>(budget));
      g_fail_after.store(budget - static_cast<int64_t>(chunk));
    }
    ssize_t w = ::write(fd, p, chunk);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}
}  // namespace

void inject_write_failure_after(int64_t bytes) { g_fail_after.store(bytes); }

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw Error(str("cannot open folder ", dir, ": ", std::strerror(errno)));
  if (::fsync(fd) != 0 && errno != EINVAL) {
    int e = errno;
    ::close(fd);
    throw Error(str("cannot fsync folder ", dir, ": ", std::strerror(e)));
  }
  ::close(fd);
}

namespace {
// Writes `path` through a temporary file and a rename, so a reader sees the old content or the new, never a
// torn file. `durable` adds the fsyncs (file, then folder) that make the new content survive a power cut.
void write_replacing(const std::string& path, const void* data, size_t size, bool durable) {
  const std::string tmp = path + ".tmp";
  // A leftover temporary (a write killed midway) is removed, never written through: were it a link, O_TRUNC would
  // empty whatever it points at. O_EXCL | O_NOFOLLOW then create a new plain file or fail.
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT)
    throw Error(str("cannot write ", path, ": cannot remove the leftover ", tmp, ": ", std::strerror(errno)));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(str("cannot write ", tmp, ": ", std::strerror(errno)));
  bool ok = write_all(fd, static_cast<const uint8_t*>(data), size);
  int err = errno;
  if (ok && durable && ::fsync(fd) != 0) {
    ok = false;
    err = errno;
  }
  if (::close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    throw Error(str("cannot write ", path, ": ", std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    throw Error(str("cannot rename ", tmp, " to ", path, ": ", std::strerror(err)));
  }
  if (durable) fsync_dir(std::filesystem::path(path).parent_path().string());
}
}  // namespace

void atomic_write_file(const std::string& path, const void* data, size_t size) {
  write_replacing(path, data, size, true);
}

void write_file(const std::string& path, const void* data, size_t size) { write_replacing(path, data, size, false); }

void durable_rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    throw Error(str("cannot rename ", from, " to ", to, ": ", std::strerror(errno)));
  fsync_dir(std::filesystem::path(to).parent_path().string());
}

namespace {
std::atomic<uint64_t> g_read_file_bytes{0};
}  // namespace

uint64_t read_file_total_bytes() { return g_read_file_bytes.load(std::memory_order_relaxed); }

namespace {

template <class Bytes>
Bytes read_whole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str("cannot read ", path, ": ", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(str("cannot stat ", path, ": ", std::strerror(e)));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error(str("cannot read ", path, ": ", std::strerror(EISDIR)));
  }
  // Read the size fstat gave, then on until end of file: a file that grew while we read it is read whole, and
  // files whose size fstat does not know (/proc, pipes) too.
  Bytes data(st.st_size > 0 ? static_cast<size_t>(st.st_size) : size_t{65536});
  size_t got = 0;
  for (;;) {
    if (got == data.size()) data.resize(data.size() * 2);
    ssize_t n = ::read(fd, data.data() + got, data.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      throw Error(str("cannot read ", path, ": ", std::strerror(e)));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  data.resize(got);
  g_read_file_bytes.fetch_add(got, std::memory_order_relaxed);
  return data;
}
}  // namespace

std::vector<uint8_t> read_file(const std::string& path) { return read_whole<std::vector<uint8_t>>(path); }
FileBytes read_file_bytes(const std::string& path) { return read_whole<FileBytes>(path); }

uint64_t fnv1a64(const void* data, size_t size, uint64_t seed) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < size; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(str("cannot open lock file ", path, ": ", std::strerror(errno)));
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno == EINTR) continue;
    const int err = errno;
    ::close(fd_);
    throw Error(str("cannot lock ", path, ": ", std::strerror(err)));
  }
}

std::unique_ptr<FileLock> FileLock::try_lock(const std::string& path, const std::string& note, std::string* holder) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) throw Error(str("cannot open lock file ", path, ": ", std::strerror(errno)));
  int r;
  while ((r = ::flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
  }
  if (r != 0) {
    const int err = errno;
    std::string text;
    char buf[256];
    const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    if (n > 0) text.assign(buf, static_cast<size_t>(n));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
    ::close(fd);
    if (err != EWOULDBLOCK) throw Error(str("cannot lock ", path, ": ", std::strerror(err)));
    if (holder) *holder = text.empty() ? "another process" : text;
    return nullptr;
  }
  std::unique_ptr<FileLock> lock(new FileLock());
  lock->fd_ = fd;
  // Best effort: the note only names the holder in the next one's message; the lock is the flock itself.
  const std::string line = note + "\n";
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] const ssize_t w = ::pwrite(fd, line.data(), line.size(), 0);
  }
  return lock;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the last descriptor releases the lock
}

std::string create_unique_directory(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (ec) throw UserError(str("cannot create folder ", parent.string(), ": ", ec.message()));
  for (int n = 1; n <= 10000; ++n) {
    const std::string candidate = n == 1 ? path : str(path, "-", n);
    if (::mkdir(candidate.c_str(), 0777) == 0) return candidate;
    if (errno != EEXIST) throw UserError(str("cannot create folder ", candidate, ": ", std::strerror(errno)));
  }
  throw UserError(str("cannot create folder ", path, ": it and ", path, "-2 .. -10000 all exist"));
}

}  // namespace stoke
