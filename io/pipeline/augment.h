// Per-sample decode and CPU augmentation for the input pipeline: JPEG bytes -> uint8 HWC at the model's size.
//
// Training (augment = true): torchvision's RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3), 10 tries, then
// the centre-crop fallback) followed by a horizontal flip with probability 1/2. Evaluation (augment = false):
// the whole image resized to h x w (no centre crop: the data sets stoke targets are stored at or near the model
// size, and a plain resize keeps every pixel; the trainer's simple loader did the same).
//
// Every random choice is a pure function of (seed, epoch, sample id) through base/rng.h, so a batch is the
// same bytes whichever decoder thread, and however many, produced it. Normalisation and casting are not done
// here (the GPU augment kernel, or the CPU reference, does that from the uint8 batch).
//
// The decode itself only touches what the crop needs (io/codec/codec.h decode_region; for JPEG DCT-domain scaling,
// jpeg_skip_scanlines, jpeg_crop_scanline).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "base/trace.h"
#include "io/codec/codec.h"
#include "io/pipeline/decoder_augment.h"

namespace stoke::io {

struct AugmentConfig {
  bool random_resized_crop = true;
  float scale_min = 0.08f, scale_max = 1.0f;               // of the image area
  float ratio_min = 3.0f / 4.0f, ratio_max = 4.0f / 3.0f;  // crop width / height
  bool hflip = true;                                       // with probability 1/2
};

struct AugmentParams {
  CropBox crop;  // source pixels, inside the image
  bool flip = false;
};

// The key every random choice for one sample draws from.
uint64_t augment_key(uint64_t seed, int64_t epoch, uint64_t sample_id);

// torchvision RandomResizedCrop.get_params with counter-based draws from `key`.
CropBox random_resized_crop(uint64_t key, int src_h, int src_w, float scale_min, float scale_max, float ratio_min,
                            float ratio_max);

// The sample's augmentation for a source of src_h x src_w (crop = whole image when random_resized_crop is off).
AugmentParams augment_params(const AugmentConfig& cfg, uint64_t key, int src_h, int src_w);

// What a decoder thread is doing, written by that thread and read by any other (the watchdog) with relaxed
// atomics: the stage, since when, and the time spent per stage so far.
enum class Stage : int { idle = 0, wait_slot, read, decode, resize, augment, count };
const char* stage_name(Stage s);

struct StageClock {
  std::atomic<int> stage{static_cast<int>(Stage::idle)};
  std::atomic<int64_t> since_ns{0};
  std::atomic<int64_t> total_ns[static_cast<int>(Stage::count)] = {};

  static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  bool traced = false;  // an NVTX range for the current stage is open (owning thread only)

  // Only the owning thread calls enter(). Each stage but idle is also an NVTX range named after it.
  void enter(Stage s) {
    const int64_t now = now_ns();
    const int prev = stage.load(std::memory_order_relaxed);
    const int64_t since = since_ns.load(std::memory_order_relaxed);
    if (since)
      total_ns[prev].store(total_ns[prev].load(std::memory_order_relaxed) + (now - since), std::memory_order_relaxed);
    stage.store(static_cast<int>(s), std::memory_order_relaxed);
    since_ns.store(now, std::memory_order_relaxed);
    if constexpr (trace_enabled()) {
      if (traced) trace_pop();
      traced = s != Stage::idle;
      if (traced) trace_push(stage_name(s));
    }
  }
  double seconds(Stage s) const {
    return static_cast<double>(total_ns[static_cast<int>(s)].load(std::memory_order_relaxed)) * 1e-9;
  }
};

// How samples become model inputs.
struct TransformConfig {
  int h = 0, w = 0, c = 0;  // model input; c = 1 or 3 (any JPEG colour space is converted)
  bool augment = false;     // training augmentation (above) or plain resize
  AugmentConfig aug;
  uint64_t seed = 0;
  // The engine's per-sample augmentation done here (decoder_augment.h): the geometry folded into the resize, then
  // the colour and the erase box. Empty: none.
  DecoderAugmentFn decoder_augment;
};

// Decodes one sample into dst (h*w*c bytes) under `t`, drawing augmentation from (t.seed, epoch, sample_id).
// clock (optional) goes through Stage::decode, Stage::resize when the decode needs resizing (or warping) and
// Stage::augment for a decoder augmentation's colour and erase box. Never throws on
// bad data: false with the reason in *error (io/codec/image.h's contract). params (optional) receives what was
// applied.
bool decode_sample(const TransformConfig& t, std::span<const uint8_t> bytes, int64_t epoch, uint64_t sample_id,
                   uint8_t* dst, std::string* error, StageClock* clock = nullptr, AugmentParams* params = nullptr);

}  // namespace stoke::io
