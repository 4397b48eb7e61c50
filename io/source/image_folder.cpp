#include "io/source/image_folder.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include <sys/stat.h>

#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "io/codec/codec.h"
#include "io/source/display_name.h"
#include "io/source/source.h"

namespace stoke::io {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (char& ch : s)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return s;
}

// Hidden files and folders, and what operating systems and NAS boxes leave in folders they touch.
bool is_hidden_or_system(const std::string& name) {
  if (name.empty() || name[0] == '.') return true;  // .DS_Store, ._x (AppleDouble), .git, .ipynb_checkpoints
  static const char* const kSystem[] = {"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir",
                                        "$recycle.bin", "system volume information", "icon\r"};
  const std::string l = lower(name);
  for (const char* s : kSystem)
    if (l == s) return true;
  return false;
}

// What an entry is, links followed.
enum class Kind { folder, file, dangling, other, error };

Kind kind_of(const fs::directory_entry& e, std::string* detail) {
  std::error_code ec;
  const fs::file_status st = e.status(ec);  // follows links
  if (st.type() == fs::file_type::not_found) {
    std::error_code ec2;
    if (e.is_symlink(ec2)) return Kind::dangling;
  }
  if (ec || st.type() == fs::file_type::none || st.type() == fs::file_type::not_found) {
    *detail = ec ? ec.message() : "cannot examine it";
    return Kind::error;
  }
  if (st.type() == fs::file_type::directory) return Kind::folder;
  if (st.type() == fs::file_type::regular) return Kind::file;
  *detail = "neither a file nor a folder";
  return Kind::other;
}

struct DirEntry {
  std::string name;
  fs::directory_entry entry;
};

