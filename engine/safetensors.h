// The safetensors format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
// "__metadata__": {"k": "v"}}, padded with spaces, then the tensor bytes (offsets relative to the end of the
// header, little-endian, row-major, no holes, no overlaps).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "base/fs.h"

namespace stoke::safetensors {

enum class DType { F32, F16, BF16, I64, I32, U8 };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // shape-product * dtype_size bytes
};

// Serialises tensors (in the given order) and metadata into the file format.
std::vector<uint8_t> serialize(const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata);

// The size serialize() gives, without the bytes (data is not read): what a file will take before it is written.
size_t serialized_size(const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata);

// serialize + atomic_write_file (temporary, fsync, rename, fsync folder).
void save(const std::string& path, const std::vector<Tensor>& tensors,
          const std::map<std::string, std::string>& metadata);

// A parsed file, validated against the specification: header length within the file, JSON well formed,
// known dtypes, shape x dtype size == byte range, ranges inside the data, covering it with no holes or
// overlaps. Any violation throws stoke::Error naming `source` and what is wrong.
class File {
 public:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    size_t begin = 0, end = 0;  // within data()
  };
  static File parse(FileBytes bytes, const std::string& source);
  static File parse(const std::vector<uint8_t>& bytes, const std::string& source);  // copies them
  static File load(const std::string& path);

  const std::map<std::string, Entry>& entries() const { return entries_; }
  const Entry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const uint8_t* data(const Entry& e) const { return bytes_.data() + data_start_ + e.begin; }
  const std::string& source() const { return source_; }  // the file name as display_name() shows it

 private:
  FileBytes bytes_;
  size_t data_start_ = 0;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
  std::string source_;
};

}  // namespace stoke::safetensors
