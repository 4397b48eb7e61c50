// The decoder pool and the pipeline end to end: determinism for any decoder count, resume, padding, folder vs
// pack, bad files (replaced, counted, quarantined; strict), vanished files, the watchdog, errors, shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <thread>

#include "base/error.h"
#include "io/codec/codec.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/pack.h"
#include "io/source/source.h"
#include "tests/pipeline/pipeline_util.h"

namespace {

using namespace std::chrono_literals;
using namespace stoke::io;
namespace fs = std::filesystem;
using stoke::test::finishes_within;
using stoke::test::TempDir;

// A batch, flattened: header facts, then pixels, labels, ids.
std::vector<uint8_t> serialize(const Batch& b, int64_t sample_bytes) {
  std::vector<uint8_t> out;
  auto put = [&](const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    out.insert(out.end(), c, c + n);
  };
  put(&b.epoch, 8);
  put(&b.index, 8);
  put(&b.size, 4);
  put(&b.valid, 4);
  put(&b.corrupt, 4);
  put(b.pixels, static_cast<size_t>(b.size * sample_bytes));
  put(b.labels, static_cast<size_t>(b.size) * 4);
  put(b.ids, static_cast<size_t>(b.size) * 8);
  return out;
}

// Takes up to n batches (fewer at the end), releasing each after copying it.
std::vector<std::vector<uint8_t>> take(InputPipeline& p, int64_t n) {
  std::vector<std::vector<uint8_t>> out;
  const int64_t sb = int64_t{p.h()} * p.w() * p.c();
  for (int64_t i = 0; i < n; ++i) {
    Batch b = p.acquire();
    if (!b) break;
    out.push_back(serialize(b, sb));
    p.release(b.tag);
  }
  return out;
}

PipelineConfig train_cfg(int decoders, int slots = 0) {
  PipelineConfig c;
  c.h = 24;
  c.w = 20;
  c.c = 3;
  c.batch = 5;
  c.decoders = decoders;
  c.slots = slots;
  c.seed = 42;
  c.augment = true;
  c.on_warning = [](const std::string&) {};
  return c;
}

class Pool : public ::testing::Test {
 protected:
  void SetUp() override { stoke::test::write_folder(root, 3, 13, 30, 40, 3, 6); }  // 39 images, sizes vary
  TempDir dir{"pipeline-pool"};
  fs::path root = dir.path() / "data";
  std::shared_ptr<const Source> folder() { return open_source(root.string()); }
};

TEST_F(Pool, SameBatchesForAnyDecoderCount) {
  std::vector<std::vector<uint8_t>> ref;
  finishes_within(60s, [&] {
    InputPipeline p(folder(), train_cfg(1, 3));
    ASSERT_EQ(p.batches_per_epoch(), 7);  // 39 / 5, drop_last
    p.start(0);
    ref = take(p, 25);  // three and a half epochs: crosses epoch boundaries without draining
  });
  ASSERT_EQ(ref.size(), 25u);
  for (auto [dec, slots] : {std::pair{3, 3}, {2, 8}, {3, 0}}) {
    finishes_within(60s, [&, dec = dec, slots = slots] {
      InputPipeline p(folder(), train_cfg(dec, slots));
      p.start(0);
      const auto got = take(p, 25);
      ASSERT_EQ(got.size(), ref.size());
      for (size_t i = 0; i < ref.size(); ++i)
        ASSERT_EQ(got[i], ref[i]) << "batch " << i << " with " << dec << " decoders";
    });
  }
}

TEST_F(Pool, BatchesFollowTheSamplerAndCarryTheirLabels) {
  auto src = folder();
  InputPipeline p(src, train_cfg(2));
  p.start(0);
  const int64_t bpe = p.batches_per_epoch();
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<int64_t> order = p.sampler().epoch_order(epoch);
    for (int64_t k = 0; k < bpe; ++k) {
      Batch b = p.acquire();
      ASSERT_TRUE(b);
      ASSERT_EQ(b.epoch, epoch);
      ASSERT_EQ(b.index, k);
      ASSERT_EQ(b.size, 5);
      ASSERT_EQ(b.valid, 5);
      ASSERT_EQ(b.corrupt, 0);
      for (int i = 0; i < b.size; ++i) {
        ASSERT_EQ(static_cast<int64_t>(b.ids[i]), order[static_cast<size_t>(k * 5 + i)]);
        ASSERT_EQ(b.labels[i], src->label(static_cast<int64_t>(b.ids[i])));
      }
      EXPECT_EQ(b.base, b.pixels);
      EXPECT_EQ(reinterpret_cast<const uint8_t*>(b.labels), b.base + b.labels_offset);
      p.release(b.tag);
    }
  }
  const PipelineStats st = p.stats();
  EXPECT_GE(st.images, 3 * bpe * 5);
  EXPECT_EQ(st.batches, 3 * bpe);
  EXPECT_EQ(st.corrupt, 0);
  ASSERT_EQ(st.decoders.size(), 2u);
  double decode = 0;
  for (const DecoderStats& d : st.decoders) decode += d.decode_seconds;
  EXPECT_GT(decode, 0.0);
  EXPECT_GE(st.consumer_wait_seconds, 0.0);
  const RingOccupancy o = st.ring;
  EXPECT_EQ(o.free + o.filling + o.ready + o.in_flight, p.slots());
  EXPECT_FALSE(p.pinned());
  EXPECT_FALSE(p.memory_reason().empty());
}

