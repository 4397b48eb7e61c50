#include "engine/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/json_util.h"

namespace stoke::safetensors {
using json = nlohmann::json;

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32:
    case DType::I32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

namespace {
bool parse_dtype(const std::string& s, DType& d) {
  for (DType c : {DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8})
    if (s == dtype_name(c)) {
      d = c;
      return true;
    }
  return false;
}
size_t byte_count(DType d, const std::vector<int64_t>& shape) {
  size_t n = dtype_size(d);
  for (int64_t s : shape) n *= static_cast<size_t>(s);
  return n;
}

// The padded JSON header; *data_bytes gets the size of the tensor bytes after it.
std::string header_text(const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata,
                        size_t* data_bytes) {
  // nlohmann::json sorts object keys; the byte order of the data follows the caller's order.
  json header = json::object();
  size_t offset = 0;
  for (const Tensor& t : tensors) {
    STOKE_CHECK(!t.name.empty() && t.name != "__metadata__", "bad tensor name '", t.name, "'");
    STOKE_CHECK(!header.contains(t.name), "duplicate tensor name ", t.name);
    for (int64_t s : t.shape) STOKE_CHECK(s >= 0, "negative dimension in ", t.name);
    size_t n = byte_count(t.dtype, t.shape);
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');  // keeps the data 8-byte aligned
  *data_bytes = offset;
  return text;
}

}  // namespace

size_t serialized_size(const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata) {
  size_t data = 0;
  return 8 + header_text(tensors, metadata, &data).size() + data;
}

std::vector<uint8_t> serialize(const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata) {
  size_t offset = 0;
  const std::string text = header_text(tensors, metadata, &offset);
  std::vector<uint8_t> out(8 + text.size() + offset);
  uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(len >> (8 * i));
  std::memcpy(out.data() + 8, text.data(), text.size());
  uint8_t* data = out.data() + 8 + text.size();
  for (const Tensor& t : tensors) {
    size_t n = byte_count(t.dtype, t.shape);
    if (n) std::memcpy(data, t.data, n);
    data += n;
  }
  return out;
}

void save(const std::string& path, const std::vector<Tensor>& tensors,
          const std::map<std::string, std::string>& metadata) {
  std::vector<uint8_t> bytes = serialize(tensors, metadata);
  atomic_write_file(path, bytes.data(), bytes.size());
}

File File::load(const std::string& path) { return parse(read_file_bytes(path), path); }

File File::parse(const std::vector<uint8_t>& bytes, const std::string& source) {
  return parse(FileBytes(bytes.begin(), bytes.end()), source);
}

File File::parse(FileBytes bytes, const std::string& source) {
  auto fail = [&](const std::string& why) -> Error {
    return Error(str(display_name(source), ": not a valid safetensors file: ", why));
  };
  File f;
  f.source_ = display_name(source);  // only ever shown in messages
  if (bytes.size() < 8) throw fail("shorter than its 8-byte header length");
  uint64_t len = 0;
  for (int i = 0; i < 8; ++i) len |= static_cast<uint64_t>(bytes[static_cast<size_t>(i)]) << (8 * i);
  if (len > bytes.size() - 8) throw fail(str("header length ", len, " exceeds the file (", bytes.size(), " bytes)"));
  if (len > (100u << 20)) throw fail("header larger than 100 MB");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(len));
  } catch (const json::exception& e) {
    throw fail(str("header is not JSON (", json_problem(e), ")"));
  }
  if (!header.is_object()) throw fail("header is not a JSON object");
  f.data_start_ = 8 + static_cast<size_t>(len);
  const size_t data_len = bytes.size() - f.data_start_;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) throw fail("__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) throw fail(str("metadata value '", m.key(), "' is not a string"));
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const json& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw fail(str("tensor '", it.key(), "' lacks dtype, shape or data_offsets"));
    Entry en{};
    if (!e["dtype"].is_string() || !parse_dtype(e["dtype"].get<std::string>(), en.dtype))
      throw fail(str("tensor '", it.key(), "' has an unsupported dtype ", e["dtype"].dump()));
    if (!e["shape"].is_array()) throw fail(str("tensor '", it.key(), "' shape is not an array"));
    for (const json& d : e["shape"]) {
      if (!d.is_number_unsigned()) throw fail(str("tensor '", it.key(), "' has a bad dimension ", d.dump()));
      en.shape.push_back(d.get<int64_t>());
    }
    const json& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw fail(str("tensor '", it.key(), "' has bad data_offsets"));
    en.begin = off[0].get<size_t>();
    en.end = off[1].get<size_t>();
    if (en.begin > en.end || en.end > data_len)
      throw fail(str("tensor '", it.key(), "' bytes [", en.begin, ", ", en.end, ") lie outside the ", data_len,
                     " data bytes"));
    size_t expect = dtype_size(en.dtype);
    for (int64_t s : en.shape) {
      if (s != 0 && expect > (size_t{1} << 62) / static_cast<size_t>(s))
        throw fail(str("tensor '", it.key(), "' is absurdly large"));
      expect *= static_cast<size_t>(s);
    }
    if (expect != en.end - en.begin)
      throw fail(
          str("tensor '", it.key(), "' holds ", en.end - en.begin, " bytes but its shape and dtype need ", expect));
    ranges.emplace_back(en.begin, en.end);
    f.entries_[it.key()] = std::move(en);
  }
  std::sort(ranges.begin(), ranges.end());
  size_t pos = 0;
  for (auto [b, e] : ranges) {
    if (b != pos) throw fail(b < pos ? "tensor byte ranges overlap" : "tensor byte ranges leave a hole");
    pos = e;
  }
  if (pos != data_len) throw fail(str("the tensors cover ", pos, " of ", data_len, " data bytes"));
  f.bytes_ = std::move(bytes);
  return f;
}

const File::Entry* File::find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

}  // namespace stoke::safetensors
