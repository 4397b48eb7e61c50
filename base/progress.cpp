#include "base/progress.h"

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

}  // namespace stoke
