// Which samples go into which batch: a keyed permutation per epoch, sharded over ranks, resumable.
//
// Order. Epoch e visits a permutation of [0, n) that depends only on (seed, e): Fisher-Yates from i = n-1 down,
// j = uniform_below(hash_key(seed, 0x5a3b1e, e), i, i + 1) -- base/permutation.h, the one order every
// part of stoke uses, so rank 0 of world 1 sees exactly the order of a plain loop. shuffle = false
// keeps [0, n) in order (evaluation).
//
// Sharding. The permutation is cut into rounds of W*batch samples; rank r of W takes positions
// [r*batch, (r+1)*batch) of each round, so every rank gets the same number of batches and, for W = 1, batch k is
// simply positions [k*batch, (k+1)*batch) of the permutation. Data-parallel training passes batch = B/W for a
// global batch B: a round is then global batch k of a one-process run, and rank r holds its r-th slice.
//   drop_last: batches_per_epoch = floor(n / (W*batch)); the tail of the permutation is not visited.
//   pad:       batches_per_epoch = ceil(n / (W*batch)); positions p >= n take perm[(p - n) % n] (repeats from
//              the start of the epoch's order). They always sit at the end of a batch, so a batch says how
//              many of its samples are real (`valid`) and evaluation masks the rest.
//
// Resume. A run is a sequence of this rank's batches across epochs: global batch g = epoch * batches_per_epoch
// + cursor, where cursor counts the batches of that epoch already consumed. Starting from (epoch, cursor)
// yields exactly the remaining batches of an uninterrupted run.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace stoke::io {

struct SamplerConfig {
  int64_t samples = 0;  // n
  int batch = 1;
  int rank = 0;
  int world = 1;
  bool shuffle = true;
  bool drop_last = true;  // false: pad the last batch (see above)
  uint64_t seed = 0;
};

class Sampler {
 public:
  // Throws stoke::UserError for an empty data set, batch < 1, rank outside [0, world), or drop_last with
  // fewer than world * batch samples (no batch at all).
  explicit Sampler(const SamplerConfig& cfg);

  const SamplerConfig& config() const { return cfg_; }
  int64_t samples() const { return cfg_.samples; }
  int batch() const { return cfg_.batch; }
  int64_t batches_per_epoch() const { return batches_; }  // per rank, the same on every rank

  // The epoch's global order (size samples()): out[k] = the k-th sample visited. Cost O(n).
  void permutation(int64_t epoch, std::span<int64_t> out) const;
  std::vector<int64_t> permutation(int64_t epoch) const;

  // This rank's batch `index` of an epoch whose permutation() is `perm`: writes batch() sample ids into out
  // and returns how many are real (the rest are padding repeats; only in the last batch, only when !drop_last).
  int batch_ids(std::span<const int64_t> perm, int64_t index, std::span<int64_t> out) const;

  // Global batch numbers <-> (epoch, index within the epoch).
  struct Position {
    int64_t epoch = 0, index = 0;
  };
  Position position(int64_t global_batch) const { return {global_batch / batches_, global_batch % batches_}; }
  int64_t global_batch(int64_t epoch, int64_t cursor) const { return epoch * batches_ + cursor; }

  // This rank's samples of an epoch from batch `cursor` on, in order, padding included (tests and tools).
  std::vector<int64_t> epoch_order(int64_t epoch, int64_t cursor = 0) const;

 private:
  SamplerConfig cfg_;
  int64_t batches_ = 0;
};

}  // namespace stoke::io
