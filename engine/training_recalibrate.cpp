// --bn-recalibrate at the end of a run (engine/bn_recalibrate.h): which batches, and when it is on by default.
#include <algorithm>

#include "base/error.h"
#include "engine/bn_recalibrate.h"
#include "engine/training_run.h"

namespace stoke {

namespace {
// auto: on for runs shorter than this many steps, where momentum 0.1 leaves more than 0.9^100 = 3e-5 of the
// statistics' starting value; 20 batches average the per-batch statistics' noise well below its per-batch size.
constexpr int64_t kAutoBelowSteps = 100;
constexpr int kAutoBatches = 20;
}  // namespace

int TrainingRun::recalibration_batches() const {
  if (cfg_.bn_recalibrate == 0 || plan_.batch.steps_per_epoch < 1 || cfg_.epochs == 0) return 0;
  // Frozen statistics (--freeze-bn, a frozen backbone) are the imported ones on purpose.
  if (cfg_.freeze_bn || cfg_.freeze == Freeze::backbone) return 0;
  const auto& nodes = model_.graph.nodes();
  if (std::none_of(nodes.begin(), nodes.end(), [](const Node& n) { return n.op == Op::batchnorm; })) return 0;
  int64_t n = cfg_.bn_recalibrate;
  if (n < 0) n = plan_.batch.steps_per_epoch * cfg_.epochs < kAutoBelowSteps ? kAutoBatches : 0;
  return static_cast<int>(std::min(n, plan_.batch.steps_per_epoch));
}

// The first batches of the epoch after the last one trained: the training sampler's order, augmentation and rank
// slices, so a resumed run recalibrates over exactly the batches an uninterrupted one does.
int TrainingRun::recalibrate_batch_norm() {
  const int batches = recalibration_batches();
  if (batches == 0) return 0;
  const auto t0 = TrainClock::now();
  const int64_t epoch = cfg_.epochs;
  auto next = [&](int k) {
    const io::Batch rb = next_train(epoch, k);
    STOKE_CHECK(rb, "the input ended before batch-norm recalibration batch ", k);
    StepRequest r;
    r.batch = rb;
    r.transforms = input_.transforms.draw(rb);  // the recipe's too, as a training step would see the batch
    return r;
  };
  recalibrate_batchnorm(
      *backend_, model_.graph, batches, next, [this](int64_t tag) { release(tag); }, cfg_.ema > 0.f);
  if (!cfg_.quiet)
    console_.say(
        "batch norm: running statistics recomputed over %d training batches (%lld images) with the final "
        "weights%s in %.1f s (--bn-recalibrate; 0 turns it off)\n",
        batches, static_cast<long long>(batches) * plan_.batch.global,
        cfg_.ema > 0.f ? ", and the weight EMA's under its own weights," : "", seconds_since(t0));
  return batches;
}

}  // namespace stoke
