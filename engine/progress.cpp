#include "engine/progress.h"

#include <cmath>
#include <unistd.h>

namespace stoke {

Progress::Progress(std::FILE* out, double log_interval_s)
    : out_(out), tty_(isatty(fileno(out)) != 0), interval_(log_interval_s) {}

void Progress::update(const std::string& line, bool force) {
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  if (!force && since < (tty_ ? 0.1 : interval_)) return;
  last_ = now;
  if (tty_) {
    std::fprintf(out_, "\r%s\033[K", line.c_str());
    live_ = true;
  } else {
    std::fprintf(out_, "%s\n", line.c_str());
  }
  std::fflush(out_);
}

void Progress::finish() {
  if (tty_ && live_) std::fprintf(out_, "\n");
  live_ = false;
  std::fflush(out_);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string format_count(double v) {
  long n = std::lround(v);
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace stoke
