#include "io/pipeline/decoder_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "base/display_name.h"
#include "base/error.h"
#include "base/rng.h"
#include "io/codec/codec.h"

namespace stoke::io {

namespace {

constexpr uint64_t kReplacePurpose = 0xbad5a3;

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

struct alignas(64) DecoderPool::Worker {
  int id = 0;
  StageClock clock;
  std::atomic<int64_t> ticket{-1};
  std::atomic<int64_t> sample{-1};
  std::atomic<int64_t> images{0};
  std::atomic<bool> running{false};
  std::vector<uint8_t> scratch;  // file bytes (folder sources); grows to the largest file, then stays
  std::vector<int64_t> ids;      // the batch's sample ids
  std::thread thread;
};

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned h = std::thread::hardware_concurrency();
  return h > 0 ? static_cast<int>(h) : 1;
}

int choose_decoders(const Source& source, const TransformConfig& t, int reserve_cores, double target_rate,
                    std::string* reason, double* measured_rate) {
  const int cores = available_cores();
  const int by_cores = std::max(1, cores - std::max(0, reserve_cores));
  // The single-thread rate on a few samples spread over the set (the first pass warms the caches).
  std::vector<uint8_t> scratch, dst(static_cast<size_t>(t.h) * t.w * t.c);
  const int64_t n = source.size();
  const int probes = static_cast<int>(std::min<int64_t>(n, 16));
  int decoded = 0;
  double seconds = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
  for (int pass = 0; pass < 2; ++pass) {
    for (int k = 0; k < probes && std::chrono::steady_clock::now() < deadline; ++k) {
      const int64_t i = k * n / probes;
      const auto t0 = std::chrono::steady_clock::now();
      std::span<const uint8_t> bytes;
      std::string err;
      if (source.read(i, scratch, bytes, &err) != ReadStatus::ok) continue;
      const bool ok = decode_sample(t, bytes, 0, static_cast<uint64_t>(i), dst.data(), &err);
      if (pass == 1 && ok) {
        seconds += seconds_between(t0, std::chrono::steady_clock::now());
        ++decoded;
      }
    }
  }
  const double rate = decoded > 0 && seconds > 0 ? decoded / seconds : 0;
  if (measured_rate) *measured_rate = rate;
  int n_threads = by_cores;
  std::string why = str(cores, " cores, ", cores - by_cores, " kept for the trainer");
  if (rate > 0) {
    why += str("; one thread decodes ", std::lround(rate), " img/s of this data");
    if (target_rate > 0) {
      const int need = std::max(1, static_cast<int>(std::ceil(target_rate * 1.15 / rate)));
      if (need < n_threads) {
        n_threads = need;
        why += str(", ", need, " cover the target of ", std::lround(target_rate), " img/s with 15% headroom");
      } else {
        why += str(", the target of ", std::lround(target_rate), " img/s needs ", need, " (capped by cores)");
      }
    }
    why += str(": ~", std::lround(rate * n_threads), " img/s");
  } else {
    why += "; the decode rate could not be measured (no readable sample among the probes)";
  }
  if (reason) *reason = str("decoders auto: ", n_threads, " (", why, ")");
  return n_threads;
}

DecoderPool::DecoderPool(std::shared_ptr<const Source> source, const Sampler& sampler, BatchRing& ring, PoolConfig cfg)
    : source_(std::move(source)), sampler_(sampler), ring_(ring), cfg_(std::move(cfg)) {
  STOKE_CHECK(source_ && source_->size() == sampler_.samples(), "source and sampler disagree on the sample count");
  STOKE_CHECK(ring_.batch() == sampler_.batch(), "ring and sampler disagree on the batch size");
  const TransformConfig& t = cfg_.transform;
  STOKE_CHECK(t.h > 0 && t.w > 0 && (t.c == 1 || t.c == 3), "transform ", t.h, "x", t.w, "x", t.c);
  STOKE_CHECK(ring_.sample_bytes() == int64_t{t.h} * t.w * t.c, "ring sample size ", ring_.sample_bytes());
  if (cfg_.decoders > 0) {
    ndecoders_ = cfg_.decoders;
    reason_ = str("decoders: ", ndecoders_, " (as configured)");
  } else {
    ndecoders_ = choose_decoders(*source_, t, cfg_.reserve_cores, cfg_.target_images_per_second, &reason_);
  }
  if (!cfg_.on_warning)
    cfg_.on_warning = [](const std::string& m) { std::fprintf(stderr, "\nwarning: %s\n", m.c_str()); };
  const auto n = static_cast<size_t>(source_->size());
  labels_.resize(n);
  for (size_t i = 0; i < n; ++i) labels_[i] = source_->label(static_cast<int64_t>(i));
  bad_ = std::make_unique<std::atomic<uint8_t>[]>(n);
  for (size_t i = 0; i < n; ++i) bad_[i].store(0, std::memory_order_relaxed);
  // Epochs that can be in flight at once: tickets in flight span at most `slots` batches.
  const auto nperm = static_cast<size_t>(ring_.slots() / sampler_.batches_per_epoch() + 3);
  for (size_t k = 0; k < nperm; ++k) {
    auto p = std::make_unique<Perm>();
    p->ids.resize(n);
    perms_.push_back(std::move(p));
  }
  for (int i = 0; i < ndecoders_; ++i) {
    auto w = std::make_unique<Worker>();
    w->id = i;
    w->ids.resize(static_cast<size_t>(sampler_.batch()));
    workers_.push_back(std::move(w));
  }
}

DecoderPool::~DecoderPool() {
  stop();
  if (quarantine_) std::fclose(quarantine_);
}

void DecoderPool::start(int64_t first_global_batch) {
  STOKE_CHECK(running_.load() == 0, "DecoderPool::start while running");
  for (auto& w : workers_) STOKE_CHECK(!w->thread.joinable(), "DecoderPool::start before stop");
  first_ = first_global_batch;
  for (auto& p : perms_) {
    p->epoch.store(-1, std::memory_order_relaxed);
    p->building.store(-1, std::memory_order_relaxed);
  }
  try {
    for (auto& w : workers_) {
      w->running.store(true, std::memory_order_relaxed);
      running_.fetch_add(1, std::memory_order_acq_rel);
      Worker* wp = w.get();
      trace_init();  // NVTX initialises on this thread before any decoder names itself
      w->thread = std::thread([this, wp] { run(*wp); });
    }
  } catch (...) {
    // Could not start every thread (resource limits): the ones that started are stopped, the caller told.
    for (auto& w : workers_)
      if (!w->thread.joinable() && w->running.exchange(false)) running_.fetch_sub(1);
    stop();
    throw;
  }
}

void DecoderPool::stop() {
  ring_.close();
  for (auto& w : workers_)
    if (w->thread.joinable()) w->thread.join();
}

void DecoderPool::run(Worker& w) {
  char name[32];
  std::snprintf(name, sizeof name, "stoke decoder %d", w.id);
  trace_name_thread(name);
  try {
    for (;;) {
      w.clock.enter(Stage::wait_slot);
      const int64_t t = ring_.claim();
      if (t < 0) break;
      w.ticket.store(t, std::memory_order_relaxed);
      if (!fill(w, t)) break;  // the ring closed mid-batch
      ring_.publish(t);
    }
  } catch (...) {
    ring_.close(std::current_exception());
  }
  w.clock.enter(Stage::idle);
  w.sample.store(-1, std::memory_order_relaxed);
  w.running.store(false, std::memory_order_relaxed);
  running_.fetch_sub(1, std::memory_order_acq_rel);
}

const int64_t* DecoderPool::permutation(int64_t epoch) {
  Perm& p = *perms_[static_cast<size_t>(epoch) % perms_.size()];
  for (;;) {
    const int64_t ready = p.epoch.load(std::memory_order_acquire);
    if (ready == epoch) return p.ids.data();
    int64_t b = p.building.load(std::memory_order_acquire);
    if (b != epoch) {
      // Nobody builds it yet: claim. (The previous occupant, epoch - K, has no ticket in flight any more.)
      if (p.building.compare_exchange_strong(b, epoch, std::memory_order_acq_rel)) {
        sampler_.permutation(epoch, p.ids);
        p.epoch.store(epoch, std::memory_order_release);
        p.epoch.notify_all();
        return p.ids.data();
      }
      continue;
    }
    spin_then_wait(p.epoch, ready);
  }
}

void DecoderPool::report_bad(int64_t id, ReadStatus status, const std::string& why) {
  const std::string name = display_name(source_->name(id));  // quarantine.txt and messages: one line, UTF-8
  // vanished: the file is gone; unreadable: another read error; corrupt / unsupported: the decoder's verdict
  // (io/codec/codec.h problem_of).
  const std::string what = status == ReadStatus::vanished ? "vanished"
                           : status == ReadStatus::failed ? "unreadable"
                                                          : problem_name(problem_of(why));
  if (cfg_.strict) throw UserError(str(what, " image ", name, ": ", why, " (strict mode)"));
  uint8_t was = 0;  // the first report decides (and is told); the evaluation mask reads which it was
  if (!bad_[static_cast<size_t>(id)].compare_exchange_strong(was, status == ReadStatus::vanished ? 2 : 1,
                                                             std::memory_order_acq_rel))
    return;
  (status == ReadStatus::vanished ? vanished_ : corrupt_).fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lk(bad_mu_);
  const std::string line = str(name, "\t", what, ": ", why);
  quarantined_.push_back(line);
  if (!cfg_.quarantine_path.empty() && !quarantine_failed_) {
    if (!quarantine_) quarantine_ = std::fopen(cfg_.quarantine_path.c_str(), "a");
    if (!quarantine_ || std::fprintf(quarantine_, "%s\n", line.c_str()) < 0 || std::fflush(quarantine_) != 0) {
      quarantine_failed_ = true;
      cfg_.on_warning(str("cannot write the quarantine list ", cfg_.quarantine_path));
    }
  }
  cfg_.on_warning(str("skipping ", what, " image ", name, ": ", why,
                      cfg_.replace_bad ? " (replaced by another sample)" : " (left out of the evaluation)"));
}

bool DecoderPool::fill(Worker& w, int64_t ticket) {
  const Sampler::Position pos = sampler_.position(first_ + ticket);
  const int64_t n = sampler_.samples();
  const std::span<const int64_t> perm(permutation(pos.epoch), static_cast<size_t>(n));
  const int valid = sampler_.batch_ids(perm, pos.index, w.ids);
  const BatchSlot slot = ring_.slot_of(ticket);
  const int64_t sample_bytes = ring_.sample_bytes();
  const TransformConfig& t = cfg_.transform;
  int corrupt = 0;
  std::string err;
  for (int k = 0; k < sampler_.batch(); ++k) {
    if (ring_.closed()) return false;
    const int64_t original = w.ids[static_cast<size_t>(k)];
    // The next sample's bytes load while this one decodes.
    if (k + 1 < sampler_.batch()) source_->prefetch(w.ids[static_cast<size_t>(k) + 1]);
    int64_t id = original;
    uint8_t* dst = slot.pixels + k * sample_bytes;
    for (int attempt = 0;; ++attempt) {  // attempt 0: the sample itself; then stand-ins
      if (attempt > cfg_.max_consecutive_bad)
        throw Error(str("more than ", cfg_.max_consecutive_bad, " unreadable images in a row (the last: ",
                        display_name(source_->name(id)), "): is the data set readable?"));
      if (attempt > 0) {
        // A deterministic stand-in: any thread, any decoder count, picks the same one.
        id = static_cast<int64_t>(uniform_below(
            hash_key(t.seed, kReplacePurpose, static_cast<uint64_t>(pos.epoch), static_cast<uint64_t>(original)),
            static_cast<uint64_t>(attempt), static_cast<uint64_t>(n)));
      }
      if (!bad_[static_cast<size_t>(id)].load(std::memory_order_relaxed)) {  // known bad: not read again
        w.sample.store(id, std::memory_order_relaxed);
        w.clock.enter(Stage::read);
        std::span<const uint8_t> bytes;
        const ReadStatus st = source_->read(id, w.scratch, bytes, &err);
        if (st == ReadStatus::ok &&
            decode_sample(t, bytes, pos.epoch, static_cast<uint64_t>(id), dst, &err, &w.clock)) {
          slot.labels[k] = labels_[static_cast<size_t>(id)];
          slot.ids[k] = id;
          w.images.fetch_add(1, std::memory_order_relaxed);
          break;
        }
        report_bad(id, st, err);
      }
      if (!cfg_.replace_bad) {  // evaluation: a masked position, never a stand-in
        std::memset(dst, 0, static_cast<size_t>(sample_bytes));
        slot.labels[k] = bad_[static_cast<size_t>(id)].load(std::memory_order_acquire) == 2 ? kVanished : kUnreadable;
        slot.ids[k] = original;
        ++corrupt;
        break;
      }
    }
    if (id != original) ++corrupt;
  }
  w.sample.store(-1, std::memory_order_relaxed);
  Batch& h = *slot.header;  // its pointers are the ring's
  h.tag = ticket;
  h.epoch = pos.epoch;
  h.index = pos.index;
  h.size = sampler_.batch();
  h.valid = valid;
  h.corrupt = corrupt;
  return true;
}

std::vector<DecoderStatus> DecoderPool::status() const {
  std::vector<DecoderStatus> out;
  const int64_t now = StageClock::now_ns();
  for (const auto& w : workers_) {
    DecoderStatus s;
    s.id = w->id;
    s.stage = static_cast<Stage>(w->clock.stage.load(std::memory_order_relaxed));
    const int64_t since = w->clock.since_ns.load(std::memory_order_relaxed);
    s.seconds_in_stage = since ? static_cast<double>(now - since) * 1e-9 : 0;
    s.ticket = w->ticket.load(std::memory_order_relaxed);
    s.sample = w->sample.load(std::memory_order_relaxed);
    if (s.sample >= 0 && s.sample < source_->size()) s.file = source_->name(s.sample);
    s.images = w->images.load(std::memory_order_relaxed);
    for (int k = 0; k < static_cast<int>(Stage::count); ++k) s.seconds[k] = w->clock.seconds(static_cast<Stage>(k));
    s.running = w->running.load(std::memory_order_relaxed);
    out.push_back(std::move(s));
  }
  return out;
}

int64_t DecoderPool::images() const {
  int64_t n = 0;
  for (const auto& w : workers_) n += w->images.load(std::memory_order_relaxed);
  return n;
}

std::vector<std::string> DecoderPool::quarantined() const {
  std::lock_guard lk(bad_mu_);
  return quarantined_;
}

}  // namespace stoke::io
