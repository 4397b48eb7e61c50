// The stoke command line. run_cli parses and runs a command; with dry_run it stops after parsing and
// flag validation (the CLI fuzzer uses that).
#pragma once

namespace stoke {

int run_cli(int argc, const char* const* argv, bool dry_run = false);

}  // namespace stoke
