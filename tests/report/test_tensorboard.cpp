// TensorBoard event files: CRC32C known answers, exact bytes of an Event, and a reader written here from the
// format's definition (TFRecord framing, protobuf wire format) that parses every record back.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/fs.h"
#include "report/tensorboard.h"

namespace stoke {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// ---- an independent reader ------------------------------------------------------------------------------------

// The CRC bit by bit (no table), for cross-checking the table-driven one.
uint32_t crc32c_bitwise(const std::string& s) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  return ~c;
}

uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

uint64_t le(const std::string& s, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= uint64_t{static_cast<unsigned char>(s[at + static_cast<size_t>(i)])} << (8 * i);
  return v;
}

// Splits a TFRecord stream into records, checking both CRCs of each.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> out;
  size_t p = 0;
  while (p < file.size()) {
    EXPECT_GE(file.size() - p, 12u) << "truncated header at " << p;
    if (file.size() - p < 12) break;
    const uint64_t len = le(file, p, 8);
    EXPECT_EQ(static_cast<uint32_t>(le(file, p + 8, 4)), masked(crc32c_bitwise(file.substr(p, 8))))
        << "length CRC at " << p;
    EXPECT_GE(file.size() - p - 12, len + 4) << "truncated record at " << p;
    if (file.size() - p - 12 < len + 4) break;
    std::string data = file.substr(p + 12, len);
    EXPECT_EQ(static_cast<uint32_t>(le(file, p + 12 + len, 4)), masked(crc32c_bitwise(data))) << "data CRC at " << p;
    out.push_back(std::move(data));
    p += 12 + len + 4;
  }
  return out;
}

struct Field {
  int wire = -1;
  uint64_t number = 0;  // varint, fixed32 or fixed64 bits
  std::string bytes;    // length-delimited
};
using Message = std::multimap<uint32_t, Field>;

uint64_t varint(const std::string& s, size_t& p) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= s.size()) throw std::runtime_error("truncated varint");
    const auto b = static_cast<unsigned char>(s[p++]);
    v |= uint64_t{b & 0x7Fu} << shift;
    if (!(b & 0x80)) return v;
  }
  throw std::runtime_error("varint too long");
}

Message decode(const std::string& s) {
  Message m;
  size_t p = 0;
  while (p < s.size()) {
    const uint64_t key = varint(s, p);
    Field f;
    f.wire = static_cast<int>(key & 7);
    switch (f.wire) {
      case 0: f.number = varint(s, p); break;
      case 1:
        if (p + 8 > s.size()) throw std::runtime_error("truncated fixed64");
        f.number = le(s, p, 8);
        p += 8;
        break;
      case 5:
        if (p + 4 > s.size()) throw std::runtime_error("truncated fixed32");
        f.number = le(s, p, 4);
        p += 4;
        break;
      case 2: {
        const uint64_t n = varint(s, p);
        if (p + n > s.size()) throw std::runtime_error("truncated bytes");
        f.bytes = s.substr(p, n);
        p += n;
        break;
      }
      default: throw std::runtime_error("unexpected wire type");
    }
    m.emplace(static_cast<uint32_t>(key >> 3), std::move(f));
  }
  return m;
}

struct Scalar {
  double wall_time = 0;
  int64_t step = 0;
  std::string tag;
  float value = 0;
};

// Event { wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5 (Summary) };
// Summary { value = 1 (repeated Value) }; Value { tag = 1 (string), simple_value = 2 (float) }.
struct Events {
  std::string file_version;
  double version_wall_time = 0;
  std::vector<Scalar> scalars;
};

Events parse_events(const std::string& file) {
  Events ev;
  const std::vector<std::string> records = read_records(file);
  for (size_t r = 0; r < records.size(); ++r) {
    const Message e = decode(records[r]);
    double wall = 0;
    int64_t step = 0;
    if (auto it = e.find(1); it != e.end()) {
      EXPECT_EQ(it->second.wire, 1);
      std::memcpy(&wall, &it->second.number, 8);
    }
    if (auto it = e.find(2); it != e.end()) {
      EXPECT_EQ(it->second.wire, 0);
      step = static_cast<int64_t>(it->second.number);
    }
    if (auto it = e.find(3); it != e.end()) {
      EXPECT_EQ(r, 0u) << "file_version only in the first record";
      EXPECT_EQ(it->second.wire, 2);
      ev.file_version = it->second.bytes;
      ev.version_wall_time = wall;
    }
    if (auto it = e.find(5); it != e.end()) {
      EXPECT_EQ(it->second.wire, 2);
      const Message summary = decode(it->second.bytes);
      auto range = summary.equal_range(1);
      for (auto v = range.first; v != range.second; ++v) {
        const Message value = decode(v->second.bytes);
        Scalar s;
        s.wall_time = wall;
        s.step = step;
        EXPECT_EQ(value.count(1), 1u);
        EXPECT_EQ(value.count(2), 1u);
        if (value.count(1) != 1 || value.count(2) != 1) continue;
        s.tag = value.find(1)->second.bytes;
        EXPECT_EQ(value.find(2)->second.wire, 5);
        const auto bits = static_cast<uint32_t>(value.find(2)->second.number);
        std::memcpy(&s.value, &bits, 4);
        ev.scalars.push_back(s);
      }
    }
  }
  return ev;
}

