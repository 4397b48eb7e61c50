// Helpers shared by tests: temporary folders, tiny JPEG ImageFolders, running the stoke binary.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "base/fs.h"
#include "base/rng.h"
#include "io/codec/jpeg.h"

namespace stoke::test {

namespace fs = std::filesystem;

// The build tree (for the stoke binary and shared test data); $STOKE_BINARY_DIR overrides.
inline std::string binary_dir() {
  if (const char* b = std::getenv("STOKE_BINARY_DIR"); b && *b) return b;
  return STOKE_TEST_BINARY_DIR;
}

// Where the MNIST download and JPEG tree for tests live: shared by every test binary of a build tree.
inline std::string mnist_test_root() { return binary_dir() + "/test-data/mnist"; }

// A fresh, empty folder under the build tree (or /tmp), removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    fs::path base = fs::path(binary_dir()) / "test-tmp";
    path_ = base / (tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Writes root/<class>/<i>.jpg: `per_class` gray images of h x w whose brightness pattern depends on the class.
inline void write_tiny_folder(const fs::path& root, const std::vector<std::string>& classes, int per_class, int h = 12,
                              int w = 12) {
  for (size_t c = 0; c < classes.size(); ++c) {
    fs::create_directories(root / classes[c]);
    for (int i = 0; i < per_class; ++i) {
      std::vector<uint8_t> px(static_cast<size_t>(h * w));
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          px[static_cast<size_t>(y * w + x)] =
              static_cast<uint8_t>(((c % 2 == 0) ? (x * 255 / w) : (y * 255 / h)) / 2 + 60 * c % 128 +
                                   uniform_below(c * 1000 + i, y * w + x, 20));
      std::vector<uint8_t> jpg = io::encode_jpeg(px.data(), h, w, 1, 90);
      write_file((root / classes[c] / (std::to_string(i) + ".jpg")).string(), jpg.data(), jpg.size());
    }
  }
}

// Relative path -> bytes of every file under root (to compare written trees byte for byte).
inline std::map<std::string, std::vector<uint8_t>> read_tree(const fs::path& root) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file()) files[fs::relative(e.path(), root).string()] = read_file(e.path().string());
  return files;
}

// A file's bytes as a string: text to search or parse, or bytes to compare.
inline std::string file_bytes(const std::string& path) {
  const std::vector<uint8_t> b = read_file(path);
  return std::string(b.begin(), b.end());
}

// How many times `what` occurs in s, without overlaps.
inline size_t count_of(const std::string& s, const std::string& what) {
  size_t k = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++k;
  return k;
}

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs the stoke binary with arguments (quoted naively: tests use plain paths).
inline RunResult run_stoke(const std::string& args) {
  std::string cmd = binary_dir() + "/bin/stoke " + args + " 2>&1";
  RunResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, got);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace stoke::test
