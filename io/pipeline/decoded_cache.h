// --cache decoded: every image decoded once (at the model's input size) into one host buffer, then each
// epoch's batches gathered from it in exactly the order the input pipeline would produce — so a run with the
// cache gives the same batches, bit for bit, as a run without it (flip augmentation included; random crops
// need the original image, so they are not available from the cache).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/shape.h"
#include "io/pipeline/input_pipeline.h"
#include "io/pipeline/sampler.h"
#include "io/source/source.h"

namespace stoke::io {

class DecodedCache {
 public:
  static int64_t bytes_for(int64_t samples, Shape3 shape) { return samples * (shape.size() + 4); }

  // Decodes every sample of `source` with an evaluation-style pipeline built from `base` (decoders, warning
  // and quarantine settings are taken from it; order, padding and augmentation are set here). A bad image
  // is handled as that pipeline handles it: replaced (training) or masked with label kUnreadable, kVanished for a file
  // gone since indexing (evaluation).
  DecodedCache(const std::shared_ptr<const Source>& source, Shape3 shape, const PipelineConfig& base);

  int64_t size() const { return static_cast<int64_t>(labels_.size()); }
  int64_t sample_bytes() const { return shape_.size(); }
  int64_t bytes() const { return static_cast<int64_t>(pixels_.size() + labels_.size() * sizeof(int32_t)); }
  double seconds() const { return seconds_; }
  int64_t corrupt() const { return corrupt_; }
  int64_t vanished() const { return vanished_; }

  // Batch `index` of `epoch` under `sampler` (the training pipeline's order): pixels (batch x H x W x C),
  // labels, and one flip flag per sample when `flip` (drawn like the decoders draw it). Returns the number of
  // real samples (the rest are padding repeats).
  int gather(const Sampler& sampler, const std::vector<int64_t>& perm, int64_t epoch, int64_t index, uint64_t seed,
             bool flip, uint8_t* pixels, int32_t* labels, uint8_t* flips) const;
  // The same batch named by sample ids into this cache (and its flip flags, when `flips`): what gather() copies, for
  // a backend that holds the cache's pixels itself (--cache gpu). Returns the number of real samples.
  int batch_ids(const Sampler& sampler, const std::vector<int64_t>& perm, int64_t epoch, int64_t index, uint64_t seed,
                bool flip, int64_t* ids, uint8_t* flips) const;

  // Copies samples ids[0..n) (pixels and labels) into the batch buffers.
  void copy_samples(const int64_t* ids, int n, uint8_t* pixels, int32_t* labels) const;

  // Every sample's pixels (size() x H x W x C) and labels, for a backend to hold.
  const uint8_t* pixels() const { return pixels_.data(); }
  const int32_t* labels() const { return labels_.data(); }
  // Gives the pixel memory back once a backend holds its own copy (labels stay: size() still answers); gather()
  // may not be called after it, batch_ids() may.
  void drop_pixels() { std::vector<uint8_t>().swap(pixels_); }

 private:
  Shape3 shape_;
  std::vector<uint8_t> pixels_;
  std::vector<int32_t> labels_;
  double seconds_ = 0;
  int64_t corrupt_ = 0;
  int64_t vanished_ = 0;
  mutable std::vector<int64_t> ids_;
};

}  // namespace stoke::io
