#include "io/pipeline/batch_ring.h"

#include <chrono>
#include <new>
#include <thread>

#include "base/error.h"

namespace stoke::io {

namespace {

size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

BatchRing::BatchRing(int slots, int batch, int64_t sample_bytes, bool want_pinned)
    : nslots_(slots), batch_(batch), sample_bytes_(sample_bytes) {
  STOKE_CHECK(slots >= 2 && batch >= 1 && sample_bytes >= 1, "BatchRing(", slots, ", ", batch, ", ", sample_bytes, ")");
  const size_t b = static_cast<size_t>(batch);
  labels_off_ = align_up(b * static_cast<size_t>(sample_bytes), 64);
  ids_off_ = align_up(labels_off_ + b * sizeof(int32_t), 64);
  header_off_ = align_up(ids_off_ + b * sizeof(int64_t), 64);
  slot_bytes_ = align_up(header_off_ + sizeof(Batch), 4096);  // every slot starts on a page
  mem_ = HostMemory(slot_bytes_ * static_cast<size_t>(slots), want_pinned);
  seq_ = std::make_unique<Seq[]>(static_cast<size_t>(slots));
  for (int i = 0; i < slots; ++i) {  // each slot's descriptor points at the slot's own memory, for good
    uint8_t* base = mem_.data() + static_cast<size_t>(i) * slot_bytes_;
    Batch* d = new (base + header_off_) Batch;
    d->pixels = base;
    d->labels = reinterpret_cast<const int32_t*>(base + labels_off_);
    d->ids = reinterpret_cast<const int64_t*>(base + ids_off_);
    d->base = base;
    d->copy_bytes = labels_off_ + b * sizeof(int32_t);
    d->labels_offset = labels_off_;
  }
  reset(-1);
}

BatchRing::~BatchRing() = default;

BatchSlot BatchRing::slot_at(int i) const {
  STOKE_CHECK(i >= 0 && i < nslots_);
  uint8_t* base = mem_.data() + static_cast<size_t>(i) * slot_bytes_;
  BatchSlot s;
  s.base = base;
  s.pixels = base;
  s.labels = reinterpret_cast<int32_t*>(base + labels_off_);
  s.ids = reinterpret_cast<int64_t*>(base + ids_off_);
  s.header = std::launder(reinterpret_cast<Batch*>(base + header_off_));
  s.copy_bytes = labels_off_ + static_cast<size_t>(batch_) * sizeof(int32_t);
  s.labels_offset = labels_off_;
  return s;
}

void BatchRing::reset(int64_t limit) {
  for (int i = 0; i < nslots_; ++i)
    seq_[static_cast<size_t>(i)].v.store(static_cast<uint64_t>(i), std::memory_order_relaxed);
  next_claim_.store(0, std::memory_order_relaxed);
  next_acquire_.store(0, std::memory_order_relaxed);
  wait_ns_.store(0, std::memory_order_relaxed);
  waits_.store(0, std::memory_order_relaxed);
  waiting_since_ns_.store(0, std::memory_order_relaxed);
  limit_.store(limit, std::memory_order_relaxed);
  {
    std::lock_guard lk(error_mu_);
    error_ = nullptr;
  }
  closed_.store(false, std::memory_order_release);
}

int64_t BatchRing::claim() {
  const auto n = static_cast<uint64_t>(nslots_);
  for (;;) {
    if (closed_.load(std::memory_order_acquire)) return -1;
    int64_t pos = next_claim_.load(std::memory_order_relaxed);
    const int64_t lim = limit_.load(std::memory_order_relaxed);
    if (lim >= 0 && pos >= lim) return -1;
    const std::atomic<uint64_t>& word = seq_[static_cast<size_t>(static_cast<uint64_t>(pos) % n)].v;
    const uint64_t v = word.load(std::memory_order_acquire);
    if (v & kClosed) return -1;
    const auto diff = static_cast<int64_t>(v - static_cast<uint64_t>(pos));
    if (diff == 0) {
      // Free for `pos`: take it unless another producer was faster.
      if (next_claim_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) return pos;
    } else if (diff < 0) {
      // Still held for ticket pos - slots (not released yet): the ring is full. Sleep until the slot changes.
      spin_then_wait(word, v);
    }
    // diff > 0: `pos` was claimed meanwhile; reload.
  }
}

void BatchRing::publish(int64_t ticket) {
  std::atomic<uint64_t>& word =
      seq_[static_cast<size_t>(static_cast<uint64_t>(ticket) % static_cast<uint64_t>(nslots_))].v;
  // t -> t + 1, keeping a close bit that may have been set meanwhile.
  word.fetch_add(1, std::memory_order_release);
  word.notify_all();
}

int64_t BatchRing::acquire(BatchSlot* slot) {
  const int64_t t = next_acquire_.load(std::memory_order_relaxed);
  const int64_t lim = limit_.load(std::memory_order_relaxed);
  if (lim >= 0 && t >= lim) return -1;
  const std::atomic<uint64_t>& word =
      seq_[static_cast<size_t>(static_cast<uint64_t>(t) % static_cast<uint64_t>(nslots_))].v;
  const uint64_t want = static_cast<uint64_t>(t) + 1;
  int64_t t0 = 0;
  for (;;) {
    const uint64_t v = word.load(std::memory_order_acquire);
    if (v & kClosed) {
      if (t0) {
        wait_ns_.fetch_add(now_ns() - t0, std::memory_order_relaxed);
        waiting_since_ns_.store(0, std::memory_order_relaxed);
      }
      if (std::exception_ptr e = error()) std::rethrow_exception(e);
      return -1;
    }
    if (v == want) break;
    if (v + static_cast<uint64_t>(nslots_) == want)  // still holds ticket t - slots: only we can free it
      throw Error(str("BatchRing::acquire(", t, "): the consumer still holds ticket ", t - nslots_,
                      " in the same slot; release it first"));
    if (!t0) {
      t0 = now_ns();
      waits_.fetch_add(1, std::memory_order_relaxed);
      waiting_since_ns_.store(t0, std::memory_order_relaxed);
    }
    spin_then_wait(word, v);
  }
  if (t0) {
    wait_ns_.fetch_add(now_ns() - t0, std::memory_order_relaxed);
    waiting_since_ns_.store(0, std::memory_order_relaxed);
  }
  next_acquire_.store(t + 1, std::memory_order_relaxed);
  if (slot) *slot = slot_of(t);
  return t;
}

void BatchRing::release(int64_t ticket) {
  STOKE_CHECK(ticket >= 0 && ticket < next_acquire_.load(std::memory_order_relaxed), "release of ticket ", ticket,
              " that was not acquired");
  std::atomic<uint64_t>& word =
      seq_[static_cast<size_t>(static_cast<uint64_t>(ticket) % static_cast<uint64_t>(nslots_))].v;
  const uint64_t v = word.load(std::memory_order_relaxed);
  STOKE_CHECK((v & ~kClosed) == static_cast<uint64_t>(ticket) + 1, "release of ticket ", ticket,
              " that is not in flight (released twice?)");
  // t + 1 -> t + slots: free for the ticket `slots` later. The consumer is done with the memory (release order).
  word.fetch_add(static_cast<uint64_t>(nslots_) - 1, std::memory_order_release);
  word.notify_all();
}

void BatchRing::close(std::exception_ptr error) {
  if (error) {
    std::lock_guard lk(error_mu_);
    if (!error_) error_ = std::move(error);
  }
  closed_.store(true, std::memory_order_release);
  for (int i = 0; i < nslots_; ++i) {
    std::atomic<uint64_t>& word = seq_[static_cast<size_t>(i)].v;
    word.fetch_or(kClosed, std::memory_order_acq_rel);
    word.notify_all();
  }
}

std::exception_ptr BatchRing::error() const {
  std::lock_guard lk(error_mu_);
  return error_;
}

RingOccupancy BatchRing::occupancy() const {
  RingOccupancy o;
  const int64_t acquired = next_acquire_.load(std::memory_order_relaxed);
  const int64_t claimed = next_claim_.load(std::memory_order_relaxed);
  for (int i = 0; i < nslots_; ++i) {
    const auto v = static_cast<int64_t>(seq_[static_cast<size_t>(i)].v.load(std::memory_order_relaxed) & ~kClosed);
    // v == t: free for t (t >= claimed) or being filled (t < claimed). v == t + 1: ready (t >= acquired) or
    // in flight. Which holds follows from v's residue: t = i (mod slots) for free/filling.
    if ((v - i) % nslots_ == 0) {
      if (v < claimed) ++o.filling; else ++o.free;
    } else {
      if (v - 1 >= acquired) ++o.ready; else ++o.in_flight;
    }
  }
  return o;
}

double BatchRing::consumer_wait_seconds() const {
  int64_t ns = wait_ns_.load(std::memory_order_relaxed);
  const int64_t since = waiting_since_ns_.load(std::memory_order_relaxed);
  if (since) ns += now_ns() - since;
  return static_cast<double>(ns) * 1e-9;
}

}  // namespace stoke::io
