#include "engine/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace stoke {
namespace {
std::atomic<int> g_signal{0};
std::atomic<int> g_count{0};
// The first signal's line. Replaced while the handlers are installed (a data-parallel run names its newest
// checkpoint), so two buffers: the new text goes to the one the handler does not read, then the index flips.
char g_messages[2][2048] = {};
std::atomic<int> g_current{0};

extern "C" void on_signal(int sig) {
  if (g_count.fetch_add(1) >= 1) {
    static const char msg[] = "\nstoke: second interrupt: exiting now (checkpoints on disk are complete)\n";
    ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    ::_exit(128 + sig);
  }
  static const char msg[] =
      "\nstoke: interrupt: finishing this step, then writing a checkpoint (interrupt again to quit now)\n";
  const char* m = g_messages[g_current.load()];
  size_t n = 0;
  while (n < sizeof g_messages[0] && m[n]) ++n;
  ssize_t ignored = n ? ::write(STDERR_FILENO, m, n) : ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  g_signal.store(sig);
}
}  // namespace

void set_interrupt_message(const char* message) {
  char* m = g_messages[1 - g_current.load()];
  size_t n = 0;
  for (; message[n] && n + 1 < sizeof g_messages[0]; ++n) m[n] = message[n];
  m[n] = 0;
  g_current.store(1 - g_current.load());
}

void install_interrupt_handlers() {
  clear_interrupt();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read returns EINTR and the loop re-checks the flag
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

void remove_interrupt_handlers() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  std::signal(SIGUSR1, SIG_DFL);
}

int interrupt_requested() { return g_signal.load(); }

void request_interrupt(int sig) {
  g_count.fetch_add(1);
  g_signal.store(sig);
}

void clear_interrupt() {
  g_signal.store(0);
  g_count.store(0);
}

}  // namespace stoke
