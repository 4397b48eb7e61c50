// Clean interruption: the first SIGINT/SIGTERM asks the trainer to finish its step, write a checkpoint and
// exit 0; a second SIGINT exits at once (every checkpoint on disk is complete by construction, so nothing
// is lost but the steps since the last one).
#pragma once

namespace stoke {

// Installs the handlers (idempotent) and clears any earlier request.
void install_interrupt_handlers();
// Restores the default dispositions.
void remove_interrupt_handlers();
// Non-zero when an interruption was requested: the signal number.
int interrupt_requested();
// For tests and internal stops: behave as if `sig` had arrived once.
void request_interrupt(int sig);
void clear_interrupt();
// A data-parallel job (world > 1) cannot yet agree on a step boundary to stop at, and its launcher sends SIGTERM to
// every rank when one fails: there a signal ends the process at once with this message (exit 128 + signal).
// Empty (the default): the clean interruption above.
void set_interrupt_exits_now(const char* message);

}  // namespace stoke
