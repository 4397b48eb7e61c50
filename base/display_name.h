// File and class names are bytes on Linux and need not be valid UTF-8 (a folder copied from an old Windows or
// Latin-1 system), and may hold a newline or a tab. Indexing and decoding use the bytes as they are; every name
// that reaches JSON, HTML, a text file of the run folder or the console goes through display_name, and where stoke
// reads a name back (config.json's classes and paths, train_files.txt) name_from_display gives the bytes again.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace stoke {

// A readable, valid UTF-8 form of `name` that keeps every byte: valid UTF-8 is kept as it is except for control
// characters; a backslash becomes "\\", newline, tab and carriage return "\n", "\t", "\r", and every other byte
// that is a control character (C0, DEL, C1) or not part of valid UTF-8 becomes the four characters \xNN
// (upper-case hex). Holds no newline, so one name is one line of a text file.
std::string display_name(std::string_view name);

// The inverse: name_from_display(display_name(b)) == b for any bytes b. A backslash that starts none of the
// sequences above is kept as it is (text written by hand or before names were escaped reads as itself).
std::string name_from_display(std::string_view shown);

// display_name of each (the class names of config.json and messages).
std::vector<std::string> display_names(const std::vector<std::string>& names);

// Whether `s` is valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace stoke
