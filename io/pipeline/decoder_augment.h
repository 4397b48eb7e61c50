// A sample's augmentation done by the decoder thread that decodes it: the CPU backend's streaming path, where the
// step's cores are the compute and the decoders' time is cheaper. The engine draws each sample's transform
// (kernels/augment.h, from seed, epoch and sample id) and hands the decoders this uint8 form of it; the geometry
// goes into the resize (io/codec/resize.h resize_affine: one bilinear pass from the decoded region), the colour is
// one pass over the resized image while it is in cache. What stays in float for the step (the noise) is the
// engine's business (engine/augment_plan.h). How this differs from the step's op, by rounding: docs/AUGMENTATION.md.
#pragma once

#include <cstdint>
#include <functional>

namespace stoke::io {

struct DecoderAugment {
  // Geometry: mirrors only (exact, after the plain resize), or a warp folded into the resize.
  bool hflip = false, vflip = false;
  bool warp = false;
  double m[6] = {1, 0, 0, 0, 1, 0};  // output pixel centre -> position in the resized image (SampleTransform::m)
  uint8_t fill[4] = {};              // outside the image and in the erase box
  // Colour, in pixel units: v' = matrix v + offset (c x c; 1 channel: matrix[0][0]), clamped to [0, 255], then
  // 255 (v'/255)^gamma. Brightness and contrast make the diagonal and the offset, saturation and hue the rest.
  bool colour = false;
  float matrix[3][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  float offset[3] = {0, 0, 0};
  float gamma = 1.f;
  // Random erasing: this box of the output set to the fill after the colour; h or w 0 = none.
  int erase_y = 0, erase_x = 0, erase_h = 0, erase_w = 0;
};

// What the engine gives the decoders: fills `out` for a sample of `epoch` (the default value: nothing to do).
using DecoderAugmentFn = std::function<void(int64_t epoch, uint64_t sample_id, DecoderAugment& out)>;

// The geometry of `a` from a decoded region (rh x rw x c, rows `stride` bytes apart) into dst (h x w x c): the warp
// folded into the resize (io/codec/resize.h resize_affine), or the plain resize and then the mirrors. flip: the
// decoders' own crop-flip mirror (a.hflip toggles it). region may be dst when it is h x w already and a has no warp.
void apply_decoder_geometry(const DecoderAugment& a, const uint8_t* region, int rh, int rw, size_t stride, uint8_t* dst,
                            int h, int w, int c, bool flip = false);

// The colour and the erase box of `a` on an h x w x c image (c = 1 or 3), in place, after the geometry. Diagonal
// matrices (and gray images) go through a 256-entry table (one for all channels when they share it); saturation and
// hue through an fp32 matrix per pixel.
void apply_decoder_colour(const DecoderAugment& a, uint8_t* pixels, int h, int w, int c);

}  // namespace stoke::io
