#include "io/source/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include "base/error.h"
#include "base/fs.h"
#include "io/codec/codec.h"

namespace stoke::io {

namespace fs = std::filesystem;

namespace {

bool is_hidden(const std::string& name) { return !name.empty() && name[0] == '.'; }

// The names of the entries of `dir` (not hidden) for which keep(entry) holds, sorted by byte order.
template <typename Keep>
std::vector<std::string> list_dir(const fs::path& dir, Keep keep) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw UserError(str("cannot read folder ", dir.string(), ": ", ec.message()));
  std::vector<std::string> names;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    std::string name = it->path().filename().string();
    if (is_hidden(name)) continue;
    if (keep(*it, name)) names.push_back(std::move(name));
  }
  if (ec) throw UserError(str("cannot read folder ", dir.string(), ": ", ec.message()));
  std::sort(names.begin(), names.end());  // std::string compares as unsigned bytes
  return names;
}

}  // namespace

ImageFolder index_image_folder(const std::string& root) {
  std::error_code ec;
  const fs::path rootp(root);
  const fs::file_status st = fs::status(rootp, ec);
  if (st.type() == fs::file_type::not_found) throw UserError(str("no such folder: ", root));
  if (ec || st.type() == fs::file_type::none)
    throw UserError(str("cannot read folder ", root, ": ", ec.message()));
  if (!fs::is_directory(st)) throw UserError(str(root, " is not a folder"));

  ImageFolder folder;
  folder.root = root;
  folder.classes = list_dir(rootp, [](const fs::directory_entry& e, const std::string&) {
    std::error_code e2;
    return e.is_directory(e2);  // follows symlinks
  });
  if (folder.classes.empty())
    throw UserError(str(root, " holds no class folders (expected ", root, "/<class>/*.jpg)"));

  for (size_t k = 0; k < folder.classes.size(); ++k) {
    const std::string& cls = folder.classes[k];
    const fs::path dir = rootp / cls;
    std::vector<std::string> files = list_dir(dir, [](const fs::directory_entry& e, const std::string& name) {
      if (!has_image_extension(name)) return false;
      std::error_code e2;
      return e.is_regular_file(e2);  // follows symlinks
    });
    if (files.empty()) throw UserError(str("class '", cls, "' in ", root, " holds no ", image_extensions(), " images"));
    folder.class_counts.push_back(static_cast<int64_t>(files.size()));
    for (const std::string& f : files) folder.samples.push_back(Sample{(dir / f).string(), static_cast<int32_t>(k)});
  }
  return folder;
}

DataShape probe_shape(const ImageFolder& folder, int max_probe) {
  const size_t n = folder.samples.size();
  if (n == 0) throw UserError(str(folder.root, " holds no images"));
  const size_t nprobe = std::min(n, static_cast<size_t>(std::max(1, max_probe)));
  // Spread the probes over the whole list so every class (and its colour) has a say.
  std::map<std::pair<int, int>, int> votes;
  std::pair<int, int> best{0, 0};
  int best_votes = 0;
  bool all_gray = true;
  int ok = 0;
  std::string first_error;
  for (size_t i = 0; i < nprobe; ++i) {
    const Sample& s = folder.samples[i * n / nprobe];
    std::string err;
    ImageInfo info;
    bool good = false;
    try {
      std::vector<uint8_t> bytes = read_file(s.path);
      good = image_info(bytes.data(), bytes.size(), info, &err);
    } catch (const Error& e) {
      err = e.what();
    }
    if (!good) {
      if (first_error.empty()) first_error = str(s.path, ": ", err);
      continue;
    }
    ++ok;
    if (!is_gray(info)) all_gray = false;
    int v = ++votes[{info.h, info.w}];
    if (v > best_votes) {  // ties go to the shape seen first
      best_votes = v;
      best = {info.h, info.w};
    }
  }
  if (ok == 0) throw UserError(str("cannot read any image header in ", folder.root, " (", first_error, ")"));
  return DataShape{best.first, best.second, all_gray ? 1 : 3};
}

}  // namespace stoke::io
