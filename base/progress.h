// A live progress line: rewritten in place on a terminal (at most 10 times a second), printed as plain
// lines every `interval` seconds otherwise (logs, CI), so long work always shows rate and ETA.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "base/format.h"  // the progress lines use these formatters

namespace stoke {

class Progress {
 public:
  explicit Progress(std::FILE* out = stderr, double log_interval_s = 10.0);
  // Shows `line` if enough time has passed since the last one (always when force).
  void update(const std::string& line, bool force = false);
  // Ends the live line (a newline on a terminal) so normal output can follow.
  void finish();
  bool is_tty() const { return tty_; }

 private:
  std::FILE* out_;
  bool tty_;
  double interval_;
  bool live_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace stoke
