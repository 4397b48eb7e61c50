// The input pipeline the trainer calls: data source + Sampler + DecoderPool + BatchRing + watchdog, in one object.
//
//   io::PipelineConfig cfg;                        // input size, batch, seed, augment, ...
//   io::InputPipeline in(io::open_source(dir), cfg);   // allocates the ring (pinned when possible), picks decoders
//   in.start(epoch, cursor);                       // threads start; resumes exactly at (epoch, cursor)
//   while (io::Batch b = in.acquire()) {           // next batch in order; empty at end_epoch
//     ... copy b.pixels/b.labels (GPU: cudaMemcpyAsync from b.base, b.copy_bytes; record an event) ...
//     in.release(b.tag);                           // GPU: once that event has completed
//   }
//
// Evaluation: a second pipeline with shuffle = false, augment = false, drop_last = false, replace_bad = false,
// end_epoch = 1, and start(0) before each pass; acquire() returns an empty Batch after the last one; mask samples
// >= b.valid and those labelled kUnreadable (readable_samples does both).
//
// Batches flow across epoch boundaries without draining (b.epoch, b.index tell where a batch belongs; b.index ==
// batches_per_epoch() - 1 ends an epoch). Every batch holds exactly `batch` samples: the training sampler drops
// the last partial batch (drop_last) or, for evaluation, pads it by repeating samples from the start of the
// epoch's order; b.valid says how many are real (the rest are to be masked).
//
// Threads: acquire/release/start from one consumer thread. stop() may also come from another thread (it wakes
// a blocked acquire, which then returns an empty batch). Errors of the decoder threads (strict mode, an unreadable
// data set) are rethrown by acquire(). The watchdog: while acquire() has waited longer than watchdog_seconds,
// on_stall receives (on the watchdog's own thread) a report of every decoder's stage, file and time in stage and
// the ring's occupancy, once per period; waiting goes on. If every decoder thread has died without an error
// being raised, the watchdog closes the ring with an error that acquire() throws.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/pipeline/augment.h"
#include "io/pipeline/batch_ring.h"
#include "io/pipeline/batch_source.h"
#include "io/pipeline/decoder_pool.h"
#include "io/pipeline/sampler.h"
#include "io/source/source.h"

