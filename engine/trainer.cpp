// Training a classifier: train() tells the story of a run in the order it happens; the parts live in
// engine/training_run.cpp (planning), engine/training_folder.cpp (the run folder, new or resumed),
// engine/training_loop.cpp (the input and the epochs) and engine/training_summary.cpp (the end); the run's settings
// are engine/train_config.h.
#include "engine/trainer.h"

#include <optional>

#include "engine/resume.h"
#include "engine/training_run.h"

namespace stoke {

TrainResult train(const TrainConfig& cfg, const ModelFactory& build_model) {
  check_train_config(cfg);
  if (std::optional<TrainResult> done = finished_run(cfg)) return *done;  // nothing to do, and nothing changed
  TrainingRun run(cfg, build_model);
  run.join_world();             // the other processes of a data-parallel job (mpirun, torchrun, Slurm), or none
  run.choose_device();          // --device auto|cpu|cuda, and why
  run.open_data();              // sources, input shape, classes, file caches
  run.build_model_and_batch();  // the graph, its initial weights, --batch-size (auto: planned memory)
  run.open_run_folder();        // a new folder, or the checkpoint to continue from
  run.agree_across_ranks();     // every rank runs the same settings on the same data, or none starts
  run.start_backend();          // the model state moves to the device
  run.announce();               // what runs, where; config.json
  run.start_input();            // decoders (or the decoded cache), the sampler
  run.train_epochs();           // the asynchronous steps, evaluation, checkpoints
  return run.finish();          // summary.json, the verdict, the report
}

}  // namespace stoke
