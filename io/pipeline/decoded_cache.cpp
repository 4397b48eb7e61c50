#include "io/pipeline/decoded_cache.h"

#include <chrono>
#include <cstring>
#include <span>

#include "base/error.h"
#include "io/pipeline/augment.h"

namespace stoke::io {

DecodedCache::DecodedCache(const std::shared_ptr<const Source>& source, Shape3 shape, const PipelineConfig& base)
    : shape_(shape) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = source->size();
  pixels_.resize(static_cast<size_t>(n * shape.size()));
  labels_.resize(static_cast<size_t>(n));
  PipelineConfig pc = base;
  pc.h = shape.h;
  pc.w = shape.w;
  pc.c = shape.c;
  pc.batch = static_cast<int>(std::min<int64_t>(256, n));
  pc.shuffle = false;
  pc.augment = false;
  pc.drop_last = false;
  pc.end_epoch = 1;
  pc.rank = 0;  // every image, whichever rank of a data-parallel job holds the cache
  pc.world = 1;
  InputPipeline in(source, pc);
  in.start(0);
  int64_t at = 0;
  while (Batch b = in.acquire()) {
    std::memcpy(pixels_.data() + at * shape.size(), b.pixels, static_cast<size_t>(int64_t{b.valid} * shape.size()));
    std::memcpy(labels_.data() + at, b.labels, static_cast<size_t>(b.valid) * sizeof(int32_t));
    at += b.valid;
    in.release(b.tag);
  }
  STOKE_CHECK(at == n, "decoded ", at, " of ", n, " images");
  corrupt_ = in.stats().corrupt;
  vanished_ = in.stats().vanished;
  seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int DecodedCache::gather(const Sampler& sampler, const std::vector<int64_t>& perm, int64_t epoch, int64_t index,
                         uint64_t seed, bool flip, uint8_t* pixels, int32_t* labels, uint8_t* flips) const {
  STOKE_CHECK(!pixels_.empty(), "gather from a decoded cache whose pixels were handed to the backend");
  ids_.resize(static_cast<size_t>(sampler.batch()));
  const int valid = batch_ids(sampler, perm, epoch, index, seed, flip, ids_.data(), flips);
  copy_samples(ids_.data(), sampler.batch(), pixels, labels);
  return valid;
}

void DecodedCache::copy_samples(const int64_t* ids, int n, uint8_t* pixels, int32_t* labels) const {
  STOKE_CHECK(!pixels_.empty(), "gather from a decoded cache whose pixels were handed to the backend");
  const int64_t bytes = shape_.size();
  for (int k = 0; k < n; ++k) {
    const int64_t id = ids[k];
    std::memcpy(pixels + int64_t{k} * bytes, pixels_.data() + id * bytes, static_cast<size_t>(bytes));
    labels[k] = labels_[static_cast<size_t>(id)];
  }
}

int DecodedCache::batch_ids(const Sampler& sampler, const std::vector<int64_t>& perm, int64_t epoch, int64_t index,
                            uint64_t seed, bool flip, int64_t* ids, uint8_t* flips) const {
  const std::span<int64_t> batch(ids, static_cast<size_t>(sampler.batch()));
  const int valid = sampler.batch_ids(perm, index, batch);
  AugmentConfig flip_only;
  flip_only.random_resized_crop = false;
  flip_only.hflip = true;
  for (size_t k = 0; k < batch.size(); ++k) {
    const int64_t id = batch[k];
    // Drawn exactly as the decoders draw it, from (seed, epoch, sample): the same flips as the streaming pipeline.
    if (flips)
      flips[k] =
          flip &&
          augment_params(flip_only, augment_key(seed, epoch, static_cast<uint64_t>(id)), shape_.h, shape_.w).flip;
  }
  return valid;
}

}  // namespace stoke::io
