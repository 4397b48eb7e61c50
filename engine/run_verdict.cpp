// See engine/run_verdict.h.
#include "engine/run_verdict.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace stoke {
namespace {

long pct(double share) { return std::lround(100 * share); }

}  // namespace

// Thresholds: 5% and 20% input stall; kCommBoundShare of communication, when it is more than the input stall.
std::string run_verdict(const VerdictInputs& in) {
  const double stall = in.decoded_cache ? 0.0 : in.input_stall;
  if (in.comm_share >= kCommBoundShare && in.comm_share > stall)
    return str("communication-bound: the all-reduce took ", pct(in.comm_share),
               "% of the step time; fewer, larger steps (a larger --batch-size per process) or a faster link between "
               "the processes pay off before more processes do");
  // Named next to a compute-bound verdict: a share below the threshold is still part of the step time.
  const std::string comm =
      in.comm_share > 0 ? str("the all-reduce ", pct(in.comm_share), "% of the step time") : std::string();
  if (in.decoded_cache)
    return str(
        "compute-bound: the data came from the decoded cache (no input stage)",
        in.comm_share > 0 ? str("; the all-reduce took ", pct(in.comm_share), "% of the step time") : std::string());
  if (stall >= 0.20)
    return str("strongly input-bound: the trainer waited for data ", pct(stall), "% of the time; ", in.decoders,
               " decoder thread(s) are the limiting stage: try --decoders N, stoke pack, or --cache decoded");
  if (stall >= 0.05)
    return str("input-bound: the trainer waited for data ", pct(stall), "% of the time (", in.decoders,
               " decoder thread(s)): try more --decoders, stoke pack, or --cache decoded");
  std::string inner;
  if (in.gpu_busy > 0) inner = str("GPU busy ", pct(std::min(1.0, in.gpu_busy)), "%");
  if (!comm.empty()) inner += inner.empty() ? comm : ", " + comm;
  return str("compute-bound: the input pipeline kept up (the trainer waited for data ", pct(stall),
             "% of the time); the ", in.backend, " step is the limiting stage",
             inner.empty() ? std::string() : str(" (", inner, ")"));
}

double CommTally::share(double wall_seconds) const { return std::min(1.0, seconds / std::max(wall_seconds, 1e-9)); }

void CommTally::add_to(nlohmann::json& line, double wall_seconds) const {
  if (bytes_per_step <= 0) return;  // one process: nothing was all-reduced
  // A backend that does not time its all-reduce (CUDA for now) reports 0 s: leave the share out rather than say 0%.
  if (seconds > 0) {
    line["comm_s"] = seconds;
    line["comm_share"] = share(wall_seconds);
  }
  line["allreduce_bytes"] = bytes_per_step;
}

}  // namespace stoke
