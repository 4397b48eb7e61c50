#include "report/tensorboard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "base/display_name.h"
#include "base/error.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

double unix_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- CRC32C ---------------------------------------------------------------------------------------------------

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  for (size_t i = 0; i < size; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return ~c;
}

uint32_t mask_crc32c(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

uint32_t unmask_crc32c(uint32_t masked) {
  const uint32_t r = masked - 0xa282ead8u;
  return (r >> 17) | (r << 15);
}

// ---- protobuf encoding ----------------------------------------------------------------------------------------

namespace {

// Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_key(std::string& out, uint32_t field, uint32_t wire_type) {
  put_varint(out, (uint64_t{field} << 3) | wire_type);
}

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void put_double(std::string& out, uint32_t field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, 1);
  put_le(out, bits, 8);
}

void put_float(std::string& out, uint32_t field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_key(out, field, 5);
  put_le(out, bits, 4);
}

void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out += bytes;
}

// Event header fields: wall_time (1, double) and step (2, int64; proto3 leaves the default 0 out; a negative
// step is its 64-bit two's complement as a 10-byte varint).
std::string event_head(double wall_time, int64_t step) {
  std::string e;
  put_double(e, 1, wall_time);
  if (step != 0) {
    put_key(e, 2, 0);
    put_varint(e, static_cast<uint64_t>(step));
  }
  return e;
}

}  // namespace

std::string tfrecord_frame(const std::string& data) {
  std::string out;
  out.reserve(data.size() + 16);
  put_le(out, data.size(), 8);
  put_le(out, mask_crc32c(crc32c(out.data(), 8)), 4);
  out += data;
  put_le(out, mask_crc32c(crc32c(data.data(), data.size())), 4);
  return out;
}

std::string tensorboard_version_event(double wall_time) {
  std::string e = event_head(wall_time, 0);
  put_bytes(e, 3, "brain.Event:2");  // file_version
  return e;
}

std::string tensorboard_scalar_event(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string v;  // Summary.Value
  put_bytes(v, 1, tag);
  put_float(v, 2, static_cast<float>(value));  // simple_value: in a oneof, so written even when 0
  std::string s;  // Summary
  put_bytes(s, 1, v);
  std::string e = event_head(wall_time, step);
  put_bytes(e, 5, s);  // summary
  return e;
}

// ---- the writer -----------------------------------------------------------------------------------------------

namespace {

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
  std::string h = buf;
  for (char& c : h)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) c = '_';
  return h;
}

constexpr size_t kFlushBytes = 64 * 1024;

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& logdir) {
  std::error_code ec;
  fs::create_directories(logdir, ec);
  if (ec) throw Error(str("cannot create the TensorBoard folder ", display_name(logdir), ": ", ec.message()));
  const double now = unix_time_now();
  const std::string stem =
      (fs::path(logdir) / str("events.out.tfevents.", static_cast<int64_t>(now), ".", host_name())).string();
  int fd = -1;
  for (int n = 0; fd < 0; ++n) {
    path_ = n == 0 ? stem + ".stoke" : str(stem, ".", n, ".stoke");
    fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && (errno != EEXIST || n >= 1000))
      throw Error(str("cannot create ", display_name(path_), ": ", std::strerror(errno)));
  }
  file_ = ::fdopen(fd, "wb");
  if (!file_) {
    const int err = errno;
    ::close(fd);
    throw Error(str("cannot open ", display_name(path_), ": ", std::strerror(err)));
  }
  std::lock_guard<std::mutex> lock(mu_);
  pending_ = tfrecord_frame(tensorboard_version_event(now));
  try {
    write_locked(pending_);
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    throw;
  }
  pending_.clear();
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    flush();
  } catch (...) {
    // A destructor reports nothing: the records written before the failure stay readable.
  }
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::write_locked(const std::string& bytes) {
  if (!file_) throw Error(str("cannot write ", display_name(path_), ": the file is closed"));
  errno = 0;
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
    throw Error(str("cannot write ", display_name(path_), ": ", std::strerror(errno ? errno : EIO)));
  if (std::fflush(file_) != 0)
    throw Error(str("cannot write ", display_name(path_), ": ", std::strerror(errno ? errno : EIO)));
}

