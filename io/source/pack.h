// The packed data set: one file holding an ImageFolder's JPEG bytes and its index, read through mmap with
// zero-copy views. Small images (MNIST's 28x28) cost more to open() and read() than to decode; a pack turns
// 60,000 files into one mapping. The layout is specified in docs/PACKED-FORMAT.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/source/source.h"

namespace stoke::io {

inline constexpr char kPackMagic[8] = {'S', 'T', 'O', 'K', 'E', 'P', 'A', 'K'};
inline constexpr uint32_t kPackVersion = 1;
inline constexpr size_t kPackHeaderBytes = 64;
inline constexpr size_t kPackClassEntryBytes = 8;
inline constexpr size_t kPackIndexEntryBytes = 32;

struct PackOptions {
  // Every file's JPEG header is checked while packing. drop_bad = false (default): every file keeps its index, so
  // sample i of the pack is sample i of the folder and a run gives the same batches from either: a file that
  // cannot be read is stored empty, an invalid one as it is, and the pipeline quarantines them when it meets
  // them. drop_bad = true: such files are left out. Either way they are listed in PackReport::bad.
  bool drop_bad = false;
  std::function<void(int64_t done, int64_t total)> progress;  // called now and then (may be empty)
};

struct PackReport {
  int64_t samples = 0;           // in the pack
  uint64_t bytes = 0;            // size of the pack file
  std::vector<std::string> bad;  // "path: reason" for each unreadable or invalid file
  int64_t dropped = 0;           // of those, left out (drop_bad)
};

// Packs the ImageFolder `dir` (io/source/image_folder.h rules: classes and files sorted) into out_file, atomically
// (written to out_file.tmp, fsynced, renamed). Throws stoke::UserError for a bad folder, stoke::Error naming the file
// for I/O failures (disk full).
PackReport pack_image_folder(const std::string& dir, const std::string& out_file, const PackOptions& options = {});

// A pack, mapped read-only. Opening validates the header (magic, version, header checksum, file size), the
// metadata checksum, and every index entry (data bounds, labels, names); verify_checksums also checks every
// sample's CRC-32 (reads the whole file). Any failure is a stoke::UserError naming the file and what is wrong.
// The mapping must not be truncated while open (the kernel would raise SIGBUS on access).
class PackReader final : public Source {
 public:
  static std::shared_ptr<PackReader> open(const std::string& path, bool verify_checksums = false);
  ~PackReader() override;
  PackReader(const PackReader&) = delete;
  PackReader& operator=(const PackReader&) = delete;

  int64_t size() const override { return samples_; }
  int32_t label(int64_t i) const override;
  const std::vector<std::string>& classes() const override { return classes_; }
  std::string name(int64_t i) const override;  // "PACK#i (class/file.jpg)"
  std::string description() const override;
  ReadStatus read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                  std::string* error) const override;
  void prefetch(int64_t i) const override;

  std::span<const uint8_t> bytes(int64_t i) const;  // zero-copy view into the mapping
  uint32_t crc32(int64_t i) const;                  // as stored
  std::string_view sample_name(int64_t i) const;    // "class/file.jpg" as packed
  const std::string& path() const { return path_; }
  uint64_t file_size() const { return size_; }

 private:
  PackReader() = default;
  const uint8_t* entry(int64_t i) const;
  std::string path_;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  int64_t samples_ = 0;
  uint64_t index_off_ = 0, strings_off_ = 0;
  std::vector<std::string> classes_;
};

// CRC-32 (zlib's polynomial) of a byte range.
uint32_t crc32_of(std::span<const uint8_t> bytes);

}  // namespace stoke::io