TEST_F(Pool, ResumeAtEpochAndCursorGivesTheSameBatches) {
  InputPipeline p(folder(), train_cfg(2));
  p.start(0);
  const auto full = take(p, 20);
  const int64_t bpe = p.batches_per_epoch();
  p.start(1, 3);  // restart in place: a resumed run
  const auto rest = take(p, 20 - (bpe + 3));
  ASSERT_EQ(rest.size(), static_cast<size_t>(20 - (bpe + 3)));
  for (size_t i = 0; i < rest.size(); ++i) ASSERT_EQ(rest[i], full[static_cast<size_t>(bpe + 3) + i]) << i;
  EXPECT_THROW(p.start(0, bpe + 1), stoke::UserError);
  p.start(0, bpe);  // cursor == batches per epoch: the start of the next epoch
  EXPECT_EQ(take(p, 1)[0], full[static_cast<size_t>(bpe)]);
}

TEST_F(Pool, EvaluationOrderPaddingAndEnd) {
  auto src = folder();
  PipelineConfig c = train_cfg(3);
  c.augment = false;
  c.shuffle = false;
  c.drop_last = false;
  c.batch = 8;
  c.end_epoch = 1;
  InputPipeline p(src, c);
  ASSERT_EQ(p.batches_per_epoch(), 5);  // 39 = 4 x 8 + 7
  p.start(0);
  std::vector<uint8_t> want(static_cast<size_t>(24 * 20 * 3));
  std::vector<uint8_t> scratch;
  for (int64_t k = 0; k < 5; ++k) {
    Batch b = p.acquire();
    ASSERT_TRUE(b);
    EXPECT_EQ(b.valid, k < 4 ? 8 : 7);
    EXPECT_EQ(b.size, 8);
    for (int i = 0; i < b.size; ++i) {
      const int64_t pos = k * 8 + i;
      ASSERT_EQ(static_cast<int64_t>(b.ids[i]), pos < 39 ? pos : pos - 39) << "pads repeat from the start";
      std::span<const uint8_t> bytes;
      ASSERT_EQ(src->read(static_cast<int64_t>(b.ids[i]), scratch, bytes, nullptr), ReadStatus::ok);
      std::string err;
      ASSERT_TRUE(decode_to(bytes.data(), bytes.size(), 24, 20, 3, want.data(), &err));
      ASSERT_EQ(std::memcmp(b.pixels + i * want.size(), want.data(), want.size()), 0)
          << "evaluation: centre crop to the target's aspect, then resize (as predict decodes)";
    }
    p.release(b.tag);
  }
  EXPECT_FALSE(p.acquire()) << "end_epoch reached";
  EXPECT_FALSE(p.acquire());
}

TEST_F(Pool, FolderAndPackGiveIdenticalBatches) {
  const fs::path pack = dir.path() / "data.pack";
  pack_image_folder(root.string(), pack.string());
  InputPipeline a(folder(), train_cfg(2));
  InputPipeline b(open_source(pack.string()), train_cfg(3));
  a.start(0);
  b.start(0);
  EXPECT_EQ(take(a, 16), take(b, 16));
}

