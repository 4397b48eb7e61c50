// --augment presets, the individual flags, the recipe in config.json, and the transforms of a batch.
#include "engine/augment_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "base/error.h"
#include "base/json_util.h"
#include "base/rng.h"
#include "io/codec/resize.h"
#include "io/pipeline/augment.h"

namespace stoke {
using json = nlohmann::json;

namespace {

// "A:B" or "A" (then A:A). `form` is what the flag takes, for the message.
AugmentRange parse_range(const char* flag, const std::string& v, const char* form = "MIN:MAX (or one number)") {
  auto number = [&](const std::string& s) {
    char* end = nullptr;
    const float x = std::strtof(s.c_str(), &end);
    if (s.empty() || *end != '\0' || !std::isfinite(x))
      throw UserError(str(flag, " must be ", form, " of finite numbers, got '", v, "'"));
    return x;
  };
  const size_t colon = v.find(':');
  const float lo = number(v.substr(0, colon));
  const float hi = colon == std::string::npos ? lo : number(v.substr(colon + 1));
  if (hi < lo) throw UserError(str(flag, " ", v, ": MIN must not exceed MAX"));
  return {lo, hi};
}

float checked(const char* flag, float v, float lo, float hi, const char* what) {
  if (!(v >= lo && v <= hi)) throw UserError(str(flag, " ", v, ": must be ", what));
  return v;
}

// torchvision ColorJitter: a factor uniform in [max(0, 1 - a), 1 + a].
AugmentRange jitter(float a) { return {std::max(0.f, 1.f - a), 1.f + a}; }

AugmentRecipe preset_recipe(const std::string& name, Augment& decoder) {
  AugmentRecipe r;
  decoder = Augment::none;
  if (name == "monai") {  // the MedNIST tutorial: RandRotate(range_x=pi/12), RandFlip, RandZoom(0.9, 1.1), each p 0.5
    r.rotate_deg = {-15.f, 15.f};
    r.rotate_p = 0.5f;
    r.hflip_p = 0.5f;
    r.zoom = {0.9f, 1.1f};
    r.zoom_p = 0.5f;
  } else if (name == "imagenet") {  // the random resized crop on the decoders, flip and colour jitter here
    decoder = Augment::crop_flip;
    r.hflip_p = 0.5f;
    r.brightness_factor = jitter(0.4f);
    r.contrast = jitter(0.4f);
    r.saturation = jitter(0.4f);
  } else if (name == "cifar") {  // pad 4 and crop 32 as a translation of 4/32 with zero fill, flip, cutout
    r.translate = 4.f / 32.f;
    r.fill = {0.f};
    r.hflip_p = 0.5f;
    r.erase_p = 0.5f;
  }
  return r;
}

void apply_flags(const AugmentFlags& f, AugmentRecipe& r) {
  if (f.rotate) {
    const float d = checked("--rotate", *f.rotate, 0.f, 180.f, "degrees in [0, 180]");
    r.rotate_deg = {-d, d};
  }
  if (f.zoom) {
    r.zoom = parse_range("--zoom", *f.zoom);
    if (!(r.zoom.lo > 0.f)) throw UserError(str("--zoom ", *f.zoom, ": factors must be positive"));
  }
  if (f.translate) r.translate = checked("--translate", *f.translate, 0.f, 1.f, "a fraction of the side in [0, 1]");
  if (f.shear) {
    const float d = checked("--shear", *f.shear, 0.f, 44.f, "degrees in [0, 44]");
    r.shear_deg = {-d, d};
  }
  if (f.hflip) r.hflip_p = checked("--hflip", *f.hflip, 0.f, 1.f, "a probability in [0, 1]");
  if (f.vflip) r.vflip_p = checked("--vflip", *f.vflip, 0.f, 1.f, "a probability in [0, 1]");
  if (f.brightness) r.brightness_factor = jitter(checked("--brightness", *f.brightness, 0.f, 0.99f, "in [0, 0.99]"));
  if (f.contrast) r.contrast = jitter(checked("--contrast", *f.contrast, 0.f, 10.f, "in [0, 10]"));
  if (f.saturation) r.saturation = jitter(checked("--saturation", *f.saturation, 0.f, 10.f, "in [0, 10]"));
  if (f.hue) {
    const float a = checked("--hue", *f.hue, 0.f, 0.5f, "a fraction of a turn in [0, 0.5]");
    r.hue = {-a, a};
  }
  if (f.gamma) {
    r.gamma = parse_range("--gamma", *f.gamma);
    if (!(r.gamma.lo > 0.f)) throw UserError(str("--gamma ", *f.gamma, ": must be positive"));
  }
  if (f.noise) {  // MONAI RandGaussianNoise with sample_std: the std uniform in [0, STD]
    const float s = checked("--noise", *f.noise, 0.f, 1.f, "a fraction of full scale in [0, 1]");
    r.noise_p = s > 0.f ? 1.f : 0.f;
    r.noise_std = {0.f, s};
  }
  if (f.erase) r.erase_p = checked("--erase", *f.erase, 0.f, 1.f, "a probability in [0, 1]");
  if (f.fill) {
    r.fill.clear();
    size_t at = 0;
    while (true) {
      const size_t colon = f.fill->find(':', at);
      const AugmentRange v = parse_range("--fill", f.fill->substr(at, colon - at), "V or V1:V2:V3");
      r.fill.push_back(checked("--fill", v.lo, 0.f, 255.f, "pixel values in [0, 255]"));
      if (colon == std::string::npos) break;
      at = colon + 1;
    }
  }
}

json range_json(AugmentRange r) { return json::array({r.lo, r.hi}); }

AugmentRange range_from(const json& j, const char* key, AugmentRange def) {
  if (!j.contains(key)) return def;
  const json& v = j[key];
  if (!v.is_array() || v.size() != 2 || !v[0].is_number() || !v[1].is_number())
    throw Error(str("'", key, "' must be [lo, hi]"));
  return {v[0].get<float>(), v[1].get<float>()};
}

}  // namespace

bool is_augment_preset(const std::string& name) { return name == "monai" || name == "imagenet" || name == "cifar"; }

AugmentSettings resolve_augment(const AugmentFlags& f) {
  AugmentSettings s;
  if (is_augment_preset(f.augment)) {
    s.preset = f.augment;
    s.recipe = preset_recipe(f.augment, s.decoder);
  } else {
    s.decoder = parse_augment(f.augment);
  }
  apply_flags(f, s.recipe);
  // With a recipe the flip is one of its draws: --augment flip and crop-flip fold theirs in unless --hflip says.
  if (recipe_active(s.recipe) && s.preset.empty() && s.decoder != Augment::none) {
    if (!f.hflip) s.recipe.hflip_p = 0.5f;
    if (s.decoder == Augment::flip) s.decoder = Augment::none;
  }
  return s;
}

bool recipe_active(const AugmentRecipe& r) { return recipe_to_json(r) != recipe_to_json(AugmentRecipe{}); }

json recipe_to_json(const AugmentRecipe& r) {
  return {{"rotate_deg", range_json(r.rotate_deg)},
          {"rotate_p", r.rotate_p},
          {"zoom", range_json(r.zoom)},
          {"zoom_p", r.zoom_p},
          {"translate", r.translate},
          {"shear_deg", range_json(r.shear_deg)},
          {"hflip_p", r.hflip_p},
          {"vflip_p", r.vflip_p},
          {"brightness", range_json(r.brightness)},
          {"brightness_factor", range_json(r.brightness_factor)},
          {"contrast", range_json(r.contrast)},
          {"gamma", range_json(r.gamma)},
          {"saturation", range_json(r.saturation)},
          {"hue", range_json(r.hue)},
          {"noise_p", r.noise_p},
          {"noise_std", range_json(r.noise_std)},
          {"erase_p", r.erase_p},
          {"erase_area", range_json(r.erase_area)},
          {"erase_aspect", range_json(r.erase_aspect)},
          {"fill", r.fill}};
}

AugmentRecipe recipe_from_json(const json& j) {
  if (!j.is_object()) throw Error("'augment_recipe' must be an object");
  AugmentRecipe r;
  auto real = [&](const char* key, float def) { return static_cast<float>(json_number(j, key, -1e9, 1e9, def)); };
  r.rotate_deg = range_from(j, "rotate_deg", r.rotate_deg);
  r.rotate_p = real("rotate_p", r.rotate_p);
  r.zoom = range_from(j, "zoom", r.zoom);
  r.zoom_p = real("zoom_p", r.zoom_p);
  r.translate = real("translate", r.translate);
  r.shear_deg = range_from(j, "shear_deg", r.shear_deg);
  r.hflip_p = real("hflip_p", r.hflip_p);
  r.vflip_p = real("vflip_p", r.vflip_p);
  r.brightness = range_from(j, "brightness", r.brightness);
  r.brightness_factor = range_from(j, "brightness_factor", r.brightness_factor);
  r.contrast = range_from(j, "contrast", r.contrast);
  r.gamma = range_from(j, "gamma", r.gamma);
  r.saturation = range_from(j, "saturation", r.saturation);
  r.hue = range_from(j, "hue", r.hue);
  r.noise_p = real("noise_p", r.noise_p);
  r.noise_std = range_from(j, "noise_std", r.noise_std);
  r.erase_p = real("erase_p", r.erase_p);
  r.erase_area = range_from(j, "erase_area", r.erase_area);
  r.erase_aspect = range_from(j, "erase_aspect", r.erase_aspect);
  if (j.contains("fill")) {
    if (!j["fill"].is_array()) throw Error("'fill' must be a list of pixel values");
    for (const json& v : j["fill"]) {
      if (!v.is_number()) throw Error("'fill' must be a list of pixel values");
      r.fill.push_back(v.get<float>());
    }
  }
  return r;
}

uint64_t mix_key(uint64_t seed, int64_t epoch, int64_t batch_index) {
  constexpr uint64_t kMixKeyPurpose = 0x3a1b7e;
  return hash_key(seed, kMixKeyPurpose, static_cast<uint64_t>(epoch), static_cast<uint64_t>(batch_index));
}

std::optional<BatchMix> batch_mix(const MixRecipe& r, int off_epochs, int epochs, Shape3 s, uint64_t seed,
                                  int64_t epoch, int64_t index) {
  if (!mix_active(r)) return std::nullopt;
  if (epoch >= int64_t{epochs} - off_epochs) return BatchMix{};  // timm's mixup_off_epoch
  return draw_batch_mix(r, s.h, s.w, mix_key(seed, epoch, index));
}

void draw_batch_transforms(const AugmentRecipe& r, Shape3 s, uint64_t seed, int64_t epoch, int n, const int64_t* ids,
                           SampleTransform* out) {
  for (int k = 0; k < n; ++k)
    out[k] = draw_sample_transform(r, s.h, s.w, s.c, io::augment_key(seed, epoch, static_cast<uint64_t>(ids[k])));
}

bool is_identity(const SampleTransform& t) {
  const SampleTransform id;
  return std::equal(t.m, t.m + 6, id.m) && std::equal(t.fill, t.fill + kMaxAugmentChannels, id.fill) &&
         t.brightness == id.brightness && t.contrast == id.contrast && t.saturation == id.saturation &&
         t.hue_cos == id.hue_cos && t.hue_sin == id.hue_sin && t.gamma == id.gamma && t.noise_std == id.noise_std &&
         (t.erase_h <= 0 || t.erase_w <= 0);
}

namespace {

// The op's brightness, contrast, saturation and hue (kernels/augment_transform.h) as one affine map of the pixel:
// contrast c about 127.5 of (v + b) is c v + c (b - 127.5) + 127.5, and saturation and hue are linear maps that keep
// grey grey, so the offset passes through them unchanged: v' = c H S v + (c (b - 127.5) + 127.5).
void colour_map(const SampleTransform& t, int c, io::DecoderAugment& d) {
  const double k = t.contrast, offset = k * (static_cast<double>(t.brightness) - 127.5) + 127.5;
  double m[3][3] = {{k, 0, 0}, {0, k, 0}, {0, 0, k}};
  if (c == 3) {
    const double s = t.saturation, luma[3] = {0.299, 0.587, 0.114};
    const double a = (1.0 - t.hue_cos) / 3.0, b = t.hue_sin * 0.577350269189626;
    const double dg = t.hue_cos + a, p = a - b, q = a + b;
    const double hue[3][3] = {{dg, p, q}, {q, dg, p}, {p, q, dg}};
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) {
        double v = 0;
        for (int l = 0; l < 3; ++l) v += hue[i][l] * ((l == j ? s : 0.0) + (1.0 - s) * luma[j]);
        m[i][j] = k * v;
      }
  }
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) d.matrix[i][j] = static_cast<float>(m[i][j]);
    d.offset[i] = static_cast<float>(offset);
  }
  d.gamma = t.gamma;
  d.colour = t.brightness != 0.f || t.contrast != 1.f || t.gamma != 1.f ||
             (c == 3 && (t.saturation != 1.f || t.hue_cos != 1.f || t.hue_sin != 0.f));
}

