// The packed format: round trip, zero-copy reads, and clear errors for every kind of damage.
#include <gtest/gtest.h>

#include <zlib.h>

#include <cstring>
#include <fstream>

#include "base/error.h"
#include "base/fs.h"
#include "io/source/image_folder.h"
#include "io/source/pack.h"
#include "io/source/source.h"
#include "tests/pipeline/pipeline_util.h"

namespace {

using namespace stoke::io;
namespace fs = std::filesystem;
using stoke::test::TempDir;

std::vector<uint8_t> slurp(const fs::path& p) { return stoke::read_file(p.string()); }
void spit(const fs::path& p, const std::vector<uint8_t>& b) { stoke::write_file(p.string(), b.data(), b.size()); }

uint32_t get32(const std::vector<uint8_t>& b, size_t off) {
  return uint32_t{b[off]} | uint32_t{b[off + 1]} << 8 | uint32_t{b[off + 2]} << 16 | uint32_t{b[off + 3]} << 24;
}
uint64_t get64(const std::vector<uint8_t>& b, size_t off) { return get32(b, off) | uint64_t{get32(b, off + 4)} << 32; }
void put32(std::vector<uint8_t>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  put32(b, off, static_cast<uint32_t>(v));
  put32(b, off + 4, static_cast<uint32_t>(v >> 32));
}
uint32_t crc(const uint8_t* p, size_t n) { return static_cast<uint32_t>(crc32_z(crc32_z(0, Z_NULL, 0), p, n)); }
// After editing the index or header on purpose, make the checksums agree again (to reach the deeper checks).
void fix_crcs(std::vector<uint8_t>& b) {
  const uint64_t meta = get64(b, 40);
  put32(b, 56, crc(b.data() + meta, b.size() - meta));
  put32(b, 60, crc(b.data(), 60));
}

// Expects open() to fail with a UserError naming the file and containing `what`.
void expect_open_error(const fs::path& p, const std::string& what, bool verify = false) {
  try {
    PackReader::open(p.string(), verify);
    ADD_FAILURE() << "opened a damaged pack; expected: " << what;
  } catch (const stoke::UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p.string()), std::string::npos) << m;
    EXPECT_NE(m.find(what), std::string::npos) << m;
  }
}

class Pack : public ::testing::Test {
 protected:
  void SetUp() override {
    stoke::test::write_folder(dir.path() / "data", 3, 7, 20, 24, 3, 4);
    const std::vector<uint8_t> gray = stoke::test::smooth_image(16, 16, 1);  // one odd one out
    stoke::test::write_bytes(dir.path() / "data" / "c1" / "gray.jpg", encode_jpeg(gray.data(), 16, 16, 1, 90));
    report = pack_image_folder((dir.path() / "data").string(), pack.string());
  }
  TempDir dir{"pipeline-pack"};
  fs::path pack = dir.path() / "data.pack";
  PackReport report;
};

TEST_F(Pack, RoundTripBytesLabelsNames) {
  const ImageFolder folder = index_image_folder((dir.path() / "data").string());
  ASSERT_EQ(report.samples, static_cast<int64_t>(folder.samples.size()));
  EXPECT_TRUE(report.bad.empty());
  EXPECT_EQ(report.bytes, fs::file_size(pack));
  EXPECT_FALSE(fs::exists(pack.string() + ".tmp"));
  auto r = PackReader::open(pack.string(), true);
  ASSERT_EQ(r->size(), report.samples);
  EXPECT_EQ(r->classes(), folder.classes);
  std::vector<uint8_t> scratch;
  for (int64_t i = 0; i < r->size(); ++i) {
    const Sample& s = folder.samples[static_cast<size_t>(i)];
    const std::vector<uint8_t> want = slurp(s.path);
    const std::span<const uint8_t> got = r->bytes(i);
    ASSERT_EQ(got.size(), want.size()) << s.path;
    ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size()), 0) << s.path;
    EXPECT_EQ(r->label(i), s.label);
    EXPECT_EQ(std::string(r->sample_name(i)),
              folder.classes[static_cast<size_t>(s.label)] + "/" + fs::path(s.path).filename().string());
    EXPECT_NE(r->name(i).find(pack.string()), std::string::npos);
    // The Source interface hands out the same zero-copy view.
    std::span<const uint8_t> via;
    EXPECT_EQ(r->read(i, scratch, via, nullptr), ReadStatus::ok);
    EXPECT_EQ(via.data(), got.data());
  }
  EXPECT_TRUE(scratch.empty()) << "a pack never copies";
  // Packing is deterministic.
  const fs::path again = dir.path() / "again.pack";
  pack_image_folder((dir.path() / "data").string(), again.string());
  EXPECT_EQ(slurp(pack), slurp(again));
}

