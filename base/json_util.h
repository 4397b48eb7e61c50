// Checked reads from JSON that came from disk. nlohmann's get<int>() of 1e42 is undefined behaviour (an
// out-of-range float-to-integer conversion), which the checkpoint fuzzer found; these throw stoke::Error
// naming the key instead.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "base/error.h"

namespace stoke {

// An integer in [lo, hi]; `def` when the key is absent (an Error when absent without a default).
inline int64_t json_int(const nlohmann::json& j, const char* key, int64_t lo, int64_t hi,
                        std::optional<int64_t> def = std::nullopt) {
  if (!j.is_object() || !j.contains(key)) {
    if (def) return *def;
    throw Error(str("missing integer '", key, "'"));
  }
  const nlohmann::json& v = j[key];
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (hi >= 0 && u <= static_cast<uint64_t>(hi) && static_cast<int64_t>(u) >= lo) return static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= lo && i <= hi) return i;
  }
  throw Error(str("'", key, "' must be an integer in [", lo, ", ", hi, "], got ", v.dump()));
}

// A finite number in [lo, hi] (as a double); `def` when absent.
inline double json_number(const nlohmann::json& j, const char* key, double lo, double hi,
                          std::optional<double> def = std::nullopt) {
  if (!j.is_object() || !j.contains(key)) {
    if (def) return *def;
    throw Error(str("missing number '", key, "'"));
  }
  const nlohmann::json& v = j[key];
  if (v.is_number()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d >= lo && d <= hi) return d;
  }
  throw Error(str("'", key, "' must be a number in [", lo, ", ", hi, "], got ", v.dump()));
}

// What is wrong with JSON read from a file, for a message: the library's text without its "[json.exception...]"
// tag, and for a syntax error only where it is (the library's text quotes the file's bytes, which need not be
// UTF-8 or readable).
inline std::string json_problem(const nlohmann::json::exception& e) {
  if (const auto* p = dynamic_cast<const nlohmann::json::parse_error*>(&e))
    return str("not valid JSON (at byte ", p->byte, ")");
  const std::string what = e.what();
  const size_t tag = what.rfind("[json.exception.", 0) == 0 ? what.find("] ") : std::string::npos;
  return tag == std::string::npos ? what : what.substr(tag + 2);
}

}  // namespace stoke
