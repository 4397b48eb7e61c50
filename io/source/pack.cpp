#include "io/source/pack.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "base/display_name.h"
#include "base/error.h"
#include "io/codec/codec.h"

namespace stoke::io {

namespace {

std::string errno_text(int e) { return std::error_code(e, std::generic_category()).message(); }

// Little-endian fields, whatever the host.
void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// Header field offsets (docs/PACKED-FORMAT.md).
constexpr size_t kOffVersion = 8, kOffHeaderBytes = 12, kOffSamples = 16, kOffClasses = 24, kOffFlags = 28,
                 kOffData = 32, kOffMeta = 40, kOffFileSize = 48, kOffMetaCrc = 56, kOffHeaderCrc = 60;
// Index entry field offsets.
constexpr size_t kEntOffset = 0, kEntSize = 8, kEntCrc = 12, kEntLabel = 16, kEntNameOff = 20, kEntNameLen = 24;

// An output file that is removed unless commit() ran.
class TempFile {
 public:
  explicit TempFile(std::string final_path) : final_(std::move(final_path)), tmp_(final_ + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) throw Error(str("cannot create ", tmp_, ": ", errno_text(errno)));
    std::setvbuf(f_, nullptr, _IOFBF, size_t{1} << 20);
  }
  ~TempFile() {
    if (f_) std::fclose(f_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n) throw Error(str("cannot write ", tmp_, ": ", errno_text(errno)));
  }
  void write_at(uint64_t offset, const void* p, size_t n) {
    if (std::fseek(f_, static_cast<long>(offset), SEEK_SET) != 0)
      throw Error(str("cannot seek in ", tmp_, ": ", errno_text(errno)));
    write(p, n);
  }
  void commit() {
    if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0)
      throw Error(str("cannot write ", tmp_, ": ", errno_text(errno)));
    FILE* f = f_;
    f_ = nullptr;
    if (std::fclose(f) != 0) throw Error(str("cannot write ", tmp_, ": ", errno_text(errno)));
    if (::rename(tmp_.c_str(), final_.c_str()) != 0)
      throw Error(str("cannot rename ", tmp_, " to ", final_, ": ", errno_text(errno)));
    committed_ = true;
  }