TEST_F(Pool, PermutationsStayRightOverManyShortEpochs) {
  // 2 batches per epoch and 8 slots: up to 5 epochs in flight at once.
  TempDir small("pipeline-pool-small");
  stoke::test::write_folder(small.path(), 2, 3, 10, 10, 1);
  PipelineConfig c = train_cfg(3, 8);
  c.batch = 3;
  c.c = 1;
  InputPipeline p(open_source(small.str()), c);
  ASSERT_EQ(p.batches_per_epoch(), 2);
  p.start(0);
  for (int64_t e = 0; e < 15; ++e) {
    const std::vector<int64_t> order = p.sampler().epoch_order(e);
    for (int k = 0; k < 2; ++k) {
      Batch b = p.acquire();
      ASSERT_EQ(b.epoch, e);
      for (int i = 0; i < 3; ++i) ASSERT_EQ(static_cast<int64_t>(b.ids[i]), order[static_cast<size_t>(k * 3 + i)]);
      p.release(b.tag);
    }
  }
}

// ---- bad input -------------------------------------------------------------------------------------------------

class BadInput : public Pool {
 protected:
  void SetUp() override {
    Pool::SetUp();
    const auto px = stoke::test::smooth_image(30, 40, 3, 77);
    const std::vector<uint8_t> good = encode_jpeg(px.data(), 30, 40, 3, 90);
    const fs::path c1 = root / "c1";
    stoke::test::write_bytes(c1 / "bad_zero.jpg", {});
    stoke::test::write_bytes(c1 / "bad_text.jpg", {'h', 'e', 'l', 'l', 'o', '\n'});
    stoke::test::write_bytes(c1 / "bad_trunc.jpg", std::vector<uint8_t>(good.begin(), good.begin() + 200));
    stoke::test::write_bytes(root / "c2" / "bad_12bit.jpg", stoke::test::with_precision(good, 12));
    stoke::test::write_bytes(root / "c0" / "bad_huge.jpg", stoke::test::with_dims(good, 65000, 65000));
    // Valid, just unusual: decoded, not quarantined.
    const auto k = stoke::test::smooth_image(30, 40, 4, 5);
    stoke::test::write_bytes(root / "c0" / "ok_cmyk.jpg", stoke::test::libjpeg_encode(k, 30, 40, 4, false));
    stoke::test::write_bytes(root / "c2" / "ok_progressive.jpg",
                             stoke::test::libjpeg_encode(px, 30, 40, 3, true, 2, 2));
    // 39 + 5 bad + 2 odd = 46 samples.
  }
  const std::vector<std::string> bad_names = {"bad_zero.jpg", "bad_text.jpg", "bad_trunc.jpg", "bad_12bit.jpg",
                                              "bad_huge.jpg"};
};

TEST_F(BadInput, ReplacedCountedWarnedOnceAndQuarantined) {
  auto src = folder();
  ASSERT_EQ(src->size(), 46);
  std::set<int64_t> bad_ids;
  for (int64_t i = 0; i < src->size(); ++i)
    if (src->name(i).find("bad_") != std::string::npos) bad_ids.insert(i);
  ASSERT_EQ(bad_ids.size(), 5u);
  const fs::path q = dir.path() / "quarantine.txt";
  std::vector<std::string> warnings;
  std::mutex mu;
  PipelineConfig c = train_cfg(3);
  c.batch = 23;  // 2 batches per epoch, every sample visited
  c.quarantine_path = q.string();
  c.on_warning = [&](const std::string& m) {
    std::lock_guard lk(mu);
    warnings.push_back(m);
  };
  std::vector<std::vector<uint8_t>> first;
  {
    InputPipeline p(src, c);
    p.start(0);
    for (int epoch = 0; epoch < 3; ++epoch) {
      int replaced = 0;
      for (int k = 0; k < 2; ++k) {
        Batch b = p.acquire();
        ASSERT_TRUE(b);
        ASSERT_EQ(b.size, 23);
        replaced += b.corrupt;
        for (int i = 0; i < b.size; ++i)
          ASSERT_EQ(bad_ids.count(static_cast<int64_t>(b.ids[i])), 0u) << "a bad sample got through";
        first.push_back(serialize(b, 24 * 20 * 3));
        p.release(b.tag);
      }
      EXPECT_EQ(replaced, 5) << "every bad sample replaced once per epoch";
    }
    EXPECT_EQ(p.stats().corrupt, 5);
    EXPECT_EQ(p.quarantined().size(), 5u);
  }
  EXPECT_EQ(warnings.size(), 5u) << "warned once per file, not once per epoch";
  std::ifstream in(q);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u);
  for (const std::string& name : bad_names) {
    int hits = 0;
    for (const std::string& l : lines) hits += l.find(name) != std::string::npos;
    EXPECT_EQ(hits, 1) << name;
  }
  for (const std::string& l : lines) {
    EXPECT_NE(l.find('\t'), std::string::npos) << l;
    EXPECT_NE(l.find(root.string()), std::string::npos) << "the full path: " << l;
  }
  // Deterministic even with bad files: one decoder gives the same bytes.
  c.decoders = 1;
  c.quarantine_path.clear();
  InputPipeline p1(src, c);
  p1.start(0);
  EXPECT_EQ(take(p1, 6), first);
}

