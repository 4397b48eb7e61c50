// --cache decoded and --cache gpu as batch sources (batch_source.h), for training and for evaluation: each batch is
// gathered from a DecodedCache in the sampler's order — the same batches, bit for bit, as the decoder ring gives — into
// one of a few buffers, which is filled again only after its release (like a ring slot, so the backend's copy may still
// read it).
//
//   Feed::pixels  pixels, labels and flips: the backend copies them like a ring batch (--cache decoded)
//   Feed::ids     sample ids and flips only: the backend holds the cache's pixels and gathers itself (--cache gpu)
#pragma once

#include <cstdint>
#include <vector>

#include "io/pipeline/batch_source.h"
#include "io/pipeline/decoded_cache.h"
#include "io/pipeline/sampler.h"

namespace stoke::io {

class DecodedBatches final : public BatchSource {
 public:
  enum class Feed { pixels, ids };
  // Training batches flow across epoch boundaries, as the ring's do; an evaluation source gives one epoch and then
  // an empty Batch, as an evaluation ring does.
  enum class Epochs { flowing, one };
  // The cache must outlive this. flip: draw a flip per sample as the decoders would (seed, epoch, sample id).
  // buffers: batches that can be held at once (the backend's queue plus the one being gathered).
  DecodedBatches(const DecodedCache& cache, const SamplerConfig& sampler, uint64_t seed, bool flip, Feed feed,
                 int buffers = 3, Epochs epochs = Epochs::flowing);

  void start(int64_t epoch, int64_t cursor) override;
  Batch acquire() override;
  void release(int64_t tag) override;
  int capacity() const override { return static_cast<int>(buffers_.size()); }
  Feed feed() const { return feed_; }

 private:
  struct Buffer {
    std::vector<uint8_t> pixels, flips;
    std::vector<int32_t> labels;
    std::vector<int64_t> ids;
    bool free = true;
  };
  const DecodedCache& cache_;
  Sampler sampler_;
  uint64_t seed_;
  bool flip_;
  Feed feed_;
  Epochs epochs_;
  std::vector<Buffer> buffers_;
  int64_t epoch_ = 0, index_ = 0;  // the next batch
  std::vector<int64_t> perm_;
  int64_t perm_epoch_ = -1;
};

}  // namespace stoke::io
