// io::FileCacheSource: folders of small files are read from disk once, then served from memory — the same bytes,
// whatever the thread count, within a budget, and through the whole pipeline bit-identically.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>

#include "io/source/file_cache.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/source.h"
#include "tests/pipeline/pipeline_util.h"

using namespace std::chrono_literals;
using namespace stoke::io;
using stoke::test::finishes_within;
using stoke::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_all(const Source& s, int64_t i) {
  std::vector<uint8_t> scratch;
  std::span<const uint8_t> bytes;
  std::string err;
  EXPECT_EQ(s.read(i, scratch, bytes, &err), ReadStatus::ok) << s.name(i) << ": " << err;
  return {bytes.begin(), bytes.end()};
}

class FileCache : public ::testing::Test {
 protected:
  void SetUp() override { stoke::test::write_folder(root, 3, 20, 24, 20, 3, 6); }  // 60 images
  TempDir dir{"file-cache"};
  fs::path root = dir.path() / "data";
};

}  // namespace

TEST_F(FileCache, KeepsEveryFileAfterOneReadAndServesItWithoutTheDisk) {
  auto folder = open_source(root.string());
  std::vector<std::vector<uint8_t>> want;
  for (int64_t i = 0; i < folder->size(); ++i) want.push_back(read_all(*folder, i));

  FileCacheSource cache(folder, int64_t{64} << 20);
  for (int64_t i = 0; i < cache.size(); ++i) EXPECT_EQ(read_all(cache, i), want[static_cast<size_t>(i)]) << i;
  FileCacheSource::Stats s = cache.stats();
  EXPECT_EQ(s.kept, 60);
  EXPECT_EQ(s.misses, 60);
  EXPECT_EQ(s.hits, 0);
  EXPECT_FALSE(s.full);

  fs::remove_all(root);  // the disk is gone: the second epoch does not notice
  for (int64_t i = cache.size() - 1; i >= 0; --i) EXPECT_EQ(read_all(cache, i), want[static_cast<size_t>(i)]) << i;
  s = cache.stats();
  EXPECT_EQ(s.hits, 60);
  EXPECT_EQ(s.misses, 60);
  EXPECT_EQ(cache.label(7), folder->label(7));
  EXPECT_EQ(cache.name(7), folder->name(7));
}

TEST_F(FileCache, ABudgetKeepsTheFirstFilesAndReadsTheRestFromDisk) {
  auto folder = open_source(root.string());
  const int64_t one = static_cast<int64_t>(read_all(*folder, 0).size());
  FileCacheSource cache(folder, 10 * ((one + 15) / 16 * 16) + 8);  // about ten files' worth (sizes vary a little)
  for (int64_t i = 0; i < cache.size(); ++i) read_all(cache, i);
  const FileCacheSource::Stats s = cache.stats();
  EXPECT_TRUE(s.full);
  EXPECT_GE(s.kept, 5);
  EXPECT_LE(s.kept, 12);
  EXPECT_LE(s.kept_bytes, cache.budget());
  // Kept ones come from memory, the others still from disk, all correct.
  for (int64_t i = 0; i < cache.size(); ++i) EXPECT_EQ(read_all(cache, i), read_all(*folder, i)) << i;
  EXPECT_EQ(cache.stats().hits, s.kept);

  FileCacheSource off(folder, 0);  // no budget: a plain pass-through
  EXPECT_EQ(read_all(off, 3), read_all(*folder, 3));
  EXPECT_EQ(off.stats().kept, 0);
}

