// Checks of flag values, run by CLI11 at parse time: a bad value is refused in one line that names the flag and
// says what is allowed. Every float flag goes through number_check or finite_range, which refuse NaN and infinity
// (CLI::Range lets NaN through: every comparison with it is false).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace stoke {

// A finite number (as a float too: at most 3.4e38), > 0, or >= 0 with allow_zero.
CLI::Validator number_check(bool allow_zero);
// A finite number in [lo, hi].
CLI::Validator finite_range(double lo, double hi);
// A finite number strictly between lo and hi, also once rounded to a float (--ema 0.99999999 would be 1).
CLI::Validator open_range(double lo, double hi);
// "auto" or a number of decoder threads, 1..256; parse_decoders gives 0 for auto.
CLI::Validator decoders_check();
int parse_decoders(const std::string& v);

// The largest --batch-size (a step's activations are counted in 32 bits well below it).
inline constexpr long kMaxBatchSize = 1L << 24;
// "auto" (0) or 1..kMaxBatchSize; throws CLI::ValidationError naming `flag` and the limit.
int parse_batch_size(const std::string& flag, const std::string& v);

}  // namespace stoke