TEST_F(BadInput, ItsPackGivesTheSameBatches) {
  // Bad files keep their index in a pack (stored as they are), so the stand-ins are the same too.
  const fs::path pack = dir.path() / "bad.pack";
  const PackReport rep = pack_image_folder(root.string(), pack.string());
  EXPECT_EQ(rep.bad.size(), 5u);
  PipelineConfig c = train_cfg(2);
  c.batch = 23;
  InputPipeline a(folder(), c), b(open_source(pack.string()), c);
  a.start(0);
  b.start(0);
  const auto from_folder = take(a, 4), from_pack = take(b, 4);
  EXPECT_EQ(from_folder, from_pack);
  EXPECT_EQ(a.stats().corrupt, 5);
  EXPECT_EQ(b.stats().corrupt, 5);
  for (const std::string& q : b.quarantined()) EXPECT_NE(q.find(pack.string() + "#"), std::string::npos) << q;
}

TEST_F(BadInput, StrictModeStopsWithTheFileName) {
  PipelineConfig c = train_cfg(2);
  c.batch = 23;
  c.strict = true;
  finishes_within(30s, [&] {
    InputPipeline p(folder(), c);
    p.start(0);
    try {
      for (int i = 0; i < 4; ++i) {
        Batch b = p.acquire();
        ASSERT_TRUE(b);
        p.release(b.tag);
      }
      FAIL() << "strict mode let a bad file through";
    } catch (const stoke::UserError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("strict"), std::string::npos) << m;
      bool named = false;
      for (const std::string& n : bad_names)
        named |= m.find(root.string()) != std::string::npos && m.find(n) != std::string::npos;
      EXPECT_TRUE(named) << m;
    }
  });
}

TEST_F(Pool, VanishedFilesAreSkipped) {
  auto src = folder();
  const std::string gone_before = src->name(4), gone_during = src->name(30);
  fs::remove(gone_before);  // after indexing, before the run
  std::vector<std::string> warnings;
  std::mutex mu;
  PipelineConfig c = train_cfg(2, 3);
  c.batch = 13;  // 3 batches per epoch: all samples
  c.on_warning = [&](const std::string& m) {
    std::lock_guard lk(mu);
    warnings.push_back(m);
  };
  finishes_within(60s, [&] {
    InputPipeline p(src, c);
    p.start(0);
    ASSERT_EQ(take(p, 3).size(), 3u);
    fs::remove(gone_during);  // mid-run
    ASSERT_EQ(take(p, 6).size(), 6u);
    EXPECT_EQ(p.stats().vanished, 2);
    EXPECT_EQ(p.stats().corrupt, 0) << "a file deleted mid-run is not corrupt";
  });
  ASSERT_EQ(warnings.size(), 2u);
  for (const std::string& w : warnings) EXPECT_NE(w.find("vanished"), std::string::npos) << w;
  EXPECT_TRUE(warnings[0].find(gone_before) != std::string::npos || warnings[1].find(gone_before) != std::string::npos);
  EXPECT_TRUE(warnings[0].find(gone_during) != std::string::npos || warnings[1].find(gone_during) != std::string::npos);
}

// ---- watchdog, errors, shutdown ---------------------------------------------------------------------------------

TEST_F(Pool, WatchdogReportsTheStalledDecoderAndWaitingGoesOn) {
  auto base = folder();
  auto slow = std::make_shared<stoke::test::FaultySource>(base, 12, stoke::test::FaultySource::Fault::slow, 1500ms);
  std::vector<std::string> reports;
  std::mutex mu;
  PipelineConfig c = train_cfg(1, 3);
  c.shuffle = false;
  c.watchdog_seconds = 0.3;
  c.on_stall = [&](const std::string& r) {
    std::lock_guard lk(mu);
    reports.push_back(r);
  };
  finishes_within(60s, [&] {
    InputPipeline p(slow, c);
    p.start(0);
    EXPECT_EQ(take(p, 7).size(), 7u) << "the slow sample arrives eventually";
  });
  std::lock_guard lk(mu);
  ASSERT_GE(reports.size(), 1u);
  const std::string& r = reports[0];
  if (std::getenv("STOKE_TEST_VERBOSE")) std::printf("%s\n", r.c_str());
  EXPECT_NE(r.find("stalled"), std::string::npos) << r;
  EXPECT_NE(r.find("decoder 0: read " + base->name(12)), std::string::npos) << r;
  EXPECT_NE(r.find("ring: 3 slots"), std::string::npos) << r;
  EXPECT_NE(r.find("batch 2 of epoch 0"), std::string::npos) << r;  // sample 12 is in batch 2 (5 per batch)
  EXPECT_LE(reports.size(), 6u) << "one report per period, not a flood";
}

