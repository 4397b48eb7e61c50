// One training step, as every backend runs it. The executors (engine/cpu/executor.h, engine/cuda/executor.h) run
// the graph only — forward and backward over the nodes; the phases around them (input normalisation, the loss, the
// exchange between processes, the update) are named here once, in the order both backends follow, and each backend
// supplies them for its device: the CPU backend as plain calls on its compute thread, the CUDA backend as launches
// enqueued on one stream (the same calls eager or captured into a CUDA graph). docs/ARCHITECTURE.md walks it.
#pragma once

#include <concepts>

namespace stoke {

// What a backend supplies for one step of n samples (n is fixed when the parts are made).
template <class P>
concept TrainStepParts = requires(P p) {
  p.normalize();  // the batch (gathered from the held set when the step names sample ids), flipped or transformed
                  // by the run's augmentation recipe where asked, (pixel/255 - mean) / std, into the executor's input;
                  // then mixup or cutmix with the batch reversed where the step carries a BatchMix (kernels/mix.h)
  p.forward();    // the executor: the graph, training mode (batch statistics, running averages updated)
  // Softmax cross-entropy (label smoothing; against the mixed targets with a BatchMix): the loss, the correct count
  // (a mixed row against its larger-weight label), the gradient backward starts from (times the fp16 loss scale).
  // False when this process already knows the update is skipped (a non-finite loss in a world of one, decided on the
  // host): nothing more runs. A backend that decides on the device returns true.
  { p.loss() } -> std::same_as<bool>;
  p.begin_exchange();  // a world of several: what can leave before backward (CUDA: the step's sums, ahead of the
                       // gradient buckets that backward launches as their nodes finish)
  p.backward();        // the executor: the graph backward, parameter gradients of this process's slice
  // A world of several: the summed gradients (divided by the world) and the step's summed sums are back; false when
  // the summed loss is not finite (decided on the host): the update is skipped on every rank alike.
  { p.end_exchange() } -> std::same_as<bool>;
  p.update();  // gradient clipping, then SGD or AdamW (fp16: skipped on overflow, the loss scale moved)
};

template <TrainStepParts P>
void run_train_step(P& p) {
  p.normalize();
  p.forward();
  if (!p.loss()) return;
  p.begin_exchange();
  p.backward();
  if (!p.end_exchange()) return;
  p.update();
}

}  // namespace stoke
