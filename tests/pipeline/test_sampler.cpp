// Sampler: the permutation, sharding with equal batch counts, padding, resume.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "base/error.h"
#include "base/rng.h"
#include "io/pipeline/sampler.h"

namespace {

using stoke::io::Sampler;
using stoke::io::SamplerConfig;

// The one sample order (base/permutation.h): rank 0 of world 1 must see exactly it. Restated here from its
// definition (Fisher-Yates, one keyed draw per position) so a change to the shared function fails this test.
std::vector<int64_t> reference_epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
  const uint64_t key = stoke::hash_key(seed, 0x5a3b1e, static_cast<uint64_t>(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(stoke::uniform_below(key, static_cast<uint64_t>(i), static_cast<uint64_t>(i + 1)));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

SamplerConfig cfg(int64_t n, int batch, int rank = 0, int world = 1, bool drop_last = true, uint64_t seed = 7) {
  SamplerConfig c;
  c.samples = n;
  c.batch = batch;
  c.rank = rank;
  c.world = world;
  c.drop_last = drop_last;
  c.seed = seed;
  return c;
}

TEST(Sampler, PermutationIsAPermutationAndChangesPerEpoch) {
  Sampler s(cfg(1000, 10));
  std::vector<int64_t> prev;
  for (int64_t e = 0; e < 4; ++e) {
    std::vector<int64_t> p = s.permutation(e);
    std::vector<int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[static_cast<size_t>(i)], i);
    EXPECT_NE(p, prev);
    prev = p;
  }
  EXPECT_EQ(s.permutation(2), s.permutation(2));  // a pure function
}

TEST(Sampler, SameOrderAsTheEngineForWorldOne) {
  for (int64_t n : {1, 2, 17, 1000, 60000})
    for (uint64_t seed : {0ull, 1ull, 12345ull})
      for (int64_t epoch : {-2, -1, 0, 1, 5}) {
        Sampler s(cfg(n, 1, 0, 1, true, seed));
        ASSERT_EQ(s.permutation(epoch), reference_epoch_permutation(n, seed, epoch))
            << n << " " << seed << " " << epoch;
      }
  // And the batches are consecutive slices of it.
  Sampler s(cfg(103, 10, 0, 1, true, 3));
  EXPECT_EQ(s.batches_per_epoch(), 10);
  std::vector<int64_t> ref = reference_epoch_permutation(103, 3, 4);
  ref.resize(100);
  EXPECT_EQ(s.epoch_order(4), ref);
}

TEST(Sampler, NoShuffleIsIdentity) {
  SamplerConfig c = cfg(10, 4, 0, 1, false);
  c.shuffle = false;
  Sampler s(c);
  EXPECT_EQ(s.epoch_order(3), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1}));
}

TEST(Sampler, ShardsAreDisjointAndCoverWithEqualCounts) {
  for (int world : {1, 2, 3, 4}) {
    for (int64_t n : {100, 84, 85, 7}) {
      const int batch = 7;
      for (bool drop_last : {true, false}) {
        if (drop_last && n < int64_t{world} * batch) {
          EXPECT_THROW(Sampler(cfg(n, batch, 0, world, drop_last)), stoke::UserError);
          continue;
        }
        std::multiset<int64_t> real;
        int64_t batches = -1;
        for (int r = 0; r < world; ++r) {
          Sampler s(cfg(n, batch, r, world, drop_last));
          if (batches < 0) batches = s.batches_per_epoch();
          ASSERT_EQ(s.batches_per_epoch(), batches) << "ranks must agree";
          const std::vector<int64_t> perm = s.permutation(2);
          std::vector<int64_t> ids(batch);
          for (int64_t b = 0; b < batches; ++b) {
            const int valid = s.batch_ids(perm, b, ids);
            ASSERT_GE(valid, 0);
            ASSERT_LE(valid, batch);
            if (drop_last) {
              ASSERT_EQ(valid, batch);
            }
            for (int k = 0; k < batch; ++k) ASSERT_TRUE(ids[k] >= 0 && ids[k] < n);
            for (int k = 0; k < valid; ++k) real.insert(ids[k]);
          }
        }
        const int64_t per_round = int64_t{world} * batch;
        if (drop_last) {
          EXPECT_EQ(batches, n / per_round);
          EXPECT_EQ(static_cast<int64_t>(real.size()), batches * per_round);
        } else {
          EXPECT_EQ(batches, (n + per_round - 1) / per_round);
          EXPECT_EQ(static_cast<int64_t>(real.size()), n) << "pad: every sample exactly once as a real sample";
        }
        // Disjoint: no sample twice among the real ones.
        EXPECT_EQ(std::set<int64_t>(real.begin(), real.end()).size(), real.size()) << "world " << world << " n " << n;
      }
    }
  }
}

