// JPEG encoding (libjpeg-turbo): baseline, optimised Huffman tables, 4:4:4 chroma at quality >= 90. The data-set
// writers and the tests make their images with it.
#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "io/codec/jpeg.h"
#include "io/codec/jpeg_errors.h"

#include <jerror.h>  // after jpeglib.h (jpeg_errors.h)

namespace stoke::io {

namespace {

using jpeg_detail::ErrorMgr;
using jpeg_detail::install_error_mgr;

// ---- encoder: a destination manager appending to a std::vector owned by the caller ---------------------

struct VectorDest {
  jpeg_destination_mgr pub;  // first member
  std::vector<uint8_t>* out;
};

void dest_init(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDest*>(cinfo->dest);
  d->pub.next_output_byte = d->out->data();
  d->pub.free_in_buffer = d->out->size();
}

boolean dest_empty(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDest*>(cinfo->dest);
  const size_t used = d->out->size();
  bool ok = true;
  try {
    d->out->resize(used * 2);
  } catch (...) {
    ok = false;
  }
  if (!ok) ERREXIT1(cinfo, JERR_OUT_OF_MEMORY, 10);
  d->pub.next_output_byte = d->out->data() + used;
  d->pub.free_in_buffer = d->out->size() - used;
  return TRUE;
}

void dest_term(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDest*>(cinfo->dest);
  d->out->resize(d->out->size() - d->pub.free_in_buffer);
}

struct EncodeJob {
  const uint8_t* pixels;
  int h, w, c, quality;
  std::vector<uint8_t>* out;  // pre-sized by the caller (the initial buffer)
  ErrorMgr err;
};

// No C++ objects with destructors in this frame: it holds the setjmp.
bool encode_core(EncodeJob* job) {
  jpeg_compress_struct cinfo;
  std::memset(&cinfo, 0, sizeof cinfo);
  VectorDest dest;
  dest.pub.init_destination = dest_init;
  dest.pub.empty_output_buffer = dest_empty;
  dest.pub.term_destination = dest_term;
  dest.out = job->out;
  install_error_mgr(job->err);
  cinfo.err = &job->err.pub;
  if (setjmp(job->err.jump)) {
    jpeg_destroy_compress(&cinfo);
    return false;
  }
  jpeg_create_compress(&cinfo);
  cinfo.dest = &dest.pub;
  cinfo.image_width = static_cast<JDIMENSION>(job->w);
  cinfo.image_height = static_cast<JDIMENSION>(job->h);
  cinfo.input_components = job->c;
  cinfo.in_color_space = job->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, job->quality, TRUE);
  cinfo.optimize_coding = TRUE;  // still baseline (sequential, Huffman); smaller files
  if (job->c == 3) {
    // Chroma: 4:4:4 at quality >= 90, 4:2:0 (jpeg_set_defaults) below.
    const int f = job->quality >= 90 ? 1 : 2;
    cinfo.comp_info[0].h_samp_factor = f;
    cinfo.comp_info[0].v_samp_factor = f;
  }
  jpeg_start_compress(&cinfo, TRUE);
  const size_t stride = static_cast<size_t>(job->w) * static_cast<size_t>(job->c);
  JSAMPROW rows[16];
  while (cinfo.next_scanline < cinfo.image_height) {
    JDIMENSION n = std::min<JDIMENSION>(16, cinfo.image_height - cinfo.next_scanline);
    for (JDIMENSION i = 0; i < n; ++i)
      rows[i] = const_cast<JSAMPROW>(job->pixels + (cinfo.next_scanline + i) * stride);
    jpeg_write_scanlines(&cinfo, rows, n);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return true;
}


}  // namespace

std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int h, int w, int c, int quality) {
  STOKE_CHECK(pixels != nullptr && h > 0 && w > 0 && (c == 1 || c == 3), "encode_jpeg(", h, "x", w, "x", c, ")");
  STOKE_CHECK(h <= 65500 && w <= 65500, "encode_jpeg: ", h, "x", w, " exceeds the JPEG limit");
  quality = std::clamp(quality, 1, 100);
  std::vector<uint8_t> out(std::max<size_t>(4096, static_cast<size_t>(h) * w * c / 4));
  EncodeJob job{pixels, h, w, c, quality, &out, {}};
  if (!encode_core(&job)) throw Error(str("JPEG encoding failed: ", job.err.message));
  return out;
}

}  // namespace stoke::io