// Whether t's geometry is within the decoders' fixed point (io::affine_in_domain); else the step applies t.
bool decoders_can(const SampleTransform& t) {
  const double m[6] = {t.m[0], t.m[1], t.m[2], t.m[3], t.m[4], t.m[5]};
  return io::affine_in_domain(m);
}

}  // namespace

bool decoder_share(const SampleTransform& t, Shape3 s, io::DecoderAugment& d) {
  const int c = s.c;
  d = io::DecoderAugment{};
  if (!decoders_can(t)) return false;
  for (int k = 0; k < c && k < 4; ++k) d.fill[k] = static_cast<uint8_t>(std::lround(std::clamp(t.fill[k], 0.f, 255.f)));
  const float* m = t.m;
  const auto w = static_cast<float>(s.w), h = static_cast<float>(s.h);
  const bool mirrors = m[1] == 0.f && m[3] == 0.f && ((m[0] == 1.f && m[2] == 0.f) || (m[0] == -1.f && m[2] == w)) &&
                       ((m[4] == 1.f && m[5] == 0.f) || (m[4] == -1.f && m[5] == h));
  if (mirrors) {  // the identity, or m = [-1 0 w; 0 1 0] and the like: the plain resize, then exact flips
    d.hflip = m[0] < 0;
    d.vflip = m[4] < 0;
  } else {
    d.warp = true;
    for (int i = 0; i < 6; ++i) d.m[i] = m[i];
  }
  colour_map(t, c, d);
  d.erase_y = t.erase_y;
  d.erase_x = t.erase_x;
  d.erase_h = t.erase_h;
  d.erase_w = t.erase_w;
  return true;
}

