// File and class names are bytes on Linux and need not be valid UTF-8 (a folder copied from an old Windows or
// Latin-1 system). Indexing and decoding use the bytes as they are; JSON files and messages need valid UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace stoke::io {

// A valid UTF-8 form of `name` for JSON and messages: valid UTF-8 sequences are kept as they are, every byte
// that is not part of one becomes the four characters \xNN (upper-case hex). Lossy (a name that really holds
// the text "\xE9" reads the same as the byte 0xE9) but stable: the same bytes always give the same text.
std::string display_name(std::string_view name);

// Whether `s` is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace stoke::io