// The entries of `dir` sorted by name (byte order). Throws UserError when the folder cannot be listed.
std::vector<DirEntry> list_dir(const fs::path& dir, std::string* failure = nullptr) {
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  std::vector<DirEntry> out;
  if (!ec) {
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      if (ec) break;
      out.push_back(DirEntry{it->path().filename().string(), *it});
    }
  }
  if (ec) {
    if (failure) {
      *failure = ec.message();
      return {};
    }
    throw UserError(str("cannot read folder ", display_name(dir.string()), ": ", ec.message()));
  }
  std::sort(out.begin(), out.end(), [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  return out;
}

// (device, inode) of a folder, links followed: to stop at a link back to a folder above.
std::pair<uint64_t, uint64_t> folder_id(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return {0, 0};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

struct ClassWalk {
  ImageFolder& folder;
  LeftOutCounts& counts;
  std::vector<std::pair<std::string, std::vector<std::string>>> dirs;  // folder path -> image file names
  std::vector<std::pair<uint64_t, uint64_t>> above;                    // folders being walked (for link loops)

  void leave_out(const fs::path& p, LeftOutReason r, std::string detail = {}) {
    counts.by_reason[static_cast<size_t>(r)]++;
    folder.left_out.push_back(LeftOut{p.string(), r, std::move(detail)});
  }

  void walk(const fs::path& dir, const std::vector<DirEntry>& entries) {
    above.push_back(folder_id(dir));
    std::vector<std::string> images;
    for (const DirEntry& d : entries) {
      const fs::path p = dir / d.name;
      if (is_hidden_or_system(d.name)) {
        leave_out(p, LeftOutReason::hidden_or_system);
        continue;
      }
      std::string detail;
      switch (kind_of(d.entry, &detail)) {
        case Kind::dangling:
          leave_out(p, LeftOutReason::dangling_link);
          break;
        case Kind::error:
        case Kind::other:
          leave_out(p, LeftOutReason::unreadable, detail);
          break;
        case Kind::file:
          if (has_image_extension(d.name))
            images.push_back(d.name);
          else
            leave_out(p, LeftOutReason::other_extension);
          break;
        case Kind::folder: {
          const auto id = folder_id(p);
          if (std::find(above.begin(), above.end(), id) != above.end()) {
            leave_out(p, LeftOutReason::unreadable, "a link back to a folder above it");
            break;
          }
          std::string failure;
          const std::vector<DirEntry> sub = list_dir(p, &failure);
          if (!failure.empty())
            leave_out(p, LeftOutReason::unreadable, failure);
          else
            walk(p, sub);
          break;
        }
      }
    }
    if (!images.empty()) dirs.emplace_back(dir.string(), std::move(images));
    above.pop_back();
  }
};

// A folder that holds split folders (train/ and val/ or test/) with class folders inside: one level too high.
void reject_split_root(const std::string& root, const std::vector<std::string>& classes) {
  static const char* const kSplits[] = {"train", "val", "valid", "validation", "test"};
  bool train = false, other = false;
  for (const std::string& c : classes) {
    const std::string l = lower(c);
    bool split = false;
    for (const char* s : kSplits) split = split || l == s;
    if (!split) return;  // a real class among them: take the folder as it is
    (l == "train" ? train : other) = true;
  }
  if (!train || !other) return;
  const std::string train_name = *std::find_if(classes.begin(), classes.end(), [](const std::string& c) {
    return lower(c) == "train";
  });
  std::string failure;
  const fs::path train_dir = fs::path(root) / train_name;
  for (const DirEntry& d : list_dir(train_dir, &failure)) {
    std::string detail;
    if (!is_hidden_or_system(d.name) && kind_of(d.entry, &detail) == Kind::folder) {
      std::string names;
      for (const std::string& c : classes) names += (names.empty() ? "" : ", ") + display_name(c) + "/";
      throw UserError(str(display_name(root), " is one level too high: it holds the splits ", names,
                          " with class folders inside; use ", display_name(train_dir.string()),
                          " as the training folder"));
    }
  }
}

}  // namespace

const char* left_out_reason_name(LeftOutReason r) {
  switch (r) {
    case LeftOutReason::other_extension: return "other extension";
    case LeftOutReason::hidden_or_system: return "hidden/system";
    case LeftOutReason::dangling_link: return "dangling link";
    case LeftOutReason::unreadable: return "unreadable";
    case LeftOutReason::not_in_class: return "not in a class folder";
  }
  return "?";
}

int64_t LeftOutCounts::total() const {
  int64_t t = 0;
  for (int64_t v : by_reason) t += v;
  return t;
}

ImageFolder index_image_folder(const std::string& root) {
  std::error_code ec;
  const fs::path rootp(root);
  const fs::file_status st = fs::status(rootp, ec);
  if (st.type() == fs::file_type::not_found) throw UserError(str("no such folder: ", display_name(root)));
  if (ec || st.type() == fs::file_type::none)
    throw UserError(str("cannot read folder ", display_name(root), ": ", ec.message()));
  if (!fs::is_directory(st)) throw UserError(str(display_name(root), " is not a folder"));

  ImageFolder folder;
  folder.root = root;
  // The root: folders are classes; everything else is left out (and said so).
  auto leave_out_root = [&](const fs::path& p, LeftOutReason r, std::string detail = {}) {
    folder.root_left_out.by_reason[static_cast<size_t>(r)]++;
    folder.left_out.push_back(LeftOut{p.string(), r, std::move(detail)});
  };
  for (const DirEntry& d : list_dir(rootp)) {
    const fs::path p = rootp / d.name;
    if (is_hidden_or_system(d.name)) {
      leave_out_root(p, LeftOutReason::hidden_or_system);
      continue;
    }
    std::string detail;
    switch (kind_of(d.entry, &detail)) {
      case Kind::folder: folder.classes.push_back(d.name); break;
      case Kind::file: leave_out_root(p, LeftOutReason::not_in_class); break;
      case Kind::dangling: leave_out_root(p, LeftOutReason::dangling_link); break;
      case Kind::error:
      case Kind::other: leave_out_root(p, LeftOutReason::unreadable, detail); break;
    }
  }
  if (folder.classes.empty())
    throw UserError(str(display_name(root), " holds no class folders (expected ", display_name(root),
                        "/<class>/*.jpg)"));
  reject_split_root(root, folder.classes);

  folder.class_left_out.resize(folder.classes.size());
  for (size_t k = 0; k < folder.classes.size(); ++k) {
    const std::string& cls = folder.classes[k];
    const fs::path dir = rootp / cls;
    ClassWalk w{folder, folder.class_left_out[k], {}, {}};
    w.walk(dir, list_dir(dir));
    std::sort(w.dirs.begin(), w.dirs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    int64_t n = 0;
    for (const auto& [d, files] : w.dirs) {
      for (const std::string& f : files)
        folder.samples.push_back(Sample{(fs::path(d) / f).string(), static_cast<int32_t>(k)});
      n += static_cast<int64_t>(files.size());
    }
    if (n == 0)
      throw UserError(str("class '", display_name(cls), "' in ", display_name(root), " holds no ", image_extensions(),
                          " images"));
    folder.class_counts.push_back(n);
  }
  return folder;
}

std::string index_summary(const ImageFolder& folder) {
  std::string s = str("indexed ", format_count(static_cast<double>(folder.samples.size())), " images in ",
                      folder.classes.size(), folder.classes.size() == 1 ? " class" : " classes");
  if (folder.left_out.empty()) return s + "; nothing left out";
  LeftOutCounts all = folder.root_left_out;
  for (const LeftOutCounts& c : folder.class_left_out)
    for (int r = 0; r < kLeftOutReasons; ++r) all.by_reason[static_cast<size_t>(r)] += c.by_reason[static_cast<size_t>(r)];
  // The extensions of the files left out for their extension, most frequent first.
  std::map<std::string, int64_t> ext;
  for (const LeftOut& l : folder.left_out) {
    if (l.reason != LeftOutReason::other_extension) continue;
    const std::string name = fs::path(l.path).filename().string();
    const size_t dot = name.rfind('.');
    ext[dot == std::string::npos || dot == 0 ? "(none)" : lower(name.substr(dot))]++;
  }
  std::vector<std::pair<std::string, int64_t>> by_count(ext.begin(), ext.end());
  std::stable_sort(by_count.begin(), by_count.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  s += str("; left out ", format_count(static_cast<double>(all.total())), ":");
  bool first = true;
  for (int r = 0; r < kLeftOutReasons; ++r) {
    const int64_t n = all.by_reason[static_cast<size_t>(r)];
    if (n == 0) continue;
    s += str(first ? " " : ", ", format_count(static_cast<double>(n)), " ",
             left_out_reason_name(static_cast<LeftOutReason>(r)));
    first = false;
    if (static_cast<LeftOutReason>(r) == LeftOutReason::other_extension) {
      s += " (";
      for (size_t i = 0; i < by_count.size() && i < 5; ++i)
        s += str(i ? ", " : "", display_name(by_count[i].first), " ", format_count(static_cast<double>(by_count[i].second)));
      if (by_count.size() > 5) s += ", ...";
      s += ")";
    }
  }
  return s;
}

DataShape probe_shape(const ImageFolder& folder, int max_probe) {
  if (folder.samples.empty()) throw UserError(str(folder.root, " holds no images"));
  return probe_source_shape(FolderSource(folder.samples, folder.classes, folder.root), max_probe);
}

}  // namespace stoke::io
