#include "engine/batch_loader.h"

#include <chrono>
#include <cstdio>

#include "engine/error.h"
#include "io/image.h"

namespace stoke {

BatchLoader::BatchLoader(const std::vector<io::Sample>& samples, Shape3 shape, int batch, int workers, bool strict)
    : samples_(samples), shape_(shape), batch_(batch), strict_(strict) {
  STOKE_CHECK(batch >= 1 && workers >= 1);
  const size_t nslots = static_cast<size_t>(workers) + 2;
  slots_.resize(nslots);
  for (auto& s : slots_) {  // all memory up front
    s.pixels.resize(static_cast<size_t>(batch) * static_cast<size_t>(shape.size()));
    s.labels.resize(static_cast<size_t>(batch));
    s.ids.resize(static_cast<size_t>(batch));
  }
  slot_ticket_.assign(nslots, -1);
  slot_ready_.assign(nslots, 0);
  warned_.assign(samples.size(), 0);
  for (int i = 0; i < workers; ++i) workers_.emplace_back([this] { worker_main(); });
}

BatchLoader::~BatchLoader() { stop_workers(); }

void BatchLoader::stop_workers() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_)
    if (t.joinable()) t.join();
}

void BatchLoader::start(std::vector<int64_t> order, bool drop_last) {
  std::unique_lock lk(mu_);
  ++generation_;
  nbatches_ = 0;                                 // no new claims from the old pass
  cv_.wait(lk, [&] { return filling_ == 0; });  // no worker may still write into a slot of the old pass
  order_ = std::move(order);
  const auto n = static_cast<int64_t>(order_.size());
  nbatches_ = drop_last ? n / batch_ : (n + batch_ - 1) / batch_;
  next_ticket_ = 0;
  consumed_ = 0;
  std::fill(slot_ready_.begin(), slot_ready_.end(), 0);
  std::fill(slot_ticket_.begin(), slot_ticket_.end(), -1);
  wait_s_ = 0;
  error_.clear();
  lk.unlock();
  cv_.notify_all();
}

void BatchLoader::worker_main() {
  std::unique_lock lk(mu_);
  for (;;) {
    // A ticket may be claimed when its slot's previous ticket has been consumed.
    const auto nslots = static_cast<int64_t>(slots_.size());
    cv_.wait(lk, [&] { return stop_ || (next_ticket_ < nbatches_ && next_ticket_ < consumed_ + nslots - 1); });
    if (stop_) return;
    const int64_t ticket = next_ticket_++;
    const uint64_t gen = generation_;
    const size_t slot = static_cast<size_t>(ticket % nslots);
    slot_ticket_[slot] = ticket;
    slot_ready_[slot] = 0;
    ++filling_;
    lk.unlock();
    std::string err;
    try {
      fill(ticket, slots_[slot]);
    } catch (const std::exception& e) {
      err = e.what();
    }
    lk.lock();
    --filling_;
    cv_.notify_all();
    if (gen != generation_) continue;  // the pass was restarted meanwhile; the slot is stale
    if (!err.empty() && error_.empty()) error_ = err;
    slot_ready_[slot] = 1;
    cv_.notify_all();
  }
}

void BatchLoader::fill(int64_t ticket, HostBatch& b) {
  const auto n = static_cast<int64_t>(order_.size());
  const int64_t begin = ticket * batch_;
  const int count = static_cast<int>(std::min<int64_t>(batch_, n - begin));
  const int64_t sample_bytes = shape_.size();
  b.count = count;
  std::string err;
  for (int i = 0; i < count; ++i) {
    int64_t idx = order_[static_cast<size_t>(begin + i)];
    uint8_t* dst = b.pixels.data() + i * sample_bytes;
    // Try the sample, then its successors, until one decodes.
    for (int attempt = 0;; ++attempt) {
      const io::Sample& s = samples_[static_cast<size_t>(idx)];
      bool ok = false;
      try {
        std::vector<uint8_t> bytes = io::read_file(s.path);
        ok = io::decode_jpeg_to(bytes.data(), bytes.size(), shape_.h, shape_.w, shape_.c, dst, &err);
      } catch (const Error& e) {
        err = e.what();
      }
      if (ok) {
        b.labels[static_cast<size_t>(i)] = s.label;
        b.ids[static_cast<size_t>(i)] = idx;
        break;
      }
      if (strict_) throw UserError(str("corrupt image ", s.path, ": ", err, " (--strict)"));
      bool first = false;
      {
        std::lock_guard lk(mu_);
        first = !warned_[static_cast<size_t>(idx)];
        warned_[static_cast<size_t>(idx)] = 1;
      }
      if (first) {
        corrupt_.fetch_add(1);
        std::fprintf(stderr, "\nwarning: skipping corrupt image %s: %s\n", s.path.c_str(), err.c_str());
      }
      if (attempt > 64) throw Error(str("more than 64 consecutive corrupt images near ", s.path));
      idx = (idx + 1) % static_cast<int64_t>(samples_.size());
    }
  }
}

const HostBatch* BatchLoader::next() {
  std::unique_lock lk(mu_);
  if (consumed_ >= nbatches_) return nullptr;
  const int64_t ticket = consumed_;
  const size_t slot = static_cast<size_t>(ticket % static_cast<int64_t>(slots_.size()));
  auto t0 = std::chrono::steady_clock::now();
  cv_.wait(lk, [&] { return !error_.empty() || (slot_ticket_[slot] == ticket && slot_ready_[slot]); });
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!error_.empty()) throw UserError(error_);
  ++consumed_;  // the previous batch's slot is now free for ticket consumed_ + nslots - 2
  lk.unlock();
  cv_.notify_all();
  return &slots_[slot];
}

}  // namespace stoke
