#include "apps/cli_checks.h"

#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "base/error.h"
#include "base/format.h"

namespace stoke {

namespace {

// The value as a number a float holds, or "" and what is wrong: not a number, NaN or infinite, or too large.
std::string finite_number(const std::string& v, double* x, const std::string& allowed) {
  char* end = nullptr;
  *x = std::strtod(v.c_str(), &end);
  if (v.empty() || end == v.c_str() || *end != '\0') return "must be " + allowed + ", got '" + v + "'";
  if (!std::isfinite(*x)) return "must be a finite number (" + allowed + "), got '" + v + "'";
  if (std::fabs(*x) > FLT_MAX) return "must be " + allowed + " of at most 3.4e38, got '" + v + "'";
  return "";
}

std::string number_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

}  // namespace

CLI::Validator number_check(bool allow_zero) {
  return CLI::Validator(
      [allow_zero](std::string& v) -> std::string {
        double x = 0;
        const std::string allowed = allow_zero ? "a number >= 0" : "a number > 0";
        if (std::string error = finite_number(v, &x, allowed); !error.empty()) return error;
        if (x < 0 || (!allow_zero && x == 0)) return "must be " + allowed + ", got '" + v + "'";
        return "";
      },
      allow_zero ? "NUMBER >= 0" : "NUMBER > 0");
}

CLI::Validator finite_range(double lo, double hi) {
  const std::string range = "[" + number_text(lo) + ", " + number_text(hi) + "]";
  return CLI::Validator(
      [lo, hi, range](std::string& v) -> std::string {
        double x = 0;
        if (std::string error = finite_number(v, &x, "a number in " + range); !error.empty()) return error;
        if (x < lo || x > hi) return "must be a number in " + range + ", got '" + v + "'";
        return "";
      },
      "NUMBER in " + range);
}

CLI::Validator open_range(double lo, double hi) {
  const std::string range = "(" + number_text(lo) + ", " + number_text(hi) + ")";
  return CLI::Validator(
      [lo, hi, range](std::string& v) -> std::string {
        double x = 0;
        if (std::string error = finite_number(v, &x, "a number in " + range); !error.empty()) return error;
        const double f = static_cast<float>(x);
        if (!(x > lo && x < hi && f > lo && f < hi))
          return "must be a number in " + range + " (as a float), got '" + v + "'";
        return "";
      },
      "NUMBER in " + range);
}

CLI::Validator decoders_check() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        if (v == "auto") return "";
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n < 1 || n > 256)
          return "must be auto or a number of threads (1-256), got '" + v + "'";
        return "";
      },
      "auto|N");
}

int parse_decoders(const std::string& v) { return v == "auto" ? 0 : std::atoi(v.c_str()); }

int parse_batch_size(const std::string& flag, const std::string& v) {
  if (v == "auto") return 0;
  char* end = nullptr;
  errno = 0;
  const long n = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || n < 1 || n > kMaxBatchSize)
    throw CLI::ValidationError(flag, str("must be auto or a number from 1 to ",
                                         format_count(static_cast<double>(kMaxBatchSize)), ", got '", v, "'"));
  return static_cast<int>(n);
}

}  // namespace stoke
