// Numbers for people: durations, counts with thousands separators, byte sizes. One formatter of each kind,
// so every message, progress line and report prints them alike.
#pragma once

#include <cstddef>
#include <string>

namespace stoke {

// "1:02:03" / "2:03"; "?" for a negative or non-finite value.
std::string format_duration(double seconds);
// "12,345"
std::string format_count(double v);
// "512 B", "1.5 KiB", "3.0 MiB", "5.00 GiB"
std::string format_bytes(size_t bytes);

}  // namespace stoke
