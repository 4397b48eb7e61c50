// Internal to the JPEG codec (jpeg.cpp decodes, jpeg_encode.cpp encodes): libjpeg's fatal errors longjmp back to a
// setjmp taken in a frame that holds no C++ objects with destructors, carrying libjpeg's message.
#pragma once

#include <csetjmp>
#include <cstddef>
#include <cstdio>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

namespace stoke::io::jpeg_detail {

struct ErrorMgr {
  jpeg_error_mgr pub;  // first member: libjpeg sees a jpeg_error_mgr*
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

// Installs the error manager: fatal errors longjmp to err.jump with the message in err.message (prefixed
// "unsupported JPEG kind: " for real JPEGs libjpeg-turbo does not decode); warnings are silent, except a
// premature end of data, which is an error.
void install_error_mgr(ErrorMgr& err);

}  // namespace stoke::io::jpeg_detail
