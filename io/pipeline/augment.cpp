#include "io/pipeline/augment.h"

#include <algorithm>
#include <cmath>

#include "base/rng.h"
#include "io/codec/codec.h"

namespace stoke::io {

namespace {

constexpr uint64_t kAugmentPurpose = 0xa06e47;
constexpr uint64_t kFlipCounter = 1000;  // the crop's tries use counters 0..39

struct ChooserCtx {
  const AugmentConfig* cfg;
  uint64_t key;
  AugmentParams* params;
  int target[2];
};

CropBox choose_crop(const void* ctx, int src_h, int src_w) {
  const auto* c = static_cast<const ChooserCtx*>(ctx);
  *c->params = augment_params(*c->cfg, c->key, src_h, src_w);
  // Without a random crop the image keeps its proportions: a centred crop to the target's aspect, not a stretch.
  if (!c->cfg->random_resized_crop) c->params->crop = centre_crop_to_aspect(src_h, src_w, c->target[0], c->target[1]);
  return c->params->crop;
}

}  // namespace

uint64_t augment_key(uint64_t seed, int64_t epoch, uint64_t sample_id) {
  return hash_key(seed, kAugmentPurpose, static_cast<uint64_t>(epoch), sample_id);
}

CropBox random_resized_crop(uint64_t key, int src_h, int src_w, float scale_min, float scale_max, float ratio_min,
                            float ratio_max) {
  const double area = static_cast<double>(src_h) * src_w;
  const double log_r0 = std::log(static_cast<double>(ratio_min)), log_r1 = std::log(static_cast<double>(ratio_max));
  for (uint64_t attempt = 0; attempt < 10; ++attempt) {
    const uint64_t c = attempt * 4;
    const double target_area = area * (scale_min + (scale_max - scale_min) * static_cast<double>(uniform01(key, c)));
    const double aspect = std::exp(log_r0 + (log_r1 - log_r0) * static_cast<double>(uniform01(key, c + 1)));
    const auto w = static_cast<int>(std::lround(std::sqrt(target_area * aspect)));
    const auto h = static_cast<int>(std::lround(std::sqrt(target_area / aspect)));
    if (0 < w && w <= src_w && 0 < h && h <= src_h) {
      const auto y = static_cast<int>(uniform_below(key, c + 2, static_cast<uint64_t>(src_h - h + 1)));
      const auto x = static_cast<int>(uniform_below(key, c + 3, static_cast<uint64_t>(src_w - w + 1)));
      return CropBox{y, x, h, w};
    }
  }
  // Fallback: the central crop with the aspect ratio clamped into [ratio_min, ratio_max].
  const double in_ratio = static_cast<double>(src_w) / src_h;
  int w = src_w, h = src_h;
  if (in_ratio < ratio_min) {
    h = std::clamp(static_cast<int>(std::lround(w / static_cast<double>(ratio_min))), 1, src_h);
  } else if (in_ratio > ratio_max) {
    w = std::clamp(static_cast<int>(std::lround(h * static_cast<double>(ratio_max))), 1, src_w);
  }
  return CropBox{(src_h - h) / 2, (src_w - w) / 2, h, w};
}

AugmentParams augment_params(const AugmentConfig& cfg, uint64_t key, int src_h, int src_w) {
  AugmentParams p;
  p.crop = cfg.random_resized_crop
               ? random_resized_crop(key, src_h, src_w, cfg.scale_min, cfg.scale_max, cfg.ratio_min, cfg.ratio_max)
               : CropBox{0, 0, src_h, src_w};
  p.flip = cfg.hflip && uniform01(key, kFlipCounter) < 0.5f;
  return p;
}

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::idle: return "idle";
    case Stage::wait_slot: return "waiting for a free slot";
    case Stage::read: return "read";
    case Stage::decode: return "decode";
    case Stage::resize: return "resize";
    case Stage::augment: return "augment";
    case Stage::count: break;
  }
  return "?";
}

bool decode_sample(const TransformConfig& t, std::span<const uint8_t> bytes, int64_t epoch, uint64_t sample_id,
                   uint8_t* dst, std::string* error, StageClock* clock, AugmentParams* params) {
  AugmentParams local;
  AugmentParams* p = params ? params : &local;
  *p = AugmentParams{};
  DecoderAugment da;
  if (t.decoder_augment) t.decoder_augment(epoch, sample_id, da);
  ChooserCtx ctx{&t.aug, augment_key(t.seed, epoch, sample_id), p, {t.h, t.w}};
  const CropChooser chooser =
      t.augment ? CropChooser{&choose_crop, &ctx} : CropChooser{&choose_centre_crop, ctx.target};
  if (clock) clock->enter(Stage::decode);
  DecodedRegion r;
  // A warp reads the region while it writes dst: the region must not be dst.
  if (!decode_region(bytes.data(), bytes.size(), chooser, t.h, t.w, t.c, r, error, da.warp ? nullptr : dst))
    return false;
  if (!t.augment) p->crop = r.crop;
  // A decode straight into dst (data at the model's size, no warp) skips the resize clock.
  if (clock && (da.warp || r.pixels != dst)) clock->enter(Stage::resize);
  apply_decoder_geometry(da, r.pixels, r.h, r.w, r.stride, dst, t.h, t.w, t.c, p->flip);
  if (da.colour || (da.erase_h > 0 && da.erase_w > 0)) {
    if (clock) clock->enter(Stage::augment);
    apply_decoder_colour(da, dst, t.h, t.w, t.c);
  }
  return true;
}

}  // namespace stoke::io
