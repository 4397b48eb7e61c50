#include "engine/bn_recalibrate.h"

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "base/trace.h"

namespace stoke {

void recalibrate_batchnorm(TrainingBackend& backend, const Graph& graph, int batches,
                           const std::function<StepRequest(int)>& next, const std::function<void(int64_t)>& release,
                           bool ema) {
  STOKE_TRACE("bn recalibrate");
  STOKE_CHECK(batches >= 1, "recalibrating over ", batches, " batches");
  // Only the buffers move: a skipped step leaves the parameters and the optimizer state (and the EMA's parameters)
  // as they are, so neither is read nor set here. The EMA's pass runs with it in the weights' place (use_ema: on the
  // CUDA backend a swap on the device), which allows skipped steps.
  std::vector<float> start, got, ema_start;
  backend.get_buffers(start);
  if (ema) {
    backend.use_ema(true);
    backend.get_buffers(ema_start);
    backend.use_ema(false);
  }
  // Per buffer value: the momentum of the batch norm that updates it (0: none does, the value is kept).
  std::vector<float> momentum(start.size(), 0.f);
  for (const Node& n : graph.nodes()) {
    if (n.op != Op::batchnorm) continue;
    for (int b : {n.running_mean, n.running_var}) {
      const ParamInfo& p = graph.buffers()[static_cast<size_t>(b)];
      std::fill(momentum.begin() + p.offset, momentum.begin() + p.offset + p.size, n.momentum);
    }
  }
  const std::vector<float> zeros(start.size(), 0.f);
  std::vector<double> sum(start.size(), 0.0), ema_sum(ema ? start.size() : 0, 0.0);
  // One batch's statistics under the weights in place, added to `into` (the update is skipped: only the buffers move).
  auto accumulate = [&](const StepRequest& r, std::vector<double>& into) {
    backend.set_buffers(zeros);  // from 0, a step leaves momentum x this batch's statistics
    backend.train_step(r);
    backend.get_buffers(got);
    for (size_t i = 0; i < got.size(); ++i)
      if (momentum[i] > 0.f) into[i] += static_cast<double>(got[i]) / static_cast<double>(momentum[i]);
  };
  for (int k = 0; k < batches; ++k) {
    StepRequest r = next(k);
    r.lr = 0.f;
    r.skip = true;
    r.stop = false;
    accumulate(r, sum);
    if (ema) {
      backend.use_ema(true);
      accumulate(r, ema_sum);
      backend.use_ema(false);
    }
    release(r.batch.tag);
  }
  auto averaged = [&](std::vector<float> result, const std::vector<double>& s) {
    for (size_t i = 0; i < result.size(); ++i)
      if (momentum[i] > 0.f) result[i] = static_cast<float>(s[i] / batches);
    return result;
  };
  backend.set_buffers(averaged(start, sum));
  if (ema) {
    backend.use_ema(true);
    backend.set_buffers(averaged(ema_start, ema_sum));
    backend.use_ema(false);
  }
}

}  // namespace stoke
