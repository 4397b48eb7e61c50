// Using a trained run: load its model and weights, predict, evaluate, export for PyTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/graph.h"
#include "engine/metrics.h"
#include "engine/options.h"
#include "engine/train_config.h"

namespace stoke {

struct LoadedRun {
  std::string run_dir, checkpoint;  // the checkpoint folder the weights came from
  std::string checkpoint_note;      // why it is not the one asked for (a damaged pointer or checkpoint), or ""
  std::string model;
  Shape3 input;
  std::vector<std::string> classes;
  std::vector<float> mean, stdev;  // normalisation of pixel/255, per channel
  int64_t step = 0;                // training steps behind these weights
  Graph graph{Shape3{1, 1, 1}};    // replaced by load_run
  std::vector<float> params, buffers;
  bool ema = false;       // params and buffers are the run's weight EMA (--ema), not its trained weights
  bool tta_flip = false;  // the run validated with --tta flip (config.json's "tta"): eval and predict follow it
};

// `path` is a run folder (uses checkpoints/<which>, falling back to latest when there is no best) or a
// checkpoint folder inside one. which = "initial": the weights the run started from (its seed's initialisation,
// running statistics 0/1), for comparing a run with a twin that starts where it started. Throws UserError with a clear
// message when there is nothing to load. ema: a checkpoint of an --ema run gives its averaged weights
// (ema.safetensors); false (--no-ema): the trained ones.
LoadedRun load_run(const std::string& path, const ModelFactory& build_model, const std::string& which = "best",
                   bool ema = true);

struct Prediction {
  std::string path;
  bool ok = false;
  std::string error;  // why the image could not be read
  int top_class = -1;
  std::vector<float> probs;  // softmax over the classes
};

// Decodes each image (resized to the model input), runs the model in eval mode on the backend `device` chooses
// (auto | cpu | cuda, as for training).
// tta_flip (--tta flip): each image's probabilities are the mean of its own and its mirror's (engine/tta.h).
std::vector<Prediction> predict(const LoadedRun& run, const std::vector<std::string>& images, int batch = 64,
                                DeviceRequest device = DeviceRequest::automatic, bool tta_flip = false);

// Evaluates on an ImageFolder (or a pack) with the run's classes. Throws UserError when the classes differ.
// decoders: JPEG decoder threads (0 = auto).
ClassificationReport evaluate_folder(const LoadedRun& run, const std::string& folder, int batch, int decoders = 0,
                                     DeviceRequest device = DeviceRequest::automatic, bool tta_flip = false);

// Writes a safetensors file that PyTorch loads with load_state_dict: convolution weights as OIHW, the
// weights of a linear layer that follows a spatial map re-ordered from stoke's (h, w, c) flattening to
// PyTorch's (c, h, w), and `<bn>.num_batches_tracked` (int64) beside each batch norm. Metadata records the
// model, input shape, classes and normalisation.
void export_safetensors(const LoadedRun& run, const std::string& out_path);

}  // namespace stoke
