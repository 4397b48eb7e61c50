#include "io/pipeline/decoded_batches.h"

#include "base/error.h"

namespace stoke::io {

DecodedBatches::DecodedBatches(const DecodedCache& cache, const SamplerConfig& sampler, uint64_t seed, bool flip,
                               Feed feed, int buffers, Epochs epochs)
    : cache_(cache), sampler_(sampler), seed_(seed), flip_(flip), feed_(feed), epochs_(epochs) {
  STOKE_CHECK(buffers >= 1 && sampler.samples == cache.size(), "DecodedBatches over ", sampler.samples, " of ",
              cache.size(), " samples");
  const auto batch = static_cast<size_t>(sampler_.batch());
  buffers_.resize(static_cast<size_t>(buffers));
  for (Buffer& b : buffers_) {
    if (feed_ == Feed::pixels) {
      b.pixels.resize(batch * static_cast<size_t>(cache_.sample_bytes()));
      b.labels.resize(batch);
    }
    b.ids.resize(batch);
    b.flips.resize(batch);
  }
}

void DecodedBatches::start(int64_t epoch, int64_t cursor) {
  epoch_ = epoch;
  index_ = cursor;
  for (Buffer& b : buffers_) b.free = true;
}

Batch DecodedBatches::acquire() {
  if (index_ >= sampler_.batches_per_epoch()) {
    if (epochs_ == Epochs::one) return Batch{};
    ++epoch_;
    index_ = 0;
  }
  size_t k = 0;
  while (k < buffers_.size() && !buffers_[k].free) ++k;
  STOKE_CHECK(k < buffers_.size(), "DecodedBatches::acquire while every buffer is held: release one first");
  if (perm_epoch_ != epoch_) {
    perm_ = sampler_.permutation(epoch_);
    perm_epoch_ = epoch_;
  }
  Buffer& buf = buffers_[k];
  buf.free = false;
  Batch b;
  b.tag = static_cast<int64_t>(k);
  b.epoch = epoch_;
  b.index = index_;
  b.size = sampler_.batch();
  b.valid = cache_.batch_ids(sampler_, perm_, epoch_, index_, seed_, flip_, buf.ids.data(), buf.flips.data());
  b.ids = buf.ids.data();
  b.flips = flip_ ? buf.flips.data() : nullptr;
  if (feed_ == Feed::pixels) {
    cache_.copy_samples(buf.ids.data(), b.size, buf.pixels.data(), buf.labels.data());
    b.pixels = buf.pixels.data();
    b.labels = buf.labels.data();
  }
  ++index_;
  return b;
}

void DecodedBatches::release(int64_t tag) {
  STOKE_CHECK(tag >= 0 && tag < capacity() && !buffers_[static_cast<size_t>(tag)].free, "release of batch ", tag,
              " that is not held");
  buffers_[static_cast<size_t>(tag)].free = true;
}

}  // namespace stoke::io
