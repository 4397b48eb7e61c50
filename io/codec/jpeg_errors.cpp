// The JPEG codec's libjpeg error manager (jpeg_errors.h), shared by the decoder (jpeg.cpp) and the encoder
// (jpeg_encode.cpp).
#include "io/codec/jpeg_errors.h"

#include <algorithm>
#include <csetjmp>
#include <cstring>

#include <jerror.h>

namespace stoke::io {

namespace {

using jpeg_detail::ErrorMgr;

// Errors that mean a real JPEG of a kind libjpeg-turbo does not decode (12-bit, lossless, hierarchical): their
// message starts with "unsupported" (io/codec/codec.h's error contract); every other error is bad data.
bool is_unsupported_kind(int code) {
  return code == JERR_BAD_PRECISION || code == JERR_SOF_UNSUPPORTED || code == JERR_NOT_COMPILED ||
         code == JERR_ARITH_NOTIMPL || code == JERR_CCIR601_NOTIMPL;
}

[[noreturn]] void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<ErrorMgr*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  const char* prefix = is_unsupported_kind(cinfo->err->msg_code) ? "unsupported JPEG kind: " : "";
  const size_t p = std::strlen(prefix);
  std::memcpy(err->message, prefix, p);
  std::memcpy(err->message + p, text, std::min(std::strlen(text), sizeof err->message - p - 1));
  err->message[std::min(std::strlen(text), sizeof err->message - p - 1) + p] = '\0';
  longjmp(err->jump, 1);
}

// Warnings are silent, except running out of data: libjpeg then pads the stream with a fake EOI and goes
// on, producing a half-grey image. For a training set that is a broken file, so it fails.
void on_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) {
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) on_error_exit(cinfo);
    cinfo->err->num_warnings++;
  }
}

void on_output_message(j_common_ptr) {}

}  // namespace

namespace jpeg_detail {
void install_error_mgr(ErrorMgr& err) {
  jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error_exit;
  err.pub.emit_message = on_emit_message;
  err.pub.output_message = on_output_message;
  err.message[0] = '\0';
}
}  // namespace jpeg_detail

}  // namespace stoke::io