void TensorBoardWriter::scalar(const std::string& tag, double value, int64_t step, double wall_time) {
  std::string rec = tfrecord_frame(tensorboard_scalar_event(tag, value, step, wall_time));
  std::lock_guard<std::mutex> lock(mu_);
  pending_ += rec;
  if (pending_.size() >= kFlushBytes) {
    std::string out;
    out.swap(pending_);
    write_locked(out);
  }
}

void TensorBoardWriter::flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_.empty()) return;
  std::string out;
  out.swap(pending_);
  write_locked(out);
}

// ---- metrics lines --------------------------------------------------------------------------------------------

namespace {

bool number_field(const json& j, const char* key, double& out) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return false;
  out = it->get<double>();
  return true;
}

}  // namespace

void tensorboard_log_metrics(TensorBoardWriter& w, const json& line, double wall_time) {
  if (!line.is_object()) return;
  double step_d = 0;
  if (!number_field(line, "step", step_d) || !(std::fabs(step_d) < 9.2e18)) return;  // NaN or beyond int64: no step
  const auto step = static_cast<int64_t>(step_d);
  const std::string kind = line.contains("kind") && line["kind"].is_string() ? line["kind"].get<std::string>() : "";
  struct Map {
    const char* field;
    const char* tag;
  };
  static constexpr Map kTrain[] = {{"loss", "train/loss"},           {"acc", "train/acc"},
                                   {"lr", "train/lr"},               {"img_per_s", "perf/img_per_s"},
                                   {"gpu_busy", "perf/gpu_busy"},    {"input_stall", "perf/input_stall"},
                                   {"decoders", "perf/decoders"},    {"comm_share", "perf/comm_share"}};
  static constexpr Map kEpoch[] = {{"train_loss", "epoch/train_loss"}, {"train_acc", "epoch/train_acc"},
                                   {"val_loss", "val/loss"},           {"val_acc", "val/acc"},
                                   {"val_auc", "val/auc"},             {"img_per_s", "epoch/img_per_s"},
                                   {"seconds", "epoch/seconds"},       {"rss_mib", "perf/rss_mib"},
                                   {"input_wait_s", "perf/input_wait_s"}, {"input_stall", "perf/input_stall"},
                                   {"gpu_busy", "perf/gpu_busy"},      {"decoders", "perf/decoders"},
                                   {"comm_share", "perf/comm_share"}};
  auto log = [&](const auto& table) {
    for (const Map& m : table) {
      double v;
      if (number_field(line, m.field, v)) w.scalar(m.tag, v, step, wall_time);
    }
  };
  if (kind == "train") log(kTrain);
  else if (kind == "epoch") log(kEpoch);
}

std::string export_tensorboard(const std::string& run_dir, const std::string& logdir) {
  const std::string path = (fs::path(run_dir) / "metrics.jsonl").string();
  std::ifstream in(path);
  if (!in) throw Error(str("cannot read ", display_name(path)));
  std::vector<std::pair<json, double>> lines;  // each line and its run time (elapsed_s, continued across resumes)
  std::string text;
  double offset = 0, last_elapsed = 0;
  while (std::getline(in, text)) {
    json j;
    try {
      j = json::parse(text);
    } catch (const json::exception&) {
      continue;  // torn or damaged line
    }
    if (!j.is_object()) continue;
    double e = 0;
    if (number_field(j, "elapsed_s", e) && std::isfinite(e)) {
      if (e + 1e-9 < last_elapsed) offset += last_elapsed;  // a resumed process starts its clock again
      last_elapsed = e;
    }
    lines.emplace_back(std::move(j), offset + last_elapsed);
  }
  std::error_code ec;
  double end = unix_time_now();
  const auto mtime = fs::last_write_time(path, ec);
  if (!ec) {
    // file_clock to system_clock (C++20 clock_cast is not in libstdc++ 12 for file_clock): use the offset now.
    const auto now_file = fs::file_time_type::clock::now();
    end -= std::chrono::duration<double>(now_file - mtime).count();
  }
  const double total = lines.empty() ? 0.0 : lines.back().second;
  TensorBoardWriter w(logdir);
  for (const auto& [j, t] : lines) tensorboard_log_metrics(w, j, end - total + t);
  w.flush();
  return w.path();
}

}  // namespace stoke
