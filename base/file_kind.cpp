#include "base/file_kind.h"

#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "base/error.h"

namespace stoke {

std::string non_regular_kind(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "";
  if (S_ISREG(st.st_mode)) return "";
  if (S_ISLNK(st.st_mode)) {
    std::vector<char> target(static_cast<size_t>(st.st_size > 0 ? st.st_size : 255) + 1);
    const ssize_t n = ::readlink(path.c_str(), target.data(), target.size() - 1);
    return n < 0 ? "a symbolic link" : "a symbolic link to " + std::string(target.data(), static_cast<size_t>(n));
  }
  if (S_ISDIR(st.st_mode)) return "a folder";
  if (S_ISFIFO(st.st_mode)) return "a FIFO";
  if (S_ISCHR(st.st_mode)) return "a character device";
  if (S_ISBLK(st.st_mode)) return "a block device";
  if (S_ISSOCK(st.st_mode)) return "a socket";
  return "not a regular file";
}

void check_output_path(const std::string& path, const std::string& flag) {
  const std::string kind = non_regular_kind(path);
  if (!kind.empty())
    throw UserError(str(flag, " ", path, " is ", kind,
                        ": refusing to replace it (an output goes to a new path or over a regular file)"));
}

}  // namespace stoke
