// N persistent decoder threads filling the BatchRing: claim a ticket, work out its samples (Sampler), read their
// bytes (Source), decode + augment each straight into the slot (augment.h), publish.
//
// Tickets map to batches across epochs: ticket t is this rank's global batch first + t (Sampler::position), so
// the threads cross an epoch boundary without draining: the next epoch's first batches are decoded while the
// consumer finishes the previous epoch. A batch's bytes depend only on (seed, epoch, batch index): identical
// for any number of decoders.
//
// Bad input (corrupt, truncated, zero-byte, not a JPEG, 12-bit, absurd dimensions, a file that vanished): the
// sample is replaced by another one drawn from (seed, epoch, original id, attempt), so the batch keeps its shape
// and stays deterministic (evaluation, replace_bad = false: masked instead, see PoolConfig); the file is warned
// about once, counted, and appended to the quarantine list. Known bad
// samples are not read again. strict: the first one stops the run with an error naming the file. Any exception
// in a decoder thread closes the ring with that error, which the consumer's acquire() rethrows: a thread never
// dies silently. CMYK and progressive JPEGs are valid and decode normally.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "io/pipeline/augment.h"
#include "io/pipeline/batch_ring.h"
#include "io/pipeline/sampler.h"
#include "io/source/source.h"

namespace stoke::io {

struct PoolConfig {
  TransformConfig transform;            // model input size, augmentation, seed
  int decoders = 0;                     // 0: auto (choose_decoders)
  int reserve_cores = 1;                // auto: cores left to the trainer's own threads
  double target_images_per_second = 0;  // auto: stop adding threads once this rate is covered (0: no target)
  bool strict = false;
  std::string quarantine_path;  // e.g. RUNDIR/quarantine.txt ("" = none); one "name<TAB>kind: reason" line per
                                // file, kind = corrupt, unsupported (io/codec/codec.h), vanished or unreadable
  std::function<void(const std::string&)> on_warning;  // a bad file, once per file (default: stderr)
  int max_consecutive_bad = 64;  // replacements tried for one position before giving up with an error
  // Training replaces a bad sample to keep the batch full; evaluation must not count a stand-in, so there
  // (false) the position is zero pixels with label kUnreadable (kVanished: the file is gone) and the consumer leaves
  // it out.
  bool replace_bad = true;
};

// A decoder thread as another thread sees it (the watchdog, telemetry).
struct DecoderStatus {
  int id = 0;
  Stage stage = Stage::idle;
  double seconds_in_stage = 0;
  int64_t ticket = -1;
  int64_t sample = -1;
  std::string file;  // the sample's name, "" when idle
  int64_t images = 0;
  double seconds[static_cast<int>(Stage::count)] = {};  // time spent per stage
  bool running = false;
};

// `decoders auto`: threads = available cores - reserve (at least 1); with a target rate, only as many as that
// rate needs at the single-thread decode rate measured on a few samples of this source (~0.1 s). *reason gets
// one line saying how the number was chosen.
int choose_decoders(const Source& source, const TransformConfig& t, int reserve_cores, double target_rate,
                    std::string* reason, double* measured_rate = nullptr);

// CPUs this process may run on (sched_getaffinity), at least 1.
int available_cores();

class DecoderPool {
 public:
  // The pool keeps the source alive and refers to sampler and ring, which must outlive it. Chooses the decoder
  // count now (measuring when auto). Starts no thread.
  DecoderPool(std::shared_ptr<const Source> source, const Sampler& sampler, BatchRing& ring, PoolConfig cfg);
  ~DecoderPool();  // stop()
  DecoderPool(const DecoderPool&) = delete;
  DecoderPool& operator=(const DecoderPool&) = delete;

  // Starts the threads; ticket t is global batch first_global_batch + t. The ring must be freshly reset (its
  // limit set) and no thread of this pool running.
  void start(int64_t first_global_batch);
  // Closes the ring (waking every waiter) and joins the threads. A thread finishes the sample it is decoding,
  // not the batch. Idempotent.
  void stop();

  int decoders() const { return ndecoders_; }
  const std::string& decoders_reason() const { return reason_; }
  std::vector<DecoderStatus> status() const;
  int running() const { return running_.load(std::memory_order_acquire); }  // threads still in their loop
  int64_t images() const;  // decoded since construction (replacements included)
  // Distinct bad files: corrupt() those that could not be read or decoded, vanished() those deleted or renamed
  // since the data was indexed (not the data's fault: counted apart so a summary does not call them corrupt).
  int64_t corrupt() const { return corrupt_.load(std::memory_order_relaxed); }
  int64_t vanished() const { return vanished_.load(std::memory_order_relaxed); }
  std::vector<std::string> quarantined() const;  // "name<TAB>reason", in the order found

 private:
  struct Worker;
  void run(Worker& w);
  bool fill(Worker& w, int64_t ticket);
  const int64_t* permutation(int64_t epoch);
  void report_bad(int64_t id, ReadStatus status, const std::string& why);

  std::shared_ptr<const Source> source_;
  const Sampler& sampler_;
  BatchRing& ring_;
  PoolConfig cfg_;
  int ndecoders_ = 1;
  std::string reason_;
  int64_t first_ = 0;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<int> running_{0};

  // Permutations of the epochs in flight: epoch e lives in perms_[e % K], built by the first thread to need it.
  struct Perm {
    std::vector<int64_t> ids;
    std::atomic<int64_t> epoch{-1};     // ready for this epoch
    std::atomic<int64_t> building{-1};  // claimed by a builder for this epoch
  };
  std::vector<std::unique_ptr<Perm>> perms_;

  // Every sample's label, read once: per image, the virtual calls through wrapped sources (file cache, subset,
  // folder) each touched another cold array.
  std::vector<int32_t> labels_;
  std::unique_ptr<std::atomic<uint8_t>[]> bad_;  // per sample: 0 good (or not read yet), 1 bad, 2 vanished
  std::atomic<int64_t> corrupt_{0};
  std::atomic<int64_t> vanished_{0};
  mutable std::mutex bad_mu_;  // cold: warnings and the quarantine list only
  std::vector<std::string> quarantined_;
  std::FILE* quarantine_ = nullptr;
  bool quarantine_failed_ = false;
};

}  // namespace stoke::io
