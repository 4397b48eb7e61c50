#include "base/console.h"

#include <cstdarg>

namespace stoke {

void Console::set_quiet(bool quiet) { quiet_.store(quiet, std::memory_order_relaxed); }

void Console::vprint(std::FILE* out, const char* format, va_list args) {
  std::lock_guard<std::mutex> lock(m_);
  progress_.finish();
  std::vfprintf(out, format, args);
  std::fflush(out);
}

void Console::say(const char* format, ...) {
  if (quiet()) return;
  va_list args;
  va_start(args, format);
  vprint(out_, format, args);
  va_end(args);
}

void Console::tell(const char* format, ...) {
  va_list args;
  va_start(args, format);
  vprint(out_, format, args);
  va_end(args);
}

void Console::warn(const std::string& message) {
  if (quiet()) return;
  std::lock_guard<std::mutex> lock(m_);
  progress_.finish();
  std::fprintf(err_, "warning: %s\n", message.c_str());
}

void Console::alert(const std::string& message) {
  std::lock_guard<std::mutex> lock(m_);
  progress_.finish();
  std::fprintf(err_, "%s\n", message.c_str());
}

void Console::progress(const std::string& line, bool force) {
  if (quiet()) return;
  std::lock_guard<std::mutex> lock(m_);
  progress_.update(line, force);
}

void Console::end_progress() {
  std::lock_guard<std::mutex> lock(m_);
  progress_.finish();
}

}  // namespace stoke
