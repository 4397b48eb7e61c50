// One batch source: where the trainer's batches come from, whichever way they are made, and the one descriptor that
// carries a batch from where it was made to the backend.
//
//   InputPipeline   (input_pipeline.h)   decoder threads fill slots of the batch ring; the tag is the ring ticket
//   DecodedBatches  (decoded_batches.h)  gathered from a decoded copy in memory (--cache decoded) into a few buffers
//   HeldBatches     (decoded_batches.h)  sample ids and flips only: the backend holds the pixels (--cache gpu)
//
// The trainer calls acquire() for the next batch in order, hands the Batch to the backend as it is, and calls
// release(tag) once the backend says the batch's memory may be reused (its copy has completed). A new way to feed
// batches implements this interface; the trainer does not change.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stoke::io {

// A view of one batch, valid until its source's release(tag).
struct Batch {
  int64_t tag = -1;              // the source's name for this batch (the ring: its ticket)
  int64_t epoch = 0, index = 0;  // index: batch within the epoch, 0 .. batches_per_epoch() - 1
  int size = 0;                  // samples (always the batch size: shapes stay fixed)
  int valid = 0;                 // real samples; [valid, size) repeat earlier ones to pad an evaluation epoch
  int corrupt = 0;               // samples standing in for (or, in evaluation, masking) a bad file
  // size x h x w x c, uint8 NHWC, and the labels. Both null when the backend holds the data set (hold_dataset) and
  // gathers the samples named by `ids` itself.
  const uint8_t* pixels = nullptr;
  const int32_t* labels = nullptr;
  const int64_t* ids = nullptr;    // each sample's index in the data set
  const uint8_t* flips = nullptr;  // per-sample horizontal flips the backend still applies; null: none to apply
  // The ring's layout: pixels, then labels at base + labels_offset, so one host-to-device copy of copy_bytes moves
  // both (base null elsewhere).
  const uint8_t* base = nullptr;
  size_t copy_bytes = 0, labels_offset = 0;
  explicit operator bool() const { return tag >= 0; }
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Produce from batch `cursor` of `epoch` on (cursor = batches of that epoch already consumed).
  virtual void start(int64_t epoch, int64_t cursor) = 0;
  // The next batch in order, waiting while it is being made; an empty Batch at the end of the data asked for.
  // Call it while holding fewer than capacity() batches (acquired, not yet released).
  virtual Batch acquire() = 0;
  // Gives a batch's memory back. Any order; each acquired tag exactly once.
  virtual void release(int64_t tag) = 0;
  virtual int capacity() const = 0;
  // Seconds acquire() has spent waiting for a batch that was not ready (0 for sources that never wait).
  virtual double wait_seconds() const { return 0; }
};

}  // namespace stoke::io
