#include "io/pipeline/input_pipeline.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "base/display_name.h"
#include "base/error.h"

namespace stoke::io {

namespace {

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

}  // namespace

InputPipeline::InputPipeline(std::shared_ptr<const Source> source, PipelineConfig cfg)
    : source_(std::move(source)), cfg_(std::move(cfg)) {
  STOKE_CHECK(source_ != nullptr);
  if (cfg_.batch < 1) throw UserError(str("batch size must be at least 1 (got ", cfg_.batch, ")"));
  if (!(cfg_.watchdog_seconds > 0))
    throw UserError(str("the watchdog timeout must be positive (got ", cfg_.watchdog_seconds, ")"));
  if (cfg_.decoders < 0) throw UserError(str("decoders must be a count or auto (got ", cfg_.decoders, ")"));
  if (cfg_.slots != 0 && cfg_.slots < 2) throw UserError(str("the ring needs at least 2 slots (got ", cfg_.slots, ")"));
  if (cfg_.h <= 0 || cfg_.w <= 0 || cfg_.c <= 0) {
    const DataShape s = probe_source_shape(*source_);
    if (cfg_.h <= 0) cfg_.h = s.h;
    if (cfg_.w <= 0) cfg_.w = s.w;
    if (cfg_.c <= 0) cfg_.c = s.c;
  }
  if (cfg_.c != 1 && cfg_.c != 3) throw UserError(str("input channels must be 1 or 3 (got ", cfg_.c, ")"));
  if (cfg_.h > 16384 || cfg_.w > 16384) throw UserError(str("input size ", cfg_.h, "x", cfg_.w, " is too large"));

  SamplerConfig sc;
  sc.samples = source_->size();
  sc.batch = cfg_.batch;
  sc.rank = cfg_.rank;
  sc.world = cfg_.world;
  sc.shuffle = cfg_.shuffle;
  sc.drop_last = cfg_.drop_last;
  sc.seed = cfg_.seed;
  sampler_ = std::make_unique<Sampler>(sc);

  PoolConfig pc;
  pc.transform.h = cfg_.h;
  pc.transform.w = cfg_.w;
  pc.transform.c = cfg_.c;
  pc.transform.augment = cfg_.augment;
  pc.transform.aug = cfg_.aug;
  pc.transform.decoder_augment = cfg_.decoder_augment;
  pc.transform.seed = cfg_.seed;
  pc.strict = cfg_.strict;
  pc.replace_bad = cfg_.replace_bad;
  pc.quarantine_path = cfg_.quarantine_path;
  pc.on_warning = cfg_.on_warning;
  if (cfg_.decoders > 0) {
    pc.decoders = cfg_.decoders;
    decoders_reason_ = str("decoders: ", cfg_.decoders, " (as configured)");
  } else {
    pc.decoders =
        choose_decoders(*source_, pc.transform, cfg_.reserve_cores, cfg_.target_images_per_second, &decoders_reason_);
  }

  const int64_t sample_bytes = int64_t{cfg_.h} * cfg_.w * cfg_.c;
  int slots = cfg_.slots;
  if (slots == 0) {
    // Every decoder busy on its own batch, one ready, one in the consumer's hands, one in flight to the device.
    slots = std::max(4, pc.decoders + 3);
    const int64_t slot_bytes = sample_bytes * cfg_.batch + 16 * int64_t{cfg_.batch} + 4096;
    const int64_t fit = (int64_t{2} << 30) / slot_bytes;
    slots = static_cast<int>(std::max<int64_t>(3, std::min<int64_t>(slots, fit)));
  }
  ring_ = std::make_unique<BatchRing>(slots, cfg_.batch, sample_bytes, cfg_.pinned);
  pool_ = std::make_unique<DecoderPool>(source_, *sampler_, *ring_, std::move(pc));
  if (!cfg_.on_stall) cfg_.on_stall = [](const std::string& m) { std::fprintf(stderr, "\n%s\n", m.c_str()); };
}

InputPipeline::~InputPipeline() { stop(); }

void InputPipeline::start(int64_t epoch, int64_t cursor) {
  const int64_t bpe = sampler_->batches_per_epoch();
  if (epoch < 0 || cursor < 0 || cursor > bpe)
    throw UserError(str("cannot resume at epoch ", epoch, ", batch ", cursor, " (an epoch has ", bpe, " batches)"));
  stop();
  std::lock_guard lk(stop_mu_);
  const int64_t first = sampler_->global_batch(epoch, cursor);
  first_.store(first, std::memory_order_relaxed);
  const int64_t limit = cfg_.end_epoch >= 0 ? std::max<int64_t>(0, cfg_.end_epoch * bpe - first) : -1;
  ring_->reset(limit);
  pool_->start(first);
  {
    std::lock_guard wl(wd_mu_);
    wd_stop_ = false;
  }
  watchdog_ = std::thread([this] { watchdog_main(); });
  started_.store(true, std::memory_order_release);
}

void InputPipeline::stop() {
  std::lock_guard lk(stop_mu_);
  pool_->stop();  // closes the ring: a blocked acquire() returns
  {
    std::lock_guard wl(wd_mu_);
    wd_stop_ = true;
  }
  wd_cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  started_.store(false, std::memory_order_release);
}

Batch InputPipeline::acquire() {
  BatchSlot s;
  if (ring_->acquire(&s) < 0) return Batch{};
  return *s.header;  // the descriptor its producer filled in the slot
}

void InputPipeline::release(int64_t ticket) { ring_->release(ticket); }

PipelineStats InputPipeline::stats() const {
  PipelineStats st;
  st.images = pool_->images();
  st.batches = ring_->consumed();
  st.corrupt = pool_->corrupt();
  st.vanished = pool_->vanished();
  st.consumer_wait_seconds = ring_->consumer_wait_seconds();
  st.consumer_waits = ring_->consumer_waits();
  st.ring = ring_->occupancy();
  for (const DecoderStatus& d : pool_->status()) {
    DecoderStats ds;
    ds.images = d.images;
    ds.read_seconds = d.seconds[static_cast<int>(Stage::read)];
    ds.decode_seconds = d.seconds[static_cast<int>(Stage::decode)];
    ds.resize_seconds = d.seconds[static_cast<int>(Stage::resize)];
    ds.wait_slot_seconds = d.seconds[static_cast<int>(Stage::wait_slot)];
    st.decoders.push_back(ds);
  }
  return st;
}

std::string InputPipeline::watchdog_report() const {
  const int64_t since = ring_->consumer_waiting_since_ns();
  const int64_t t = ring_->consumed();
  const Sampler::Position pos = sampler_->position(first_.load(std::memory_order_relaxed) + t);
  std::string out;
  if (since) {
    out = str("input pipeline stalled: the trainer has waited ",
              fmt_seconds(static_cast<double>(StageClock::now_ns() - since) * 1e-9), " for batch ", pos.index,
              " of epoch ", pos.epoch, " (ticket ", t, ")");
  } else {
    out = str("input pipeline: the trainer is not waiting (next: batch ", pos.index, " of epoch ", pos.epoch, ")");
  }
  const RingOccupancy o = ring_->occupancy();
  out += str("\n  ring: ", ring_->slots(), " slots: ", o.ready, " ready, ", o.filling, " filling, ", o.free, " free, ",
             o.in_flight, " held by the trainer", ring_->closed() ? " (closed)" : "");
  for (const DecoderStatus& d : pool_->status()) {
    out += str("\n  decoder ", d.id, ": ");
    if (!d.running) {
      out += "exited";
      continue;
    }
    out += stage_name(d.stage);
    if (!d.file.empty() && (d.stage == Stage::read || d.stage == Stage::decode || d.stage == Stage::resize))
      out += str(" ", display_name(d.file));
    out += str(" for ", fmt_seconds(d.seconds_in_stage));
    if (d.ticket >= 0) out += str(" (ticket ", d.ticket, ", ", d.images, " images so far)");
  }
  return out;
}

void InputPipeline::watchdog_main() {
  const auto timeout_ns = static_cast<int64_t>(cfg_.watchdog_seconds * 1e9);
  const auto poll = std::chrono::nanoseconds(std::clamp<int64_t>(timeout_ns / 4, 10'000'000, 1'000'000'000));
  int64_t episode = 0;  // the consumer wait being watched (its start time)
  int reports = 0, dead_polls = 0;
  std::unique_lock lk(wd_mu_);
  while (!wd_stop_) {
    wd_cv_.wait_for(lk, poll, [&] { return wd_stop_; });
    if (wd_stop_) break;
    const int64_t since = ring_->consumer_waiting_since_ns();
    if (!since) {
      episode = 0;
      dead_polls = 0;
      continue;
    }
    if (since != episode) {
      episode = since;
      reports = 0;
      dead_polls = 0;
    }
    const int64_t waited = StageClock::now_ns() - since;
    if (waited >= (reports + 1) * timeout_ns) {
      ++reports;
      const std::string report = watchdog_report();
      lk.unlock();
      try {
        cfg_.on_stall(report);
      } catch (...) {
        // a failing report must not take the process down (std::terminate on this thread)
      }
      lk.lock();
    }
    // Every decoder gone while the consumer waits, and nobody said why: fail loudly instead of waiting forever.
    if (pool_->running() == 0 && !ring_->closed()) {
      if (++dead_polls >= 2)
        ring_->close(std::make_exception_ptr(
            Error(str("the input pipeline's decoder threads have all stopped\n", watchdog_report()))));
    } else {
      dead_polls = 0;
    }
  }
}

ReadableSamples readable_samples(int valid, const uint8_t* pixels, const int32_t* labels, int64_t sample_bytes,
                                 std::vector<uint8_t>& pixel_buffer, std::vector<int32_t>& label_buffer) {
  ReadableSamples r{valid, 0, 0, pixels, labels};
  if (std::none_of(labels, labels + valid, [](int32_t l) { return l == kUnreadable || l == kVanished; })) return r;
  pixel_buffer.resize(static_cast<size_t>(valid * sample_bytes));
  label_buffer.resize(static_cast<size_t>(valid));
  r.n = 0;
  for (int i = 0; i < valid; ++i) {
    if (labels[i] == kUnreadable || labels[i] == kVanished) {
      ++(labels[i] == kVanished ? r.vanished : r.unreadable);
      continue;
    }
    std::memcpy(pixel_buffer.data() + r.n * sample_bytes, pixels + i * sample_bytes, static_cast<size_t>(sample_bytes));
    label_buffer[static_cast<size_t>(r.n++)] = labels[i];
  }
  r.pixels = pixel_buffer.data();
  r.labels = label_buffer.data();
  return r;
}

}  // namespace stoke::io
