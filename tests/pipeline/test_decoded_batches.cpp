// io::DecodedBatches, the decoded cache as a batch source: the batches the decoder ring gives (order, labels, pixels,
// flips drawn as the decoders draw them, across an epoch boundary), and a buffer is never handed out again before
// its release — the ring slot's rule, which the backend's asynchronous copy relies on.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "base/error.h"
#include "io/codec/resize.h"
#include "io/pipeline/decoded_batches.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/source.h"
#include "tests/pipeline/pipeline_util.h"

using namespace stoke::io;
using stoke::test::TempDir;

namespace {

constexpr int kBatch = 5;
constexpr uint64_t kSeed = 7;

struct Taken {
  int64_t epoch, index;
  std::vector<int64_t> ids;
  std::vector<int32_t> labels;
  std::vector<uint8_t> pixels;
};

class DecodedBatchesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stoke::test::write_folder(dir.path() / "data", 3, 13, 16, 16, 1);  // 39 images: 7 batches an epoch, 4 left out
    source = open_source((dir.path() / "data").string());
    pc.h = pc.w = 16;
    pc.c = 1;
    pc.batch = kBatch;
    pc.decoders = 2;
    pc.seed = kSeed;
    pc.augment = true;
    pc.aug.random_resized_crop = false;  // flips only: what a decoded cache can reproduce
    pc.pinned = false;
    sc.samples = source->size();
    sc.batch = kBatch;
    sc.seed = kSeed;
  }
  static Taken take(BatchSource& s, int64_t sample_bytes) {
    const Batch b = s.acquire();
    EXPECT_TRUE(b);
    Taken t{b.epoch, b.index, {b.ids, b.ids + b.size}, {}, {}};
    if (b.pixels) {
      t.labels.assign(b.labels, b.labels + b.size);
      t.pixels.assign(b.pixels, b.pixels + b.size * sample_bytes);
    }
    s.release(b.tag);
    return t;
  }
  TempDir dir{"decoded-batches"};
  std::shared_ptr<const Source> source;
  PipelineConfig pc;
  SamplerConfig sc;
};

}  // namespace

TEST_F(DecodedBatchesTest, GivesTheRingsBatchesBitForBit) {
  InputPipeline ring(source, pc);
  const DecodedCache cache(source, {16, 16, 1}, pc);
  DecodedBatches pixels(cache, sc, kSeed, /*flip=*/false, DecodedBatches::Feed::pixels);
  DecodedBatches ids(cache, sc, kSeed, /*flip=*/true, DecodedBatches::Feed::ids);
  ring.start(0, 3);
  pixels.start(0, 3);
  ids.start(0, 3);
  int flipped = 0;
  for (int k = 0; k < 12; ++k) {  // from batch 3 of epoch 0 into epoch 1
    const Taken want = take(ring, 256);
    const Taken got = take(pixels, 256);
    ASSERT_EQ(got.epoch, want.epoch) << k;
    ASSERT_EQ(got.index, want.index) << k;
    EXPECT_EQ(got.ids, want.ids) << k;
    EXPECT_EQ(got.labels, want.labels) << k;
    // The ring's decoders applied the flips; the cache holds unflipped pixels and names the flips instead.
    const Batch b = ids.acquire();
    ASSERT_TRUE(b);
    EXPECT_EQ(b.pixels, nullptr);
    ASSERT_NE(b.flips, nullptr);
    for (int i = 0; i < kBatch; ++i) {
      EXPECT_EQ(b.ids[i], want.ids[static_cast<size_t>(i)]);
      std::vector<uint8_t> px(got.pixels.begin() + i * 256, got.pixels.begin() + (i + 1) * 256);
      if (b.flips[i]) {
        stoke::io::flip_horizontal(px.data(), 16, 16, 1);
        ++flipped;
      }
      EXPECT_EQ(0, std::memcmp(px.data(), want.pixels.data() + i * 256, 256)) << "batch " << k << " sample " << i;
    }
    ids.release(b.tag);
  }
  EXPECT_GT(flipped, 10);
  EXPECT_LT(flipped, 50);
}

TEST_F(DecodedBatchesTest, ABufferIsReusedOnlyAfterItsRelease) {
  const DecodedCache cache(source, {16, 16, 1}, pc);
  DecodedBatches s(cache, sc, kSeed, false, DecodedBatches::Feed::pixels, 3);
  s.start(0, 0);
  std::vector<Batch> held;
  for (int k = 0; k < s.capacity(); ++k) held.push_back(s.acquire());
  for (int k = 1; k < 3; ++k) EXPECT_NE(held[0].pixels, held[static_cast<size_t>(k)].pixels);
  EXPECT_THROW(s.acquire(), stoke::Error);  // every buffer is still being copied from
  s.release(held[1].tag);
  const Batch next = s.acquire();
  EXPECT_EQ(next.tag, held[1].tag);
  EXPECT_EQ(next.pixels, held[1].pixels);
  EXPECT_EQ(next.index, 3);  // the throw consumed no batch
  EXPECT_THROW(s.release(held[1].tag + 100), stoke::Error);
}

// Validation from the cache: dataset order, one epoch ending in an empty batch (as the evaluation ring ends), the last
// batch padded to full size with only its real samples counted valid — the evaluation ring's batches exactly.
TEST_F(DecodedBatchesTest, OneEpochInDatasetOrderEndsAsTheEvaluationRingDoes) {
  PipelineConfig epc = pc;
  epc.augment = false;
  epc.shuffle = false;
  epc.drop_last = false;
  epc.replace_bad = false;
  epc.end_epoch = 1;
  InputPipeline ring(source, epc);
  const DecodedCache cache(source, {16, 16, 1}, epc);
  SamplerConfig esc = sc;
  esc.shuffle = false;
  esc.drop_last = false;
  DecodedBatches eval(cache, esc, kSeed, false, DecodedBatches::Feed::pixels, 1, DecodedBatches::Epochs::one);
  ring.start(0, 0);
  eval.start(0, 0);
  int batches = 0, valid = 0;
  while (Batch want = ring.acquire()) {
    const Batch got = eval.acquire();
    ASSERT_TRUE(got) << "batch " << batches;
    EXPECT_EQ(got.valid, want.valid);
    EXPECT_EQ(got.size, want.size);
    EXPECT_EQ(std::vector<int32_t>(got.labels, got.labels + got.valid),
              std::vector<int32_t>(want.labels, want.labels + want.valid));
    EXPECT_EQ(0, std::memcmp(got.pixels, want.pixels, static_cast<size_t>(want.valid) * 256)) << "batch " << batches;
    valid += got.valid;
    ++batches;
    ring.release(want.tag);
    eval.release(got.tag);
  }
  EXPECT_EQ(batches, 8);  // 39 images in batches of 5: the last holds 4
  EXPECT_EQ(valid, 39);
  EXPECT_FALSE(eval.acquire()) << "one epoch, then nothing";
}
