// Batch-norm statistics that do not depend on how many steps were run ("precise BN": Wu & Johnson, Rethinking
// "Batch" in BatchNorm, 2021; fvcore's update_bn_stats; torch.optim.swa_utils.update_bn). Training leaves each running
// mean and variance as an exponential average that still holds (1 - momentum)^steps of its starting value (0.9^30 =
// 4% after 30 steps) and mixes in statistics of older weights; recalibration replaces it with the plain average, over
// a number of training batches, of each batch's own statistics under the final weights.
#pragma once

#include <functional>

#include "engine/backend.h"
#include "engine/graph.h"

namespace stoke {

// Sets every batch norm's running mean and variance (the backend's buffers) to the average over `batches` batches of
// each batch's mean and unbiased variance, computed in training-mode forward passes with the backend's current
// weights. Only the backend protocol is used: each batch is a step with `skip` set (a training-mode forward whose
// update is skipped) run from running statistics of 0, which leaves momentum x the batch's statistics; only the
// buffers are transferred (get_buffers/set_buffers), never the parameters or the optimizer state, which end as they
// began. next(k) returns batch k (tag, n, pixels or ids, labels, flips);
// release(tag) is called once the backend is done with its memory. Buffers no batch norm updates are kept.
// Nothing may be in flight; in a data-parallel world every rank calls it with the same `batches`.
// ema (--ema): the backend's EMA statistics are recomputed the same way under the EMA's weights, from the same batches
// (torch.optim.swa_utils.update_bn on the averaged model), each batch's step run with the EMA in the weights' place
// (use_ema); the EMA's parameters stay as they are.
void recalibrate_batchnorm(TrainingBackend& backend, const Graph& graph, int batches,
                           const std::function<StepRequest(int)>& next, const std::function<void(int64_t)>& release,
                           bool ema = false);

}  // namespace stoke
