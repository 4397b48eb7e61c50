// Clean interruption: the first SIGINT, SIGTERM or SIGUSR1 asks the trainer to finish its step, write a checkpoint
// and exit 0; a second signal exits at once (every checkpoint on disk is complete by construction, so nothing is
// lost but the steps since the last one). In a data-parallel job every rank stops at the same step: the request
// travels to all of them with a step's sums (engine/backend.h, StepResult::stop). SIGUSR1 is there for mpirun,
// which forwards it to every rank as it is, where Ctrl-C on mpirun becomes SIGTERM followed by SIGKILL about a
// second later.
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
// What the first signal prints (a data-parallel job names the rank and its newest checkpoint); empty: the default
// line. May be called while the handlers are installed (from one thread).
void set_interrupt_message(const char* message);

}  // namespace stoke
