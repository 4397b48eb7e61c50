#include "engine/bn_recalibrate.h"

#include <algorithm>
#include <vector>

#include "base/error.h"
#include "base/trace.h"

namespace stoke {

void recalibrate_batchnorm(TrainingBackend& backend, const Graph& graph, int batches,
                           const std::function<StepRequest(int)>& next, const std::function<void(int64_t)>& release) {
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
  std::vector<double> sum(start.size(), 0.0);
  for (int k = 0; k < batches; ++k) {
    backend.set_state(params, zeros, opt, steps);  // from 0, a step leaves momentum x this batch's statistics
    StepRequest r = next(k);
    r.lr = 0.f;
    r.skip = true;
    r.stop = false;
    backend.train_step(r);
    release(r.batch.tag);
    backend.get_state(scratch_p, got, scratch_o, scratch_steps);
    for (size_t i = 0; i < got.size(); ++i)
      if (momentum[i] > 0.f) sum[i] += static_cast<double>(got[i]) / static_cast<double>(momentum[i]);
  }
  std::vector<float> result = start;
  for (size_t i = 0; i < result.size(); ++i)
    if (momentum[i] > 0.f) result[i] = static_cast<float>(sum[i] / batches);
  backend.set_state(params, result, opt, steps);
}

}  // namespace stoke