std::string slurp(const std::string& path) {
  std::vector<uint8_t> b = read_file(path);
  return {b.begin(), b.end()};
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    path_ = fs::temp_directory_path() / ("stoke-tb-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// ---- tests ----------------------------------------------------------------------------------------------------

TEST(Crc32c, KnownAnswers) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  EXPECT_EQ(crc32c(nullptr, 0), 0u);
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF, and 0x00..0x1F.
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  std::string inc;
  for (int i = 0; i < 32; ++i) inc.push_back(static_cast<char>(i));
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), inc.size()), 0x46DD794Eu);
  // Table and bitwise agree; continuing a CRC equals one pass.
  std::string s;
  for (int i = 0; i < 1000; ++i) s.push_back(static_cast<char>((i * 131) ^ (i >> 3)));
  EXPECT_EQ(crc32c(s.data(), s.size()), crc32c_bitwise(s));
  EXPECT_EQ(crc32c(s.data() + 400, 600, crc32c(s.data(), 400)), crc32c(s.data(), s.size()));
}

TEST(Crc32c, Mask) {
  EXPECT_EQ(mask_crc32c(0), 0xa282ead8u);
  EXPECT_EQ(mask_crc32c(0xE3069283u), masked(0xE3069283u));
  for (uint32_t v : {0u, 1u, 0xE3069283u, 0xFFFFFFFFu, 0x80000000u, 0x12345678u})
    EXPECT_EQ(unmask_crc32c(mask_crc32c(v)), v);
}

TEST(TensorBoard, ExactBytesOfAScalarEvent) {
  // wall_time 0.5: key 0x09 + 8 bytes LE; step 1: 0x10 0x01; summary (5, bytes): 0x2A len
  //   Summary.value (1, bytes): 0x0A len; Value.tag (1): 0x0A 0x01 'a'; simple_value (2, fixed32): 0x15 + 1.0f LE.
  const std::string want("\x09\x00\x00\x00\x00\x00\x00\xE0\x3F"
                         "\x10\x01"
                         "\x2A\x0A"
                         "\x0A\x08"
                         "\x0A\x01" "a"
                         "\x15\x00\x00\x80\x3F",
                         23);
  EXPECT_EQ(tensorboard_scalar_event("a", 1.0, 1, 0.5), want);
  // The header event: file_version (3, string) "brain.Event:2"; step 0 is left out (proto3 default).
  const std::string head = tensorboard_version_event(0.5);
  EXPECT_EQ(head, std::string("\x09\x00\x00\x00\x00\x00\x00\xE0\x3F\x1A\x0D" "brain.Event:2", 24));
  // Framing: length, masked CRC of the length bytes, data, masked CRC of the data.
  const std::string framed = tfrecord_frame(want);
  ASSERT_EQ(framed.size(), want.size() + 16);
  EXPECT_EQ(le(framed, 0, 8), want.size());
  EXPECT_EQ(le(framed, 8, 4), masked(crc32c_bitwise(framed.substr(0, 8))));
  EXPECT_EQ(framed.substr(12, want.size()), want);
  EXPECT_EQ(le(framed, 12 + want.size(), 4), masked(crc32c_bitwise(want)));
}