TEST_F(Pool, AnExceptionInADecoderReachesTheConsumer) {
  auto bad = std::make_shared<stoke::test::FaultySource>(folder(), 9, stoke::test::FaultySource::Fault::throws);
  PipelineConfig c = train_cfg(3);
  c.shuffle = false;
  finishes_within(30s, [&] {
    InputPipeline p(bad, c);
    p.start(0);
    try {
      take(p, 7);
      FAIL() << "the decoder's exception vanished";
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "disk on fire");
    }
    const PipelineStats st = p.stats();
    (void)st;
    EXPECT_THROW(p.acquire(), std::runtime_error) << "the error stays";
  });
}

TEST_F(Pool, ShutdownMidEpochNeverHangs) {
  auto src = folder();
  finishes_within(120s, [&] {
    for (uint64_t round = 0; round < 30; ++round) {
      InputPipeline p(src, train_cfg(1 + static_cast<int>(round % 3), 3 + static_cast<int>(round % 2)));
      p.start(static_cast<int64_t>(round % 2));
      const auto k = static_cast<int64_t>(stoke::uniform_below(round, 0, 6));
      int64_t held = -1;
      for (int64_t i = 0; i < k; ++i) {
        Batch b = p.acquire();
        ASSERT_TRUE(b);
        if (held < 0 && round % 3 == 0) {
          held = b.tag;  // never released
        } else {
          p.release(b.tag);
        }
      }
      if (round % 2) p.stop();
      // else: the destructor stops it, producers possibly blocked on a full ring
    }
  });
}

TEST_F(Pool, StopFromAnotherThreadWakesABlockedConsumer) {
  auto slow = std::make_shared<stoke::test::FaultySource>(folder(), 0, stoke::test::FaultySource::Fault::slow, 800ms);
  PipelineConfig c = train_cfg(1);
  c.shuffle = false;
  finishes_within(30s, [&] {
    InputPipeline p(slow, c);
    p.start(0);
    std::thread stopper([&] {
      std::this_thread::sleep_for(100ms);
      p.stop();
    });
    Batch b = p.acquire();  // blocked on sample 0 until stop() closes the ring
    EXPECT_FALSE(b);
    stopper.join();
  });
}

TEST_F(Pool, AutoDecodersAndConfigErrors) {
  PipelineConfig c = train_cfg(0);
  InputPipeline p(folder(), c);
  EXPECT_GE(p.decoders(), 1);
  EXPECT_EQ(p.decoders_reason().rfind("decoders auto: ", 0), 0u) << p.decoders_reason();
  EXPECT_NE(p.decoders_reason().find("img/s"), std::string::npos) << p.decoders_reason();
  EXPECT_GE(p.slots(), 4);
  std::string why;
  double rate = 0;
  TransformConfig t;
  t.h = 24;
  t.w = 20;
  t.c = 3;
  const int n = choose_decoders(*folder(), t, 0, 1.0, &why, &rate);
  EXPECT_EQ(n, 1) << why;  // one image a second needs one thread
  EXPECT_GT(rate, 0.0);
  PipelineConfig bad = train_cfg(1);
  bad.watchdog_seconds = 0;
  EXPECT_THROW(InputPipeline(folder(), bad), stoke::UserError);
  bad = train_cfg(1);
  bad.batch = 0;
  EXPECT_THROW(InputPipeline(folder(), bad), stoke::UserError);
  bad = train_cfg(1);
  bad.c = 2;
  EXPECT_THROW(InputPipeline(folder(), bad), stoke::UserError);
  // The data's own shape when none is given.
  PipelineConfig own = train_cfg(1);
  own.h = own.w = own.c = 0;
  InputPipeline q(folder(), own);
  EXPECT_EQ(q.c(), 3);
  EXPECT_GT(q.h(), 0);
}

}  // namespace
