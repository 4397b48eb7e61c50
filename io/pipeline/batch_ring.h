// A fixed ring of batch slots in one host allocation, handed from decoder threads to the trainer in ticket order.
//
// Tickets 0, 1, 2, ... are batches in the order the consumer receives them; ticket t lives in slot t % slots.
// A slot cycles free -> filling (one producer, after claim()) -> ready (publish()) -> in flight (acquire())
// -> free (release()). Several producers fill disjoint slots at once and may finish out of order; the consumer
// receives strictly in ticket order. A slot goes back to the producers only on release(): on a GPU the trainer
// releases a ticket once the CUDA event recorded after its host-to-device copy has completed (Caffe's PR #2998
// bug: returning it when the copy was merely issued).
//
// Lock-free hot path (Vyukov's bounded queue): one atomic sequence word per slot and an atomic claim counter.
//   seq == t          slot free for ticket t (or being filled by the producer that claimed t)
//   seq == t + 1      ticket t ready (or acquired by the consumer)
//   release(t)        seq = t + slots: free for ticket t + slots
// Waiting (producers on a full ring, the consumer on an empty one) spins briefly, then sleeps in
// std::atomic::wait; every state change notifies. close() sets a bit in every sequence word, so every waiter
// wakes and sees it: nothing blocks across a shutdown. No mutex anywhere except around the (cold) error.
//
// Memory: all slots are carved out of ONE HostMemory (pinned when possible) before any thread starts. A slot is a
// contiguous region, page-aligned: pixels uint8 NHWC [batch*h*w*c] | labels int32 [batch] | ids int64 [batch] |
// its Batch descriptor. So one copy of [base, base + copy_bytes) moves pixels and labels to the device together.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "io/pipeline/batch_source.h"
#include "io/pipeline/host_memory.h"

namespace stoke::io {

// The label of a position whose file could not be read, in pipelines that mask bad files instead of replacing
// them (evaluation): its pixels are zero and it must not be counted.
inline constexpr int32_t kUnreadable = -1;
inline constexpr int32_t kVanished = -2;  // masked as kUnreadable is, because the file is gone since indexing

// A view of one slot's memory (owned by the ring).
struct BatchSlot {
  uint8_t* pixels = nullptr;  // batch x h x w x c, uint8, NHWC
  int32_t* labels = nullptr;  // batch
  int64_t* ids = nullptr;     // batch: sample index in the data set
  // The slot's descriptor, in the slot: its pointers are set by the ring, the producer fills tag (the ticket),
  // epoch, index, size, valid and corrupt before publish(); acquire() hands it to the consumer as it is.
  Batch* header = nullptr;
  uint8_t* base = nullptr;   // == pixels: the slot's region starts with the pixels
  size_t copy_bytes = 0;     // pixels and labels (padded between them to 64 bytes), for one H2D copy
  size_t labels_offset = 0;  // labels - base
};

// Slot states, for telemetry.
struct RingOccupancy {
  int free = 0, filling = 0, ready = 0, in_flight = 0;
};

class BatchRing {
 public:
  // slots >= 2, batch >= 1, sample_bytes = h*w*c >= 1. Allocates everything now.
  BatchRing(int slots, int batch, int64_t sample_bytes, bool want_pinned);
  ~BatchRing();
  BatchRing(const BatchRing&) = delete;
  BatchRing& operator=(const BatchRing&) = delete;

  int slots() const { return nslots_; }
  int batch() const { return batch_; }
  int64_t sample_bytes() const { return sample_bytes_; }
  size_t slot_bytes() const { return slot_bytes_; }
  const HostMemory& memory() const { return mem_; }
  BatchSlot slot_at(int i) const;  // by slot index
  BatchSlot slot_of(int64_t ticket) const { return slot_at(static_cast<int>(ticket % nslots_)); }

  // ---- producers (any number of threads) ----
  // Claims the next ticket, waiting while its slot is still held (backpressure). Returns -1 once the ring is
  // closed or the ticket limit is reached. The caller then owns slot_of(ticket) until publish(ticket).
  int64_t claim();
  void publish(int64_t ticket);

  // ---- the consumer (one thread) ----
  // The next ticket in order, waiting until it is published: returns it and fills *slot. Returns -1 at the
  // ticket limit or after close() without an error. Rethrows the error given to close(error). Throws
  // stoke::Error when the slot it needs is still held by the consumer itself (ticket - slots not released).
  int64_t acquire(BatchSlot* slot);
  // Gives ticket's slot back to the producers. Any order; each acquired ticket exactly once.
  void release(int64_t ticket);

  // ---- control ----
  // Wakes every waiter for good; idempotent. The first non-null error is kept and rethrown by acquire().
  void close(std::exception_ptr error = nullptr);
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  std::exception_ptr error() const;
  // Back to ticket 0 with every slot free, open, no error; tickets stop at `limit` (-1: no limit). Only while no
  // thread is inside claim/acquire (e.g. after the pool's threads were joined).
  void reset(int64_t limit = -1);
  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }

  // ---- telemetry (any thread; relaxed, a snapshot) ----
  RingOccupancy occupancy() const;
  int64_t consumed() const { return next_acquire_.load(std::memory_order_relaxed); }  // tickets acquired
  int64_t claimed() const { return next_claim_.load(std::memory_order_relaxed); }
  double consumer_wait_seconds() const;  // time acquire() spent waiting for a batch that was not ready yet
  int64_t consumer_waits() const { return waits_.load(std::memory_order_relaxed); }
  // steady_clock nanoseconds at which the consumer began its current wait, 0 when it is not waiting.
  int64_t consumer_waiting_since_ns() const { return waiting_since_ns_.load(std::memory_order_relaxed); }

 private:
  static constexpr uint64_t kClosed = uint64_t{1} << 63;
  struct alignas(64) Seq {
    std::atomic<uint64_t> v{0};
  };

  int nslots_;
  int batch_;
  int64_t sample_bytes_;
  size_t labels_off_ = 0, ids_off_ = 0, header_off_ = 0, slot_bytes_ = 0;
  HostMemory mem_;
  std::unique_ptr<Seq[]> seq_;
  alignas(64) std::atomic<int64_t> next_claim_{0};
  alignas(64) std::atomic<int64_t> next_acquire_{0};  // written by the consumer only
  std::atomic<int64_t> wait_ns_{0};
  std::atomic<int64_t> waits_{0};
  std::atomic<int64_t> waiting_since_ns_{0};
  alignas(64) std::atomic<int64_t> limit_{-1};
  std::atomic<bool> closed_{false};
  mutable std::mutex error_mu_;  // cold: close() and the consumer's error path only
  std::exception_ptr error_;
};

// Brief busy-wait then sleep in std::atomic::wait until `word` no longer holds `old`. ~1-2 us of polling catches a
// hand-off that is about to happen without a futex round trip; longer waits sleep in the kernel, so a full ring
// or a starved consumer burns no core.
template <typename T>
void spin_then_wait(const std::atomic<T>& word, T old) {
  for (int i = 0; i < 256; ++i) {
    if (word.load(std::memory_order_acquire) != old) return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  word.wait(old, std::memory_order_acquire);
}

}  // namespace stoke::io
