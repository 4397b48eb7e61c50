// What a run says on the terminal, in one place: the lines that say what runs (stdout), the live progress line
// (stderr, rewritten in place on a terminal), warnings (stderr) and alerts that speak even when quiet (a stuck
// input pipeline). The progress line is ended before anything else is written, so lines never interleave, and
// quiet silences everything but alerts here rather than at every call. Safe from any thread: decoder threads
// report bad files while the trainer prints.
#pragma once

#include <cstdarg>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "base/progress.h"

namespace stoke {

class Console {
 public:
  // out: the lines (stdout); err: progress, warnings and alerts (stderr). Tests pass files of their own.
  explicit Console(bool quiet = false, std::FILE* out = stdout, std::FILE* err = stderr)
      : quiet_(quiet), out_(out), err_(err), progress_(err) {}
  void set_quiet(bool quiet);
  bool quiet() const { return quiet_.load(std::memory_order_relaxed); }

  // printf-style text to stdout, flushed; nothing when quiet.
  void say(const char* format, ...) __attribute__((format(printf, 2, 3)));
  // The same, whatever quiet says: for a line every process of a job prints about itself.
  void tell(const char* format, ...) __attribute__((format(printf, 2, 3)));
  void warn(const std::string& message);   // "warning: message" on stderr; nothing when quiet
  void alert(const std::string& message);  // stderr, even when quiet
  void progress(const std::string& line, bool force);  // the live line (nothing when quiet)
  void end_progress();

 private:
  void vprint(std::FILE* out, const char* format, va_list args);
  std::mutex m_;
  std::atomic<bool> quiet_;
  std::FILE* out_;
  std::FILE* err_;
  Progress progress_;
};

}  // namespace stoke
