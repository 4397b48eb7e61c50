#include "io/source/source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>
#include <map>
#include <system_error>
#include <utility>

#include "base/display_name.h"
#include "base/error.h"
#include "io/codec/codec.h"
#include "io/source/pack.h"

namespace stoke::io {

namespace {

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

bool is_gone(int e) { return e == ENOENT || e == ENOTDIR; }

// "a, b, c and 5 more".
std::string name_list(const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) out += (i ? ", " : "") + display_name(names[i]);
  if (names.size() > kShown) out += str(" and ", names.size() - kShown, " more");
  return out;
}

}  // namespace

std::string class_difference(const std::vector<std::string>& expected, const std::vector<std::string>& got,
                             const std::string& where) {
  if (expected == got) return "";
  std::vector<std::string> want = expected, have = got, missing, extra;
  std::sort(want.begin(), want.end());
  std::sort(have.begin(), have.end());
  std::set_difference(want.begin(), want.end(), have.begin(), have.end(), std::back_inserter(missing));
  std::set_difference(have.begin(), have.end(), want.begin(), want.end(), std::back_inserter(extra));
  std::string out;
  if (!missing.empty()) out = str("missing from ", where, ": ", name_list(missing));
  if (!extra.empty()) out += str(out.empty() ? "" : "; ", "extra in ", where, ": ", name_list(extra));
  // Class folders are sorted by name, so equal sets in another order cannot come from two folders; say it anyway.
  return out.empty() ? str("the same classes in another order in ", where) : out;
}

void prefetch_bytes(const uint8_t* bytes, size_t size, size_t limit) {
  const size_t n = std::min(size, limit);
  for (size_t k = 0; k < n; k += 64) __builtin_prefetch(bytes + k, 0, 3);
}

ReadStatus read_file_into(const std::string& path, std::vector<uint8_t>& scratch, size_t& size, std::string* error) {
  size = 0;
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int e = errno;
    if (error) *error = str("cannot open: ", errno_text(e));
    return is_gone(e) ? ReadStatus::vanished : ReadStatus::failed;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    const int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
    ::close(fd);
    if (error) *error = str("cannot read: ", errno_text(e));
    return ReadStatus::failed;
  }
  const auto want = static_cast<size_t>(st.st_size);
  if (scratch.size() < want) {
    try {
      scratch.resize(want);
    } catch (const std::exception&) {
      ::close(fd);
      if (error) *error = str("cannot allocate ", want, " bytes to read it");
      return ReadStatus::failed;
    }
  }
  size_t got = 0;
  while (got < want) {
    const ssize_t n = ::read(fd, scratch.data() + got, want - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      if (error) *error = str("cannot read: ", errno_text(e));
      return ReadStatus::failed;
    }
    if (n == 0) break;  // shrank meanwhile: what is there is what the decoder gets
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  size = got;
  return ReadStatus::ok;
}

FolderSource::FolderSource(ImageFolder folder)
    : left_out_summary_(stoke::io::left_out_summary(folder)), left_out_(std::move(folder.left_out)) {
  samples_ = std::move(folder.samples);
  classes_ = std::move(folder.classes);
  root_ = std::move(folder.root);
}

FolderSource::FolderSource(std::vector<Sample> samples, std::vector<std::string> classes, std::string root)
    : samples_(std::move(samples)), classes_(std::move(classes)), root_(std::move(root)) {}

std::string FolderSource::description() const {
  return str("ImageFolder ", display_name(root_), ": ", samples_.size(), " images, ", classes_.size(), " classes");
}

ReadStatus FolderSource::read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                              std::string* error) const {
  size_t n = 0;
  const ReadStatus st = read_file_into(samples_[static_cast<size_t>(i)].path, scratch, n, error);
  bytes = st == ReadStatus::ok ? std::span<const uint8_t>(scratch.data(), n) : std::span<const uint8_t>();
  return st;
}

SubsetSource::SubsetSource(std::shared_ptr<const Source> base, std::vector<int64_t> indices)
    : base_(std::move(base)), indices_(std::move(indices)) {
  STOKE_CHECK(base_ != nullptr);
  for (int64_t i : indices_) STOKE_CHECK(i >= 0 && i < base_->size(), "subset index ", i, " of ", base_->size());
}

std::string SubsetSource::description() const { return str(indices_.size(), " of ", base_->description()); }

std::shared_ptr<const Source> open_source(const std::string& path, bool verify_checksums) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    if (is_gone(e)) throw UserError(str("no such folder or pack file: ", display_name(path)));
    throw UserError(str("cannot read ", display_name(path), ": ", errno_text(e)));
  }
  if (S_ISDIR(st.st_mode)) return std::make_shared<FolderSource>(index_image_folder(path));
  if (S_ISREG(st.st_mode)) return PackReader::open(path, verify_checksums);
  throw UserError(str(display_name(path), " is neither a folder nor a pack file"));
}

DataShape probe_source_shape(const Source& source, int max_probe) {
  const auto n = static_cast<size_t>(source.size());
  if (n == 0) throw UserError(str(source.description(), " holds no images"));
  const size_t nprobe = std::min(n, static_cast<size_t>(std::max(1, max_probe)));
  // Spread the probes over the whole list so every class (and its colour) has a say.
  std::map<std::pair<int, int>, int> votes;
  std::pair<int, int> best{0, 0};
  int best_votes = 0, ok = 0;
  bool all_gray = true;
  std::string first_error;
  std::vector<uint8_t> scratch;
  std::vector<int> sides;
  for (size_t k = 0; k < nprobe; ++k) {
    const auto i = static_cast<int64_t>(k * n / nprobe);
    std::span<const uint8_t> bytes;
    std::string err;
    ImageInfo info;
    if (source.read(i, scratch, bytes, &err) != ReadStatus::ok || !image_info(bytes.data(), bytes.size(), info, &err)) {
      if (first_error.empty()) first_error = str(source.name(i), ": ", err);
      continue;
    }
    ++ok;
    if (!is_gray(info)) all_gray = false;
    sides.push_back(std::min(info.h, info.w));
    const int v = ++votes[{info.h, info.w}];
    if (v > best_votes) {  // ties go to the shape seen first
      best_votes = v;
      best = {info.h, info.w};
    }
  }
  if (ok == 0) throw UserError(str("cannot read any image header in ", source.description(), " (", first_error, ")"));
  std::sort(sides.begin(), sides.end());
  DataShape d{best.first, best.second, all_gray ? 1 : 3, ok, sides.front(), sides[sides.size() / 2], sides.back(), ""};
  if (2 * best_votes >= ok) return d;  // most images share one size: that is the data's size
  const int side = std::clamp(d.median_side, 1, kMaxAutoSide);
  d.why = str(
      "images differ in size (shorter side ", d.min_side, " to ", d.max_side, ", median ", d.median_side, " over ", ok,
      " probed): training at ", side, "x", side,
      d.median_side > kMaxAutoSide ? str(" (the median, capped at ", kMaxAutoSide, ")") : std::string(" (the median)"),
      ", centre-cropped to square; --image-size N chooses another");
  d.h = d.w = side;
  return d;
}

}  // namespace stoke::io
