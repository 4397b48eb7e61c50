// Augmentation drawn by the engine: the per-sample transforms of kernels/augment.h, drawn for each step from (seed,
// epoch, sample id) and applied by the backends' normalize phase (engine/train_step.h). The decoder ring, the
// decoded cache and --cache gpu hand over the same ids, so they all get the same transforms, a resumed run draws what
// the uninterrupted one did, and N processes draw what one does. The presets and flags: docs/AUGMENTATION.md.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/shape.h"
#include "engine/options.h"
#include "io/pipeline/batch_source.h"
#include "io/pipeline/decoder_augment.h"
#include "kernels/augment.h"
#include "kernels/mix.h"

namespace stoke {

// The flags of `stoke train` that make a recipe. Unset ones keep the preset's value.
struct AugmentFlags {
  std::string augment = "none";  // none | flip | crop-flip | monai | imagenet | cifar
  std::optional<float> rotate, translate, shear, hflip, vflip, brightness, contrast, noise, saturation, hue, erase;
  std::optional<std::string> zoom, gamma, fill;  // MIN:MAX, MIN:MAX, V or V1:V2:V3
};

struct AugmentSettings {
  Augment decoder = Augment::none;  // what the decoder threads still do: the random resized crop (and, with no
                                    // recipe, the flip)
  std::string preset;               // monai | imagenet | cifar, or "" (recorded as config.json's "augment")
  AugmentRecipe recipe;             // what the backends apply; the identity: nothing
};

bool is_augment_preset(const std::string& name);
// --augment and the individual flags; throws UserError naming a flag whose value is out of range.
AugmentSettings resolve_augment(const AugmentFlags& flags);
// Whether any parameter of the recipe differs from the identity (then the backends apply it).
bool recipe_active(const AugmentRecipe& r);
nlohmann::json recipe_to_json(const AugmentRecipe& r);
AugmentRecipe recipe_from_json(const nlohmann::json& j);  // throws Error naming the key

// out[k] = draw_sample_transform(r, s.h, s.w, s.c, io::augment_key(seed, epoch, ids[k])), k < n.
void draw_batch_transforms(const AugmentRecipe& r, Shape3 s, uint64_t seed, int64_t epoch, int n, const int64_t* ids,
                           SampleTransform* out);

// Batch mixing (kernels/mix.h) of training batch `index` of `epoch`, drawn from mix_key(seed, epoch, index): index is
// the global batch's (every rank holds a slice of batch `index`), so every rank draws the same lam, kind and box as
// one process does. The identity in the last `off_epochs` of `epochs`; nullopt when the recipe never mixes.
uint64_t mix_key(uint64_t seed, int64_t epoch, int64_t batch_index);
std::optional<BatchMix> batch_mix(const MixRecipe& r, int off_epochs, int epochs, Shape3 s, uint64_t seed,
                                  int64_t epoch, int64_t index);

// ---- the decoder threads' share (--augment-on decoders) ----
// Whether t is the identity (the op would reproduce augment_normalize).
bool is_identity(const SampleTransform& t);
// The part of t the decoders apply in uint8 (io/pipeline/decoder_augment.h): the geometry, brightness, contrast,
// saturation, hue, gamma and the erase box. False when t's geometry is beyond their fixed point (a zoom under 1/1000):
// then the step applies all of t.
bool decoder_share(const SampleTransform& t, Shape3 s, io::DecoderAugment& out);
// What the step applies to a sample whose decoder_share the decoders applied: the noise (outside the erase box, as
// the op), else the identity; all of t when decoder_share refused it.
SampleTransform step_share(const SampleTransform& t);
// The decoders' function: draws each sample's transform from (seed, epoch, sample id) as the trainer does.
io::DecoderAugmentFn decoder_augment_fn(const AugmentRecipe& r, Shape3 s, uint64_t seed);
// Where a run's recipe runs: on the decoders when asked, or by default on the CPU backend's streaming input.
bool augments_on_decoders(AugmentOn on, bool cuda_backend, bool streaming, const AugmentRecipe& r);

// The trainer's transforms of the batches in flight: drawn when a batch is submitted and kept until the backend
// releases its tag, the lifetime of the batch's pixels (a backend may copy them after submit returns).
class BatchTransforms {
 public:
  BatchTransforms() = default;
  // UserError: a fill for the wrong channels. on_decoders: the decoders applied decoder_share, draw gives step_share.
  BatchTransforms(const AugmentRecipe& r, Shape3 s, uint64_t seed, bool on_decoders = false);
  bool active() const { return active_; }
  const SampleTransform* draw(const io::Batch& b);  // null when inactive, or when no sample has anything left
  void release(int64_t tag);

 private:
  struct Held {
    int64_t tag = -1;  // -1: free
    std::vector<SampleTransform> t;
  };
  AugmentRecipe recipe_;
  Shape3 shape_{};
  uint64_t seed_ = 0;
  bool active_ = false;
  bool on_decoders_ = false;
  std::vector<Held> held_;
};

}  // namespace stoke
