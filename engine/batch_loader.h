// A simple, ordered, prefetching batch loader for the CPU backend (issue 2). The lock-free ring of pinned
// batches with persistent decoder threads replaces it in the input-pipeline issue.
//
// Batches come out in order. Worker threads claim batch tickets, decode their samples (JPEG -> uint8 NHWC
// at the model's input size) into a slot, and the consumer takes slot (ticket % slots) when it is ready.
// A sample that fails to decode is replaced by the next decodable sample (so the batch keeps its shape),
// warned about once, and counted; with strict = true the failure is an error instead.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/graph.h"
#include "io/dataset.h"

namespace stoke {

struct HostBatch {
  int count = 0;                  // valid samples (the last eval batch may be short)
  std::vector<uint8_t> pixels;    // count x H x W x C
  std::vector<int32_t> labels;
  std::vector<int64_t> ids;       // sample index into the data set
};

class BatchLoader {
 public:
  BatchLoader(const std::vector<io::Sample>& samples, Shape3 shape, int batch, int workers, bool strict);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  // Starts a pass over `order` (indices into samples): batches of `batch`, the last one short unless
  // drop_last. Any pass in progress is abandoned.
  void start(std::vector<int64_t> order, bool drop_last);
  int64_t batches() const { return nbatches_; }

  // The next batch in order, or nullptr at the end of the pass. Valid until the next call to next()
  // or start(). Rethrows a decoder's error (strict mode).
  const HostBatch* next();

  int64_t corrupt_count() const { return corrupt_.load(); }
  // Seconds the consumer spent waiting for batches since start().
  double wait_seconds() const { return wait_s_; }

 private:
  void worker_main();
  void fill(int64_t ticket, HostBatch& slot);
  void stop_workers();

  const std::vector<io::Sample>& samples_;
  Shape3 shape_;
  int batch_;
  bool strict_;
  std::vector<int64_t> order_;
  int64_t nbatches_ = 0;

  std::vector<HostBatch> slots_;
  std::vector<int64_t> slot_ticket_;  // ticket held by each slot (ready when slot_ready_)
  std::vector<char> slot_ready_;
  int64_t next_ticket_ = 0;           // next ticket a worker may claim
  int64_t consumed_ = 0;              // tickets handed to the consumer
  uint64_t generation_ = 0;           // bumped by start() so stale work is discarded
  int filling_ = 0;                  // workers between claiming a ticket and publishing it
  bool stop_ = false;
  std::string error_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
  std::atomic<int64_t> corrupt_{0};
  std::vector<char> warned_;  // per sample, guarded by mu_
  double wait_s_ = 0;
};

}  // namespace stoke
