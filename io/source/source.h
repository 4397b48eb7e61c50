// Where sample bytes come from: an ImageFolder (one file per sample) or a pack (io/source/pack.h), behind one interface
// so the decoder pool reads either transparently.
//
// A Source is immutable after construction and safe to read from any number of threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/source/image_folder.h"

namespace stoke::io {

enum class ReadStatus {
  ok,        // bytes holds the sample (possibly empty: a zero-byte file)
  vanished,  // the file no longer exists (deleted or renamed mid-run)
  failed,    // any other I/O error; *error says what
};

class Source {
 public:
  virtual ~Source() = default;
  virtual int64_t size() const = 0;
  virtual int32_t label(int64_t i) const = 0;
  virtual const std::vector<std::string>& classes() const = 0;
  // For messages and the quarantine list: the file's path, or "PACK#i (class/file.jpg)".
  virtual std::string name(int64_t i) const = 0;
  // One line: what this is ("ImageFolder DIR: N images, K classes").
  virtual std::string description() const = 0;
  // The bytes of sample i. A pack hands out a zero-copy view of its mapping; a folder reads the file into
  // `scratch` (grown as needed, never shrunk: no allocation once it fits the largest file) and points into it.
  // `bytes` stays valid until the next read with the same scratch. Never throws for I/O problems.
  virtual ReadStatus read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                          std::string* error) const = 0;
  // A hint that sample i is read next: sources that serve bytes from memory start loading its first cache lines,
  // so a decoder thread does not stall on them (a 64x64 JPEG decodes in ~15 us; a few cold misses show). No-op
  // by default; must not block or fail.
  virtual void prefetch(int64_t /*i*/) const {}
};

// Starts loading [bytes, bytes + min(size, limit)) into the cache (the hint prefetch() implementations give).
void prefetch_bytes(const uint8_t* bytes, size_t size, size_t limit = 512);

// An ImageFolder tree (io/source/image_folder.h), read file by file.
class FolderSource final : public Source {
 public:
  explicit FolderSource(ImageFolder folder);
  // Any list of (path, label) samples (e.g. a subset), with class names for messages.
  FolderSource(std::vector<Sample> samples, std::vector<std::string> classes, std::string root);

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  int32_t label(int64_t i) const override { return samples_[static_cast<size_t>(i)].label; }
  const std::vector<std::string>& classes() const override { return classes_; }
  std::string name(int64_t i) const override { return samples_[static_cast<size_t>(i)].path; }
  std::string description() const override;
  ReadStatus read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                  std::string* error) const override;
  const std::vector<Sample>& samples() const { return samples_; }
  // What indexing left out (empty for a list of samples): left_out_summary()'s words, and every path.
  const std::string& left_out_summary() const { return left_out_summary_; }
  const std::vector<LeftOut>& left_out() const { return left_out_; }

 private:
  std::vector<Sample> samples_;
  std::vector<std::string> classes_;
  std::string root_;
  std::string left_out_summary_;
  std::vector<LeftOut> left_out_;
};

// A view of some samples of another source (e.g. a seeded subset): sample k of the subset is indices[k] there.
class SubsetSource final : public Source {
 public:
  SubsetSource(std::shared_ptr<const Source> base, std::vector<int64_t> indices);
  int64_t size() const override { return static_cast<int64_t>(indices_.size()); }
  int32_t label(int64_t i) const override { return base_->label(at(i)); }
  const std::vector<std::string>& classes() const override { return base_->classes(); }
  std::string name(int64_t i) const override { return base_->name(at(i)); }
  std::string description() const override;
  ReadStatus read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                  std::string* error) const override {
    return base_->read(at(i), scratch, bytes, error);
  }
  void prefetch(int64_t i) const override { base_->prefetch(at(i)); }

 private:
  int64_t at(int64_t i) const { return indices_[static_cast<size_t>(i)]; }
  std::shared_ptr<const Source> base_;
  std::vector<int64_t> indices_;
};

// Reads a whole file into scratch (grown, never shrunk); the shared helper of FolderSource.
ReadStatus read_file_into(const std::string& path, std::vector<uint8_t>& scratch, size_t& size, std::string* error);

// A directory opens as an ImageFolder, a file as a pack (verify_checksums: check every sample's CRC-32 now).
// Throws stoke::UserError with one line naming the path when it is neither, or is not valid.
std::shared_ptr<const Source> open_source(const std::string& path, bool verify_checksums = false);

// What differs between the classes a job expects and those a source holds, for one-line errors: "missing from
// WHERE: a, b; extra in WHERE: c" (names as display_name() shows them; at most 8 of each, then "and N more").
// Empty when the lists are equal. Names, not counts: two folders of 10 classes may still differ in one name.
std::string class_difference(const std::vector<std::string>& expected, const std::vector<std::string>& got,
                             const std::string& where);

// The data's geometry from the headers of a few samples spread over the set (io/source/image_folder.h probe_shape, for
// any source): the most common h x w; c = 1 when every probed image is grayscale, else 3.
DataShape probe_source_shape(const Source& source, int max_probe = 64);

}  // namespace stoke::io