TEST(TensorBoard, RecordsRoundTrip) {
  TempDir dir("roundtrip");
  const std::string logdir = dir.str() + "/nested/tensorboard";
  const std::string long_tag(300, 'x');  // a two-byte length varint
  struct In {
    std::string tag;
    double value;
    int64_t step;
    double wall;
  };
  const std::vector<In> in = {{"train/loss", 2.302585, 50, 1700000000.25},
                              {"train/acc", 0.0, 0, 1700000001.5},
                              {"val/auc", 0.99997684, int64_t{1} << 40, 1700000002.0},
                              {"neg", -3.5, -7, 1.0},
                              {"nan", std::nan(""), 3, 2.0},
                              {"big", 1e30, 4, 3.0},
                              {"caf\xC3\xA9/\xE2\x9C\x93", 42, 5, 4.0},
                              {long_tag, 1.0 / 3.0, 6, 5.0}};
  std::string path;
  const double before = unix_time_now();
  {
    TensorBoardWriter w(logdir);
    path = w.path();
    for (const In& i : in) w.scalar(i.tag, i.value, i.step, i.wall);
    w.flush();
    w.scalar("after-flush", 1, 99);  // reaches the file in the destructor
  }
  const double after = unix_time_now();
  const std::string name = fs::path(path).filename().string();
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(logdir));
  EXPECT_EQ(name.rfind("events.out.tfevents.", 0), 0u) << name;
  EXPECT_EQ(name.substr(name.size() - 6), ".stoke");
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  EXPECT_NE(name.find(host), std::string::npos) << name;

  const Events ev = parse_events(slurp(path));
  EXPECT_EQ(ev.file_version, "brain.Event:2");
  EXPECT_GE(ev.version_wall_time, before - 1);
  EXPECT_LE(ev.version_wall_time, after + 1);
  ASSERT_EQ(ev.scalars.size(), in.size() + 1);
  for (size_t i = 0; i < in.size(); ++i) {
    SCOPED_TRACE(in[i].tag.substr(0, 20));
    EXPECT_EQ(ev.scalars[i].tag, in[i].tag);
    EXPECT_EQ(ev.scalars[i].step, in[i].step);
    EXPECT_EQ(ev.scalars[i].wall_time, in[i].wall);
    if (std::isnan(in[i].value)) EXPECT_TRUE(std::isnan(ev.scalars[i].value));
    else EXPECT_EQ(ev.scalars[i].value, static_cast<float>(in[i].value));
  }
  EXPECT_EQ(ev.scalars.back().tag, "after-flush");
  EXPECT_EQ(ev.scalars.back().step, 99);
  EXPECT_GE(ev.scalars.back().wall_time, before - 1);
  EXPECT_LE(ev.scalars.back().wall_time, after + 1);
}

TEST(TensorBoard, ManyRecordsAndTwoWritersInOneFolder) {
  TempDir dir("many");
  std::string p1, p2;
  {
    TensorBoardWriter a(dir.str()), b(dir.str());  // same second: distinct files
    p1 = a.path();
    p2 = b.path();
    for (int i = 0; i < 20000; ++i) a.scalar("s", i * 0.5, i, 100.0 + i);  // several automatic flushes
    b.scalar("t", 1, 1, 1);
  }
  EXPECT_NE(p1, p2);
  const Events e1 = parse_events(slurp(p1)), e2 = parse_events(slurp(p2));
  ASSERT_EQ(e1.scalars.size(), 20000u);
  for (int i = 0; i < 20000; i += 997) {
    EXPECT_EQ(e1.scalars[static_cast<size_t>(i)].step, i);
    EXPECT_EQ(e1.scalars[static_cast<size_t>(i)].value, static_cast<float>(i * 0.5));
  }
  ASSERT_EQ(e2.scalars.size(), 1u);
  EXPECT_EQ(e2.scalars[0].tag, "t");
}

TEST(TensorBoard, UnwritableFolderIsAnError) {
  EXPECT_THROW(TensorBoardWriter("/proc/stoke-no-such-place/tb"), Error);
}