TEST_F(Pack, OpenSourcePicksFolderOrPack) {
  auto f = open_source((dir.path() / "data").string());
  auto p = open_source(pack.string());
  ASSERT_EQ(f->size(), p->size());
  EXPECT_NE(dynamic_cast<const FolderSource*>(f.get()), nullptr);
  EXPECT_NE(dynamic_cast<const PackReader*>(p.get()), nullptr);
  EXPECT_NE(p->description().find("pack"), std::string::npos);
  std::vector<uint8_t> s1, s2;
  for (int64_t i = 0; i < f->size(); ++i) {
    std::span<const uint8_t> a, b;
    ASSERT_EQ(f->read(i, s1, a, nullptr), ReadStatus::ok);
    ASSERT_EQ(p->read(i, s2, b, nullptr), ReadStatus::ok);
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end()));
    ASSERT_EQ(f->label(i), p->label(i));
  }
  const DataShape fs_shape = probe_source_shape(*f), pk_shape = probe_source_shape(*p);
  EXPECT_EQ(fs_shape.h, pk_shape.h);
  EXPECT_EQ(fs_shape.c, 3);
  EXPECT_EQ(pk_shape.c, 3);
  EXPECT_THROW(open_source((dir.path() / "missing").string()), stoke::UserError);
}

TEST_F(Pack, BadFilesKeepTheirIndexOrAreDropped) {
  stoke::test::write_bytes(dir.path() / "data" / "c1" / "zz_broken.jpg", {'n', 'o', 'p', 'e'});
  const auto folder = open_source((dir.path() / "data").string());
  const fs::path p2 = dir.path() / "p2.pack";
  const PackReport kept = pack_image_folder((dir.path() / "data").string(), p2.string());
  EXPECT_EQ(kept.samples, report.samples + 1);
  ASSERT_EQ(kept.bad.size(), 1u);
  EXPECT_EQ(kept.dropped, 0);
  EXPECT_NE(kept.bad[0].find("zz_broken.jpg"), std::string::npos) << kept.bad[0];
  auto r = PackReader::open(p2.string(), true);
  ASSERT_EQ(r->size(), folder->size());
  for (int64_t i = 0; i < r->size(); ++i)
    ASSERT_EQ(std::string(r->sample_name(i)).substr(3), fs::path(folder->name(i)).filename().string());
  const fs::path p3 = dir.path() / "p3.pack";
  PackOptions drop;
  drop.drop_bad = true;
  const PackReport dropped = pack_image_folder((dir.path() / "data").string(), p3.string(), drop);
  EXPECT_EQ(dropped.samples, report.samples);
  EXPECT_EQ(dropped.dropped, 1);
  EXPECT_THROW(pack_image_folder((dir.path() / "nowhere").string(), p2.string()), stoke::UserError);
}

TEST_F(Pack, BadMagic) {
  std::vector<uint8_t> b = slurp(pack);
  b[0] = 'X';
  spit(pack, b);
  expect_open_error(pack, "bad magic");
}

TEST_F(Pack, TooShortOrTruncated) {
  const std::vector<uint8_t> b = slurp(pack);
  spit(pack, std::vector<uint8_t>(b.begin(), b.begin() + 30));
  expect_open_error(pack, "truncated");
  spit(pack, std::vector<uint8_t>(b.begin(), b.end() - 100));
  expect_open_error(pack, "truncated");
  spit(pack, {});
  expect_open_error(pack, "truncated");
  std::vector<uint8_t> longer = b;
  longer.push_back(0);
  spit(pack, longer);
  expect_open_error(pack, "unexpected bytes");
}

TEST_F(Pack, CorruptHeaderAndIndexAreCaughtByChecksums) {
  std::vector<uint8_t> b = slurp(pack);
  std::vector<uint8_t> h = b;
  h[20] ^= 1;  // sample count
  spit(pack, h);
  expect_open_error(pack, "header checksum");
  std::vector<uint8_t> m = b;
  m[get64(b, 40) + 9] ^= 0x40;  // inside the index
  spit(pack, m);
  expect_open_error(pack, "index checksum");
  std::vector<uint8_t> v = b;
  put32(v, 8, 2);
  fix_crcs(v);
  spit(pack, v);
  expect_open_error(pack, "unsupported version 2");
}

TEST_F(Pack, OffsetsOutOfBounds) {
  const std::vector<uint8_t> b = slurp(pack);
  const uint64_t meta = get64(b, 40);
  const uint64_t nclasses = get32(b, 24);
  const size_t entry3 = meta + nclasses * 8 + 3 * 32;
  std::vector<uint8_t> x = b;
  put64(x, entry3, meta - 10);  // runs into the index
  fix_crcs(x);
  spit(pack, x);
  expect_open_error(pack, "sample 3: bytes");
  x = b;
  put64(x, entry3, 5);  // inside the header
  fix_crcs(x);
  spit(pack, x);
  expect_open_error(pack, "outside the data section");
  x = b;
  put32(x, entry3 + 16, 99);  // label
  fix_crcs(x);
  spit(pack, x);
  expect_open_error(pack, "label 99");
  x = b;
  put64(x, 40, b.size() + 5);  // index offset past the end (checked before the index checksum)
  put32(x, 60, crc(x.data(), 60));
  spit(pack, x);
  expect_open_error(pack, "out of bounds");
}

TEST_F(Pack, BadSampleCrc) {
  std::vector<uint8_t> b = slurp(pack);
  auto r = PackReader::open(pack.string());
  const auto off = static_cast<size_t>(r->bytes(4).data() - r->bytes(0).data()) + 64;
  const std::string name(r->sample_name(4));
  r.reset();
  b[off + 50] ^= 0x5a;
  spit(pack, b);
  EXPECT_NO_THROW(PackReader::open(pack.string(), false));  // structure is fine
  expect_open_error(pack, stoke::str("sample 4 (", name, "): CRC-32 mismatch"), true);
}

}  // namespace