 private:
  std::string final_, tmp_;
  FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace

uint32_t crc32_of(std::span<const uint8_t> bytes) {
  return static_cast<uint32_t>(::crc32_z(::crc32_z(0L, Z_NULL, 0), bytes.data(), bytes.size()));
}

PackReport pack_image_folder(const std::string& dir, const std::string& out_file, const PackOptions& options) {
  const ImageFolder folder = index_image_folder(dir);
  TempFile out(out_file);
  uint8_t header[kPackHeaderBytes] = {};
  out.write(header, sizeof header);  // placeholder, rewritten at the end

  std::string strings;
  std::vector<uint8_t> classes(folder.classes.size() * kPackClassEntryBytes);
  for (size_t k = 0; k < folder.classes.size(); ++k) {
    put_u32(&classes[k * kPackClassEntryBytes], static_cast<uint32_t>(strings.size()));
    put_u32(&classes[k * kPackClassEntryBytes + 4], static_cast<uint32_t>(folder.classes[k].size()));
    strings += folder.classes[k];
  }

  PackReport report;
  std::vector<uint8_t> index;
  index.reserve(folder.samples.size() * kPackIndexEntryBytes);
  std::vector<uint8_t> scratch;
  uint64_t offset = kPackHeaderBytes;
  int64_t good = 0;
  const auto total = static_cast<int64_t>(folder.samples.size());
  for (int64_t i = 0; i < total; ++i) {
    const Sample& s = folder.samples[static_cast<size_t>(i)];
    if (options.progress && (i % 1024 == 0)) options.progress(i, total);
    size_t n = 0;
    std::string err;
    bool ok = read_file_into(s.path, scratch, n, &err) == ReadStatus::ok;
    if (!ok) n = 0;  // stored empty (the pipeline reports it as an empty file)
    ImageInfo info;
    if (ok && n > 0xffffffffu) {
      ok = false;
      err = "larger than 4 GiB";
      n = 0;
    }
    if (ok && !image_info(scratch.data(), n, info, &err)) ok = false;
    if (!ok) {
      report.bad.push_back(str(display_name(s.path), ": ", err));
      if (options.drop_bad) {
        ++report.dropped;
        continue;
      }
    }
    const std::span<const uint8_t> bytes(scratch.data(), n);
    out.write(bytes.data(), bytes.size());
    const std::string name =
        folder.classes[static_cast<size_t>(s.label)] + "/" + std::filesystem::path(s.path).filename().string();
    uint8_t e[kPackIndexEntryBytes] = {};
    put_u64(e + kEntOffset, offset);
    put_u32(e + kEntSize, static_cast<uint32_t>(n));
    put_u32(e + kEntCrc, crc32_of(bytes));
    put_u32(e + kEntLabel, static_cast<uint32_t>(s.label));
    put_u32(e + kEntNameOff, static_cast<uint32_t>(strings.size()));
    put_u32(e + kEntNameLen, static_cast<uint32_t>(name.size()));
    index.insert(index.end(), e, e + sizeof e);
    strings += name;
    offset += n;
    ++report.samples;
    good += ok ? 1 : 0;
  }
  if (good == 0)
    throw UserError(str("no readable JPEG in ", dir, report.bad.empty() ? "" : str(" (", report.bad[0], ")")));
  if (strings.size() > 0xffffffffu) throw UserError(str("too many file names in ", dir, " for one pack"));

  const uint64_t meta_offset = offset;
  std::vector<uint8_t> meta;
  meta.reserve(classes.size() + index.size() + strings.size());
  meta.insert(meta.end(), classes.begin(), classes.end());
  meta.insert(meta.end(), index.begin(), index.end());
  meta.insert(meta.end(), strings.begin(), strings.end());
  out.write(meta.data(), meta.size());
  const uint64_t file_size = meta_offset + meta.size();

  std::memcpy(header, kPackMagic, 8);
  put_u32(header + kOffVersion, kPackVersion);
  put_u32(header + kOffHeaderBytes, kPackHeaderBytes);
  put_u64(header + kOffSamples, static_cast<uint64_t>(report.samples));
  put_u32(header + kOffClasses, static_cast<uint32_t>(folder.classes.size()));
  put_u32(header + kOffFlags, 0);
  put_u64(header + kOffData, kPackHeaderBytes);
  put_u64(header + kOffMeta, meta_offset);
  put_u64(header + kOffFileSize, file_size);
  put_u32(header + kOffMetaCrc, crc32_of(meta));
  put_u32(header + kOffHeaderCrc, crc32_of({header, kOffHeaderCrc}));
  out.write_at(0, header, sizeof header);
  out.commit();
  if (options.progress) options.progress(total, total);
  report.bytes = file_size;
  return report;
}

// ---- reader ------------------------------------------------------------------------------------------------

std::shared_ptr<PackReader> PackReader::open(const std::string& path, bool verify_checksums) {
  auto fail = [&](const std::string& what) { return UserError(str("pack ", display_name(path), ": ", what)); };
  std::shared_ptr<PackReader> r(new PackReader());
  r->path_ = path;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(str("cannot open: ", errno_text(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw fail(str("cannot stat: ", errno_text(e)));
  }
  const auto actual = static_cast<uint64_t>(st.st_size);
  if (actual < kPackHeaderBytes) {
    ::close(fd);
    throw fail(str("truncated: ", actual, " bytes, shorter than the ", kPackHeaderBytes, "-byte header"));
  }
  void* m = ::mmap(nullptr, actual, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED) throw fail(str("cannot map: ", errno_text(map_errno)));
  r->map_ = static_cast<const uint8_t*>(m);
  r->size_ = actual;
  const uint8_t* h = r->map_;

  if (std::memcmp(h, kPackMagic, 8) != 0) throw fail("not a stoke pack (bad magic)");
  const uint32_t version = get_u32(h + kOffVersion);
  if (version != kPackVersion)
    throw fail(str("unsupported version ", version, " (this build reads ", kPackVersion, ")"));
  if (get_u32(h + kOffHeaderCrc) != crc32_of({h, kOffHeaderCrc}))
    throw fail("header checksum mismatch (corrupt header)");
  if (get_u32(h + kOffHeaderBytes) != kPackHeaderBytes) throw fail("bad header size");
  if (get_u32(h + kOffFlags) != 0) throw fail("unknown flags (written by a newer stoke?)");
  const uint64_t file_size = get_u64(h + kOffFileSize);
  if (actual < file_size) throw fail(str("truncated: the header says ", file_size, " bytes, the file has ", actual));
  if (actual > file_size) throw fail(str(actual - file_size, " unexpected bytes after the end the header gives"));
  const uint64_t ns = get_u64(h + kOffSamples), nc = get_u32(h + kOffClasses);
  const uint64_t data_off = get_u64(h + kOffData), meta_off = get_u64(h + kOffMeta);
  if (ns == 0 || nc == 0) throw fail("no samples or no classes");
  if (data_off != kPackHeaderBytes || meta_off < data_off || meta_off > file_size)
    throw fail(str("section offsets out of bounds (data ", data_off, ", index ", meta_off, ", file ", file_size, ")"));
  const uint64_t meta_size = file_size - meta_off;
  if (nc > meta_size / kPackClassEntryBytes || ns > meta_size / kPackIndexEntryBytes ||
      nc * kPackClassEntryBytes + ns * kPackIndexEntryBytes > meta_size)
    throw fail(str("index too short for ", ns, " samples and ", nc, " classes"));
  if (get_u32(h + kOffMetaCrc) != crc32_of({h + meta_off, meta_size}))
    throw fail("index checksum mismatch (corrupt index)");

  r->samples_ = static_cast<int64_t>(ns);
  r->index_off_ = meta_off + nc * kPackClassEntryBytes;
  r->strings_off_ = r->index_off_ + ns * kPackIndexEntryBytes;
  const uint64_t strings_size = file_size - r->strings_off_;
  auto in_strings = [&](uint64_t off, uint64_t len) { return off <= strings_size && len <= strings_size - off; };
  r->classes_.reserve(nc);
  for (uint64_t k = 0; k < nc; ++k) {
    const uint8_t* e = h + meta_off + k * kPackClassEntryBytes;
    const uint64_t off = get_u32(e), len = get_u32(e + 4);
    if (!in_strings(off, len)) throw fail(str("class ", k, ": name out of bounds"));
    r->classes_.emplace_back(reinterpret_cast<const char*>(h + r->strings_off_ + off), len);
  }
  for (int64_t i = 0; i < r->samples_; ++i) {
    const uint8_t* e = r->entry(i);
    const uint64_t off = get_u64(e + kEntOffset), size = get_u32(e + kEntSize);
    if (off < data_off || off > meta_off || size > meta_off - off)
      throw fail(str("sample ", i, ": bytes [", off, ", ", off + size, ") outside the data section [", data_off, ", ",
                     meta_off, ")"));
    if (get_u32(e + kEntLabel) >= nc)
      throw fail(str("sample ", i, ": label ", get_u32(e + kEntLabel), " >= ", nc, " classes"));
    if (!in_strings(get_u32(e + kEntNameOff), get_u32(e + kEntNameLen)))
      throw fail(str("sample ", i, ": name out of bounds"));
  }
  if (verify_checksums) {
    for (int64_t i = 0; i < r->samples_; ++i)
      if (crc32_of(r->bytes(i)) != r->crc32(i))
        throw fail(str("sample ", i, " (", r->sample_name(i), "): CRC-32 mismatch (corrupt data)"));
  }
  return r;
}

PackReader::~PackReader() {
  if (map_) ::munmap(const_cast<uint8_t*>(map_), size_);
}

const uint8_t* PackReader::entry(int64_t i) const {
  return map_ + index_off_ + static_cast<uint64_t>(i) * kPackIndexEntryBytes;
}

int32_t PackReader::label(int64_t i) const { return static_cast<int32_t>(get_u32(entry(i) + kEntLabel)); }

uint32_t PackReader::crc32(int64_t i) const { return get_u32(entry(i) + kEntCrc); }

std::span<const uint8_t> PackReader::bytes(int64_t i) const {
  const uint8_t* e = entry(i);
  return {map_ + get_u64(e + kEntOffset), get_u32(e + kEntSize)};
}

std::string_view PackReader::sample_name(int64_t i) const {
  const uint8_t* e = entry(i);
  return {reinterpret_cast<const char*>(map_ + strings_off_ + get_u32(e + kEntNameOff)), get_u32(e + kEntNameLen)};
}

std::string PackReader::name(int64_t i) const { return str(path_, "#", i, " (", sample_name(i), ")"); }

std::string PackReader::description() const {
  return str("pack ", display_name(path_), ": ", samples_, " images, ", classes_.size(), " classes");
}

ReadStatus PackReader::read(int64_t i, std::vector<uint8_t>&, std::span<const uint8_t>& out, std::string*) const {
  out = bytes(i);
  return ReadStatus::ok;
}

void PackReader::prefetch(int64_t i) const {
  const std::span<const uint8_t> b = bytes(i);
  prefetch_bytes(b.data(), b.size());
}

}  // namespace stoke::io