TEST(TensorBoard, MetricsLinesAndExport) {
  TempDir dir("metrics");
  const json train = {{"kind", "train"}, {"epoch", 1}, {"step", 50}, {"lr", 0.01}, {"loss", 0.9},
                      {"acc", 0.75}, {"img_per_s", 2900.5}, {"elapsed_s", 2.8}};
  const json epoch = {{"kind", "epoch"}, {"epoch", 1}, {"step", 100}, {"train_loss", 0.5}, {"train_acc", 0.8},
                      {"val_loss", 0.4}, {"val_acc", 0.9}, {"val_auc", nullptr}, {"img_per_s", 3000},
                      {"seconds", 5.0}, {"elapsed_s", 5.5}, {"rss_mib", 250.0}, {"input_wait_s", 0.1},
                      {"input_stall", 0.02}, {"val_report", {{"confusion", {1, 2, 3, 4}}}}};
  std::string path;
  {
    TensorBoardWriter w(dir.str() + "/live");
    path = w.path();
    tensorboard_log_metrics(w, train, 10.0);
    tensorboard_log_metrics(w, epoch, 11.0);
    tensorboard_log_metrics(w, json{{"kind", "other"}, {"step", 1}, {"x", 1}}, 12.0);
    tensorboard_log_metrics(w, json{{"kind", "train"}, {"loss", 1}}, 12.0);  // no step
    tensorboard_log_metrics(w, json::array(), 12.0);
    tensorboard_log_metrics(w, json{{"kind", "train"}, {"step", 1e30}, {"loss", 1}}, 12.0);  // no int64 step
  }
  const Events ev = parse_events(slurp(path));
  std::map<std::string, std::pair<int64_t, float>> got;
  for (const Scalar& s : ev.scalars) got[s.tag] = {s.step, s.value};
  const std::map<std::string, std::pair<int64_t, float>> want = {
      {"train/loss", {50, 0.9f}},       {"train/acc", {50, 0.75f}},         {"train/lr", {50, 0.01f}},
      {"perf/img_per_s", {50, 2900.5f}}, {"epoch/train_loss", {100, 0.5f}}, {"epoch/train_acc", {100, 0.8f}},
      {"val/loss", {100, 0.4f}},        {"val/acc", {100, 0.9f}},           {"epoch/img_per_s", {100, 3000.f}},
      {"epoch/seconds", {100, 5.f}},    {"perf/rss_mib", {100, 250.f}},     {"perf/input_wait_s", {100, 0.1f}},
      {"perf/input_stall", {100, 0.02f}}};
  EXPECT_EQ(got, want);  // val/auc was null: left out
  EXPECT_EQ(ev.scalars.size(), want.size());

  // Export after the fact, with a torn last line.
  const std::string run = dir.str() + "/run";
  fs::create_directories(run);
  {
    std::ofstream f(run + "/metrics.jsonl");
    f << train.dump() << "\n" << epoch.dump() << "\n" << R"({"kind":"train","step":150,"lo)";
  }
  const std::string exported = export_tensorboard(run, run + "/tensorboard");
  EXPECT_EQ(fs::path(exported).parent_path(), fs::path(run + "/tensorboard"));
  const Events ex = parse_events(slurp(exported));
  std::map<std::string, std::pair<int64_t, float>> got2;
  for (const Scalar& s : ex.scalars) got2[s.tag] = {s.step, s.value};
  EXPECT_EQ(got2, want);
  // Wall times keep the lines' spacing (2.7 s apart) and end near now.
  double wt = 0, we = 0;
  for (const Scalar& s : ex.scalars) (s.step == 50 ? wt : we) = s.wall_time;
  EXPECT_NEAR(we - wt, 2.7, 1e-6);
  EXPECT_NEAR(we, unix_time_now(), 120);
  EXPECT_THROW(export_tensorboard(dir.str() + "/no-run", dir.str() + "/x"), Error);
}

// TensorBoard's own reader, when python3 has the package: an extra check on top of the reader above.
TEST(TensorBoard, ReadByTensorBoardItself) {
  if (std::system("python3 -c 'import tensorboard' >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3 has no tensorboard package: the event files were checked by this test's own reader only";
  TempDir dir("python");
  {
    TensorBoardWriter w(dir.str());
    for (int i = 0; i < 5; ++i) w.scalar("train/loss", 1.0 / (i + 1), i * 10, 1700000000.0 + i);
    w.scalar("val/acc", 0.875, 40, 1700000010.0);
  }
  const std::string script = dir.str() + "/read.py", out = dir.str() + "/out.txt";
  {
    std::ofstream f(script);
    f << "import sys\n"
         "from tensorboard.backend.event_processing import event_accumulator as ea\n"
         "acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0})\n"
         "acc.Reload()\n"
         "for tag in sorted(acc.Tags()['scalars']):\n"
         "    for e in acc.Scalars(tag):\n"
         "        print(tag, e.step, repr(e.value), repr(e.wall_time))\n";
  }
  ASSERT_EQ(std::system(("python3 " + script + " " + dir.str() + " > " + out + " 2>" + dir.str() + "/err.txt").c_str()),
            0)
      << slurp(dir.str() + "/err.txt");
  std::istringstream lines(slurp(out));
  std::vector<std::tuple<std::string, int64_t, double, double>> got;
  std::string tag;
  int64_t step;
  double value, wall;
  while (lines >> tag >> step >> value >> wall) got.emplace_back(tag, step, value, wall);
  ASSERT_EQ(got.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(std::get<0>(got[static_cast<size_t>(i)]), "train/loss");
    EXPECT_EQ(std::get<1>(got[static_cast<size_t>(i)]), i * 10);
    EXPECT_FLOAT_EQ(static_cast<float>(std::get<2>(got[static_cast<size_t>(i)])), static_cast<float>(1.0 / (i + 1)));
    EXPECT_DOUBLE_EQ(std::get<3>(got[static_cast<size_t>(i)]), 1700000000.0 + i);
  }
  EXPECT_EQ(std::get<0>(got[5]), "val/acc");
  EXPECT_EQ(std::get<1>(got[5]), 40);
  EXPECT_FLOAT_EQ(static_cast<float>(std::get<2>(got[5])), 0.875f);
}

}  // namespace
}  // namespace stoke
