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
  std::vector<float> params, start, opt, got, scratch_p, scratch_o;
  int64_t steps = 0, scratch_steps = 0;
  backend.get_state(params, start, opt, steps);
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
  std::vector<float> ema_params, ema_start;
  if (ema) backend.get_ema(ema_params, ema_start);
  std::vector<double> sum(start.size(), 0.0), ema_sum(ema ? start.size() : 0, 0.0);
  // One batch's statistics under `weights`, added to `into` (the update is skipped: only the buffers move).
  auto accumulate = [&](const std::vector<float>& weights, const StepRequest& r, std::vector<double>& into) {
    backend.set_state(weights, zeros, opt, steps);  // from 0, a step leaves momentum x this batch's statistics
    backend.train_step(r);
    backend.get_state(scratch_p, got, scratch_o, scratch_steps);
    for (size_t i = 0; i < got.size(); ++i)
      if (momentum[i] > 0.f) into[i] += static_cast<double>(got[i]) / static_cast<double>(momentum[i]);
  };
  for (int k = 0; k < batches; ++k) {
    StepRequest r = next(k);
    r.lr = 0.f;
    r.skip = true;
    r.stop = false;
    accumulate(params, r, sum);
    if (ema) accumulate(ema_params, r, ema_sum);
    release(r.batch.tag);
  }
  auto averaged = [&](std::vector<float> result, const std::vector<double>& s) {
    for (size_t i = 0; i < result.size(); ++i)
      if (momentum[i] > 0.f) result[i] = static_cast<float>(s[i] / batches);
    return result;
  };
  backend.set_state(params, averaged(start, sum), opt, steps);
  if (ema) backend.set_ema(ema_params, averaged(ema_start, ema_sum));
}

}  // namespace stoke
