#include "io/datasets/synthetic_tree.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "base/error.h"
#include "base/fs.h"
#include "io/codec/jpeg.h"
#include "base/parallel.h"

namespace stoke::io {

namespace fs = std::filesystem;

bool write_synthetic_tree(const SyntheticTree& t, const std::function<std::vector<uint8_t>(int, int64_t)>& jpeg,
                          const std::function<void(int64_t, int64_t)>& progress) {
  const fs::path out(t.out_dir);
  std::error_code ec;
  if (fs::exists(out / t.marker_file, ec)) {
    std::vector<uint8_t> old = read_file((out / t.marker_file).string());
    if (std::string(old.begin(), old.end()) == t.marker) return false;
    throw UserError(str(t.out_dir, " already holds a different ", t.what, " (see ", (out / t.marker_file).string(),
                        "): choose another folder or delete it"));
  }
  const bool splitting = t.split == SyntheticSplit::train_val_test;
  for (const char* sp : splitting ? std::vector<const char*>{"train/", "val/", "test/"} : std::vector<const char*>{""})
    for (const std::string& cname : t.classes) {
      const fs::path dir = out / (sp + cname);
      fs::create_directories(dir, ec);
      if (ec) throw Error(str("cannot create ", dir.string(), ": ", ec.message()));
    }
  // Per class: val and test 10% each (rounded down, at least one), train the rest — the last images held out.
  auto split_of = [&](size_t cls, int64_t k) -> const char* {
    if (!splitting) return "";
    const int64_t held = synthetic_split_held_out(t.per_class[cls]), train = t.per_class[cls] - 2 * held;
    return k < train ? "train/" : k < train + held ? "val/" : "test/";
  };
  std::vector<int64_t> start(t.per_class.size() + 1, 0);
  for (size_t c = 0; c < t.per_class.size(); ++c) start[c + 1] = start[c] + t.per_class[c];
  const int64_t count = start.back();
  const std::string root = out.string();
  auto write_one = [&](int64_t g) {
    const size_t cls = static_cast<size_t>(std::upper_bound(start.begin(), start.end(), g) - start.begin() - 1);
    const int64_t k = g - start[cls];
    const std::vector<uint8_t> bytes = jpeg(static_cast<int>(cls), k);
    char name[32];
    std::snprintf(name, sizeof name, "/%06lld.jpeg", static_cast<long long>(k));
    write_file(str(root, "/", split_of(cls, k), t.classes[cls], name), bytes.data(), bytes.size());
  };
  if (progress) progress(0, count);
  for (int64_t b = 0; b < count; b += t.chunk) {
    const int64_t e = std::min(count, b + t.chunk);
    parallel_for(e - b, t.grain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) write_one(b + i);
    });
    if (progress) progress(e, count);
  }
  write_file((out / t.marker_file).string(), t.marker.data(), t.marker.size());
  return true;
}

}  // namespace stoke::io
