#include "io/source/image_folder.h"

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <system_error>
#include <utility>

#include <sys/stat.h>

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "io/codec/codec.h"
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
  static const char* const kSystem[] = {
      "thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx", "@eadir", "$recycle.bin", "system volume information",
      "icon\r"};
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

// (device, inode) of a folder, links followed: the same folder reached by two paths has one id.
using FolderId = std::pair<uint64_t, uint64_t>;
FolderId folder_id(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return {0, 0};
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

bool is_link(const fs::directory_entry& e) {
  std::error_code ec;
  return e.is_symlink(ec);
}

// The root and every folder above it: a link to any of them would index the tree (or more) inside itself.
std::vector<FolderId> root_and_above(const fs::path& root) {
  std::vector<FolderId> out{folder_id(root)};
  std::error_code ec;
  fs::path p = fs::canonical(root, ec);
  if (ec) return out;
  while (p.has_parent_path() && p.parent_path() != p) {
    p = p.parent_path();
    out.push_back(folder_id(p));
  }
  return out;
}

// One candidate class: a folder of the root (a link or not) and what its walk found.
struct Candidate {
  std::string name;
  bool link = false;
  bool refused = false;  // a link not followed: no class
  LeftOutCounts counts;
  std::vector<std::pair<std::string, std::vector<std::string>>> dirs;  // folder path -> image file names
};

// Walks every class, real folders first; links to folders are followed afterwards, in the order met, and only to a
// folder that is not the root, not above the link and not indexed already. Otherwise `ln -s .. cat/up` would file
// every other class's images under cat, and `ln -s . all` would add a class holding every image.
struct Indexer {
  ImageFolder& folder;
  std::vector<Candidate> candidates;
  std::vector<FolderId> above_root;         // root_and_above(root)
  std::map<FolderId, std::string> indexed;  // every folder walked -> the path it was first walked by
  struct Link {
    size_t cls;
    fs::path path;
    std::vector<FolderId> chain;  // the class folder down to the one holding the link; empty for a class
  };
  std::deque<Link> links;

  void leave_out(LeftOutCounts& counts, const fs::path& p, LeftOutReason r, std::string detail = {}) {
    counts.by_reason[static_cast<size_t>(r)]++;
    folder.left_out.push_back(LeftOut{p.string(), r, std::move(detail)});
  }

  // Why the folder `id`, reached through a link (or twice: a bind mount) below `chain`, is not walked; "" if it is.
  std::string refusal(const FolderId& id, const std::vector<FolderId>& chain) const {
    if (id == above_root.front()) return "a link to the root of the data";
    if (std::find(chain.begin(), chain.end(), id) != chain.end() ||
        std::find(above_root.begin(), above_root.end(), id) != above_root.end())
      return "a link to a folder above it";
    const auto it = indexed.find(id);
    if (it != indexed.end()) return str("a link to a folder indexed already: ", display_name(it->second));
    return "";
  }

  void walk(size_t cls, const fs::path& dir, const std::vector<DirEntry>& entries, std::vector<FolderId>& chain) {
    indexed.emplace(chain.back(), dir.string());
    Candidate& c = candidates[cls];
    std::vector<std::string> images;
    for (const DirEntry& d : entries) {
      const fs::path p = dir / d.name;
      if (is_hidden_or_system(d.name)) {
        leave_out(c.counts, p, LeftOutReason::hidden_or_system);
        continue;
      }
      std::string detail;
      switch (kind_of(d.entry, &detail)) {
        case Kind::dangling: leave_out(c.counts, p, LeftOutReason::dangling_link); break;
        case Kind::error:
        case Kind::other: leave_out(c.counts, p, LeftOutReason::unreadable, detail); break;
        case Kind::file:
          if (has_image_extension(d.name))
            images.push_back(d.name);
          else
            leave_out(c.counts, p, LeftOutReason::other_extension);
          break;
        case Kind::folder:
          if (is_link(d.entry))
            links.push_back(Link{cls, p, chain});
          else
            enter(cls, p, chain, false);
          break;
      }
    }
    if (!images.empty()) c.dirs.emplace_back(dir.string(), std::move(images));
  }

  // Walks the folder `p` below `chain` unless it is refused; returns whether it was. A class folder that cannot
  // be listed is an error (list_dir throws), a sub-folder is left out.
  bool enter(size_t cls, const fs::path& p, std::vector<FolderId>& chain, bool class_folder) {
    LeftOutCounts& counts = class_folder ? folder.root_left_out : candidates[cls].counts;
    const FolderId id = folder_id(p);
    if (const std::string why = refusal(id, chain); !why.empty()) {
      leave_out(counts, p, LeftOutReason::link_not_followed, why);
      return false;
    }
    std::string failure;
    const std::vector<DirEntry> sub = list_dir(p, class_folder ? nullptr : &failure);
    if (!failure.empty()) {
      leave_out(counts, p, LeftOutReason::unreadable, failure);
      return false;
    }
    chain.push_back(id);
    walk(cls, p, sub, chain);
    chain.pop_back();
    return true;
  }

  void run(const fs::path& rootp) {
    above_root = root_and_above(rootp);
    indexed.emplace(above_root.front(), rootp.string());
    for (size_t k = 0; k < candidates.size(); ++k)
      if (candidates[k].link) links.push_back(Link{k, rootp / candidates[k].name, {}});
    for (size_t k = 0; k < candidates.size(); ++k) {
      std::vector<FolderId> chain;
      if (!candidates[k].link) enter(k, rootp / candidates[k].name, chain, true);
    }
    while (!links.empty()) {
      Link l = std::move(links.front());
      links.pop_front();
      const bool class_folder = l.chain.empty();  // a class folder that is a link: refused, it is no class
      if (!enter(l.cls, l.path, l.chain, class_folder) && class_folder) candidates[l.cls].refused = true;
    }
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
  const std::string train_name =
      *std::find_if(classes.begin(), classes.end(), [](const std::string& c) { return lower(c) == "train"; });
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
    case LeftOutReason::link_not_followed: return "link not followed";
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
  Indexer ix{folder, {}, {}, {}, {}};
  // The root: folders are classes; everything else is left out (and said so).
  auto leave_out_root = [&](const fs::path& p, LeftOutReason r, std::string detail = {}) {
    ix.leave_out(folder.root_left_out, p, r, std::move(detail));
  };
  for (const DirEntry& d : list_dir(rootp)) {
    const fs::path p = rootp / d.name;
    if (is_hidden_or_system(d.name)) {
      leave_out_root(p, LeftOutReason::hidden_or_system);
      continue;
    }
    std::string detail;
    switch (kind_of(d.entry, &detail)) {
      case Kind::folder: ix.candidates.push_back(Candidate{d.name, is_link(d.entry), false, {}, {}}); break;
      case Kind::file: leave_out_root(p, LeftOutReason::not_in_class); break;
      case Kind::dangling: leave_out_root(p, LeftOutReason::dangling_link); break;
      case Kind::error:
      case Kind::other: leave_out_root(p, LeftOutReason::unreadable, detail); break;
    }
  }
  std::vector<std::string> names;
  for (const Candidate& c : ix.candidates) names.push_back(c.name);
  if (!names.empty()) reject_split_root(root, names);
  ix.run(rootp);

  for (Candidate& c : ix.candidates) {
    if (c.refused) continue;
    const auto k = static_cast<int32_t>(folder.classes.size());
    std::sort(c.dirs.begin(), c.dirs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    int64_t n = 0;
    for (const auto& [d, files] : c.dirs) {
      for (const std::string& f : files) folder.samples.push_back(Sample{(fs::path(d) / f).string(), k});
      n += static_cast<int64_t>(files.size());
    }
    if (n == 0)
      throw UserError(str("class '", display_name(c.name), "' in ", display_name(root), " holds no ",
                          image_extensions(), " images"));
    folder.classes.push_back(c.name);
    folder.class_counts.push_back(n);
    folder.class_left_out.push_back(c.counts);
  }
  if (folder.classes.empty())
    throw UserError(
        str(display_name(root), " holds no class folders (expected ", display_name(root), "/<class>/*.jpg)"));
  return folder;
}

std::string index_summary(const ImageFolder& folder) {
  return str("indexed ", format_count(static_cast<double>(folder.samples.size())), " images in ", folder.classes.size(),
             folder.classes.size() == 1 ? " class; " : " classes; ", left_out_summary(folder));
}

std::string left_out_summary(const ImageFolder& folder) {
  if (folder.left_out.empty()) return "nothing left out";
  LeftOutCounts all = folder.root_left_out;
  for (const LeftOutCounts& c : folder.class_left_out)
    for (int r = 0; r < kLeftOutReasons; ++r)
      all.by_reason[static_cast<size_t>(r)] += c.by_reason[static_cast<size_t>(r)];
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
  std::string s = str("left out ", format_count(static_cast<double>(all.total())), ":");
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
        s += str(i ? ", " : "", display_name(by_count[i].first), " ",
                 format_count(static_cast<double>(by_count[i].second)));
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
