// Error types shared by every room (header-only, so io/ and kernels/ may include it without linking engine).
//
// UserError: the user can fix it (bad flag, missing folder, empty class). The CLI prints one line and exits 2.
// Error:     a runtime failure (disk full, out of memory, corrupt checkpoint). The CLI prints it and exits 1.
// OutOfMemory (an Error): an allocation a backend could not make.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace stoke {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct UserError : Error {
  using Error::Error;
};

// Memory a backend could not get (a device arena, a host buffer): the trainer turns it into advice (a batch size
// that fits).
struct OutOfMemory : Error {
  using Error::Error;
};

// str(a, b, c): concatenates anything with operator<< (g++ 12 has no <format>).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

#define STOKE_STRINGIFY2(x) #x
#define STOKE_STRINGIFY(x) STOKE_STRINGIFY2(x)

// Internal invariant: names the expression, file and line. Not for user input (use UserError).
#define STOKE_CHECK(cond, ...)                                                                        \
  do {                                                                                                \
    if (!(cond)) [[unlikely]]                                                                         \
      throw ::stoke::Error(::stoke::str("internal check failed: " #cond " at " __FILE__                \
                                        ":" STOKE_STRINGIFY(__LINE__) " " __VA_OPT__(, __VA_ARGS__))); \
  } while (0)

}  // namespace stoke