SampleTransform step_share(const SampleTransform& t) {
  if (!decoders_can(t)) return t;
  SampleTransform r;
  if (t.noise_std == 0.f) return r;
  std::copy(t.fill, t.fill + kMaxAugmentChannels, r.fill);
  r.noise_std = t.noise_std;
  r.noise_key = t.noise_key;
  r.erase_y = t.erase_y;
  r.erase_x = t.erase_x;
  r.erase_h = t.erase_h;
  r.erase_w = t.erase_w;
  return r;
}

io::DecoderAugmentFn decoder_augment_fn(const AugmentRecipe& r, Shape3 s, uint64_t seed) {
  return [r, s, seed](int64_t epoch, uint64_t id, io::DecoderAugment& out) {
    decoder_share(draw_sample_transform(r, s.h, s.w, s.c, io::augment_key(seed, epoch, id)), s, out);
  };
}

bool augments_on_decoders(AugmentOn on, bool cuda_backend, bool streaming, const AugmentRecipe& r) {
  if (!recipe_active(r) || !streaming) return false;
  return on == AugmentOn::decoders || (on == AugmentOn::automatic && !cuda_backend);
}

BatchTransforms::BatchTransforms(const AugmentRecipe& r, Shape3 s, uint64_t seed, bool on_decoders)
    : recipe_(r), shape_(s), seed_(seed), active_(recipe_active(r)), on_decoders_(on_decoders) {
  if (active_ && !(r.fill.empty() || r.fill.size() == 1 || static_cast<int>(r.fill.size()) == s.c))
    throw UserError(str("--fill has ", r.fill.size(), " values for images of ", s.c,
                        " channels: give one, or one "
                        "per channel"));
}

const SampleTransform* BatchTransforms::draw(const io::Batch& b) {
  if (!active_) return nullptr;
  STOKE_CHECK(b.ids, "a batch without sample ids: its transforms cannot be drawn");
  auto it = std::find_if(held_.begin(), held_.end(), [](const Held& h) { return h.tag < 0; });
  if (it == held_.end()) it = held_.insert(held_.end(), Held{});
  it->tag = b.tag;
  it->t.resize(static_cast<size_t>(b.size));
  draw_batch_transforms(recipe_, shape_, seed_, b.epoch, b.size, b.ids, it->t.data());
  if (!on_decoders_) return it->t.data();
  bool any = false;
  for (SampleTransform& t : it->t) {
    t = step_share(t);
    any = any || !is_identity(t);
  }
  if (any) return it->t.data();
  it->tag = -1;  // nothing left for the step: the plain normalisation
  return nullptr;
}

void BatchTransforms::release(int64_t tag) {
  for (Held& h : held_)
    if (h.tag == tag) h.tag = -1;
}

}  // namespace stoke