TEST_F(FileCache, ConcurrentReadersAlwaysSeeWholeFiles) {
  auto folder = open_source(root.string());
  std::vector<std::vector<uint8_t>> want;
  for (int64_t i = 0; i < folder->size(); ++i) want.push_back(read_all(*folder, i));
  FileCacheSource cache(folder, int64_t{64} << 20);
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      std::vector<int64_t> order(static_cast<size_t>(cache.size()));
      std::iota(order.begin(), order.end(), 0);
      std::mt19937 rng(static_cast<unsigned>(t));
      std::vector<uint8_t> scratch;
      for (int pass = 0; pass < 20; ++pass) {
        std::shuffle(order.begin(), order.end(), rng);
        for (int64_t i : order) {
          std::span<const uint8_t> bytes;
          std::string err;
          if (cache.read(i, scratch, bytes, &err) != ReadStatus::ok ||
              !std::equal(bytes.begin(), bytes.end(), want[static_cast<size_t>(i)].begin(),
                          want[static_cast<size_t>(i)].end()))
            wrong.fetch_add(1);
        }
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(cache.stats().kept, 60);
  EXPECT_EQ(cache.stats().hits + cache.stats().misses, 4 * 20 * 60);
}

TEST_F(FileCache, AFileGoneBeforeItsFirstReadIsStillReportedAndNotKept) {
  auto folder = open_source(root.string());
  FileCacheSource cache(folder, int64_t{64} << 20);
  fs::remove(folder->name(5));
  std::vector<uint8_t> scratch;
  std::span<const uint8_t> bytes;
  std::string err;
  EXPECT_EQ(cache.read(5, scratch, bytes, &err), ReadStatus::vanished);
  EXPECT_EQ(cache.read(5, scratch, bytes, &err), ReadStatus::vanished) << "a failure is not kept";
  EXPECT_EQ(cache.stats().kept, 0);
}

TEST_F(FileCache, ThePipelineGivesTheSameBatchesThroughTheCache) {
  auto folder = open_source(root.string());
  PipelineConfig c;
  c.h = 24;
  c.w = 20;
  c.c = 3;
  c.batch = 6;
  c.decoders = 2;
  c.seed = 9;
  c.augment = true;
  c.on_warning = [](const std::string&) {};
  auto run = [&](std::shared_ptr<const Source> src) {
    std::vector<std::vector<uint8_t>> out;
    finishes_within(60s, [&] {
      InputPipeline p(src, c);
      p.start(0);
      for (int k = 0; k < 30; ++k) {  // three epochs
        Batch b = p.acquire();
        ASSERT_TRUE(b);
        out.emplace_back(b.pixels, b.pixels + static_cast<size_t>(b.size) * 24 * 20 * 3);
        p.release(b.tag);
      }
    });
    return out;
  };
  const auto plain = run(folder);
  auto cached = std::make_shared<FileCacheSource>(folder, int64_t{64} << 20);
  EXPECT_EQ(run(cached), plain);
  EXPECT_EQ(cached->stats().kept, 60);
  EXPECT_GE(cached->stats().hits, 2 * 60) << "epochs 2 and 3 from memory";
}

TEST(AvailableMemory, AContainersMemoryLimitLowersWhatIsAvailable) {
  TempDir d("available-memory");
  const fs::path meminfo = d.path() / "meminfo";
  stoke::test::write_bytes(meminfo, [] {
    const std::string m = "MemTotal:       24000000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n";
    return std::vector<uint8_t>(m.begin(), m.end());
  }());
  auto put = [&](const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    stoke::test::write_bytes(p, std::vector<uint8_t>(text.begin(), text.end()));
  };
  const int64_t host = int64_t{20000000} * 1024;
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), ""), host);
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), (d.path() / "none").string()), host) << "no cgroup files";

  const fs::path v2 = d.path() / "v2";
  put(v2 / "memory.max", "max\n");
  put(v2 / "memory.current", "123456\n");
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), v2.string()), host) << "cgroup v2 without a limit";
  put(v2 / "memory.max", "8589934592\n");  // 8 GiB limit, 3 GiB used
  put(v2 / "memory.current", "3221225472\n");
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), v2.string()), int64_t{5} << 30);
  put(v2 / "memory.current", "9000000000\n");  // over the limit (page cache counts): nothing left
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), v2.string()), 0);

  const fs::path v1 = d.path() / "v1";
  put(v1 / "memory" / "memory.limit_in_bytes", "4294967296\n");
  put(v1 / "memory" / "memory.usage_in_bytes", "1073741824\n");
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), v1.string()), int64_t{3} << 30);
  put(v1 / "memory" / "memory.limit_in_bytes", "9223372036854771712\n");  // v1's "unlimited"
  EXPECT_EQ(available_memory_bytes_from(meminfo.string(), v1.string()), host);

  EXPECT_GT(available_memory_bytes(), 0) << "this machine";
}