namespace stoke::io {

struct PipelineConfig {
  int h = 0, w = 0, c = 0;  // model input; 0 = the data's own (probe_source_shape)
  int batch = 128;
  int slots = 0;          // ring slots; 0 = auto: decoders + 3, at least 4, fewer if they pass 2 GiB (min 3)
  int decoders = 0;       // 0 = auto (decoder_pool.h choose_decoders)
  int reserve_cores = 1;  // auto decoders: cores left to the trainer
  double target_images_per_second = 0;  // auto decoders: the rate the consumer needs (0: unknown)
  uint64_t seed = 0;
  bool shuffle = true;   // false: epoch order 0..n-1 (evaluation)
  bool augment = false;  // random-resized-crop + flip (training); false: plain resize
  AugmentConfig aug;
  DecoderAugmentFn decoder_augment;  // the engine's per-sample augmentation on the decoders (decoder_augment.h)
  bool drop_last = true;             // false: pad the last batch (evaluation)
  int rank = 0, world = 1;
  int64_t end_epoch = -1;       // produce batches up to the end of epoch end_epoch - 1; -1: until stop()
  bool strict = false;          // a bad image is an error naming the file
  bool replace_bad = true;      // false (evaluation): a bad image is masked (label kUnreadable), never replaced
  std::string quarantine_path;  // RUNDIR/quarantine.txt ("" = none)
  double watchdog_seconds = 30;
  bool pinned = true;                                  // pinned host memory when a CUDA device is usable
  std::function<void(const std::string&)> on_warning;  // bad files (default: stderr)
  std::function<void(const std::string&)> on_stall;    // watchdog reports (default: stderr)
};

// The samples of an evaluation batch that count: the first `valid`, less those labelled kUnreadable or kVanished.
// Points into the batch itself when none is unreadable (the common case, no copy); otherwise compacts the readable ones
// into the two buffers. `unreadable` and `vanished` say how many were left out.
struct ReadableSamples {
  int n = 0, unreadable = 0, vanished = 0;  // unreadable: labelled kUnreadable; vanished: kVanished
  const uint8_t* pixels = nullptr;
  const int32_t* labels = nullptr;
};
ReadableSamples readable_samples(int valid, const uint8_t* pixels, const int32_t* labels, int64_t sample_bytes,
                                 std::vector<uint8_t>& pixel_buffer, std::vector<int32_t>& label_buffer);

struct DecoderStats {
  int64_t images = 0;
  double read_seconds = 0, decode_seconds = 0, resize_seconds = 0, wait_slot_seconds = 0;
};

struct PipelineStats {
  int64_t images = 0;                // decoded (stand-ins for bad files included)
  int64_t batches = 0;               // acquired by the consumer since start()
  int64_t corrupt = 0;               // distinct bad files so far (unreadable, corrupt or unsupported)
  int64_t vanished = 0;              // distinct files gone since indexing (deleted or renamed mid-run)
  double consumer_wait_seconds = 0;  // acquire() waiting for a batch that was not ready, since start()
  int64_t consumer_waits = 0;
  RingOccupancy ring;
  std::vector<DecoderStats> decoders;
};

// The decoder ring as a BatchSource (batch_source.h): a Batch is a view into a ring slot, its tag the ticket.
class InputPipeline final : public BatchSource {
 public:
  // Validates the config (stoke::UserError), probes the data shape when h/w/c are 0, allocates the ring and
  // chooses the decoder count. Starts no thread.
  InputPipeline(std::shared_ptr<const Source> source, PipelineConfig cfg);
  ~InputPipeline();  // stop()
  InputPipeline(const InputPipeline&) = delete;
  InputPipeline& operator=(const InputPipeline&) = delete;

  // (Re)starts production at batch `cursor` of `epoch` (cursor = batches of that epoch already consumed).
  // Stops first if running.
  void start(int64_t epoch, int64_t cursor = 0) override;
  Batch acquire() override;
  void release(int64_t ticket) override;
  int capacity() const override { return ring_->slots(); }
  double wait_seconds() const override { return ring_->consumer_wait_seconds(); }
  void stop();

  int64_t batches_per_epoch() const { return sampler_->batches_per_epoch(); }
  int h() const { return cfg_.h; }
  int w() const { return cfg_.w; }
  int c() const { return cfg_.c; }
  int batch() const { return cfg_.batch; }
  int slots() const { return ring_->slots(); }
  int decoders() const { return pool_->decoders(); }
  const std::string& decoders_reason() const { return decoders_reason_; }
  bool pinned() const { return ring_->memory().pinned(); }
  const std::string& memory_reason() const { return ring_->memory().reason(); }
  const Source& source() const { return *source_; }
  const Sampler& sampler() const { return *sampler_; }
  PipelineStats stats() const;
  std::vector<DecoderStatus> decoder_status() const { return pool_->status(); }  // any thread
  std::vector<std::string> quarantined() const { return pool_->quarantined(); }
  // What the watchdog prints: the consumer's wait, every decoder's state, the ring's occupancy. Any thread.
  std::string watchdog_report() const;

 private:
  void watchdog_main();

  std::shared_ptr<const Source> source_;
  PipelineConfig cfg_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<BatchRing> ring_;
  std::unique_ptr<DecoderPool> pool_;
  std::string decoders_reason_;
  std::atomic<int64_t> first_{0};  // global batch of ticket 0
  std::mutex stop_mu_;             // cold: start/stop
  std::thread watchdog_;
  std::mutex wd_mu_;  // cold: the watchdog's sleep
  std::condition_variable wd_cv_;
  bool wd_stop_ = false;
  std::atomic<bool> started_{false};
};

}  // namespace stoke::io