// The trainer says "the last K of each epoch's shuffled order are left out, a different K every epoch": check
// both halves. 20 images in batches of 8: 4 left out per epoch, never the same 4 twice in a row here, and over
// a few epochs every image has been trained on.
TEST(Sampler, DropLastLeavesOutDifferentSamplesEachEpoch) {
  Sampler s(cfg(20, 8));
  ASSERT_EQ(s.batches_per_epoch(), 2);
  std::set<int64_t> trained_on;
  std::vector<int64_t> prev_left_out;
  for (int64_t e = 0; e < 6; ++e) {
    const std::vector<int64_t> perm = s.permutation(e);
    std::set<int64_t> in_batches;
    std::vector<int64_t> ids(8);
    for (int64_t b = 0; b < s.batches_per_epoch(); ++b) {
      ASSERT_EQ(s.batch_ids(perm, b, ids), 8);
      in_batches.insert(ids.begin(), ids.end());
    }
    std::vector<int64_t> left_out;
    for (int64_t i = 0; i < 20; ++i)
      if (!in_batches.count(i)) left_out.push_back(i);
    ASSERT_EQ(left_out.size(), 4u) << "epoch " << e;
    std::vector<int64_t> tail(perm.end() - 4, perm.end());
    std::sort(tail.begin(), tail.end());
    EXPECT_EQ(left_out, tail) << "the left-out images are the tail of the epoch's order";
    EXPECT_NE(left_out, prev_left_out) << "epoch " << e << " leaves out the same images as the one before";
    prev_left_out = left_out;
    trained_on.insert(in_batches.begin(), in_batches.end());
  }
  EXPECT_EQ(trained_on.size(), 20u);
}

TEST(Sampler, PaddingRepeatsFromTheStartAndSitsAtTheEnd) {
  Sampler s(cfg(10, 4, 0, 1, false));
  ASSERT_EQ(s.batches_per_epoch(), 3);
  const std::vector<int64_t> perm = s.permutation(0);
  std::vector<int64_t> ids(4);
  EXPECT_EQ(s.batch_ids(perm, 0, ids), 4);
  EXPECT_EQ(s.batch_ids(perm, 2, ids), 2);
  EXPECT_EQ(ids[0], perm[8]);
  EXPECT_EQ(ids[1], perm[9]);
  EXPECT_EQ(ids[2], perm[0]);
  EXPECT_EQ(ids[3], perm[1]);
  // Fewer samples than one batch: padding wraps around as often as needed.
  Sampler tiny(cfg(3, 8, 0, 1, false));
  std::vector<int64_t> ids8(8);
  const std::vector<int64_t> p3 = tiny.permutation(0);
  EXPECT_EQ(tiny.batch_ids(p3, 0, ids8), 3);
  for (int k = 0; k < 8; ++k) EXPECT_EQ(ids8[k], p3[k % 3]);
}

TEST(Sampler, ResumeFromCursorGivesTheExactRemainder) {
  for (int world : {1, 3}) {
    Sampler s(cfg(200, 6, world - 1, world, false, 99));
    for (int64_t epoch : {0, 3}) {
      const std::vector<int64_t> full = s.epoch_order(epoch);
      for (int64_t cursor = 0; cursor <= s.batches_per_epoch(); ++cursor) {
        std::vector<int64_t> rest(full.begin() + cursor * 6, full.end());
        ASSERT_EQ(s.epoch_order(epoch, cursor), rest) << "cursor " << cursor;
      }
    }
    for (int64_t g = 0; g < 50; ++g) {
      const Sampler::Position p = s.position(g);
      EXPECT_EQ(s.global_batch(p.epoch, p.index), g);
      EXPECT_LT(p.index, s.batches_per_epoch());
    }
  }
}

TEST(Sampler, UserErrors) {
  EXPECT_THROW(Sampler(cfg(0, 1)), stoke::UserError);
  EXPECT_THROW(Sampler(cfg(10, 0)), stoke::UserError);
  EXPECT_THROW(Sampler(cfg(10, 1, 2, 2)), stoke::UserError);
  EXPECT_THROW(Sampler(cfg(10, 1, -1, 2)), stoke::UserError);
  try {
    Sampler(cfg(5, 8));
    FAIL();
  } catch (const stoke::UserError& e) {
    EXPECT_NE(std::string(e.what()).find("smaller batch"), std::string::npos) << e.what();
  }
}

}  // namespace
